//! `serve --data FILE`: device state kept in an embedded SQLite database (WAL mode), so a
//! restart, or a `kill -9`, loses nothing that serve acknowledged.
//!
//! The twin ([`super::twin::Twin`]) stays the one owner of device state; the store keeps it.
//! Every change of persistent state is a [`Change`] the twin pushes, under its own lock, to
//! the store's writer thread ([`super::store_writer`]), which applies whatever has queued in
//! one transaction and then wakes every reply waiting on it: group commit, as the record
//! does. A reply waits with [`Store::wait_saved`] until what it acknowledges is committed;
//! with `synchronous = NORMAL` a committed transaction survives the process being killed,
//! not a power cut. History queries read on a connection of their own, off the async threads.
//!
//! What the file holds is layered on the registry, which stays the source of products and of
//! the devices it lists: a `devices` row says only what devices and commands changed (a
//! column left NULL is the registry's), and devices made by `thing.device.register` are rows
//! of their own. [`Store::open`] checks the file before anything is served (a SQLite file of
//! serve's, not from a newer schema, not damaged, writable, not used by another serve),
//! migrates its schema forward, and reads what it holds ([`Saved`]), all in
//! [`super::store_file`]; a file it cannot use stops serve with a [`StoreError`] that says
//! what to do, never a fresh start.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use super::history::{Retention, Stored};
#[cfg(test)]
pub(crate) use super::store_file::SCHEMA_VERSION;
pub(crate) use super::store_file::{Reader, Saved, StoreError};
use super::twin::{EventValue, FirmwareState, Origin, OtaState};
use super::{Identity, Protocol};
use crate::secret::Secret;

/// A change of persistent device state, as the twin made it.
pub(crate) enum Change {
    /// A field of the device's own row.
    Device {
        id: Identity,
        origin: Origin,
        patch: Patch,
    },
    /// A device's activity now: the protocol of its last login, when it was last seen, and
    /// its counts of requests and errors.
    Activity {
        id: Identity,
        origin: Origin,
        protocol: Option<Protocol>,
        last_seen: u64,
        messages: u64,
        errors: u64,
    },
    Registered {
        id: Identity,
        secret: Secret,
        attributes: Vec<(String, Value)>,
    },
    Deleted {
        id: Identity,
        origin: Origin,
    },
    Attributes {
        id: Identity,
        set: Vec<(String, Value)>,
    },
    AttributesDeleted {
        id: Identity,
        keys: Vec<String>,
    },
    Tags {
        id: Identity,
        set: Vec<(String, String)>,
    },
    TagsDeleted {
        id: Identity,
        keys: Vec<String>,
    },
    /// Values of points at `time` (a point's last value is its newest in the history, which
    /// the retention never lets go).
    Points {
        id: Identity,
        time: i64,
        values: Vec<(String, Stored)>,
    },
    Event {
        id: Identity,
        event: EventValue,
    },
}

impl Change {
    /// Whether a reply may acknowledge it: everything but activity (a login's time and
    /// protocol, the counts of requests), which goes with the next commit and is not waited
    /// for (a `kill -9` may lose the last moments of it, never what a device was told).
    pub(crate) fn durable(&self) -> bool {
        !matches!(self, Change::Activity { .. })
    }
}

/// One field of a device's row.
pub(crate) enum Patch {
    Secret(Secret),
    Enabled(bool),
    Gateway(Option<Identity>),
    Firmware(FirmwareState),
    Ota(OtaState),
    Network(Value),
}

/// What the writer has done: the last change committed, or why it stopped.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    pub committed: u64,
    pub failed: Option<String>,
}

/// The replies waiting for a commit, by the mark each waits for, and what the relay passed on:
/// a commit wakes only the replies it covers. (A `watch` woke every waiting reply on every
/// commit, to find most still waiting: at 50 replies in flight, several wake-ups per post.)
#[derive(Default)]
struct Waiters {
    committed: u64,
    failed: bool,
    /// Whether a relay runs (else a waiting reply listens to the writer itself).
    running: bool,
    by_mark: std::collections::BTreeMap<u64, Vec<tokio::sync::oneshot::Sender<bool>>>,
}

/// The changes on their way from the twin to the writer: pushed under the twin's lock (a lock
/// and a `Vec::push`, no system call), taken by the writer a batch at a time. The writer is
/// woken by a reply that waits ([`Queue::kick`]): by then every task that was ready has queued
/// its changes, so one commit acknowledges them all. Changes no reply waits for are taken
/// when they have waited [`LAZY`], or with the next batch.
#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<Queued>,
    ready: Condvar,
}

/// How long changes no reply waits for stay queued, for company, before their own commit.
pub(crate) const LAZY: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Queued {
    changes: Vec<Change>,
    /// When the oldest queued change came.
    since: Option<Instant>,
    /// The number of the last change queued.
    last: u64,
    /// A reply waits: commit what is queued now.
    kicked: bool,
    /// The writer is waiting on `ready`.
    waiting: bool,
    closed: bool,
}

