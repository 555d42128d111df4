//! Where the runner waits: serve's events drained into the journal as they come, so an event is
//! journaled before anything the runner does after it; every wait until a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};

use super::evidence::{Journal, Seen, What};
use crate::serve::events::Published;

/// Where the runner waits: it drains serve's events into the journal as they come, so an
/// event is journaled before anything the runner does after it.
pub(crate) struct Watcher {
    pub journal: Arc<Journal>,
    events: broadcast::Receiver<Arc<Published>>,
    version: watch::Receiver<u64>,
}

impl Watcher {
    pub(crate) fn new(journal: Arc<Journal>, events: broadcast::Receiver<Arc<Published>>) -> Self {
        let version = journal.watch();
        Watcher {
            journal,
            events,
            version,
        }
    }

    /// Journal every event emitted so far.
    pub(crate) fn drain(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(p) => self.journal.event(&p),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    self.journal.record(What::Lagged { missed: n })
                }
                Err(_) => return,
            }
        }
    }

    /// Journal an event received (or that some were missed); `false` once serve stopped.
    fn take(&self, r: Result<Arc<Published>, broadcast::error::RecvError>) -> bool {
        match r {
            Ok(p) => self.journal.event(&p),
            Err(broadcast::error::RecvError::Lagged(n)) => self.journal.record(What::Lagged { missed: n }),
            Err(broadcast::error::RecvError::Closed) => return false,
        }
        true
    }

    /// Record what the suite does, after every event before it.
    pub(crate) fn act(&mut self, what: What) {
        self.drain();
        self.journal.record(what);
    }

    /// Wait until `check` finds something in the journal, or until `deadline` (`None`).
    pub(crate) async fn until<T>(
        &mut self,
        deadline: Instant,
        mut check: impl FnMut(&[Seen]) -> Option<T>,
    ) -> Option<T> {
        loop {
            self.drain();
            if let Some(t) = self.journal.with(&mut check) {
                return Some(t);
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline.into()) => {
                    self.drain();
                    return self.journal.with(&mut check);
                }
                r = self.events.recv() => if !self.take(r) {
                    // serve stopped: nothing more will come.
                    tokio::time::sleep_until(deadline.into()).await;
                },
                _ = self.version.changed() => {}
            }
        }
    }

    /// Run `f` while journaling the events that come meanwhile.
    pub(crate) async fn during<F: std::future::Future>(&mut self, f: F) -> F::Output {
        tokio::pin!(f);
        loop {
            tokio::select! {
                out = &mut f => {
                    self.drain();
                    return out;
                }
                r = self.events.recv() => if !self.take(r) {
                    return f.await;
                },
            }
        }
    }

    /// Wait for `d`, journaling events.
    pub(crate) async fn sleep(&mut self, d: Duration) {
        self.during(tokio::time::sleep(d)).await;
    }
}
