//! The store's writer: a thread of its own that owns the write connection. It takes every
//! change queued since its last commit ([`Queue::take`]), applies them in one transaction,
//! commits, and tells the waiting replies (group commit: one commit acknowledges many
//! requests). Activity (logins, counts) no reply waits for: alone, it waits up to
//! [`super::store::LAZY`] for company before its commit. Within a batch, a device's activity
//! is one row update. History beyond the retention is
//! pruned a point at a time as it grows, and by time every minute, a slice of points per
//! commit, so no prune holds the replies up for long.
//!
//! A failed commit (a full disk, an I/O error) stops the writer: the waiting replies are
//! never sent, and serve stops with the reason ([`super::store::Store::failed`]).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

use super::Identity;
use super::history::{Retention, Stored};
use super::store::{Change, Patch, Progress, Queue, Taken};
use super::twin::Origin;
use crate::secret::Secret;

/// A value into a point's history (the same time keeps the last value).
const INSERT_VALUE: &str = "INSERT INTO history (series, time, value) VALUES (?1, ?2, ?3) \
                            ON CONFLICT (series, time) DO UPDATE SET value = excluded.value";

/// How often every point is pruned by time (when the retention has a duration).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The points pruned by time per commit, while a pass is under way.
const PRUNE_SLICE: i64 = 256;

/// A point's row in `series`, and its values added since it was last pruned.
struct SeriesState {
    id: i64,
    since_prune: u64,
}

/// What the batch folds: per device, its activity; the devices whose events to trim.
#[derive(Default)]
struct Folded {
    activity: HashMap<Identity, Activity>,
    events: Vec<Identity>,
}

struct Activity {
    origin: Origin,
    protocol: Option<&'static str>,
    last_seen: i64,
    messages: i64,
    errors: i64,
}

pub(crate) struct Writer {
    conn: Connection,
    retention: Retention,
    path: String,
    series: HashMap<Identity, HashMap<String, SeriesState>>,
    /// The next pass by time, and where the current one is (the last series id done).
    next_pass: Instant,
    pass_after: Option<i64>,
    /// Fault injection for tests: each commit waits this long first, so a reply that left
    /// before its commit would be lost to a `kill -9` (`tests/it/store.rs`). Read from
    /// [`COMMIT_DELAY_ENV`]; none in use.
    commit_delay: Option<Duration>,
}

/// Milliseconds each commit waits before it is made (tests only; see `Writer::commit_delay`).
pub(crate) const COMMIT_DELAY_ENV: &str = "ENOS_CONNECT_TEST_COMMIT_DELAY_MS";

fn ms(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    ms(crate::credentials::now_ms())
}

impl Writer {
    pub(crate) fn new(conn: Connection, retention: Retention, path: &Path) -> Self {
        Writer {
            conn,
            retention,
            path: path.display().to_string(),
            series: HashMap::new(),
            next_pass: Instant::now() + PRUNE_EVERY,
            pass_after: None,
            commit_delay: std::env::var(COMMIT_DELAY_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis),
        }
    }

    /// Commit batches until the queue closes; stop at the first failure, saying why in
    /// `progress`.
    pub(crate) fn run(mut self, queue: &Queue, progress: &watch::Sender<Progress>) {
        loop {
            match queue.take(Duration::from_secs(1)) {
                Taken::Closed => return,
                Taken::Idle => {
                    // Nothing waits: a good moment to fold the log into the file.
                    let idle = self
                        .conn
                        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                        .and_then(|()| self.prune_slice());
                    if let Err(e) = idle {
                        return self.fail(progress, &e);
                    }
                }
                Taken::Batch(changes, last, closing) => {
                    if let Err(e) = self.commit(changes) {
                        return self.fail(progress, &e);
                    }
                    progress.send_modify(|p| p.committed = p.committed.max(last));
                    if closing {
                        return;
                    }
                    if let Err(e) = self.prune_slice() {
                        return self.fail(progress, &e);
                    }
                }
            }
        }
    }

    fn fail(&self, progress: &watch::Sender<Progress>, e: &rusqlite::Error) {
        let why = format!("--data {}: cannot write it: {e}", self.path);
        progress.send_modify(|p| p.failed = Some(why));
    }

    /// One transaction for the batch.
    fn commit(&mut self, batch: Vec<Change>) -> rusqlite::Result<()> {
        if let Some(delay) = self.commit_delay {
            std::thread::sleep(delay);
        }
        self.conn.execute_batch("BEGIN")?;
        let done = self
            .apply_all(batch)
            .and_then(|()| self.conn.execute_batch("COMMIT"));
        if done.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        done
    }