/// What the writer gets from the queue.
pub(crate) enum Taken {
    /// Changes to commit, the number of the last, and whether the queue is closed.
    Batch(Vec<Change>, u64, bool),
    /// Nothing came for a while (time to prune).
    Idle,
    Closed,
}

impl Queue {
    /// Queue a change: its number.
    fn push(&self, change: Change) -> Option<u64> {
        let mut q = self.state.lock().ok()?;
        if q.changes.is_empty() {
            q.since = Some(Instant::now());
        }
        q.last += 1;
        q.changes.push(change);
        Some(q.last)
    }

    /// A reply waits for what is queued: wake the writer if it waits.
    fn kick(&self) {
        let Ok(mut q) = self.state.lock() else { return };
        q.kicked = true;
        if q.waiting {
            q.waiting = false;
            drop(q);
            self.ready.notify_one();
        }
    }

    fn close(&self) {
        if let Ok(mut q) = self.state.lock() {
            q.closed = true;
        }
        self.ready.notify_one();
    }

    /// The next batch: what is queued once a reply waits for it, the queue closes, or its
    /// oldest change has waited [`LAZY`]; [`Taken::Idle`] after `idle` with nothing queued.
    pub(crate) fn take(&self, idle: Duration) -> Taken {
        let Ok(mut q) = self.state.lock() else {
            return Taken::Closed;
        };
        loop {
            let now = Instant::now();
            let due = q.since.map(|s| s + LAZY);
            if !q.changes.is_empty() && (q.kicked || q.closed || due.is_some_and(|d| now >= d)) {
                q.kicked = false;
                q.since = None;
                return Taken::Batch(std::mem::take(&mut q.changes), q.last, q.closed);
            }
            q.kicked = false;
            if q.closed {
                return Taken::Closed;
            }
            let wait = due.map_or(idle, |d| d.saturating_duration_since(now));
            q.waiting = true;
            let Ok((g, t)) = self.ready.wait_timeout(q, wait) else {
                return Taken::Closed;
            };
            q = g;
            q.waiting = false;
            if t.timed_out() && q.changes.is_empty() && !q.kicked {
                return Taken::Idle;
            }
        }
    }
}

/// The open data file: the writer's queue, what it committed, and a reader for history.
pub struct Store {
    path: PathBuf,
    queue: Arc<Queue>,
    /// The number of the last change a reply waits for.
    durable: AtomicU64,
    progress: Arc<watch::Sender<Progress>>,
    waiters: Mutex<Waiters>,
    reader: Reader,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// An exclusive lock on the file for as long as this serve runs (dropped last).
    _lock: std::fs::File,
}

