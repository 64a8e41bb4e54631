//! HTTP delivery to downstreams.

mod http;
mod keyed;
