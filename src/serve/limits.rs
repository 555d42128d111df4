//! How many MQTT connections `serve` holds, and how a flood of connections that never log in
//! is kept from locking devices out.
//!
//! Two counts, kept apart: connections **logged in** (at most `--max-connections`), and
//! connections **waiting for their CONNECT** (at most a quarter of that, at least 16). A new
//! connection when the logged-in count is at the limit is answered CONNACK 3 (server
//! unavailable) once its CONNECT arrives, never left in silence. A new connection when the
//! waiting ones are at their bound closes the **oldest** waiting one: a flood of silent
//! connections ages itself out, and a device that sends its CONNECT at once always gets
//! through. Under that pressure the wait for CONNECT shortens from 10 s to 2 s.
//!
//! HTTP's bound (a [`Limit`]) is simpler: connections **open** across `--http` and `--https`,
//! at most `--max-connections` too but counted apart from MQTT's logins (a fleet holding every
//! MQTT slot must not lock a test out of `/twin`). Past it a new connection is answered
//! `503 Service Unavailable` at once and closed, never left waiting in the accept queue.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// How long a client may take to send CONNECT after the TCP connection opens.
pub(crate) const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// The wait for CONNECT once half the waiting slots are taken.
pub(crate) const CONNECT_WAIT_PRESSED: Duration = Duration::from_secs(2);
/// The fewest connections that may wait for their CONNECT at once.
pub(crate) const MIN_WAITING: usize = 16;
/// File descriptors kept free for everything else (listeners, the record, HTTP, CoAP).
pub(crate) const RESERVED_FDS: u64 = 256;
/// The default when the open-file limit cannot be read.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// The most connections refused at once (an MQTT one waits up to [`CONNECT_WAIT_PRESSED`] for
/// its CONNECT to answer it CONNACK 3, an HTTP one gets its 503); past that a connection is
/// closed at once.
pub(crate) const MAX_REFUSING: usize = 256;

/// What a bounded listener does with a new connection: the one answer of MQTT's bound and
/// HTTP's.
pub enum Admission<S> {
    /// Served: `S` holds its place (MQTT: a wait for CONNECT; HTTP: an open connection's slot).
    Admitted(S),
    /// Over the bound: answered with a refusal (CONNACK 3, HTTP 503) and closed; the slot
    /// counts the refusals under way.
    Refused(Slot),
    /// Over the bound with [`MAX_REFUSING`] refusals under way: closed at once.
    Closed,
}

impl<S> Admission<S> {
    /// `None` when the connection is closed at once (what `accept_each` wants to know).
    pub fn unless_closed(self) -> Option<Self> {
        match self {
            Admission::Closed => None,
            other => Some(other),
        }
    }
}

/// A place in a bounded count (a logged-in MQTT connection, an open HTTP connection, a
/// refusal under way); dropping it gives the place back.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A bound on connections: how many hold a slot (at most `max`), and how many are being
/// refused (at most [`MAX_REFUSING`]). HTTP's bound is one; MQTT's logins are another.
pub struct Limit {
    max: AtomicUsize,
    held: Arc<AtomicUsize>,
    refusing: Arc<AtomicUsize>,
}

impl Limit {
    pub fn new(max: usize) -> Self {
        Limit {
            max: AtomicUsize::new(max.max(1)),
            held: Arc::default(),
            refusing: Arc::default(),
        }
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max.max(1), Ordering::Relaxed);
    }

    /// How many slots are held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// A slot, while fewer than `max` are held.
    pub fn hold(&self) -> Option<Slot> {
        let max = self.max();
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Slot(self.held.clone()))
    }

    /// A new connection (HTTP's whole admission): a slot while fewer than the bound are held,
    /// else a refusal.
    pub fn admit(&self) -> Admission<Slot> {
        match self.hold() {
            Some(slot) => Admission::Admitted(slot),
            None => self.refuse(),
        }
    }

    /// Past the bound: a refusal's slot, or closed at once when [`MAX_REFUSING`] are under way.
    fn refuse<S>(&self) -> Admission<S> {
        if self.refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
            self.refusing.fetch_sub(1, Ordering::Relaxed);
            return Admission::Closed;
        }
        Admission::Refused(Slot(self.refusing.clone()))
    }
}

/// MQTT's bounds, shared by the MQTT listeners: the logins (a [`Limit`]) and the connections
/// waiting for their CONNECT.
pub struct MqttLimits {
    logins: Limit,
    next: AtomicU64,
    /// The connections waiting for their CONNECT, oldest first, each with what closes it.
    waiting: Mutex<BTreeMap<u64, Arc<Notify>>>,
}

