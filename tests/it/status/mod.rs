//! What operators see: `GET /status` and `custodian status`, metrics and
//! log lines.

mod command;
mod observability;
