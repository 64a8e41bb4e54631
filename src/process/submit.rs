//! The processor's side of the outcome writer ([`crate::outcome`]): hand a partition's messages
//! to its auditor, wait for the verdict, and retry in place a message whose
//! effect the database refused.
//!
//! A refused message is an attempt (MESSAGE_FAILED once it is written): a
//! transient refusal (statement timeout, lock, a referenced row not there
//! yet) is submitted again after a capped, jittered backoff, up to
//! `retry.max_attempts`; a permanent one, or the last attempt, is
//! dead-lettered. The messages after it wait for it, so a partition's order
//! holds. Waits end when the partition's assignment ends (`revoked`): the
//! next owner reads those records again.

use chrono::Utc;

use crate::config::RetrySettings;
use crate::failure::AttemptFailure;
use crate::outcome::{Pending, Refused};
use crate::pipeline::Outcome;
use crate::stages::Handoff;
use crate::telemetry::retry::Retrying;
use crate::telemetry::Emit;
use crate::wait::backoff::Backoff;

/// Makes `pending` durable through `handoff`'s auditor (see the module
/// comment). Returns when every message is written, or when the partition
/// was revoked or its auditor is gone (the partition rereads them). What
/// was submitted is written even if the partition is revoked meanwhile:
/// an http delivery's ledger row must land, it happened.
pub async fn submit(handoff: &Handoff, policy: &RetrySettings, mut pending: Vec<Pending>) {
    while !pending.is_empty() {
        let Some(answer) = handoff.submit(pending).await else {
            return;
        };
        let verdict = tokio::select! {
            verdict = answer => verdict,
            () = handoff.revoked.cancelled() => return,
        };
        let Ok(verdict) = verdict else {
            // The auditor stopped before its flush answered.
            return;
        };
        let Some(Refused {
            pending: mut refused,
            failure,
            held,
        }) = verdict.refused
        else {
            return;
        };
        let s = &mut refused.settled;
        let attempt = s.failures.len() as u32 + 1;
        let give_up = failure.is_permanent() || attempt >= policy.max_attempts;
        let (stage, kind) = (failure.stage.as_str(), failure.kind);
        s.failures.push(AttemptFailure {
            attempt,
            at: Utc::now(),
            failure,
        });
        if give_up {
            s.outcome = Outcome::DeadLettered;
            refused.effects.apply = None;
        } else {
            let delay = Backoff::new(policy.backoff_min, policy.backoff_max)
                .after(attempt.saturating_sub(1))
                .next_delay();
            Retrying {
                topic: &s.envelope.topic,
                stage,
                kind,
                attempt,
                delay,
            }
            .emit();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = handoff.revoked.cancelled() => return,
            }
        }
        // Its outcome comes after this attempt.
        refused.settled.at = Utc::now();
        pending = std::iter::once(refused).chain(held).collect();
    }
}
