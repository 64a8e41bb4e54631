//! The active pauses as this instance sees them: read from PostgreSQL every
//! `flow.poll_interval` (and at once when this instance takes or resumes
//! one), handed to partition actors through a watch channel and to the
//! http routes' gates. Until the first read succeeds nothing counts as
//! unpaused: partition actors wait (a pause must hold across a restart).
//! A failed read keeps the last state known.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::gate::Gate;
use super::pauses::{self, Pause};
use crate::store::PgPool;

/// The pauses in force, once read.
#[derive(Debug, Default)]
pub struct Active {
    /// Read at least once: until then every partition waits.
    pub loaded: bool,
    pub pauses: Vec<Pause>,
}

impl Active {
    /// Why partition `partition` of `topic` must not be read now, if so.
    pub fn holding(&self, topic: &str, partition: i32) -> Option<String> {
        if !self.loaded {
            return Some("the operators' pauses are not read yet".into());
        }
        self.pauses
            .iter()
            .find(|p| p.target().holds(topic, partition))
            .map(Pause::why)
    }

    /// Why http route `label` must not deliver now, if so.
    pub fn route(&self, label: &str) -> Option<String> {
        if !self.loaded {
            return Some("paused until the operators' pauses are read".into());
        }
        self.pauses
            .iter()
            .find(|p| p.route.as_deref() == Some(label))
            .map(Pause::why)
    }
}

/// A handle on the pauses in force; clones share them.
#[derive(Clone)]
pub struct Flow {
    tx: Arc<watch::Sender<Arc<Active>>>,
    poke: Arc<Notify>,
}

impl Default for Flow {
    fn default() -> Self {
        Flow::new()
    }
}

impl Flow {
    /// Not read yet: everything waits until [`Flow::run`] reads them.
    pub fn new() -> Flow {
        let (tx, _) = watch::channel(Arc::new(Active::default()));
        Flow {
            tx: Arc::new(tx),
            poke: Arc::new(Notify::new()),
        }
    }

    /// Read, with no pause (tools and benches without PostgreSQL pauses).
    pub fn unpaused() -> Flow {
        let flow = Flow::new();
        flow.tx.send_replace(Arc::new(Active {
            loaded: true,
            pauses: Vec::new(),
        }));
        flow
    }

    /// The pauses in force now.
    pub fn now(&self) -> Arc<Active> {
        Arc::clone(&self.tx.borrow())
    }

    /// A receiver that wakes when they change.
    pub fn changes(&self) -> watch::Receiver<Arc<Active>> {
        self.tx.subscribe()
    }

    /// Reads them again now (this instance just changed one).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Reads the pauses every `interval` until `stop`, applying each
    /// route's to its gate (`gates`: every http route's).
    pub async fn run(
        self,
        pool: PgPool,
        interval: Duration,
        gates: Vec<Arc<Gate>>,
        stop: CancellationToken,
    ) {
        let mut warned = false;
        loop {
            let read = async {
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                pauses::active(&mut conn).await.map_err(|e| e.to_string())
            };
            match read.await {
                Ok(pauses) => {
                    warned = false;
                    let active = Active {
                        loaded: true,
                        pauses,
                    };
                    for gate in &gates {
                        gate.set_paused(active.route(gate.label()));
                    }
                    self.tx.send_if_modified(|now| {
                        let same = now.loaded
                            && now
                                .pauses
                                .iter()
                                .map(|p| (p.id, p.resumed_at))
                                .eq(active.pauses.iter().map(|p| (p.id, p.resumed_at)));
                        if !same {
                            *now = Arc::new(active);
                        }
                        !same
                    });
                }
                Err(error) if !warned => {
                    warned = true;
                    tracing::warn!(%error, "cannot read the operators' pauses; keeping the last known (until the first read, partitions wait)");
                }
                Err(_) => {}
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = self.poke.notified() => {}
                () = stop.cancelled() => return,
            }
        }
    }
}
