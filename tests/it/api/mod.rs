//! The HTTP API: its token, its edges, its OpenAPI contract, search.

mod approvals;
mod auth;
mod command_roles;
mod http_edges;
mod openapi;
mod operators;
mod schemathesis;
mod search;
