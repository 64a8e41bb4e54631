//! An http route's gate, checked before every delivery (first ones and the
//! retry worker's): shut while an operator's pause holds the route, or
//! while its circuit breaker is open. A shut gate answers like a
//! dependency that is down: the delivery is not an attempt, nothing is
//! dead-lettered, and the message waits (its partition for an in-place
//! route, its key in the retry schedule for a deferred one).

use std::sync::{Mutex, RwLock};
use std::time::Instant;

use tokio::sync::mpsc;

use super::breaker::{Admit, Breaker, Change, Outcome, Snapshot};
use crate::config::BreakerSettings;
use crate::telemetry::flow::BreakerChanged;
use crate::telemetry::Emit;

/// The dependency name a shut route is waited out under
/// (`dependency_waits{dependency="route"}`).
pub const ROUTE: &str = "route";

/// A change of a route's breaker, for the audit trail.
#[derive(Debug, Clone)]
pub struct Changed {
    pub route: String,
    pub change: Change,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Where breaker changes go to be recorded (`flow::record`).
pub type Changes = mpsc::UnboundedSender<Changed>;

pub struct Gate {
    label: String,
    paused: RwLock<Option<String>>,
    breaker: Option<Breaker>,
    changes: Mutex<Option<Changes>>,
}

/// A delivery let through, to report how it ended.
#[derive(Debug, Clone, Copy)]
pub struct Pass(Admit);

impl Gate {
    pub fn new(label: &str, settings: &BreakerSettings) -> Gate {
        Gate {
            label: label.to_owned(),
            // Until the operators' pauses are first read (`flow::active`),
            // a route may be paused: it waits, like a partition.
            paused: RwLock::new(Some("paused until the operators' pauses are read".into())),
            breaker: settings
                .enabled
                .then(|| Breaker::new(settings.clone(), Instant::now())),
            changes: Mutex::new(None),
        }
    }

    /// The route's label (its URL without credentials or query).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Breaker changes are sent to `changes` from now on.
    pub fn report_to(&self, changes: Changes) {
        if let Ok(mut slot) = self.changes.lock() {
            *slot = Some(changes);
        }
    }

    pub fn set_paused(&self, why: Option<String>) {
        if let Ok(mut paused) = self.paused.write() {
            *paused = why;
        }
    }

    /// Why the route is paused, if it is.
    pub fn paused(&self) -> Option<String> {
        self.paused.read().ok().and_then(|p| p.clone())
    }

    /// How long a delivery would wait now (paused: a second, then ask
    /// again; open: the rest of the cool-down); none when one may go.
    /// Takes nothing: a half-open breaker's probe stays for [`Gate::admit`].
    pub fn shut_for(&self) -> Option<std::time::Duration> {
        if self.paused().is_some() {
            return Some(std::time::Duration::from_secs(1));
        }
        self.breaker.as_ref()?.refusing_for(Instant::now())
    }

    /// Lets a delivery through, or says why not.
    pub fn admit(&self) -> Result<Pass, String> {
        if let Some(why) = self.paused() {
            return Err(format!("route {} is {why}", self.label));
        }
        let Some(breaker) = &self.breaker else {
            return Ok(Pass(Admit::Go));
        };
        let (admit, change) = breaker.admit(Instant::now());
        if let Some(change) = change {
            self.changed(change);
        }
        match admit {
            Admit::Shut => Err(format!(
                "route {}'s circuit breaker is open (a probe after {:?})",
                self.label,
                breaker.cool_down()
            )),
            admit => Ok(Pass(admit)),
        }
    }

    /// How a delivery let through ended.
    pub fn record(&self, pass: Pass, outcome: Outcome) {
        if let Some(breaker) = &self.breaker {
            if let Some(change) = breaker.record(pass.0, outcome, Instant::now()) {
                self.changed(change);
            }
        }
    }

    pub fn breaker(&self) -> Option<Snapshot> {
        self.breaker.as_ref()?.snapshot(Instant::now())
    }

    fn changed(&self, change: Change) {
        BreakerChanged {
            route: &self.label,
            from: change.from.as_str(),
            to: change.to.as_str(),
            why: &change.why,
        }
        .emit();
        let changed = Changed {
            route: self.label.clone(),
            change,
            at: chrono::Utc::now(),
        };
        if let Ok(slot) = self.changes.lock() {
            if let Some(changes) = slot.as_ref() {
                let _ = changes.send(changed);
            }
        }
    }
}