impl Store {
    /// Open (or create) the data file, check it, migrate it forward, read what it holds, and
    /// start its writer; values beyond `retention` are pruned first.
    pub fn open(path: &Path, retention: Retention) -> Result<(Store, Saved), StoreError> {
        let opened = super::store_file::open(path, retention)?;
        let queue = Arc::new(Queue::default());
        let progress = Arc::new(watch::Sender::new(Progress::default()));
        let writer = super::store_writer::Writer::new(opened.conn, retention, path);
        let (from, to_writer) = (queue.clone(), progress.clone());
        let handle = std::thread::Builder::new()
            .name("serve-store".into())
            .spawn(move || writer.run(&from, &to_writer))
            .map_err(|e| StoreError::Io {
                path: path.display().to_string(),
                action: "start its writer",
                why: e.to_string(),
            })?;
        Ok((
            Store {
                path: path.to_path_buf(),
                queue,
                durable: AtomicU64::new(0),
                progress,
                waiters: Mutex::new(Waiters::default()),
                reader: opened.reader,
                writer: Mutex::new(Some(handle)),
                _lock: opened.lock,
            },
            opened.saved,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queue a change for the writer. The twin calls this under its own lock, so changes
    /// reach the file in the order they were made.
    pub(crate) fn push(&self, change: Change) {
        let durable = change.durable();
        // A writer that stopped has said why (`failed`); nothing queued now is acknowledged.
        if let Some(n) = self.queue.push(change)
            && durable
        {
            self.durable.fetch_max(n, Ordering::AcqRel);
        }
    }

    /// The number of the last change a reply waits for: what [`Store::wait_saved`] waits for.
    pub fn target(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Wait until the changes up to `target` are committed (the writer woken for them if it
    /// waits). After a failed write it never returns: nothing is acknowledged that is not in
    /// the file (serve then stops).
    pub async fn wait_saved(&self, target: u64) {
        if self.progress.borrow().committed >= target {
            return;
        }
        // The tasks that are ready run first and queue their changes, so one commit takes
        // them all: kicked at once, the writer took 2.6 posts a commit under a load probe.
        tokio::task::yield_now().await;
        self.queue.kick();
        let woken = self.waiters.lock().ok().and_then(|mut w| {
            if !w.running {
                return None;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            match (w.committed >= target, w.failed) {
                (true, _) => drop(tx.send(true)),
                (_, true) => drop(tx.send(false)),
                _ => w.by_mark.entry(target).or_default().push(tx),
            }
            Some(rx)
        });
        if let Some(rx) = woken {
            // Woken by the relay, on this thread; a relay that stopped drops the sender.
            match rx.await {
                Ok(true) => return,
                Ok(false) => std::future::pending::<()>().await,
                Err(_) => {}
            }
        }
        let mut rx = self.progress.subscribe();
        let done = rx
            .wait_for(|p| p.committed >= target || p.failed.is_some())
            .await
            .map(|p| p.failed.is_none())
            .unwrap_or(false);
        if !done {
            std::future::pending::<()>().await;
        }
    }

    /// Have the writer commit what is queued now, if a reply waits for it.
    pub fn kick(&self) {
        if self.target() > self.progress.borrow().committed {
            self.queue.kick();
        }
    }

    /// Pass the writer's progress on to the waiting replies, from the thread this runs on: one
    /// wake-up from the writer's thread per commit, however many replies wait (each wake-up
    /// from another thread is a system call for the runtime). Runs until a write fails.
    pub async fn relay(&self) {
        let mut rx = self.progress.subscribe();
        if let Ok(mut w) = self.waiters.lock() {
            w.running = true;
        }
        loop {
            let p = rx.borrow_and_update().clone();
            let (woken, ok) = {
                let Ok(mut w) = self.waiters.lock() else { return };
                w.committed = w.committed.max(p.committed);
                w.failed |= p.failed.is_some();
                let after = w.committed.saturating_add(1);
                let waiting = if w.failed {
                    std::collections::BTreeMap::new()
                } else {
                    w.by_mark.split_off(&after)
                };
                (std::mem::replace(&mut w.by_mark, waiting), !w.failed)
            };
            for tx in woken.into_values().flatten() {
                let _ = tx.send(ok);
            }
            if p.failed.is_some() || rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// The relay stopped: waiting replies listen to the writer itself.
    pub fn relay_gone(&self) {
        if let Ok(mut w) = self.waiters.lock() {
            w.running = false;
            w.by_mark.clear();
        }
    }

    /// Wait until a write fails: why, in words that name the file.
    pub async fn failed(&self) -> String {
        let mut rx = self.progress.subscribe();
        match rx.wait_for(|p| p.failed.is_some()).await {
            Ok(p) => p.failed.clone().unwrap_or_default(),
            // The writer is gone without a word: it panicked, or the store closed.
            Err(_) => format!("--data {}: the writer stopped", self.path.display()),
        }
    }

    /// Commit what is queued and stop the writer; `Err` when a write failed.
    pub fn close(&self) -> Result<(), String> {
        self.queue.close();
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle
            && h.join().is_err()
        {
            return Err(format!("--data {}: the writer stopped", self.path.display()));
        }
        match self.progress.borrow().failed.clone() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// A handle that reads history, for a blocking task.
    pub fn reader(&self) -> Reader {
        self.reader.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::store_file::APPLICATION_ID;
    use rusqlite::Connection;

    fn open(path: &Path) -> Result<(Store, Saved), StoreError> {
        Store::open(path, Retention::default())
    }

    #[test]
    fn a_new_file_is_made_serve_s_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("serve.db");
        let (store, saved) = open(&path).expect("created");
        assert!(saved.devices.is_empty());
        assert!(
            matches!(open(&path), Err(StoreError::InUse { .. })),
            "one serve per file"
        );
        store.close().expect("closed");
        drop(store);
        let (store, _) = open(&path).expect("reopened");
        store.close().expect("closed");
        let conn = Connection::open(&path).expect("open");
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(v, SCHEMA_VERSION);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the file holds secrets: its owner's only");
    }

    #[test]
    fn files_serve_cannot_use_are_refused_with_their_class() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = dir.path().join("notes.txt");
        std::fs::write(
            &text,
            "not a database, just some text that is long enough ".repeat(100),
        )
        .expect("write");
        assert!(matches!(open(&text), Err(StoreError::NotOurs { .. })));
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .and_then(|c| c.execute_batch("CREATE TABLE t (x)"))
            .expect("another program's database");
        assert!(matches!(open(&other), Err(StoreError::NotOurs { .. })));
        let newer = dir.path().join("newer.db");
        Connection::open(&newer)
            .and_then(|c| {
                c.pragma_update(None, "application_id", APPLICATION_ID)?;
                c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            })
            .expect("a newer file");
        let e = open(&newer).err().expect("refused");
        assert!(matches!(e, StoreError::Newer { .. }), "{e}");
        assert!(!e.is_io());
        let missing = dir.path().join("no-such-folder/serve.db");
        let e = open(&missing).err().expect("refused");
        assert!(e.is_io(), "{e}");
        assert!(e.to_string().contains("no-such-folder/serve.db"), "{e}");
    }
}
