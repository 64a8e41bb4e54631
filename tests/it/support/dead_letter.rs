//! The dead letter a prepared record would become, as Redis would keep it
//! (serialized and parsed back). Shared by `pipeline::properties` and the
//! fuzz target (fuzz/fuzz_targets/prepare.rs), which assert that it gives
//! back the record's bytes.

use chrono::{DateTime, Utc};
use custodian::dlq::DlqEntry;
use custodian::failure::AttemptFailure;
use custodian::pipeline::{Item, Outcome, Settled};

/// `item`'s dead letter at `now`, parked and read back; `None` when it has
/// work to apply.
pub fn parked(item: Item, now: DateTime<Utc>) -> Option<DlqEntry> {
    let failure = item.work.err()?;
    let settled = Settled {
        message: item.message,
        outcome: Outcome::DeadLettered,
        at: now,
        failures: vec![AttemptFailure {
            attempt: 1,
            at: now,
            failure,
        }],
    };
    let entry = DlqEntry::from_settled(&settled, "group").expect("a failed record has an entry");
    let json = serde_json::to_string(&entry).expect("entry serializes");
    Some(serde_json::from_str(&json).expect("entry parses"))
}
