//! The actors: thin shells over the plain functions in `pipeline`, `store`
//! and `dlq`. Data flows
//! `PartitionActor → Enricher → Processor → (DeadLetter →) Auditor`, and the
//! auditor's acknowledgement flows back to the partition actor, which stores
//! the durable watermark. The `Supervisor` owns the partition actors.

pub mod auditor;
pub mod dead_letter;
pub mod enricher;
pub mod messages;
pub mod partition;
pub mod processor;
pub mod supervisor;
