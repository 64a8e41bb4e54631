//! One http route's circuit breaker (per instance): closed, it lets every
//! delivery through and counts how they end; after `breaker.failures`
//! consecutive failures, or a share of failures over `breaker.window` of at
//! least `breaker.failure_ratio` (once `breaker.min_requests` were made), it
//! opens and lets nothing through; after `breaker.cool_down` it half-opens
//! and lets one probe through, whose success closes it and whose failure
//! opens it again. A failure is the downstream's: a 5xx, 429, timeout or
//! no connection; a 2xx or a refusal of the message (4xx) is an answer.
//!
//! Pure state: the caller passes the time and acts on the [`Change`]s.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::BreakerSettings;

/// A breaker's state, as `/status` and the audit trail name it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// Whether a delivery may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// The one delivery of a half-open breaker.
    Probe,
    /// Open (or half-open with its probe out): not attempted.
    Shut,
}

/// How a delivery that went ended, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The downstream answered (2xx, or a refusal of the message).
    Answered,
    /// The downstream failed (5xx, 429, timeout, no connection).
    Failed,
}

/// A change of state, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub from: State,
    pub to: State,
    pub why: String,
}

struct Inner {
    state: State,
    since: Instant,
    consecutive: u32,
    /// Recent outcomes (true: failed), within `window`.
    recent: VecDeque<(Instant, bool)>,
    /// When the half-open probe went out.
    probe: Option<Instant>,
}

pub struct Breaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

/// What `/status` shows of a breaker.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Snapshot {
    pub state: State,
    /// Seconds in this state.
    pub for_seconds: f64,
    pub consecutive_failures: u32,
}

impl Breaker {
    pub fn new(settings: BreakerSettings, now: Instant) -> Breaker {
        Breaker {
            settings,
            inner: Mutex::new(Inner {
                state: State::Closed,
                since: now,
                consecutive: 0,
                recent: VecDeque::new(),
                probe: None,
            }),
        }
    }

    /// Whether a delivery may go at `now`; half-opens an open breaker whose
    /// cool-down is over.
    pub fn admit(&self, now: Instant) -> (Admit, Option<Change>) {
        let Ok(mut b) = self.inner.lock() else {
            return (Admit::Go, None);
        };
        match b.state {
            State::Closed => (Admit::Go, None),
            State::Open if now.duration_since(b.since) >= self.settings.cool_down => {
                b.state = State::HalfOpen;
                b.since = now;
                b.probe = Some(now);
                let change = Change {
                    from: State::Open,
                    to: State::HalfOpen,
                    why: format!("cool-down of {:?} over: one probe", self.settings.cool_down),
                };
                (Admit::Probe, Some(change))
            }
            State::Open => (Admit::Shut, None),
            // A probe that never reported (its delivery was dropped) is
            // replaced after a cool-down.
            State::HalfOpen
                if b.probe
                    .is_none_or(|at| now.duration_since(at) >= self.settings.cool_down) =>
            {
                b.probe = Some(now);
                (Admit::Probe, None)
            }
            State::HalfOpen => (Admit::Shut, None),
        }
    }

