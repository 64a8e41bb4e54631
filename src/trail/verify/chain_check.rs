//! Following one chain entry by entry, and telling its first break apart.
//!
//! How a break is told apart, at the first entry F whose hash does not
//! follow (P is the hash before it, e its expected sequence number):
//! - a sequence number skipped: *deleted*; one seen twice: *inserted*;
//! - F is valid one place earlier, over the hash before P: the entry
//!   before it was *inserted* (and the rest renumbered);
//! - the next entry follows F's stored hash: F was *edited*;
//! - the next entry is valid at e over P: F and it were *reordered* if F is
//!   valid right after it, else F was *inserted*;
//! - a later entry is valid at e over P: *reordered*;
//! - a payload that does not match its digest: *edited*;
//! - the chain ends before a checkpoint's sequence: *deleted*;
//!   a checkpoint's hash differs from the recomputed one: *checkpoint mismatch*;
//! - otherwise (F's fields give no hash found anywhere): *edited*.

use std::collections::BTreeMap;

use crate::store::chain::{Hasher, GENESIS};
use crate::trail::entry::Entry;

use super::{Anchor, Break, BreakKind, ChainReport};

enum State {
    Holding,
    /// F (kept) does not follow; the next entry decides why.
    Pending(Box<Entry>),
    /// Looking further on for the entry that belongs at `e`.
    Searching,
    Broken(Break),
}

/// One chain's running check.
pub(super) struct ChainCheck<'a> {
    name: &'a str,
    hasher: Hasher,
    /// The next sequence number expected, and the hashes before it.
    expected: i64,
    prev: [u8; 32],
    prev_prev: Option<[u8; 32]>,
    anchors: BTreeMap<i64, Anchor>,
    state: State,
    report: ChainReport,
}

