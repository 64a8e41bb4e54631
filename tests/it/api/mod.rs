//! The HTTP API: its token, its edges, its OpenAPI contract, search,
//! masking.

mod approvals;
mod auth;
mod command_roles;
mod http_edges;
pub mod masking;
mod openapi;
mod operators;
mod schemathesis;
mod search;
