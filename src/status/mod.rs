//! What the operator sees at a glance: where every partition stands
//! (`registry`, written by the partition actors; `report`, with Kafka's
//! offsets), what lag means (`lag`, computed once for the table, the chart
//! and the gauge), a ring of recent throughput samples (`samples`), and the
//! `custodian status` table (`table`). Read by `GET /status` and
//! `GET /status/samples`.

pub mod client;
pub(crate) mod lag;
pub(crate) mod registry;
pub(crate) mod report;
pub(crate) mod samples;
pub mod table;

pub use registry::{PartitionStatus, Registry};
pub use samples::Samples;