    /// Records how a delivery admitted as `admit` ended.
    pub fn record(&self, admit: Admit, outcome: Outcome, now: Instant) -> Option<Change> {
        let Ok(mut b) = self.inner.lock() else {
            return None;
        };
        let window = self.settings.window;
        while b
            .recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > window)
        {
            b.recent.pop_front();
        }
        let failed = outcome == Outcome::Failed;
        b.recent.push_back((now, failed));
        // Bounded whatever the rate: the ratio needs no more than this.
        if b.recent.len() > 10_000 {
            b.recent.pop_front();
        }
        b.consecutive = if failed { b.consecutive + 1 } else { 0 };
        match (b.state, admit, failed) {
            (State::HalfOpen, Admit::Probe, false) => {
                b.probe = None;
                b.recent.clear();
                Some(self.to(&mut b, State::Closed, now, "the probe succeeded".into()))
            }
            (State::HalfOpen, Admit::Probe, true) => {
                b.probe = None;
                Some(self.to(&mut b, State::Open, now, "the probe failed".into()))
            }
            (State::Closed, _, true) => {
                let n = b.recent.len() as u32;
                let bad = b.recent.iter().filter(|(_, f)| *f).count() as f64;
                let ratio = bad / f64::from(n.max(1));
                if b.consecutive >= self.settings.failures {
                    let why = format!("{} consecutive failures", b.consecutive);
                    Some(self.to(&mut b, State::Open, now, why))
                } else if n >= self.settings.min_requests && ratio >= self.settings.failure_ratio {
                    let why = format!(
                        "{:.0}% of {n} deliveries in {:?} failed",
                        ratio * 100.0,
                        window
                    );
                    Some(self.to(&mut b, State::Open, now, why))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn to(&self, b: &mut Inner, to: State, now: Instant, why: String) -> Change {
        let from = b.state;
        b.state = to;
        b.since = now;
        Change { from, to, why }
    }

    /// How long a delivery would still be refused at `now` (without taking
    /// the probe): none when one may go.
    pub fn refusing_for(&self, now: Instant) -> Option<Duration> {
        let b = self.inner.lock().ok()?;
        let cool_down = self.settings.cool_down;
        match b.state {
            State::Closed => None,
            State::Open => cool_down
                .checked_sub(now.duration_since(b.since))
                .filter(|d| !d.is_zero()),
            State::HalfOpen => b
                .probe
                .and_then(|at| cool_down.checked_sub(now.duration_since(at)))
                .filter(|d| !d.is_zero()),
        }
    }

    pub fn snapshot(&self, now: Instant) -> Option<Snapshot> {
        let b = self.inner.lock().ok()?;
        Some(Snapshot {
            state: b.state,
            for_seconds: now.duration_since(b.since).as_secs_f64(),
            consecutive_failures: b.consecutive,
        })
    }

    pub fn cool_down(&self) -> Duration {
        self.settings.cool_down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            enabled: true,
            failures: 3,
            failure_ratio: 0.5,
            window: Duration::from_secs(60),
            min_requests: 10,
            cool_down: Duration::from_secs(30),
        }
    }

    #[test]
    fn consecutive_failures_open_it_a_cool_down_probes_and_a_success_closes_it() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        assert_eq!(b.record(Admit::Go, Outcome::Failed, t0), None);
        assert_eq!(b.record(Admit::Go, Outcome::Answered, t0), None, "reset");
        assert_eq!(b.record(Admit::Go, Outcome::Failed, t0), None);
        assert_eq!(b.record(Admit::Go, Outcome::Failed, t0), None);
        let opened = b.record(Admit::Go, Outcome::Failed, t0).expect("opens");
        assert_eq!((opened.from, opened.to), (State::Closed, State::Open));
        assert_eq!(b.admit(t0 + Duration::from_secs(29)).0, Admit::Shut);
        let (admit, change) = b.admit(t0 + Duration::from_secs(30));
        assert_eq!(admit, Admit::Probe);
        assert_eq!(change.map(|c| c.to), Some(State::HalfOpen));
        // One probe at a time.
        assert_eq!(b.admit(t0 + Duration::from_secs(31)).0, Admit::Shut);
        let failed = b.record(Admit::Probe, Outcome::Failed, t0 + Duration::from_secs(32));
        assert_eq!(failed.map(|c| c.to), Some(State::Open));
        let t1 = t0 + Duration::from_secs(62);
        assert_eq!(b.admit(t1).0, Admit::Probe);
        let closed = b.record(Admit::Probe, Outcome::Answered, t1);
        assert_eq!(
            closed.map(|c| (c.from, c.to)),
            Some((State::HalfOpen, State::Closed))
        );
        assert_eq!(b.admit(t1).0, Admit::Go);
    }

    #[test]
    fn a_failure_ratio_over_the_window_opens_it_once_there_are_enough_requests() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        // Alternating: never 3 in a row, but half of them fail.
        let mut opened = None;
        for i in 0..10 {
            let outcome = if i % 2 == 0 {
                Outcome::Answered
            } else {
                Outcome::Failed
            };
            if let Some(c) = b.record(Admit::Go, outcome, t0) {
                opened = Some((i, c));
            }
        }
        let (at, change) = opened.expect("opened by ratio");
        assert_eq!(at, 9, "not before min_requests");
        assert!(change.why.contains("50%"), "{}", change.why);
        // Outside the window, old failures no longer count.
        let b = Breaker::new(settings(), t0);
        for _ in 0..2 {
            b.record(Admit::Go, Outcome::Failed, t0);
            b.record(Admit::Go, Outcome::Answered, t0);
        }
        let later = t0 + Duration::from_secs(120);
        for _ in 0..9 {
            assert_eq!(b.record(Admit::Go, Outcome::Answered, later), None);
        }
        assert_eq!(b.record(Admit::Go, Outcome::Failed, later), None);
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_after_a_cool_down() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        for _ in 0..3 {
            b.record(Admit::Go, Outcome::Failed, t0);
        }
        assert_eq!(b.admit(t0 + Duration::from_secs(30)).0, Admit::Probe);
        assert_eq!(b.admit(t0 + Duration::from_secs(59)).0, Admit::Shut);
        assert_eq!(b.admit(t0 + Duration::from_secs(60)).0, Admit::Probe);
    }
}
