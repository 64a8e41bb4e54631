//! The provable audit trail (issue 11): hash chains over `audit_log`,
//! signed checkpoints of their heads, and the checks an auditor runs.
//!
//! - [`checkpoint`]: signing and opening checkpoint lines (C2SP signed notes).
//! - [`checkpointer`]: the task that signs each chain's head every N entries
//!   or T seconds.
//! - `marks`: when `audit.chain` was switched on and off, recorded at start.
//! - `status`: the checkpointer's latest result and the latest verify's,
//!   for `/ready` and the console.
//! - [`verify`]: recomputing every chain, streaming, and naming the first
//!   break; and the rows outside the chains custodian did not write.
//! - [`reconcile`]: one terminal outcome per Kafka offset, against the
//!   broker's watermarks and the group's committed offset.
//!
//! The chain encoding itself (the versioned entry encoding and hash, and
//! chain names) is `crate::store::chain`, below both: writing the chain is
//! the audit writer's job (`store::audit_writer`) and, for operator actions,
//! `outcome::chained::write_operator_event`'s; this module checks it.

pub mod archive;
pub mod checkpoint;
pub mod checkpointer;
pub mod entry;
pub mod erase;
pub(crate) mod exclusive;
pub mod holds;
pub(crate) mod maintainer;
pub(crate) mod marks;
pub(crate) mod operator;
pub mod partitions;
pub mod reconcile;
pub mod retention;
pub mod seal;
pub(crate) mod status;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use tokio_postgres::{Client, NoTls};

use crate::identity::Actor;

/// Verifies run at once by one instance (each over
/// `audit.verify_connections` connections); more wait up to
/// [`VERIFY_WAIT`], then answer "busy" (429 over HTTP).
pub const CONCURRENT_VERIFIES: usize = 2;
pub const VERIFY_WAIT: Duration = Duration::from_secs(5);

/// A PostgreSQL connection of its own for a long read (verify, reconcile)
/// or the checkpointer, named `application_name` in `pg_stat_activity`
/// unless the URL names it. The connect error never holds the password.
pub async fn connect(
    url: &SecretString,
    timeout: Duration,
    application_name: &str,
) -> Result<Client, String> {
    let mut config: tokio_postgres::Config = url
        .expose_secret()
        .parse()
        .map_err(|_| "postgres.url cannot be parsed".to_owned())?;
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }
    let connect = config.connect(NoTls);
    let (client, connection) = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| "connecting to postgres timed out".to_owned())?
        .map_err(|e| format!("cannot connect to postgres: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "trail connection closed");
        }
    });
    Ok(client)
}

/// One message's entries, live and archived (`Access::show`).
#[derive(Debug)]
pub struct Shown {
    pub live: Vec<entry::Entry>,
    pub archived: archive::find::Found,
    /// The archive store searched, if any period is archived.
    pub store_url: Option<String>,
}

