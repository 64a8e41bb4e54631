//! Dead letters grouped by error kind, with counts: read from the per-kind
//! time indexes (`Keys::by_time(None, Some(kind))`), found with SCAN (never
//! KEYS, which would block Redis), so the answer costs one ZCARD per kind.

use redis::aio::ConnectionLike;
use redis::RedisError;
use serde::Serialize;

use super::Keys;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KindCount {
    pub error_kind: String,
    pub count: u64,
}

/// Every error kind with parked entries, most entries first.
pub async fn counts<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
) -> Result<Vec<KindCount>, RedisError> {
    let prefix = keys.by_time(None, Some(""));
    let pattern = format!("{}*", escape(&prefix));
    let mut cursor: u64 = 0;
    let mut found = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(conn)
            .await?;
        found.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    found.sort();
    found.dedup();
    let mut counts = Vec::with_capacity(found.len());
    for key in found {
        let count: u64 = redis::cmd("ZCARD").arg(&key).query_async(conn).await?;
        if count > 0 {
            let kind = key[prefix.len()..].to_owned();
            counts.push(KindCount {
                error_kind: kind,
                count,
            });
        }
    }
    counts.sort_by(|a, b| b.count.cmp(&a.count).then(a.error_kind.cmp(&b.error_kind)));
    Ok(counts)
}

/// A key prefix as a literal in a SCAN pattern.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
