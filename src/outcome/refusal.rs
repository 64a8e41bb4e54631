//! What a refused statement means for the message whose effect it wrote,
//! classified where it is born, by SQLSTATE: PostgreSQL unreachable (the
//! flush waits, not the message's fault), a transient refusal (timeout,
//! lock, deadlock, a row not there yet: retried in place), or a permanent
//! one (dead-lettered).

use tokio_postgres::error::SqlState;

use crate::failure::{Failure, Retry, Stage};

/// How a statement failed.
#[derive(Debug)]
pub enum Refusal {
    /// No answer, or the server is in trouble: not the message's fault
    /// (the caller keeps the error itself).
    Down,
    /// The database refused this message's effect.
    Message(Failure),
}

/// Classifies a failed statement of one message's effect.
pub fn classify(error: &tokio_postgres::Error) -> Refusal {
    let Some(db) = error.as_db_error() else {
        return Refusal::Down;
    };
    let code = db.code();
    let message = match db.detail() {
        Some(detail) => format!("{}: {detail}", db.message()),
        None => db.message().to_owned(),
    };
    let server_trouble = [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::DISK_FULL,
        SqlState::OUT_OF_MEMORY,
        SqlState::READ_ONLY_SQL_TRANSACTION,
    ];
    if server_trouble.contains(code) {
        return Refusal::Down;
    }
    let transient = |kind: &'static str| {
        Refusal::Message(Failure {
            stage: Stage::Process,
            retry: Retry::Transient,
            kind,
            message: message.clone(),
        })
    };
    if *code == SqlState::QUERY_CANCELED || *code == SqlState::LOCK_NOT_AVAILABLE {
        return transient("database_timeout");
    }
    if *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE {
        return transient("database_conflict");
    }
    // A missing referenced row may just not be there yet: the event that
    // creates it can be on another partition (a user and its orders are
    // keyed differently). Retried with backoff, then parked.
    if *code == SqlState::FOREIGN_KEY_VIOLATION {
        return transient("constraint_violation");
    }
    let kind = if [
        SqlState::UNIQUE_VIOLATION,
        SqlState::NOT_NULL_VIOLATION,
        SqlState::CHECK_VIOLATION,
    ]
    .contains(code)
    {
        "constraint_violation"
    } else {
        "database_rejected"
    };
    Refusal::Message(Failure::permanent(Stage::Process, kind, message))
}