impl<'a> ChainCheck<'a> {
    pub(super) fn new(
        name: &'a str,
        start: Option<(i64, [u8; 32])>,
        anchors: BTreeMap<i64, Anchor>,
    ) -> ChainCheck<'a> {
        let (after, prev) = start.unwrap_or((0, GENESIS));
        ChainCheck {
            name,
            hasher: Hasher::default(),
            expected: after + 1,
            prev,
            prev_prev: None,
            anchors,
            state: State::Holding,
            report: ChainReport {
                chain: name.to_owned(),
                entries: 0,
                started_after: after,
                last_seq: after,
                checkpoints_matched: 0,
                breach: None,
            },
        }
    }

    fn valid_at(&mut self, entry: &Entry, seq: i64, prev: &[u8; 32]) -> bool {
        self.hasher.hash(&entry.fields(self.name, seq), prev) == entry.stored_hash()
    }

    /// The next entry read, in sequence order.
    pub(crate) fn push(&mut self, entry: Entry) {
        self.report.entries += 1;
        self.report.last_seq = entry.seq();
        let e = self.expected;
        let prev = self.prev;
        match std::mem::replace(&mut self.state, State::Holding) {
            State::Broken(b) => self.state = State::Broken(b),
            State::Searching => {
                self.state = if self.valid_at(&entry, e, &prev) {
                    State::Broken(Break {
                        seq: e,
                        kind: BreakKind::Reordered,
                        detail: format!(
                            "the entry that belongs at seq {e} is at seq {}",
                            entry.seq()
                        ),
                    })
                } else {
                    State::Searching
                };
            }
            State::Pending(f) => {
                self.state = if entry.seq() == e + 1
                    && self.valid_at(&entry, e + 1, &f.stored_hash())
                {
                    broken(
                        e,
                        BreakKind::Edited,
                        "its fields no longer give its stored hash",
                    )
                } else if self.valid_at(&entry, e, &prev) {
                    if self.valid_at(&f, e + 1, &entry.stored_hash()) {
                        broken(
                            e,
                            BreakKind::Reordered,
                            &format!("seq {e} and {} are swapped", e + 1),
                        )
                    } else {
                        broken(
                            e,
                            BreakKind::Inserted,
                            "this entry is not part of the chain: the ones after it were renumbered",
                        )
                    }
                } else {
                    State::Searching
                };
            }
            State::Holding => {
                self.state = match self.check_next(&entry) {
                    Some(state) => state,
                    None => State::Pending(Box::new(entry)),
                }
            }
        }
    }

    /// The usual case: the next entry in order. `None`: it does not follow,
    /// and the next entry decides why.
    fn check_next(&mut self, entry: &Entry) -> Option<State> {
        let e = self.expected;
        let seq = entry.seq();
        if seq < e {
            return Some(broken(
                seq,
                BreakKind::Inserted,
                &format!("seq {seq} appears twice"),
            ));
        }
        if seq > e {
            let detail = if seq == e + 1 {
                format!("entry {e} is missing")
            } else {
                format!("entries {e} to {} are missing", seq - 1)
            };
            return Some(broken(e, BreakKind::Deleted, &detail));
        }
        if entry.erased_but_filled() {
            return Some(broken(
                e,
                BreakKind::Edited,
                "it is erased, yet holds personal fields or a payload again",
            ));
        }
        if entry.payload_replaced() {
            return Some(broken(
                e,
                BreakKind::Edited,
                "its payload does not match its payload_sha256",
            ));
        }
        let prev = self.prev;
        if self.valid_at(entry, e, &prev) {
            let stored = entry.stored_hash();
            if let Some(anchor) = self.anchors.get(&e) {
                if anchor.hash != stored {
                    return Some(broken(
                        e,
                        BreakKind::CheckpointMismatch,
                        &format!(
                            "the chain holds, but {} signed another hash at this seq",
                            anchor.source
                        ),
                    ));
                }
                self.report.checkpoints_matched += 1;
            }
            self.prev_prev = Some(self.prev);
            self.prev = stored;
            self.expected += 1;
            return Some(State::Holding);
        }
        if let Some(pp) = self.prev_prev {
            if self.valid_at(entry, e - 1, &pp) {
                return Some(broken(
                    e - 1,
                    BreakKind::Inserted,
                    "this entry is not part of the chain: the ones after it were renumbered",
                ));
            }
        }
        None
    }

    /// A run of the chain in a period deleted from the archive by the
    /// retention policy: `first..=last`, ending at `last_hash`, as the
    /// period's signed seal states. The chain goes on from there; a
    /// checkpoint inside the run must agree where it can (its last entry).
    pub(super) fn skip_deleted(
        &mut self,
        first: i64,
        last: i64,
        last_hash: [u8; 32],
        partition: &str,
    ) {
        if !matches!(self.state, State::Holding) {
            return;
        }
        let e = self.expected;
        if e < first || e > last + 1 {
            self.state = broken(
                e,
                BreakKind::Deleted,
                &format!(
                    "entries {e} to {} are missing before {partition}, deleted by retention from seq {first}",
                    first - 1
                ),
            );
            return;
        }
        if let Some(anchor) = self.anchors.get(&last) {
            if anchor.hash != last_hash {
                self.state = broken(
                    last,
                    BreakKind::CheckpointMismatch,
                    &format!(
                        "the seal of {partition} (deleted by retention) and {} disagree at this seq",
                        anchor.source
                    ),
                );
                return;
            }
        }
        // Checkpoints inside the deleted run can no longer be compared.
        self.anchors.retain(|seq, _| *seq > last);
        self.expected = last + 1;
        self.prev = last_hash;
        self.prev_prev = None;
        self.report.last_seq = last;
    }

    pub(super) fn finish(mut self, finished: bool) -> ChainReport {
        let e = self.expected;
        let breach = match std::mem::replace(&mut self.state, State::Holding) {
            State::Broken(b) => Some(b),
            State::Pending(_) | State::Searching => Some(Break {
                seq: e,
                kind: BreakKind::Edited,
                detail: "its fields no longer give its stored hash".into(),
            }),
            State::Holding if finished => {
                self.anchors.range(e..).next_back().map(|(seq, a)| Break {
                    seq: e,
                    kind: BreakKind::Deleted,
                    detail: format!(
                        "the chain ends at seq {}, but {} covers it up to seq {seq}",
                        e - 1,
                        a.source
                    ),
                })
            }
            State::Holding => None,
        };
        self.report.breach = breach;
        self.report
    }
}

fn broken(seq: i64, kind: BreakKind, detail: &str) -> State {
    State::Broken(Break {
        seq,
        kind,
        detail: detail.to_owned(),
    })
}
