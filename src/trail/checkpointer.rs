//! The checkpointer: a task that reads every chain's head and signs those
//! with `audit.checkpoint_every_entries` new entries, or with new entries and
//! a last checkpoint older than `audit.checkpoint_interval`. It appends the
//! lines to `audit.checkpoint_file` first (the copy that counts), then to
//! `audit_checkpoints`. Every instance runs one; two signing the same head
//! write two equally valid lines.
//!
//! A file that cannot be opened at start stops custodian there (see
//! `config::audit`). One that fails later does not stop the table rows:
//! the failure goes to `TrailStatus`, where `/ready` and
//! `GET /audit/verify` report it until an append succeeds again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use tokio_postgres::Client;

use crate::config::Settings;
use crate::trail::checkpoint::{self, Checkpoint, Signer};
use crate::trail::status::TrailStatus;

/// A chain's head as stored: its entry with the highest sequence number.
#[derive(Debug, Clone)]
pub struct Head {
    pub chain_id: i32,
    pub chain: String,
    pub seq: i64,
    pub hash: [u8; 32],
}

/// Every chain that has entries, with its head.
pub async fn heads(client: &Client) -> Result<Vec<Head>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.chain_id, c.name, h.chain_seq, h.entry_hash FROM audit_chains c \
             CROSS JOIN LATERAL (SELECT chain_seq, entry_hash FROM audit_log l \
                 WHERE l.chain_id = c.chain_id ORDER BY chain_seq DESC LIMIT 1) h \
             ORDER BY c.chain_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(Head {
                chain_id: r.get(0),
                chain: r.get(1),
                seq: r.get(2),
                hash: r.get::<_, &[u8]>(3).try_into().ok()?,
            })
        })
        .collect())
}

pub struct Checkpointer {
    url: SecretString,
    connect_timeout: Duration,
    signer: Signer,
    origin: String,
    file: Option<PathBuf>,
    every: u64,
    interval: Duration,
    /// Per chain id: the sequence and time of its last checkpoint; loaded
    /// from `audit_checkpoints` on the first tick.
    last: Option<HashMap<i32, (i64, DateTime<Utc>)>>,
    client: Option<Client>,
    /// Where each tick's result goes (the HTTP side reads it).
    status: Arc<TrailStatus>,
}

