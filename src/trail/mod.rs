//! The provable audit trail (issue 11): hash chains over `audit_log`,
//! signed checkpoints of their heads, and the checks an auditor runs.
//!
//! - [`checkpoint`]: signing and opening checkpoint lines (C2SP signed notes).
//! - [`checkpointer`]: the task that signs each chain's head every N entries
//!   or T seconds.
//! - [`verify`]: recomputing every chain, streaming, and naming the first break.
//! - [`reconcile`]: one terminal outcome per Kafka offset, against the
//!   broker's watermarks and the group's committed offset.
//!
//! The chain encoding itself (the versioned entry encoding and hash, and
//! chain names) is [`crate::store::chain`], below both: writing the chain is
//! the audit writer's job (`store::audit_writer`) and, for operator actions,
//! `store::audit::write_operator_event`'s; this module checks it.

pub mod checkpoint;
pub mod checkpointer;
pub mod reconcile;
pub mod verify;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::{Client, NoTls};

/// A PostgreSQL connection of its own for a long read (verify, reconcile)
/// or the checkpointer. The connect error never holds the password.
pub async fn connect(url: &SecretString, timeout: Duration) -> Result<Client, String> {
    let connect = tokio_postgres::connect(url.expose_secret(), NoTls);
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
    /// `audit.checkpoint_file`.
    pub checkpoint_file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Unavailable(String),
    #[error("checkpoint file {path}: {reason}")]
    CheckpointFile { path: String, reason: String },
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    #[error(transparent)]
    Reconcile(#[from] reconcile::ReconcileError),
}

impl Access {
    pub fn from_settings(
        settings: &crate::config::Settings,
    ) -> Result<Access, crate::config::ConfigError> {
        let verifier = settings
            .audit
            .signing_seed()?
            .map(|seed| checkpoint::Signer::new(&settings.audit.origin, &seed).verifier());
        Ok(Access {
            url: settings.postgres.url.clone(),
            verify_connections: settings.audit.verify_connections,
            connect_timeout: settings.postgres.connect_timeout,
            kafka: settings.kafka.clone(),
            verifier,
            checkpoint_file: settings.audit.checkpoint_file.clone(),
        })
    }

    async fn client(&self) -> Result<Client, AccessError> {
        connect(&self.url, self.connect_timeout)
            .await
            .map_err(AccessError::Unavailable)
    }

    /// Verifies every chain against `file` (default: `audit.checkpoint_file`,
    /// if it exists yet). A line of the file the verifier key refuses makes
    /// the report fail; without a verifier key the file cannot be read.
    pub async fn verify(
        &self,
        file: Option<&std::path::Path>,
        from_checkpoints: bool,
        deadline: Option<std::time::Instant>,
    ) -> Result<verify::Report, AccessError> {
        let configured = self.checkpoint_file.as_deref().filter(|p| p.exists());
        let mut options = verify::Options {
            from_checkpoints,
            verifier: self.verifier.clone(),
            deadline,
            ..verify::Options::default()
        };
        let mut refused_lines = Vec::new();
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
            let (good, refused) =
                checkpoint::read_file(path, verifier).map_err(|e| failed(e.to_string()))?;
            options.trusted = good;
            refused_lines = refused
                .into_iter()
                .map(|(line, e)| format!("{} line {line}: {e}", path.display()))
                .collect();
        }
        let mut clients = Vec::with_capacity(self.verify_connections);
        for _ in 0..self.verify_connections {
            clients.push(self.client().await?);
        }
        let mut report = verify::verify(&mut clients, &options).await?;
        report.refused_checkpoints.extend(refused_lines);
        report.holds = report.holds();
        Ok(report)
    }

    pub async fn reconcile(
        &self,
        request: &reconcile::Request,
    ) -> Result<reconcile::Report, AccessError> {
        let mut client = self.client().await?;
        let mut report = reconcile::reconcile(&mut client, &self.kafka, request).await?;
        report.holds = report.holds();
        Ok(report)
    }

    /// Uses `verifier` instead of the configured key's.
    pub fn with_verifier(mut self, verifier: checkpoint::Verifier) -> Access {
        self.verifier = Some(verifier);
        self
    }
}
