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
//! HTTP's bound ([`OpenLimit`]) is simpler: connections **open** across `--http` and `--https`,
//! at most `--max-connections` too but counted apart from MQTT's logins (a fleet holding every
//! MQTT slot must not lock a test out of `/twin`). Past it a new connection is answered
//! `503 Service Unavailable` at once and closed, never left waiting in the accept queue.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// How long a client may take to send CONNECT after the TCP connection opens.
pub const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// The wait for CONNECT once half the waiting slots are taken.
pub const CONNECT_WAIT_PRESSED: Duration = Duration::from_secs(2);
/// The fewest connections that may wait for their CONNECT at once.
pub const MIN_WAITING: usize = 16;
/// File descriptors kept free for everything else (listeners, the record, HTTP, CoAP).
pub const RESERVED_FDS: u64 = 256;
/// The default when the open-file limit cannot be read.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// The most connections refused at once (each waits up to [`CONNECT_WAIT_PRESSED`] for its
/// CONNECT to answer it CONNACK 3); past that a connection is closed at once.
pub const MAX_REFUSING: usize = 256;

/// The bounds and the counts, shared by the MQTT listeners.
pub struct Limits {
    max: AtomicUsize,
    logged_in: AtomicUsize,
    refusing: AtomicUsize,
    next: AtomicU64,
    /// The connections waiting for their CONNECT, oldest first, each with what closes it.
    waiting: Mutex<BTreeMap<u64, Arc<Notify>>>,
}

/// What a new connection may do.
pub enum Admission {
    /// Wait for CONNECT (at most `wait`); `evicted` is told when a newer connection needs the slot.
    Waiting(Waiting),
    /// Over the limit: read the CONNECT (if it comes quickly) and answer CONNACK 3.
    Refused(Refusing),
    /// Over the limit with too many refusals under way: close at once.
    Closed,
}

/// A connection waiting for its CONNECT; dropping it frees the slot.
pub struct Waiting {
    limits: Arc<Limits>,
    id: u64,
    pub evicted: Arc<Notify>,
    pub wait: Duration,
}

/// A connection being refused; dropping it frees the refusal slot.
pub struct Refusing(Arc<Limits>);

/// A logged-in connection's slot; dropping it frees the slot.
pub struct Held(Arc<Limits>);

impl Limits {
    pub fn new(max: usize) -> Self {
        Limits {
            max: AtomicUsize::new(max.max(1)),
            logged_in: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            next: AtomicU64::new(0),
            waiting: Mutex::default(),
        }
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max.max(1), Ordering::Relaxed);
    }

    /// How many connections are logged in now.
    pub fn logged_in(&self) -> usize {
        self.logged_in.load(Ordering::Relaxed)
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
    pub fn admit(self: &Arc<Self>) -> Admission {
        let max = self.max();
        if self.logged_in() >= max {
            let refusing = self.refusing.fetch_add(1, Ordering::Relaxed);
            if refusing >= MAX_REFUSING {
                self.refusing.fetch_sub(1, Ordering::Relaxed);
                return Admission::Closed;
            }
            return Admission::Refused(Refusing(self.clone()));
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
        Admission::Waiting(Waiting {
            limits: self.clone(),
            id,
            evicted,
            wait,
        })
    }
}

impl Waiting {
    /// The CONNECT came and the login is good: a logged-in slot, or `None` at the limit.
    pub fn log_in(self) -> Option<Held> {
        let limits = self.limits.clone();
        let max = limits.max();
        limits
            .logged_in
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Held(limits))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Ok(mut w) = self.limits.waiting.lock() {
            w.remove(&self.id);
        }
    }
}

impl Drop for Refusing {
    fn drop(&mut self) {
        self.0.refusing.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.logged_in.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The bound on HTTP connections open at once, shared by `--http` and `--https`.
pub struct OpenLimit {
    max: AtomicUsize,
    open: AtomicUsize,
    refusing: AtomicUsize,
}

/// What a new HTTP connection may do.
pub enum Entry {
    /// Served; dropping the slot frees it.
    Open(OpenSlot),
    /// Over the bound: answered 503 and closed; dropping it frees the refusal slot.
    Refused(OpenRefusing),
    /// Over the bound with [`MAX_REFUSING`] refusals under way: closed at once.
    Closed,
}

/// An open HTTP connection's slot.
pub struct OpenSlot(Arc<OpenLimit>);

/// An HTTP connection being answered 503.
pub struct OpenRefusing(Arc<OpenLimit>);

impl OpenLimit {
    pub fn new(max: usize) -> Self {
        OpenLimit {
            max: AtomicUsize::new(max.max(1)),
            open: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
        }
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max.max(1), Ordering::Relaxed);
    }

    /// How many HTTP connections are open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// A new connection: a slot while fewer than the bound are open, else a refusal.
    pub fn admit(self: &Arc<Self>) -> Entry {
        let max = self.max();
        let taken = self.open.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
            (n < max).then_some(n + 1)
        });
        if taken.is_ok() {
            return Entry::Open(OpenSlot(self.clone()));
        }
        if self.refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
            self.refusing.fetch_sub(1, Ordering::Relaxed);
            return Entry::Closed;
        }
        Entry::Refused(OpenRefusing(self.clone()))
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for OpenRefusing {
    fn drop(&mut self) {
        self.0.refusing.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Raise the open-file limit from its soft to its hard value, as servers do, and size the
/// default `--max-connections` from it: the limit less [`RESERVED_FDS`].
pub fn raise_open_files() -> usize {
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
        let l = Arc::new(Limits::new(64));
        let w: Vec<_> = (0..16)
            .map(|_| match l.admit() {
                Admission::Waiting(w) => w,
                _ => panic!("not admitted"),
            })
            .collect();
        assert_eq!(l.waiting(), 16);
        let Admission::Waiting(newest) = l.admit() else {
            panic!("not admitted")
        };
        assert_eq!(l.waiting(), 16, "the oldest made room");
        assert_eq!(newest.wait, CONNECT_WAIT_PRESSED);
        drop(w);
        let held: Vec<_> = (0..64)
            .filter_map(|_| match l.admit() {
                Admission::Waiting(w) => w.log_in(),
                _ => None,
            })
            .collect();
        assert_eq!(held.len(), 64, "the waiting one made room for the last login");
        assert!(matches!(l.admit(), Admission::Refused(_)), "at the limit");
        drop(newest);
        drop(held);
        assert!(matches!(l.admit(), Admission::Waiting(_)));
    }

    #[test]
    fn http_connections_past_the_bound_are_refused_then_closed_and_a_slot_comes_back() {
        let l = Arc::new(OpenLimit::new(2));
        let open: Vec<_> = (0..2)
            .map(|_| match l.admit() {
                Entry::Open(s) => s,
                _ => panic!("not admitted"),
            })
            .collect();
        assert_eq!(l.open(), 2);
        let refusing: Vec<_> = (0..MAX_REFUSING)
            .map(|_| match l.admit() {
                Entry::Refused(r) => r,
                _ => panic!("not refused"),
            })
            .collect();
        assert!(matches!(l.admit(), Entry::Closed), "too many refusals under way");
        drop(refusing);
        assert!(matches!(l.admit(), Entry::Refused(_)));
        drop(open);
        assert_eq!(l.open(), 0);
        assert!(matches!(l.admit(), Entry::Open(_)));
    }
}