impl Checkpointer {
    /// The checkpointer, or `None` (said at start) when no key is set.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<Checkpointer>> {
        let audit = &settings.audit;
        let Some(seed) = audit.signing_seed()? else {
            tracing::warn!(
                "no audit.signing_key or audit.signing_key_file: the audit trail is hash-chained but its checkpoints are not signed, so a truncated trail cannot be detected"
            );
            return Ok(None);
        };
        if !audit.chain {
            tracing::warn!("audit.chain = false: pipeline entries are written unchained and cannot be verified");
        }
        if audit.checkpoint_file.is_none() {
            tracing::warn!(
                "no audit.checkpoint_file: checkpoints go to audit_checkpoints only, where a superuser can delete them; set a file and ship it off the database server"
            );
        }
        Ok(Some(Checkpointer {
            url: settings.postgres.url.clone(),
            connect_timeout: settings.postgres.connect_timeout,
            signer: Signer::new(&audit.origin, &seed),
            origin: audit.origin.clone(),
            file: audit.checkpoint_file.clone(),
            every: audit.checkpoint_every_entries,
            interval: audit.checkpoint_interval,
            last: None,
            client: None,
            status: Arc::default(),
        }))
    }

    /// Reports each tick's result to `status` (by default a status of its
    /// own, which nothing reads).
    pub fn reporting_to(mut self, status: Arc<TrailStatus>) -> Checkpointer {
        status.signing();
        self.status = status;
        self
    }

    /// Checks the heads every second (or every interval, if shorter) until
    /// `stop` fires; a round under way finishes first.
    pub async fn run(mut self, stop: tokio_util::sync::CancellationToken) {
        let tick = self.interval.min(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                () = stop.cancelled() => return,
            }
            // A failing file is said once, by `append_to_file`.
            if let Err(e) = self.step(false).await {
                tracing::warn!(error = %e, "audit checkpoint not written; trying again");
            }
        }
    }

    /// Signs the heads that are due (every head that moved, with `force`);
    /// returns how many it signed. A checkpoint file that refuses the lines
    /// is an error, returned after the table rows are written.
    pub async fn tick(&mut self, force: bool) -> Result<usize, String> {
        match self.step(force).await? {
            (signed, None) => Ok(signed),
            (_, Some(file)) => Err(file),
        }
    }

    /// One round, its result reported to the status.
    async fn step(&mut self, force: bool) -> Result<(usize, Option<String>), String> {
        let result = self.sign_due(force).await;
        let error = match &result {
            Ok((_, file)) => file.clone(),
            Err(e) => {
                self.client = None;
                Some(e.clone())
            }
        };
        self.status.tick_result(error);
        result
    }

    /// Appends to the file; says a change of its state once.
    fn append_to_file(&self, lines: &[String]) -> Option<String> {
        let path = self.file.as_ref()?;
        let error = checkpoint::append(path, lines)
            .err()
            .map(|e| format!("cannot append to {}: {e}", path.display()));
        if self.status.file_result(error.clone()) {
            match &error {
                Some(e) => tracing::error!(
                    error = %e,
                    "audit.checkpoint_file refuses checkpoints: they go to audit_checkpoints only, and /ready answers 503 until the file takes them again"
                ),
                None => {
                    tracing::info!(path = %path.display(), "audit.checkpoint_file takes checkpoints again")
                }
            }
        }
        error
    }

    /// How many heads it signed, and why the file refused them if it did.
    async fn sign_due(&mut self, force: bool) -> Result<(usize, Option<String>), String> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(
                crate::trail::connect(&self.url, self.connect_timeout, "custodian checkpointer")
                    .await?,
            );
        }
        let client = self.client.as_ref().ok_or("no connection")?;
        if self.last.is_none() {
            let rows = client
                .query(
                    "SELECT DISTINCT ON (chain_id) chain_id, chain_seq, signed_at \
                     FROM audit_checkpoints ORDER BY chain_id, chain_seq DESC",
                    &[],
                )
                .await
                .map_err(|e| e.to_string())?;
            self.last = Some(
                rows.iter()
                    .map(|r| (r.get(0), (r.get(1), r.get(2))))
                    .collect(),
            );
        }
        let now = Utc::now();
        let last = self.last.get_or_insert_with(HashMap::new);
        let due: Vec<Head> = heads(client)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|h| match last.get(&h.chain_id) {
                None => true,
                Some((seq, at)) => {
                    h.seq > *seq
                        && (force
                            || (h.seq - seq) as u64 >= self.every
                            || (now - *at).to_std().unwrap_or_default() >= self.interval)
                }
            })
            .collect();
        if due.is_empty() {
            return Ok((0, None));
        }
        let lines: Vec<String> = due
            .iter()
            .map(|h| {
                self.signer.sign(&Checkpoint {
                    origin: self.origin.clone(),
                    chain: h.chain.clone(),
                    seq: h.seq,
                    hash: h.hash,
                    time: now,
                })
            })
            .collect();
        let file_error = self.append_to_file(&lines);
        let ids: Vec<i32> = due.iter().map(|h| h.chain_id).collect();
        let seqs: Vec<i64> = due.iter().map(|h| h.seq).collect();
        let hashes: Vec<&[u8]> = due.iter().map(|h| &h.hash[..]).collect();
        client
            .execute(
                "INSERT INTO audit_checkpoints (chain_id, chain_seq, head_hash, signed_at, line) \
                 SELECT c, s, h, $4, l FROM unnest($1::int4[], $2::int8[], $3::bytea[], $5::text[]) AS u(c, s, h, l)",
                &[&ids, &seqs, &hashes, &now, &lines],
            )
            .await
            .map_err(|e| e.to_string())?;
        let last = self.last.get_or_insert_with(HashMap::new);
        for h in &due {
            last.insert(h.chain_id, (h.seq, now));
        }
        self.status.signed(due.len(), now);
        tracing::debug!(chains = due.len(), "audit checkpoints signed");
        Ok((due.len(), file_error))
    }
}
