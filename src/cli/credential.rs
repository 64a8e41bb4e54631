//! Who runs a command: the holder of the token in `CUSTODIAN_TOKEN`, or in
//! the file `--token-file` names (an operator's, or the shared
//! `http.api_token`), checked against the least role the command declares.
//! Operator entries the command writes name them, with channel `cli` and
//! `user@host` as the client.

use std::path::Path;

use anyhow::Context as _;
use custodian::config::Settings;
use custodian::operators::{self, Actor, Caller, Channel, Role};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use secrecy::ExposeSecret as _;

/// The variable the token is read from.
pub const TOKEN_VARIABLE: &str = "CUSTODIAN_TOKEN";

/// `user@host`, for the operator entries.
fn client() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// The token: `--token-file`'s (first line), else `CUSTODIAN_TOKEN`.
pub fn token(token_file: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Some(path) = token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--token-file {}: cannot read it", path.display()))?;
        let token = text.lines().next().unwrap_or("").trim().to_owned();
        anyhow::ensure!(
            !token.is_empty(),
            "--token-file {}: it is empty",
            path.display()
        );
        return Ok(Some(token));
    }
    Ok(std::env::var(TOKEN_VARIABLE)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty()))
}

/// Connects to PostgreSQL as the command does.
pub async fn connect(settings: &Settings) -> anyhow::Result<AsyncPgConnection> {
    AsyncPgConnection::establish(settings.postgres.url.expose_secret())
        .await
        .context("cannot connect to postgres.url")
}

/// The holder of the command's token, if their role is at least `least`.
/// `bootstrap`: with no token, and no active admin yet, the command runs as
/// the local user (adding the first admin).
pub async fn actor(
    settings: &Settings,
    token_file: Option<&Path>,
    least: Role,
    command: &str,
    bootstrap: bool,
) -> anyhow::Result<Actor> {
    let mut conn = connect(settings).await?;
    let Some(token) = token(token_file)? else {
        if bootstrap && !operators::any_admin(&mut conn).await? {
            return Ok(Actor {
                name: format!("bootstrap:{}", client()),
                credential: None,
                role: Role::Admin,
                channel: Channel::Cli,
                client: Some(client()),
                request_id: None,
            });
        }
        anyhow::bail!(
            "custodian {command} takes the {least} role: set {TOKEN_VARIABLE}, or --token-file \
             FILE, to your token (from `custodian operator add`)"
        );
    };
    let caller = if operators::is_shared(settings.http.api_token.as_ref(), &token) {
        Caller::Shared
    } else {
        operators::authenticate(&mut conn, &token)
            .await?
            .context("the token is not valid (revoked, or not an operator's)")?
    };
    let role = caller.role();
    anyhow::ensure!(
        role >= least,
        "custodian {command} takes the {least} role; this token's is {role}"
    );
    Ok(Actor::new(&caller, Channel::Cli, Some(client()), None))
}