    fn apply_all(&mut self, batch: Vec<Change>) -> rusqlite::Result<()> {
        let mut folded = Folded::default();
        let mut prune = Vec::new();
        for change in batch {
            self.apply(change, &mut folded, &mut prune)?;
        }
        self.flush(&mut folded)?;
        let (cutoff, keep) = self.retention.bounds(now_ms());
        for id in prune {
            prune_series(&self.conn, id, cutoff, keep)?;
        }
        Ok(())
    }

    fn apply(&mut self, change: Change, folded: &mut Folded, prune: &mut Vec<i64>) -> rusqlite::Result<()> {
        let c = &self.conn;
        match change {
            Change::Activity {
                id,
                origin,
                protocol,
                last_seen,
                messages,
                errors,
            } => {
                folded.activity.insert(
                    id,
                    Activity {
                        origin,
                        protocol: protocol.map(|p| p.name()),
                        last_seen: ms(last_seen),
                        messages: ms(messages),
                        errors: ms(errors),
                    },
                );
            }
            Change::Device { id, origin, patch } => patch_device(c, &id, origin, patch)?,
            Change::Points { id, time, values } => self.insert_points(&id, time, values, prune)?,
            Change::Event { id, event } => {
                let vals = event.values.to_string();
                c.prepare_cached(
                    "INSERT INTO events (product_key, device_key, event, vals, time) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![id.product_key, id.device_key, event.event, vals, ms(event.time)])?;
                folded.events.push(id);
            }
            Change::Attributes { id, set } => {
                let set = set.into_iter().map(|(k, v)| (k, v.to_string()));
                set_pairs(c, "attributes", &id, set)?;
            }
            Change::AttributesDeleted { id, keys } => delete_keys(c, "attributes", &id, keys)?,
            Change::Tags { id, set } => set_pairs(c, "tags", &id, set)?,
            Change::TagsDeleted { id, keys } => delete_keys(c, "tags", &id, keys)?,
            Change::Registered {
                id,
                secret,
                attributes,
            } => {
                // What was folded before this change belongs to the device it replaces.
                self.flush(folded)?;
                self.register(&id, &secret, attributes)?;
            }
            Change::Deleted { id, origin } => {
                self.flush(folded)?;
                self.forget(&id)?;
                if origin == Origin::Registry {
                    // The registry still lists it: the row says it is gone.
                    self.conn.execute(
                        "INSERT INTO devices (product_key, device_key, origin, deleted) VALUES (?1, ?2, 'registry', 1)",
                        params![id.product_key, id.device_key],
                    )?;
                }
            }
        }
        Ok(())
    }

    /// A device's new values, each in its point's series; a series due for pruning (every
    /// `Retention::prune_step` values) goes on `prune`.
    fn insert_points(
        &mut self,
        id: &Identity,
        time: i64,
        values: Vec<(String, Stored)>,
        prune: &mut Vec<i64>,
    ) -> rusqlite::Result<()> {
        for (point, value) in values {
            let step = self.retention.prune_step();
            let s = self.series_of(id, &point)?;
            s.since_prune += 1;
            let sid = s.id;
            if step.is_some_and(|step| s.since_prune >= step) {
                s.since_prune = 0;
                prune.push(sid);
            }
            self.conn
                .prepare_cached(INSERT_VALUE)?
                .execute(params![sid, time, value])?;
        }
        Ok(())
    }

    /// A device registered (`thing/device/register`): what the file held about a device of
    /// that identity forgotten, the new one written with its secret and attributes.
    fn register(
        &mut self,
        id: &Identity,
        secret: &Secret,
        attributes: Vec<(String, serde_json::Value)>,
    ) -> rusqlite::Result<()> {
        self.forget(id)?;
        self.conn.execute(
            "INSERT INTO devices (product_key, device_key, origin, secret) VALUES (?1, ?2, 'register', ?3)",
            params![id.product_key, id.device_key, secret.expose_for_login()],
        )?;
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO attributes (product_key, device_key, key, value) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (k, v) in attributes {
            stmt.execute(params![id.product_key, id.device_key, k, v.to_string()])?;
        }
        Ok(())
    }

    /// Everything the file holds about a device, gone (a deletion, or a registration that
    /// replaces it).
    fn forget(&mut self, id: &Identity) -> rusqlite::Result<()> {
        self.series.remove(id);
        let keys = params![id.product_key, id.device_key];
        for sql in [
            "DELETE FROM history WHERE series IN (SELECT id FROM series WHERE product_key = ?1 AND device_key = ?2)",
            "DELETE FROM series WHERE product_key = ?1 AND device_key = ?2",
            "DELETE FROM attributes WHERE product_key = ?1 AND device_key = ?2",
            "DELETE FROM tags WHERE product_key = ?1 AND device_key = ?2",
            "DELETE FROM events WHERE product_key = ?1 AND device_key = ?2",
            "DELETE FROM devices WHERE product_key = ?1 AND device_key = ?2",
        ] {
            self.conn.prepare_cached(sql)?.execute(keys)?;
        }
        Ok(())
    }

    /// The point's series, made on first use.
    fn series_of(&mut self, id: &Identity, point: &str) -> rusqlite::Result<&mut SeriesState> {
        let known = self.series.get(id).is_some_and(|m| m.contains_key(point));
        if !known {
            let keys = params![id.product_key, id.device_key, point];
            let found: Option<i64> = self
                .conn
                .prepare_cached(
                    "SELECT id FROM series WHERE product_key = ?1 AND device_key = ?2 AND point = ?3",
                )?
                .query_row(keys, |r| r.get(0))
                .optional()?;
            let sid = match found {
                Some(sid) => sid,
                None => {
                    self.conn
                        .prepare_cached(
                            "INSERT INTO series (product_key, device_key, point) VALUES (?1, ?2, ?3)",
                        )?
                        .execute(keys)?;
                    self.conn.last_insert_rowid()
                }
            };
            self.series.entry(id.clone()).or_default().insert(
                point.to_string(),
                SeriesState {
                    id: sid,
                    since_prune: 0,
                },
            );
        }
        self.series
            .get_mut(id)
            .and_then(|m| m.get_mut(point))
            .ok_or(rusqlite::Error::QueryReturnedNoRows)
    }

    /// Write what the batch folded: each device's activity, and the event lists trimmed to
    /// the twin's bound.
    fn flush(&self, folded: &mut Folded) -> rusqlite::Result<()> {
        let c = &self.conn;
        for (id, a) in folded.activity.drain() {
            c.prepare_cached(
                "INSERT INTO devices (product_key, device_key, origin, protocol, last_seen, messages, errors)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (product_key, device_key) DO UPDATE SET
                   protocol = coalesce(excluded.protocol, protocol),
                   last_seen = excluded.last_seen,
                   messages = excluded.messages,
                   errors = excluded.errors",
            )?
            .execute(params![
                id.product_key,
                id.device_key,
                a.origin.name(),
                a.protocol,
                a.last_seen,
                a.messages,
                a.errors
            ])?;
        }
        folded.events.sort();
        folded.events.dedup();
        let keep = i64::try_from(super::twin::MAX_EVENTS).unwrap_or(i64::MAX);
        for id in folded.events.drain(..) {
            c.prepare_cached(
                "DELETE FROM events WHERE product_key = ?1 AND device_key = ?2 AND id <= (
                   SELECT id FROM events WHERE product_key = ?1 AND device_key = ?2 ORDER BY id DESC LIMIT 1 OFFSET ?3)",
            )?
            .execute(params![id.product_key, id.device_key, keep])?;
        }
        Ok(())
    }

