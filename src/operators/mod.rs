//! Operators are people (issue 27): each has a name, a role and a token of
//! their own. `custodian operator add|list|rotate|revoke` manages them; the
//! API authenticates a request by its token's SHA-256 (one indexed lookup,
//! no cache: a revocation takes effect at once). Adding, rotating and
//! revoking are chained operator entries. The shared `http.api_token` still
//! works, as one `admin`.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Binary, Nullable, Text, Timestamptz};
use diesel::OptionalExtension;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::trail::operator;

/// A chained entry: an operator added.
pub const ADDED: &str = "OPERATOR_ADDED";
/// An operator's token replaced.
pub const ROTATED: &str = "OPERATOR_ROTATED";
/// An operator's token revoked.
pub const REVOKED: &str = "OPERATOR_REVOKED";

pub use crate::identity::{who, Actor, Caller, Channel, Role};

/// An operator as listed (never its token or digest).
#[derive(Debug, Clone, Serialize, diesel::QueryableByName)]
pub struct Listed {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub role: String,
    #[diesel(sql_type = Text)]
    pub added_by: String,
    #[diesel(sql_type = Timestamptz)]
    pub added_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub rotated_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("{0}")]
    Database(#[from] diesel::result::Error),
    #[error("no operator {0}")]
    Unknown(String),
    #[error("operator {0} exists already")]
    Exists(String),
    #[error("a name is 1 to 100 of A-Z a-z 0-9 . _ @ -, not `{0}`")]
    BadName(String),
}

/// A new token: 32 random bytes, base64url, with a prefix a secret scanner
/// can find.
fn new_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!(
        "cust_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The digest a token is kept and looked up by.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn valid_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Adds an operator; the token, shown once.
pub async fn add(
    conn: &mut AsyncPgConnection,
    name: &str,
    role: Role,
    by: &Actor,
) -> Result<String, OperatorError> {
    if !valid_name(name) {
        return Err(OperatorError::BadName(name.to_owned()));
    }
    let token = new_token();
    let hash = digest(&token);
    let added = conn
        .transaction(async |conn| {
            let Some(Id { id }) = diesel::sql_query(
                "INSERT INTO operators (name, role, token_sha256, added_by) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO NOTHING RETURNING id",
            )
            .bind::<Text, _>(name)
            .bind::<Text, _>(role.as_str())
            .bind::<Binary, _>(&hash[..])
            .bind::<Text, _>(&by.name)
            .get_result::<Id>(conn)
            .await
            .optional()?
            else {
                return Ok::<bool, diesel::result::Error>(false);
            };
            record(conn, ADDED, id, name, by, Some(role)).await?;
            Ok(true)
        })
        .await?;
    if added {
        Ok(token)
    } else {
        Err(OperatorError::Exists(name.to_owned()))
    }
}

/// Replaces an active operator's token; the new one, shown once.
pub async fn rotate(
    conn: &mut AsyncPgConnection,
    name: &str,
    by: &Actor,
) -> Result<String, OperatorError> {
    let token = new_token();
    let hash = digest(&token);
    change(
        conn,
        "UPDATE operators SET token_sha256 = $2, rotated_at = now() \
         WHERE name = $1 AND revoked_at IS NULL RETURNING id",
        name,
        Some(&hash),
        ROTATED,
        by,
    )
    .await?;
    Ok(token)
}

/// Revokes an operator's token, at once.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    name: &str,
    by: &Actor,
) -> Result<(), OperatorError> {
    change(
        conn,
        "UPDATE operators SET revoked_at = now() \
         WHERE name = $1 AND revoked_at IS NULL AND $2::bytea IS NULL RETURNING id",
        name,
        None,
        REVOKED,
        by,
    )
    .await
}

async fn change(
    conn: &mut AsyncPgConnection,
    sql: &'static str,
    name: &str,
    hash: Option<&[u8; 32]>,
    status: &'static str,
    by: &Actor,
) -> Result<(), OperatorError> {
    let changed = conn
        .transaction(async |conn| {
            let Some(Id { id }) = diesel::sql_query(sql)
                .bind::<Text, _>(name)
                .bind::<Nullable<Binary>, _>(hash.map(|h| &h[..]))
                .get_result::<Id>(conn)
                .await
                .optional()?
            else {
                return Ok::<bool, diesel::result::Error>(false);
            };
            record(conn, status, id, name, by, None).await?;
            Ok(true)
        })
        .await?;
    if changed {
        Ok(())
    } else {
        Err(OperatorError::Unknown(name.to_owned()))
    }
}

/// The chained entry of a change to operator `name` (id `id`).
async fn record(
    conn: &mut AsyncPgConnection,
    status: &'static str,
    id: i64,
    name: &str,
    by: &Actor,
    role: Option<Role>,
) -> diesel::QueryResult<()> {
    operator::record(
        conn,
        operator::Action::about(&format!("operator/{id}"), status, id, None, {
            let mut detail = who(by, None);
            detail["subject"] = serde_json::json!({
                "name": name,
                "id": id,
                "role": role.map(Role::as_str),
            });
            detail
        }),
    )
    .await
}

/// Every operator, revoked ones too.
pub async fn list(conn: &mut AsyncPgConnection) -> Result<Vec<Listed>, OperatorError> {
    Ok(diesel::sql_query(
        "SELECT id, name, role, added_by, added_at, rotated_at, revoked_at FROM operators ORDER BY id",
    )
    .load(conn)
    .await?)
}

#[derive(diesel::QueryableByName)]
struct Found {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    role: String,
}

/// Whether `presented` is the shared `http.api_token`: compared in
/// constant time, digests first (equal lengths, so the time says nothing
/// of the token's length either).
pub fn is_shared(shared: Option<&secrecy::SecretString>, presented: &str) -> bool {
    use secrecy::ExposeSecret as _;
    use subtle::ConstantTimeEq as _;
    shared.is_some_and(|expected| {
        let digest = Sha256::digest(presented.as_bytes());
        let expected = Sha256::digest(expected.expose_secret().as_bytes());
        bool::from(digest.ct_eq(&expected))
    })
}

/// Whether an active admin exists (none: the command line may add the
/// first one without a token).
pub async fn any_admin(conn: &mut AsyncPgConnection) -> diesel::QueryResult<bool> {
    #[derive(diesel::QueryableByName)]
    struct Any {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        any: bool,
    }
    Ok(diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM operators WHERE role = 'admin' AND revoked_at IS NULL) AS any",
    )
    .get_result::<Any>(conn)
    .await?
    .any)
}

/// The active operator whose token this is, if any.
pub async fn authenticate(
    conn: &mut AsyncPgConnection,
    token: &str,
) -> diesel::QueryResult<Option<Caller>> {
    let found = diesel::sql_query(
        "SELECT id, name, role FROM operators WHERE token_sha256 = $1 AND revoked_at IS NULL",
    )
    .bind::<Binary, _>(&digest(token)[..])
    .get_result::<Found>(conn)
    .await;
    match found {
        Ok(f) => Ok(Role::parse(&f.role).map(|role| Caller::Operator {
            id: f.id,
            name: f.name,
            role,
        })),
        Err(diesel::result::Error::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_new_each_time_and_names_are_checked() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with("cust_") && a.len() > 40);
        assert_ne!(digest(&a), digest(&b));
        assert!(valid_name("erin.ops@acme"));
        assert!(!valid_name(""));
        assert!(!valid_name("erin ops"));
        assert!(!valid_name(&"x".repeat(101)));
        assert_eq!(Role::parse("approver"), Some(Role::Approver));
        assert_eq!(Role::parse("root"), None);
    }
}