/// A connection waiting for its CONNECT; dropping it frees the slot.
pub struct Waiting {
    limits: Arc<MqttLimits>,
    id: u64,
    pub evicted: Arc<Notify>,
    pub wait: Duration,
}

impl MqttLimits {
    pub fn new(max: usize) -> Self {
        MqttLimits {
            logins: Limit::new(max),
            next: AtomicU64::new(0),
            waiting: Mutex::default(),
        }
    }

    pub fn max(&self) -> usize {
        self.logins.max()
    }

    pub fn set_max(&self, max: usize) {
        self.logins.set_max(max);
    }

    /// How many connections are logged in now.
    pub fn logged_in(&self) -> usize {
        self.logins.held()
    }

    /// How many connections wait for their CONNECT now.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().map(|w| w.len()).unwrap_or(0)
    }

    /// The most connections that may wait for their CONNECT at once.
    pub fn max_waiting(&self) -> usize {
        (self.max() / 4).max(MIN_WAITING)
    }

    /// A new connection: a waiting slot (closing the oldest waiting connection when they are
    /// all taken), or a refusal when the logged-in connections are at the limit.
    pub fn admit(self: &Arc<Self>) -> Admission<Waiting> {
        let max = self.max();
        if self.logged_in() >= max {
            return self.logins.refuse();
        }
        let Ok(mut waiting) = self.waiting.lock() else {
            return Admission::Closed;
        };
        let bound = self.max_waiting();
        while !waiting.is_empty()
            && (waiting.len() >= bound || self.logged_in().saturating_add(waiting.len()) >= max)
        {
            if let Some((_, oldest)) = waiting.pop_first() {
                // A permit is stored if the connection is not waiting on it yet.
                oldest.notify_one();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evicted = Arc::new(Notify::new());
        waiting.insert(id, evicted.clone());
        let wait = if waiting.len() > bound / 2 {
            CONNECT_WAIT_PRESSED
        } else {
            CONNECT_WAIT
        };
        Admission::Admitted(Waiting {
            limits: self.clone(),
            id,
            evicted,
            wait,
        })
    }
}

impl Waiting {
    /// The CONNECT came and the login is good: a logged-in slot, or `None` at the limit.
    pub fn log_in(self) -> Option<Slot> {
        self.limits.logins.hold()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Ok(mut w) = self.limits.waiting.lock() {
            w.remove(&self.id);
        }
    }
}

/// Raise the open-file limit from its soft to its hard value, as servers do, and size the
/// default `--max-connections` from it: the limit less [`RESERVED_FDS`].
pub(crate) fn raise_open_files() -> usize {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => usize::try_from(limit.saturating_sub(RESERVED_FDS))
            .unwrap_or(usize::MAX)
            .clamp(1, 1 << 22),
        Err(_) => DEFAULT_MAX_CONNECTIONS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_waiting_connection_makes_room_and_the_limit_refuses() {
        let l = Arc::new(MqttLimits::new(64));
        let w: Vec<_> = (0..16)
            .map(|_| match l.admit() {
                Admission::Admitted(w) => w,
                _ => panic!("not admitted"),
            })
            .collect();
        assert_eq!(l.waiting(), 16);
        let Admission::Admitted(newest) = l.admit() else {
            panic!("not admitted")
        };
        assert_eq!(l.waiting(), 16, "the oldest made room");
        assert_eq!(newest.wait, CONNECT_WAIT_PRESSED);
        drop(w);
        let held: Vec<_> = (0..64)
            .filter_map(|_| match l.admit() {
                Admission::Admitted(w) => w.log_in(),
                _ => None,
            })
            .collect();
        assert_eq!(held.len(), 64, "the waiting one made room for the last login");
        assert!(matches!(l.admit(), Admission::Refused(_)), "at the limit");
        drop(newest);
        drop(held);
        assert!(matches!(l.admit(), Admission::Admitted(_)));
    }

    #[test]
    fn http_connections_past_the_bound_are_refused_then_closed_and_a_slot_comes_back() {
        let l = Limit::new(2);
        let open: Vec<_> = (0..2)
            .map(|_| match l.admit() {
                Admission::Admitted(s) => s,
                _ => panic!("not admitted"),
            })
            .collect();
        assert_eq!(l.held(), 2);
        let refusing: Vec<_> = (0..MAX_REFUSING)
            .map(|_| match l.admit() {
                Admission::Refused(r) => r,
                _ => panic!("not refused"),
            })
            .collect();
        assert!(
            matches!(l.admit(), Admission::Closed),
            "too many refusals under way"
        );
        drop(refusing);
        assert!(matches!(l.admit(), Admission::Refused(_)));
        drop(open);
        assert_eq!(l.held(), 0);
        assert!(matches!(l.admit(), Admission::Admitted(_)));
    }
}