    /// Prune a slice of every point by time, when a pass is due (a retention with a
    /// duration only: a count is kept as points grow).
    fn prune_slice(&mut self) -> rusqlite::Result<()> {
        if self.retention.duration.is_none() {
            return Ok(());
        }
        let after = match self.pass_after {
            Some(a) => a,
            None if Instant::now() >= self.next_pass => 0,
            None => return Ok(()),
        };
        let ids: Vec<i64> = self
            .conn
            .prepare_cached("SELECT id FROM series WHERE id > ?1 ORDER BY id LIMIT ?2")?
            .query_map(params![after, PRUNE_SLICE], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let (cutoff, keep) = self.retention.bounds(now_ms());
        let tx = self.conn.unchecked_transaction()?;
        for &id in &ids {
            prune_series(&tx, id, cutoff, keep)?;
        }
        tx.commit()?;
        self.pass_after = ids.last().copied();
        if self.pass_after.is_none() {
            self.next_pass = Instant::now() + PRUNE_EVERY;
        }
        Ok(())
    }
}

/// One field of a device's row, the row made if it has none.
/// A device's key-value pairs set in `table` (`attributes` or `tags`: the same columns), each
/// replacing the one of its key.
fn set_pairs(
    c: &Connection,
    table: &'static str,
    id: &Identity,
    set: impl IntoIterator<Item = (String, String)>,
) -> rusqlite::Result<()> {
    let mut stmt = c.prepare_cached(&format!(
        "INSERT INTO {table} (product_key, device_key, key, value) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (product_key, device_key, key) DO UPDATE SET value = excluded.value"
    ))?;
    for (k, v) in set {
        stmt.execute(params![id.product_key, id.device_key, k, v])?;
    }
    Ok(())
}

/// A device's keys deleted from `table` (`attributes` or `tags`).
fn delete_keys(
    c: &Connection,
    table: &'static str,
    id: &Identity,
    keys: Vec<String>,
) -> rusqlite::Result<()> {
    let mut stmt = c.prepare_cached(&format!(
        "DELETE FROM {table} WHERE product_key = ?1 AND device_key = ?2 AND key = ?3"
    ))?;
    for k in keys {
        stmt.execute(params![id.product_key, id.device_key, k])?;
    }
    Ok(())
}

fn patch_device(c: &Connection, id: &Identity, origin: Origin, patch: Patch) -> rusqlite::Result<()> {
    let keys = (&id.product_key, &id.device_key, origin.name());
    let set = |sql: &str, value: &dyn rusqlite::ToSql| -> rusqlite::Result<()> {
        c.prepare_cached(sql)?
            .execute(params![keys.0, keys.1, keys.2, value])?;
        Ok(())
    };
    match patch {
        Patch::Secret(s) => set(
            "INSERT INTO devices (product_key, device_key, origin, secret) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (product_key, device_key) DO UPDATE SET secret = excluded.secret",
            &s.expose_for_login(),
        ),
        Patch::Enabled(e) => set(
            "INSERT INTO devices (product_key, device_key, origin, enabled) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (product_key, device_key) DO UPDATE SET enabled = excluded.enabled",
            &e,
        ),
        Patch::Firmware(f) => set(
            "INSERT INTO devices (product_key, device_key, origin, firmware) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (product_key, device_key) DO UPDATE SET firmware = excluded.firmware",
            &serde_json::to_string(&f).unwrap_or_default(),
        ),
        Patch::Ota(o) => set(
            "INSERT INTO devices (product_key, device_key, origin, ota) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (product_key, device_key) DO UPDATE SET ota = excluded.ota",
            &serde_json::to_string(&o).unwrap_or_default(),
        ),
        Patch::Network(n) => set(
            "INSERT INTO devices (product_key, device_key, origin, network) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (product_key, device_key) DO UPDATE SET network = excluded.network",
            &n.to_string(),
        ),
        Patch::Gateway(gw) => {
            c.prepare_cached(
                "INSERT INTO devices (product_key, device_key, origin, topology, gateway_product_key, gateway_device_key)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5)
                 ON CONFLICT (product_key, device_key) DO UPDATE SET topology = 1,
                   gateway_product_key = excluded.gateway_product_key,
                   gateway_device_key = excluded.gateway_device_key",
            )?
            .execute(params![
                keys.0,
                keys.1,
                keys.2,
                gw.as_ref().map(|g| &g.product_key),
                gw.as_ref().map(|g| &g.device_key)
            ])?;
            Ok(())
        }
    }
}

/// Drop a point's values that the retention lets go: older than `cutoff` and beyond its
/// newest `keep`.
fn prune_series(c: &Connection, series: i64, cutoff: i64, keep: u64) -> rusqlite::Result<()> {
    let offset = i64::try_from(keep.saturating_sub(1)).unwrap_or(i64::MAX);
    c.prepare_cached(
        "DELETE FROM history WHERE series = ?1 AND time < ?2 AND time < coalesce(
           (SELECT time FROM history WHERE series = ?1 ORDER BY time DESC LIMIT 1 OFFSET ?3),
           -9223372036854775808)",
    )?
    .execute(params![series, cutoff, offset])?;
    Ok(())
}

/// Prune every point once (at start: the retention may have changed since the file was
/// written).
pub(crate) fn prune_all(c: &Connection, retention: &Retention) -> rusqlite::Result<()> {
    let (cutoff, keep) = retention.bounds(now_ms());
    let ids: Vec<i64> = c
        .prepare("SELECT id FROM series")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let tx = c.unchecked_transaction()?;
    for id in ids {
        prune_series(c, id, cutoff, keep)?;
    }
    tx.commit()
}
