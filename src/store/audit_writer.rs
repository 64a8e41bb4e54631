//! The auditor's own PostgreSQL connection, and the binary `COPY` that
//! appends a batch's audit entries in one transaction.
//!
//! Why a second client beside diesel: the audit trail is append-only, which
//! is exactly what `COPY … FROM STDIN BINARY` is for, and diesel-async does
//! not expose it. tokio-postgres (the client diesel-async is built on) does,
//! so the auditor keeps one plain connection of its own for it; everything
//! else still goes through diesel with bound parameters. Values travel in
//! PostgreSQL's binary format: nothing is ever turned into SQL text.

use std::collections::HashSet;
use std::time::Duration;

use futures::pin_mut;
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

use crate::config::PostgresSettings;
use crate::store::audit::{AuditEntry, PROCESSED};

/// The columns of `audit_log` an entry fills, in COPY order.
const COPY: &str = "COPY audit_log (message_id, status, topic, kafka_partition, kafka_offset, \
    message_key, event_type, attempt, error, consumer_group, occurred_at, detail, \
    received_at, received_detail, key_bytes, payload, headers, kafka_timestamp, payload_sha256) \
    FROM STDIN BINARY";

const TYPES: [Type; 19] = [
    Type::UUID,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::JSONB,
    Type::TIMESTAMPTZ,
    Type::JSONB,
    Type::BYTEA,
    Type::BYTEA,
    Type::JSONB,
    Type::TIMESTAMPTZ,
    Type::BYTEA,
];

/// A write that did not land. The auditor waits and tries again: audit
/// entries never give up.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot connect to postgres: {0}")]
    Connect(String),
    #[error("audit write failed: {0}")]
    Write(#[from] tokio_postgres::Error),
}

/// One connection, opened when first needed and again after any error.
pub struct AuditWriter {
    url: SecretString,
    connect_timeout: Duration,
    statement_timeout_ms: String,
    client: Option<Client>,
}

impl AuditWriter {
    pub fn new(settings: &PostgresSettings) -> Self {
        AuditWriter {
            url: settings.url.clone(),
            connect_timeout: settings.connect_timeout,
            statement_timeout_ms: settings.statement_timeout.as_millis().to_string(),
            client: None,
        }
    }

    async fn client(&mut self) -> Result<&mut Client, WriteError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let connect = tokio_postgres::connect(self.url.expose_secret(), NoTls);
            let (client, connection) = tokio::time::timeout(self.connect_timeout, connect)
                .await
                .map_err(|_| WriteError::Connect("timed out".into()))?
                // The error text of a connect never holds the password.
                .map_err(|e| WriteError::Connect(e.to_string()))?;
            actix_rt::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "audit connection closed");
                }
            });
            client
                .execute(
                    "SELECT set_config('statement_timeout', $1, false)",
                    &[&self.statement_timeout_ms],
                )
                .await?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| WriteError::Connect("no connection".into()))
    }

    /// Of `ids`, those that already have a MESSAGE_PROCESSED entry.
    pub async fn processed(&mut self, ids: &[Uuid]) -> Result<HashSet<Uuid>, WriteError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let result = async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT DISTINCT message_id FROM message_audit \
                     WHERE message_id = ANY($1) AND status = $2",
                    &[&ids, &PROCESSED],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get::<_, Uuid>(0)).collect())
        }
        .await;
        self.forget_on_error(result)
    }

    /// Appends `entries` in one transaction.
    pub async fn append(&mut self, entries: &[AuditEntry<'_>]) -> Result<(), WriteError> {
        let result = async {
            let client = self.client().await?;
            let tx = client.transaction().await?;
            let sink = tx.copy_in(COPY).await?;
            let writer = BinaryCopyInWriter::new(sink, &TYPES);
            pin_mut!(writer);
            for e in entries {
                let receipt = e.receipt.as_ref();
                let row: [&(dyn ToSql + Sync); 19] = [
                    &e.message_id,
                    &e.status,
                    &e.topic,
                    &e.kafka_partition,
                    &e.kafka_offset,
                    &e.message_key,
                    &e.event_type,
                    &e.attempt,
                    &e.error,
                    &e.consumer_group,
                    &e.occurred_at,
                    &e.detail,
                    &receipt.map(|r| r.received_at),
                    &receipt.and_then(|r| r.detail.as_ref()),
                    &receipt.and_then(|r| r.key),
                    &receipt.and_then(|r| r.payload),
                    &receipt.and_then(|r| r.headers.as_ref()),
                    &receipt.and_then(|r| r.kafka_timestamp),
                    &receipt.map(|r| r.payload_sha256.as_slice()),
                ];
                writer.as_mut().write(&row).await?;
            }
            writer.finish().await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        self.forget_on_error(result)
    }

    /// After any error the connection is dropped: its state (an aborted
    /// transaction, a half-sent COPY) is not worth repairing.
    fn forget_on_error<T>(&mut self, result: Result<T, WriteError>) -> Result<T, WriteError> {
        if result.is_err() {
            self.client = None;
        }
        result
    }
}
