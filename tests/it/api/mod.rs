//! The HTTP API: its token, its edges, its OpenAPI contract, search.

mod auth;
mod http_edges;
mod openapi;
mod schemathesis;
mod search;