/// What `audit verify` / `audit reconcile` need, from the settings: shared
/// by the CLI and the HTTP endpoints.
#[derive(Debug, Clone)]
pub struct Access {
    url: SecretString,
    connect_timeout: Duration,
    /// `audit.verify_connections`.
    verify_connections: usize,
    kafka: crate::config::KafkaSettings,
    /// The public half of the configured signing key, if any.
    pub verifier: Option<checkpoint::Verifier>,
    /// The configured signing key (seals and archive manifests).
    signer: Option<Arc<checkpoint::Signer>>,
    /// `audit.origin`.
    origin: String,
    /// `audit.partition`, `audit.partitions_ahead`.
    period: crate::config::Period,
    ahead: u32,
    /// `audit.archive`.
    archive: crate::config::ArchiveSettings,
    /// `audit.retention`.
    retention: Option<crate::config::Retention>,
    /// `redis.url` and `dlq.key_prefix`: an erasure refuses while a message
    /// is still parked.
    redis_url: SecretString,
    dlq_prefix: String,
    /// `audit.checkpoint_file`.
    pub checkpoint_file: Option<std::path::PathBuf>,
    /// Slots for verifies ([`CONCURRENT_VERIFIES`]), shared by the clones.
    verifies: Arc<Semaphore>,
    /// The checkpointer's and the latest verify's results.
    status: Arc<status::TrailStatus>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Unavailable(String),
    #[error("{CONCURRENT_VERIFIES} audit verifies are running; try again shortly")]
    Busy,
    #[error("checkpoint file {path}: {reason}")]
    CheckpointFile { path: String, reason: String },
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    #[error(transparent)]
    Reconcile(#[from] reconcile::ReconcileError),
    #[error(transparent)]
    Seal(#[from] seal::SealError),
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    #[error(transparent)]
    Erase(#[from] erase::EraseError),
    #[error(transparent)]
    Hold(#[from] holds::HoldError),
    #[error(transparent)]
    Retention(#[from] retention::RetentionError),
}

impl Access {
    pub fn from_settings(
        settings: &crate::config::Settings,
    ) -> Result<Access, crate::config::ConfigError> {
        let signer = settings
            .audit
            .signing_seed()?
            .map(|seed| Arc::new(checkpoint::Signer::new(&settings.audit.origin, &seed)));
        let verifier = signer.as_ref().map(|s| s.verifier());
        Ok(Access {
            signer,
            origin: settings.audit.origin.clone(),
            period: settings.audit.partition,
            ahead: settings.audit.partitions_ahead,
            archive: settings.audit.archive.clone(),
            retention: settings.audit.retention,
            redis_url: settings.redis.url.clone(),
            dlq_prefix: settings.dlq.key_prefix.clone(),
            url: settings.postgres.url.clone(),
            verify_connections: settings.audit.verify_connections,
            connect_timeout: settings.postgres.connect_timeout,
            kafka: settings.kafka.clone(),
            verifier,
            checkpoint_file: settings.audit.checkpoint_file.clone(),
            verifies: Arc::new(Semaphore::new(CONCURRENT_VERIFIES)),
            status: Arc::default(),
        })
    }

    /// What the checkpointer and the verifies of this instance report to.
    pub fn status(&self) -> Arc<status::TrailStatus> {
        Arc::clone(&self.status)
    }

    async fn client(&self, application_name: &str) -> Result<Client, AccessError> {
        connect(&self.url, self.connect_timeout, application_name)
            .await
            .map_err(AccessError::Unavailable)
    }

    /// Records `audit.chain` in `audit_chain_marks` (see `marks`), at
    /// start, before anything is written under it.
    pub async fn record_chaining(&self, chained: bool) -> Result<(), AccessError> {
        let client = self.client("custodian start").await?;
        marks::record(&client, chained)
            .await
            .map_err(|e| AccessError::Unavailable(format!("recording audit.chain: {e}")))?;
        Ok(())
    }

    /// Verifies every chain against `file` (default: `audit.checkpoint_file`,
    /// if it exists yet). A line of the file the verifier key refuses makes
    /// the report fail; without a verifier key the file cannot be read; so
    /// does a checkpoint file this instance's checkpointer cannot append to.
    /// At most [`CONCURRENT_VERIFIES`] run at once; past [`VERIFY_WAIT`] in
    /// the queue the answer is [`AccessError::Busy`].
    pub async fn verify(
        &self,
        file: Option<&std::path::Path>,
        from_checkpoints: bool,
        deadline: Option<std::time::Instant>,
    ) -> Result<verify::Report, AccessError> {
        let _slot = tokio::time::timeout(VERIFY_WAIT, self.verifies.acquire())
            .await
            .map_err(|_| AccessError::Busy)?
            .map_err(|_| AccessError::Busy)?;
        let configured = self.checkpoint_file.as_deref().filter(|p| p.exists());
        let mut options = verify::Options {
            from_checkpoints,
            verifier: self.verifier.clone(),
            deadline,
            ..verify::Options::default()
        };
        let mut refused_lines = Vec::new();
        let mut unreadable = None;
        if let Some(path) = file.or(configured) {
            let failed = |reason: String| AccessError::CheckpointFile {
                path: path.display().to_string(),
                reason,
            };
            let verifier = self.verifier.as_ref().ok_or_else(|| {
                failed(
                    "reading it needs a verifier key (audit.signing_key or --verifier-key)".into(),
                )
            })?;
            let (good, refused) = match checkpoint::read_file(path, verifier) {
                Ok(read) => read,
                // The configured file gone bad (replaced by a directory, its
                // permissions taken): a failure of the report, not of the
                // request; an explicitly named file is the caller's to fix.
                Err(e) if file.is_none() => {
                    unreadable = Some(format!("cannot read {}: {e}", path.display()));
                    Default::default()
                }
                Err(e) => return Err(failed(e.to_string())),
            };
            options.trusted = good;
            refused_lines = refused
                .into_iter()
                .map(|(line, e)| format!("{} line {line}: {e}", path.display()))
                .collect();
        }
        let mut clients = Vec::with_capacity(self.verify_connections);
        for _ in 0..self.verify_connections {
            clients.push(self.client("custodian audit verify").await?);
        }
        let mut tries = 0;
        let mut report = loop {
            tries += 1;
            let Some(client) = clients.first() else {
                return Err(verify::VerifyError::NoConnection.into());
            };
            let before = self.dropped(client).await?;
            options.archive = Some(self.archived(client).await?);
            let report = verify::verify(&mut clients, &options).await?;
            // A partition archived and dropped while the chains were read
            // was in neither the archive read first nor the live rows read
            // after: read again, with the archive as it is now (three reads
            // at most).
            let Some(client) = clients.first() else {
                return Err(verify::VerifyError::NoConnection.into());
            };
            if report.holds() || tries >= 3 || self.dropped(client).await? == before {
                break report;
            }
            tracing::info!("a partition was dropped during audit verify; verifying again");
        };
        report.refused_checkpoints.extend(refused_lines);
        report.checkpoint_file_error = self.status.checkpoint_file_error().or(unreadable);
        report.holds = report.holds();
        self.status.verified(&report);
        Ok(report)
    }

    /// The partitions dropped (or deleted by retention) so far.
    async fn dropped(&self, client: &Client) -> Result<Vec<(String, bool)>, AccessError> {
        let rows = client
            .query(
                "SELECT name, archive_deleted_at IS NOT NULL FROM audit_partitions \
                 WHERE dropped_at IS NOT NULL ORDER BY name",
                &[],
            )
            .await
            .map_err(|e| AccessError::Unavailable(format!("reading audit_partitions: {e}")))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The archived periods, as `audit verify` reads them. A store that
    /// cannot be opened is a problem of the report, not an error.
    async fn archived(&self, client: &Client) -> Result<verify::archived::Archive, AccessError> {
        verify::archived::load(client, &self.archive, self.verifier.as_ref())
            .await
            .map_err(|e| AccessError::Unavailable(format!("reading audit_archives: {e}")))
    }

    /// Message `id`'s entries, in the live partitions and in the archive
    /// (the periods dropped from PostgreSQL, searched by bloom filter).
    pub async fn show(&self, id: uuid::Uuid) -> Result<Shown, AccessError> {
        let client = self.client("custodian audit show").await?;
        let unavailable = |e: tokio_postgres::Error| {
            AccessError::Unavailable(format!("reading the audit trail: {e}"))
        };
        let rows = client
            .query(
                &format!(
                    "SELECT {}, c.name FROM audit_log l LEFT JOIN audit_chains c USING (chain_id) \
                     WHERE l.message_id = $1 ORDER BY l.occurred_at, l.id",
                    entry::COLUMNS
                ),
                &[&id],
            )
            .await
            .map_err(unavailable)?;
        let mut live = Vec::with_capacity(rows.len());
        for r in &rows {
            let chain: Option<String> = r.get(entry::COLUMN_COUNT);
            live.push(entry::Entry::from_row(r, chain.as_deref()).map_err(unavailable)?);
        }
        let manifests = client
            .query(
                "SELECT a.manifest FROM audit_partitions p \
                 JOIN LATERAL (SELECT manifest FROM audit_archives WHERE partition_name = p.name \
                     ORDER BY id DESC LIMIT 1) a ON true \
                 WHERE p.dropped_at IS NOT NULL AND p.archive_deleted_at IS NULL \
                 ORDER BY p.to_time",
                &[],
            )
            .await
            .map_err(unavailable)?;
        if manifests.is_empty() {
            return Ok(Shown {
                live,
                archived: archive::find::Found::default(),
                store_url: None,
            });
        }
        let verifier = self.verifier.as_ref().ok_or_else(|| {
            AccessError::Unavailable(
                "reading the archive needs the verifier key (audit.signing_key)".into(),
            )
        })?;
        let mut opened = Vec::with_capacity(manifests.len());
        for r in &manifests {
            let text: String = r.get(0);
            opened.push(
                archive::manifest::Manifest::open(text.as_bytes(), verifier)
                    .map_err(archive::ArchiveError::from)?,
            );
        }
        let target = self.archive_target()?;
        let archived = archive::find::find(&target, &opened, id)
            .await
            .map_err(|e| AccessError::Unavailable(e.to_string()))?;
        Ok(Shown {
            live,
            archived,
            store_url: Some(target.url().to_owned()),
        })
    }

    /// Creates the partitions of `audit_log` missing up to
    /// `audit.partitions_ahead` periods past the current one.
    pub async fn ensure_partitions(&self) -> Result<Vec<String>, AccessError> {
        let client = self.client("custodian partitions").await?;
        partitions::ensure(&client, self.period, self.ahead)
            .await
            .map_err(|e| AccessError::Unavailable(format!("creating audit partitions: {e}")))
    }

    /// Every partition of `audit_log`, oldest first.
    pub async fn partitions(&self) -> Result<Vec<partitions::Partition>, AccessError> {
        let client = self.client("custodian partitions").await?;
        partitions::list(&client)
            .await
            .map_err(|e| AccessError::Unavailable(format!("listing audit partitions: {e}")))
    }

    /// Seals every partition that ended at or before `before`.
    pub async fn seal(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<seal::Seal>, AccessError> {
        let mut client = self.client("custodian audit seal").await?;
        Ok(seal::seal_ended(
            &mut client,
            self.signer.as_deref(),
            &self.origin,
            before,
            self.checkpoint_file.as_deref(),
        )
        .await?)
    }

    /// The configured archive store.
    pub fn archive_target(&self) -> Result<archive::target::Target, AccessError> {
        Ok(archive::target::Target::open(&self.archive).map_err(archive::ArchiveError::from)?)
    }

    /// Archives every sealed partition, dropping each once its archive is
    /// verified and recorded (unless `keep`).
    pub async fn archive(&self, keep: bool) -> Result<Vec<archive::Archived>, AccessError> {
        let target = self.archive_target()?;
        let mut client = self.client("custodian audit archive").await?;
        Ok(archive::archive_sealed(
            &mut client,
            &target,
            self.signer.as_deref(),
            self.archive.file_rows,
            keep,
        )
        .await?)
    }

    pub async fn reconcile(
        &self,
        request: &reconcile::Request,
    ) -> Result<reconcile::Report, AccessError> {
        let mut client = self.client("custodian audit reconcile").await?;
        let mut report = reconcile::reconcile(&mut client, &self.kafka, request).await?;
        report.holds = report.holds();
        Ok(report)
    }

    /// A diesel connection, for the operator chain's entries.
    async fn diesel(&self) -> Result<diesel_async::AsyncPgConnection, AccessError> {
        use diesel_async::AsyncConnection;
        let connect = diesel_async::AsyncPgConnection::establish(self.url.expose_secret());
        tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| AccessError::Unavailable("connecting to postgres timed out".into()))?
            .map_err(|_| AccessError::Unavailable("cannot connect to postgres".into()))
    }

    /// Erases the personal fields and payloads of what `selector` names,
    /// live and archived (see [`erase`]).
    pub async fn erase(
        &self,
        selector: &erase::Selector,
        by: &erase::Asked<'_>,
        reason: &str,
    ) -> Result<erase::Erased, AccessError> {
        let client = self.client("custodian audit erase").await?;
        let mut conn = self.diesel().await?;
        let pending = async |ids: &[uuid::Uuid]| self.pending(&client, ids).await;
        Ok(erase::erase(
            &client,
            &mut conn,
            &self.archive,
            self.signer.as_deref(),
            selector,
            by,
            reason,
            pending,
        )
        .await?)
    }

    /// The first of `ids` still parked in the dead-letter queue or waiting
    /// in the retry schedule, described.
    async fn pending(&self, client: &Client, ids: &[uuid::Uuid]) -> Result<Option<String>, String> {
        if ids.is_empty() {
            return Ok(None);
        }
        let scheduled = client
            .query_opt(
                "SELECT message_id FROM retry_schedule WHERE message_id = ANY($1) LIMIT 1",
                &[&ids],
            )
            .await
            .map_err(|e| format!("reading the retry schedule: {e}"))?;
        if let Some(r) = scheduled {
            let id: uuid::Uuid = r.get(0);
            return Ok(Some(format!("message {id} waits in the retry schedule")));
        }
        let redis = redis::Client::open(self.redis_url.expose_secret())
            .map_err(|_| "redis.url cannot be parsed".to_owned())?;
        let mut conn = tokio::time::timeout(
            self.connect_timeout,
            redis.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| "connecting to redis timed out".to_owned())?
        .map_err(|e| format!("cannot connect to redis: {e}"))?;
        let index = crate::dlq::Keys::new(&self.dlq_prefix).index();
        for chunk in ids.chunks(500) {
            let parked: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(&index)
                .arg(chunk.iter().map(|id| id.to_string()).collect::<Vec<_>>())
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("reading the dead-letter queue: {e}"))?;
            if let Some((id, _)) = chunk.iter().zip(parked).find(|(_, p)| p.is_some()) {
                return Ok(Some(format!(
                    "message {id} is parked in the dead-letter queue"
                )));
            }
        }
        Ok(None)
    }

    /// Every legal hold (`active`: only those not released).
    pub async fn holds(&self, active: bool) -> Result<Vec<holds::Hold>, AccessError> {
        let client = self.client("custodian audit holds").await?;
        let read = if active {
            holds::active(&client).await
        } else {
            holds::all(&client).await
        };
        read.map_err(|e| AccessError::Unavailable(format!("reading the holds: {e}")))
    }

    /// Places a legal hold; its id.
    pub async fn hold(
        &self,
        on: &holds::HoldOn,
        by: &Actor,
        reason: &str,
    ) -> Result<i64, AccessError> {
        let mut conn = self.diesel().await?;
        Ok(holds::place(&mut conn, on, reason, by).await?)
    }

    /// Releases a legal hold.
    pub async fn release(&self, id: i64, by: &Actor, reason: &str) -> Result<(), AccessError> {
        let mut conn = self.diesel().await?;
        Ok(holds::release(&mut conn, id, reason, by).await?)
    }

    /// Deletes from the archive every archived period past `audit.retention`
    /// at `now`, unless a hold covers it.
    pub async fn retain(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        by: &Actor,
    ) -> Result<retention::Retained, AccessError> {
        let retention = self.retention.ok_or_else(|| {
            AccessError::Unavailable("audit.retention is not set: nothing is ever deleted".into())
        })?;
        let cutoff = retention.cutoff(now).ok_or_else(|| {
            AccessError::Unavailable("audit.retention reaches before year 1".into())
        })?;
        let verifier = self.verifier.as_ref().ok_or_else(|| {
            AccessError::Unavailable(
                "reading the archive needs the verifier key (audit.signing_key)".into(),
            )
        })?;
        let client = self.client("custodian audit retain").await?;
        let mut conn = self.diesel().await?;
        Ok(retention::apply(&client, &mut conn, &self.archive, verifier, cutoff, by).await?)
    }

    /// Uses `verifier` instead of the configured key's.
    pub fn with_verifier(mut self, verifier: checkpoint::Verifier) -> Access {
        self.verifier = Some(verifier);
        self
    }
}
