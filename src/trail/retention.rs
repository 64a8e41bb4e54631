//! The retention policy (`audit.retention`): archived periods that ended
//! before the cutoff are deleted from the archive, unless a legal hold
//! covers them (on the period, or on a key one of their entries holds).
//! Each deletion is first recorded (`audit_partitions.archive_deleted_at`,
//! through the database's function, and a chained ARCHIVE_DELETED operator
//! entry), then its files and manifests are deleted; a run retries the
//! files of every period recorded deleted, so a crash in between leaves no
//! file behind for good. The period's seal stays: `audit verify` carries
//! each chain across it from the seal, and reports it deleted by retention.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use tokio_postgres::Client;

use crate::config::ArchiveSettings;
use crate::identity::Actor;
use crate::trail::archive::manifest::Manifest;
use crate::trail::archive::parquet;
use crate::trail::archive::target::Target;
use crate::trail::checkpoint::Verifier;
use crate::trail::holds::{self, Hold};
use crate::trail::operator;

#[derive(Debug, Default, Serialize)]
pub struct Retained {
    /// Periods deleted from the archive by this run.
    pub deleted: Vec<String>,
    /// Periods past retention kept because a hold covers them: (period, hold).
    pub held: Vec<(String, i64)>,
    /// Files the store would not delete (Object Lock): (path, why).
    pub not_deleted: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("reading the archive records failed: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("recording the deletion of {partition} failed: {reason}")]
    Record { partition: String, reason: String },
    #[error("the archive of {partition}: {reason}")]
    Archive { partition: String, reason: String },
}

struct Expired {
    name: String,
    from: Option<DateTime<Utc>>,
    to: DateTime<Utc>,
    deleted: bool,
    url: String,
    /// Every manifest recorded for it, signed text and path.
    manifests: Vec<(String, String)>,
}

/// Deletes every archived period that ended before `cutoff`, under the
/// trail's lock (`exclusive`): no hold is placed while it decides.
pub async fn apply(
    client: &Client,
    conn: &mut AsyncPgConnection,
    configured: &ArchiveSettings,
    verifier: &Verifier,
    cutoff: DateTime<Utc>,
    by: &Actor,
) -> Result<Retained, RetentionError> {
    crate::trail::exclusive::with(client, async || {
        apply_locked(client, conn, configured, verifier, cutoff, by).await
    })
    .await
}

async fn apply_locked(
    client: &Client,
    conn: &mut AsyncPgConnection,
    configured: &ArchiveSettings,
    verifier: &Verifier,
    cutoff: DateTime<Utc>,
    by: &Actor,
) -> Result<Retained, RetentionError> {
    let active = holds::active(client).await?;
    let mut done = Retained::default();
    for p in expired(client, cutoff).await? {
        let failed = |reason: String| RetentionError::Archive {
            partition: p.name.clone(),
            reason,
        };
        let target = Target::open_existing(&ArchiveSettings {
            url: p.url.clone(),
            ..configured.clone()
        })
        .map_err(|e| failed(e.to_string()))?;
        let mut files = Vec::new();
        for (text, path) in &p.manifests {
            let m = Manifest::open(text.as_bytes(), verifier).map_err(|e| failed(e.to_string()))?;
            files.extend(m.files.into_iter().map(|f| f.path));
            files.push(path.clone());
        }
        if !p.deleted {
            if let Some(h) = holding(&active, &p, &target, &files).await? {
                done.held.push((p.name.clone(), h));
                continue;
            }
            record(conn, &p, by).await?;
            done.deleted.push(p.name.clone());
        }
        for f in files {
            if let Err(e) = target.delete(&f).await {
                done.not_deleted.push((f, e.to_string()));
            }
        }
    }
    Ok(done)
}

/// The archived periods past the cutoff, and those recorded deleted.
async fn expired(client: &Client, cutoff: DateTime<Utc>) -> Result<Vec<Expired>, RetentionError> {
    let rows = client
        .query(
            "SELECT p.name, p.from_time, p.to_time, p.archive_deleted_at IS NOT NULL, \
                    a.store_url, a.manifest, a.manifest_path \
               FROM audit_partitions p JOIN audit_archives a ON a.partition_name = p.name \
              WHERE p.dropped_at IS NOT NULL \
                AND (p.to_time <= $1 OR p.archive_deleted_at IS NOT NULL) \
              ORDER BY p.to_time, a.id",
            &[&cutoff],
        )
        .await?;
    let mut periods: Vec<Expired> = Vec::new();
    for r in &rows {
        let name: String = r.get(0);
        if periods.last().is_none_or(|p| p.name != name) {
            periods.push(Expired {
                name,
                from: r.get(1),
                to: r.get(2),
                deleted: r.get(3),
                url: String::new(),
                manifests: Vec::new(),
            });
        }
        if let Some(p) = periods.last_mut() {
            // The latest record's store holds them all (an erasure writes
            // to the store of the archive it supersedes).
            p.url = r.get(4);
            p.manifests.push((r.get(5), r.get(6)));
        }
    }
    Ok(periods)
}

/// The hold keeping a period: on the period, or on a key in its files.
async fn holding(
    active: &[Hold],
    p: &Expired,
    target: &Target,
    files: &[String],
) -> Result<Option<i64>, RetentionError> {
    if let Some(h) = active.iter().find(|h| h.covers_period(p.from, p.to)) {
        return Ok(Some(h.id));
    }
    let keys: Vec<&Hold> = active.iter().filter(|h| h.key.is_some()).collect();
    if keys.is_empty() {
        return Ok(None);
    }
    for f in files.iter().filter(|f| f.ends_with(".parquet")) {
        // A file already gone (a superseded manifest's, or deleted by an
        // earlier run) holds nothing to keep; any other failure stops the
        // run rather than risk deleting a held key's period.
        let bytes = match target.get(f).await {
            Ok(b) => b,
            Err(crate::trail::archive::target::TargetError::Missing { .. }) => continue,
            Err(e) => {
                return Err(RetentionError::Archive {
                    partition: p.name.clone(),
                    reason: e.to_string(),
                })
            }
        };
        let entries = parquet::decode(bytes).map_err(|e| RetentionError::Archive {
            partition: p.name.clone(),
            reason: e.to_string(),
        })?;
        for e in &entries {
            if let Some(h) = keys
                .iter()
                .find(|h| h.covers(e.message_key.as_deref(), e.recorded_at))
            {
                return Ok(Some(h.id));
            }
        }
    }
    Ok(None)
}

async fn record(
    conn: &mut AsyncPgConnection,
    p: &Expired,
    by: &Actor,
) -> Result<(), RetentionError> {
    use diesel::sql_types::Text;
    conn.transaction(async |conn| {
        diesel::sql_query("SELECT custodian_audit_archive_deleted($1)")
            .bind::<Text, _>(&p.name)
            .execute(conn)
            .await?;
        operator::record(
            conn,
            operator::Action::about(
                &format!("archive/{}", p.name),
                operator::ARCHIVE_DELETED,
                -1,
                None,
                serde_json::json!({
                    "partition": p.name,
                    "from": p.from,
                    "to": p.to,
                    "requested_by": by.name,
                        "operator": by.to_json(),
                    "reason": "audit.retention",
                    "manifests": p.manifests.iter().map(|(_, path)| path).collect::<Vec<_>>(),
                }),
            ),
        )
        .await
    })
    .await
    .map_err(|e: diesel::result::Error| RetentionError::Record {
        partition: p.name.clone(),
        reason: e.to_string(),
    })
}
