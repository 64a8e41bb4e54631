//! Crash points for the crash tests: with `OUTCOME_CRASH_POINT=<point>`
//! (or `<point>:<n>`) set, the process aborts the first (or n-th) time it
//! reaches that point: no drain, no commit, no destructor, as a SIGKILL
//! there would leave it. The points: `before_commit` (the flush's
//! statements sent, not committed), `after_commit` (committed, dead
//! letters not pushed), `after_push` (pushed, offsets not acknowledged).
//! Unset, a point costs one check of a value read once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The environment variable (outside the `CUSTODIAN_` settings on purpose:
/// it is not a setting).
pub const VARIABLE: &str = "OUTCOME_CRASH_POINT";

static POINT: OnceLock<Option<(String, u32)>> = OnceLock::new();
static REACHED: AtomicU32 = AtomicU32::new(0);

/// Aborts the process if `name` is the configured point and this is the
/// configured time it is reached.
pub fn reached(name: &str) {
    let point = POINT.get_or_init(|| {
        let value = std::env::var(VARIABLE).ok()?;
        let (point, n) = match value.split_once(':') {
            Some((point, n)) => (point.to_owned(), n.parse().unwrap_or(1)),
            None => (value, 1),
        };
        Some((point, n))
    });
    if let Some((point, n)) = point {
        if point == name && REACHED.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("custodian: crash point {name} reached: aborting");
            std::process::abort();
        }
    }
}
