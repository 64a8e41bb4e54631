//! What the operator sees at a glance: where every partition stands
//! (`registry`, written by the partition actors), a ring of recent
//! throughput samples (`samples`), and the `custodian status` table
//! (`table`). Read by `GET /status` and `GET /status/samples`.

pub mod client;
pub(crate) mod registry;
pub(crate) mod report;
pub(crate) mod samples;
pub mod table;

pub use registry::{PartitionStatus, Registry};
pub use samples::Samples;
