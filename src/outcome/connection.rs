//! A plain tokio-postgres connection, opened when first needed and again
//! after any error. The outcome writer keeps one for its transactions
//! (diesel-async exposes no `COPY`; tokio-postgres, the client diesel-async
//! is built on, does), and the deferral gate one for its reads of the
//! schedule. Values travel in PostgreSQL's binary format with bound
//! parameters: nothing is ever turned into SQL text.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::{Client, NoTls};

use crate::config::PostgresSettings;

/// Why the connection could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to postgres: {0}")]
    Connect(String),
    #[error("postgres: {0}")]
    Setup(#[from] tokio_postgres::Error),
}

pub struct Connection {
    url: SecretString,
    connect_timeout: Duration,
    statement_timeout_ms: String,
    client: Option<Client>,
}

impl Connection {
    pub fn new(settings: &PostgresSettings) -> Self {
        Connection {
            url: settings.url.clone(),
            connect_timeout: settings.connect_timeout,
            statement_timeout_ms: settings.statement_timeout.as_millis().to_string(),
            client: None,
        }
    }

    /// The connection, opened if needed.
    pub async fn client(&mut self) -> Result<&mut Client, ConnectError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let connect = tokio_postgres::connect(self.url.expose_secret(), NoTls);
            let (client, connection) = tokio::time::timeout(self.connect_timeout, connect)
                .await
                .map_err(|_| ConnectError::Connect("timed out".into()))?
                // The error text of a connect never holds the password.
                .map_err(|e| ConnectError::Connect(e.to_string()))?;
            actix_rt::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "postgres connection closed");
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
            .ok_or_else(|| ConnectError::Connect("no connection".into()))
    }

    /// Drops the connection: after an error its state (an aborted
    /// transaction, a half-sent COPY) is not worth repairing.
    pub fn forget(&mut self) {
        self.client = None;
    }
}
