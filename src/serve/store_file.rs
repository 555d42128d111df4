//! The data file of `serve --data` itself: opening it (created if missing, readable by its
//! owner only, locked against a second serve), checking it is serve's (its `application_id`),
//! not from a newer schema (`PRAGMA user_version`) and not damaged (SQLite's `quick_check`),
//! writable (a write at start), migrating it forward ([`MIGRATIONS`]), reading what it holds
//! ([`Saved`]: a row serve cannot read is a [`StoreError`], never a panic), and reading a
//! point's history ([`Reader`]). Every error names the file and says what to do; its class
//! decides the exit code (2 for a file serve cannot use, 74 for one it cannot write).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use serde_json::Value;

use super::history::{Query, Retention, Sample, Stored};
use super::twin::{EventValue, FirmwareState, Origin, OtaState, PointValue};
use super::{Identity, Protocol};
use crate::help::Help;
use crate::secret::Secret;

/// serve's mark in the file's header (`PRAGMA application_id`): "ENOS".
pub(crate) const APPLICATION_ID: i64 = 0x454e_4f53;

/// The schema, one step per version: `MIGRATIONS[v]` takes a file from version `v` to `v + 1`
/// (`PRAGMA user_version`), each in its own transaction. A new version appends a step; a
/// step already shipped never changes.
const MIGRATIONS: &[&str] = &[
    // 1: device state layered on the registry, and the history.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
     CREATE TABLE devices (
       product_key TEXT NOT NULL,
       device_key TEXT NOT NULL,
       origin TEXT NOT NULL,
       deleted INTEGER NOT NULL DEFAULT 0,
       secret TEXT,
       enabled INTEGER,
       topology INTEGER NOT NULL DEFAULT 0,
       gateway_product_key TEXT,
       gateway_device_key TEXT,
       firmware TEXT,
       ota TEXT,
       network TEXT,
       protocol TEXT,
       last_seen INTEGER,
       messages INTEGER NOT NULL DEFAULT 0,
       errors INTEGER NOT NULL DEFAULT 0,
       PRIMARY KEY (product_key, device_key)
     ) WITHOUT ROWID;
     CREATE TABLE attributes (
       product_key TEXT NOT NULL, device_key TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
       PRIMARY KEY (product_key, device_key, key)
     ) WITHOUT ROWID;
     CREATE TABLE tags (
       product_key TEXT NOT NULL, device_key TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
       PRIMARY KEY (product_key, device_key, key)
     ) WITHOUT ROWID;
     CREATE TABLE events (
       id INTEGER PRIMARY KEY,
       product_key TEXT NOT NULL, device_key TEXT NOT NULL,
       event TEXT NOT NULL, vals TEXT NOT NULL, time INTEGER NOT NULL
     );
     CREATE INDEX events_of_device ON events (product_key, device_key, id);
     CREATE TABLE series (
       id INTEGER PRIMARY KEY,
       product_key TEXT NOT NULL, device_key TEXT NOT NULL, point TEXT NOT NULL,
       UNIQUE (product_key, device_key, point)
     );
     CREATE TABLE history (
       series INTEGER NOT NULL, time INTEGER NOT NULL, value,
       PRIMARY KEY (series, time)
     ) WITHOUT ROWID;",
];

/// The schema version this build writes: files of a newer one are refused.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Why the data file cannot be used. What went wrong names the file; [`Help`] says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Not a SQLite database, or one of another program.
    #[error("--data {path}: not serve's database: {why}")]
    NotOurs { path: String, why: String },
    /// SQLite's check found damage, or a row serve cannot read.
    #[error("--data {path}: the database is damaged: {why}")]
    Damaged { path: String, why: String },
    /// Written by a newer enos-connect, whose schema this one does not know.
    #[error("--data {path}: schema version {found} is newer than this enos-connect's ({known})")]
    Newer { path: String, found: i64, known: i64 },
    /// Another serve holds the file.
    #[error("--data {path}: another serve is using this file")]
    InUse { path: String },
    /// The file cannot be created, read or written: permissions, a full disk, an I/O error.
    #[error("--data {path}: cannot {action}: {why}")]
    Io {
        path: String,
        action: &'static str,
        why: String,
    },
}

impl StoreError {
    /// An I/O error of the file (exit 74), as opposed to a file serve cannot use (exit 2).
    pub fn is_io(&self) -> bool {
        matches!(self, StoreError::Io { .. })
    }
}

impl Help for StoreError {
    fn help(&self) -> Option<String> {
        Some(match self {
            StoreError::NotOurs { .. } => "give --data a new path (serve creates the file) or one serve wrote; move this file away if it is in the way".into(),
            StoreError::Damaged { path, .. } => format!(
                "restore {path} from a copy, or move it away (with {path}-wal and {path}-shm) to start afresh: serve never starts afresh by itself"
            ),
            StoreError::Newer { .. } => "run the enos-connect that wrote it, or a newer one; or give another --data file".into(),
            StoreError::InUse { .. } => "stop the other serve, or give this one another --data file".into(),
            StoreError::Io { .. } => "check the permissions of the file and of its folder, and the free space (df); or give --data another path".into(),
        })
    }
}

/// What a SQLite error means for the file, in its words: the class decides the exit code.
fn classify(path: &Path, action: &'static str, e: &rusqlite::Error) -> StoreError {
    let path = path.display().to_string();
    let why = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotOurs { path, why },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::InUse { path },
        Some(
            ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::CannotOpen
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::NoLargeFileSupport
            | ErrorCode::OutOfMemory,
        ) => StoreError::Io { path, action, why },
        // Anything else (a table missing, a value of the wrong type) is the file's state.
        _ => StoreError::Damaged { path, why },
    }
}

/// Where a device came from, as the file spells it.
impl Origin {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "registry" => Some(Origin::Registry),
            "register" => Some(Origin::Register),
            _ => None,
        }
    }
}

/// What the file held at start, by device.
#[derive(Debug, Default)]
pub struct Saved {
    pub devices: BTreeMap<Identity, SavedDevice>,
}

/// One device's state in the file: each `Option` is `None` where the registry's stands.
#[derive(Debug)]
pub struct SavedDevice {
    pub origin: Origin,
    pub deleted: bool,
    pub secret: Option<Secret>,
    pub enabled: Option<bool>,
    /// `Some` when the topology changed: the gateway now (or none).
    pub gateway: Option<Option<Identity>>,
    pub firmware: Option<FirmwareState>,
    pub ota: Option<OtaState>,
    pub network: Option<Value>,
    pub protocol: Option<Protocol>,
    pub last_seen: Option<u64>,
    pub messages: u64,
    pub errors: u64,
    pub attributes: BTreeMap<String, Value>,
    pub tags: BTreeMap<String, String>,
    pub events: Vec<EventValue>,
    pub points: BTreeMap<String, PointValue>,
}

impl SavedDevice {
    fn new(origin: Origin) -> Self {
        SavedDevice {
            origin,
            deleted: false,
            secret: None,
            enabled: None,
            gateway: None,
            firmware: None,
            ota: None,
            network: None,
            protocol: None,
            last_seen: None,
            messages: 0,
            errors: 0,
            attributes: BTreeMap::new(),
            tags: BTreeMap::new(),
            events: Vec::new(),
            points: BTreeMap::new(),
        }
    }
}

impl ToSql for Stored {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Stored::Int(i) => ToSqlOutput::from(*i),
            Stored::Float(f) => ToSqlOutput::from(*f),
            Stored::Json(t) => ToSqlOutput::from(t.as_str()),
        })
    }
}

impl FromSql for Stored {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        match v {
            ValueRef::Integer(i) => Ok(Stored::Int(i)),
            ValueRef::Real(f) => Ok(Stored::Float(f)),
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(|s| Stored::Json(Box::new(s.into())))
                .map_err(|e| FromSqlError::Other(Box::new(e))),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// The file, opened and checked: the lock held on it, the writer's connection, the history
/// reader and what it held.
pub(crate) struct Opened {
    pub lock: std::fs::File,
    pub conn: Connection,
    pub reader: Reader,
    pub saved: Saved,
}

/// Open (or create) the data file, check it, migrate it forward and read what it holds;
/// values beyond `retention` are pruned first.
pub(crate) fn open(path: &Path, retention: Retention) -> Result<Opened, StoreError> {
    let lock = lock(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(path, "open it", &e))?;
    let read = |e: rusqlite::Error| classify(path, "read it", &e);
    conn.busy_timeout(Duration::from_secs(5)).map_err(read)?;
    let version = check(path, &conn)?;
    if version > 0 {
        let problems: Vec<String> = conn
            .prepare("PRAGMA quick_check")
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
            .map_err(read)?;
        if problems.first().map(String::as_str) != Some("ok") {
            return Err(StoreError::Damaged {
                path: path.display().to_string(),
                why: format!("SQLite's check says: {}", problems.join("; ")),
            });
        }
    }
    let write = |e: rusqlite::Error| classify(path, "write it", &e);
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(write)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Io {
            path: path.display().to_string(),
            action: "write it",
            why: format!("SQLite keeps it in journal mode {mode}, not WAL"),
        });
    }
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(write)?;
    // A checkpoint (the log copied into the file, with an fsync of each) holds up every
    // reply waiting on the next commit: at most every 4,000 pages (16 MB of log) on the
    // way, and whenever the writer has nothing to do.
    conn.pragma_update(None, "wal_autocheckpoint", 4_000)
        .map_err(write)?;
    migrate(&conn, version).map_err(write)?;
    // A write at start: a file that cannot be written stops serve now, not at the first
    // change it would have to acknowledge.
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('opened_by', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [concat!("enos-connect ", env!("CARGO_PKG_VERSION"))],
    )
    .map_err(write)?;
    let saved = load(&conn).map_err(|e| match e {
        Load::Sql(e) => read(e),
        Load::Row(why) => StoreError::Damaged {
            path: path.display().to_string(),
            why,
        },
    })?;
    super::store_writer::prune_all(&conn, &retention).map_err(write)?;
    let reader = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(read)?;
    reader.busy_timeout(Duration::from_secs(5)).map_err(read)?;
    Ok(Opened {
        lock,
        conn,
        reader: Reader {
            conn: Arc::new(Mutex::new(reader)),
            retention,
        },
        saved,
    })
}

/// Reads history on its own connection (a blocking call: run it off the async threads).
#[derive(Clone)]
pub struct Reader {
    conn: Arc<Mutex<Connection>>,
    retention: Retention,
}

impl Reader {
    /// The newest `q.limit` values of the point from `q.from` to `q.to`, oldest first, within
    /// the retention (the file may hold a few more until the writer prunes them).
    pub fn history(&self, id: &Identity, point: &str, q: &Query) -> Result<Vec<Sample>, String> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| "the history reader is unavailable".to_string())?;
        let text = |e: rusqlite::Error| e.to_string();
        let series: Option<i64> = conn
            .prepare_cached("SELECT id FROM series WHERE product_key = ?1 AND device_key = ?2 AND point = ?3")
            .and_then(|mut s| {
                s.query_row(rusqlite::params![id.product_key, id.device_key, point], |r| {
                    r.get(0)
                })
            })
            .optional()
            .map_err(text)?;
        let Some(series) = series else {
            return Ok(Vec::new());
        };
        // What the retention keeps: values from `cutoff` on, and the newest `keep` whatever
        // their age.
        let now = i64::try_from(crate::credentials::now_ms()).unwrap_or(i64::MAX);
        let (cutoff, keep) = self.retention.bounds(now);
        let newest_kept: Option<i64> = conn
            .prepare_cached("SELECT time FROM history WHERE series = ?1 ORDER BY time DESC LIMIT 1 OFFSET ?2")
            .and_then(|mut s| {
                s.query_row(
                    rusqlite::params![series, i64::try_from(keep.saturating_sub(1)).unwrap_or(i64::MAX)],
                    |r| r.get(0),
                )
            })
            .optional()
            .map_err(text)?;
        let floor = newest_kept.map_or(i64::MIN, |t| t.min(cutoff));
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let mut stmt = conn
            .prepare_cached(
                "SELECT time, value FROM history WHERE series = ?1 AND time >= ?2 AND time <= ?3
                 ORDER BY time DESC LIMIT ?4",
            )
            .map_err(text)?;
        let rows = stmt
            .query_map(rusqlite::params![series, q.from.max(floor), q.to, limit], |r| {
                Ok(Sample {
                    time: r.get(0)?,
                    value: r.get(1)?,
                })
            })
            .map_err(text)?;
        let mut out = rows.collect::<Result<Vec<_>, _>>().map_err(text)?;
        out.reverse();
        Ok(out)
    }
}

/// Create the file if it is missing (readable by its owner only: it holds device secrets),
/// and lock it for this serve.
fn lock(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display().to_string();
    if path.is_dir() {
        return Err(StoreError::NotOurs {
            path: shown,
            why: "it is a folder".into(),
        });
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Io {
            path: shown.clone(),
            action: "open it for writing",
            why: e.to_string(),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse { path: shown }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Io {
            path: shown,
            action: "lock it",
            why: e.to_string(),
        }),
    }
}

/// Whether the file is serve's (or empty, to be made serve's), and its schema version.
fn check(path: &Path, conn: &Connection) -> Result<i64, StoreError> {
    let shown = path.display().to_string();
    let read = |e: rusqlite::Error| classify(path, "read it", &e);
    let app: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(read)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(read)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(read)?;
    if app != APPLICATION_ID && !(app == 0 && version == 0 && tables == 0) {
        return Err(StoreError::NotOurs {
            path: shown,
            why: format!(
                "a SQLite database of another program (application id {app:#x}, {tables} schema entries)"
            ),
        });
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::Newer {
            path: shown,
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    if version < 0 {
        return Err(StoreError::Damaged {
            path: shown,
            why: format!("schema version {version}"),
        });
    }
    Ok(version)
}

/// Take the file from `version` to [`SCHEMA_VERSION`], a step per transaction.
fn migrate(conn: &Connection, version: i64) -> rusqlite::Result<()> {
    for (v, step) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", v as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Why loading failed: SQLite's error, or a row whose content serve cannot read.
enum Load {
    Sql(rusqlite::Error),
    Row(String),
}

impl From<rusqlite::Error> for Load {
    fn from(e: rusqlite::Error) -> Self {
        Load::Sql(e)
    }
}

/// JSON text from a column, or which row holds something else.
fn json<T: serde::de::DeserializeOwned>(text: &str, what: impl FnOnce() -> String) -> Result<T, Load> {
    serde_json::from_str(text).map_err(|e| Load::Row(format!("{}: not the JSON serve wrote ({e})", what())))
}

/// Every device's saved state.
fn load(conn: &Connection) -> Result<Saved, Load> {
    let mut saved = Saved::default();
    let mut stmt = conn.prepare(
        "SELECT product_key, device_key, origin, deleted, secret, enabled, topology,
                gateway_product_key, gateway_device_key, firmware, ota, network, protocol,
                last_seen, messages, errors FROM devices",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id = Identity::new(&r.get::<_, String>(0)?, &r.get::<_, String>(1)?);
        let name = || format!("device {}/{}", id.product_key, id.device_key);
        let origin: String = r.get(2)?;
        let Some(origin) = Origin::from_name(&origin) else {
            return Err(Load::Row(format!("{}: origin `{origin}`", name())));
        };
        let mut d = SavedDevice::new(origin);
        d.deleted = r.get::<_, i64>(3)? != 0;
        d.secret = r.get::<_, Option<String>>(4)?.map(Secret::new);
        d.enabled = r.get::<_, Option<i64>>(5)?.map(|e| e != 0);
        if r.get::<_, i64>(6)? != 0 {
            let gw = match (r.get::<_, Option<String>>(7)?, r.get::<_, Option<String>>(8)?) {
                (Some(p), Some(k)) => Some(Identity::new(&p, &k)),
                _ => None,
            };
            d.gateway = Some(gw);
        }
        if let Some(t) = r.get::<_, Option<String>>(9)? {
            d.firmware = Some(json(&t, || format!("{}: firmware", name()))?);
        }
        if let Some(t) = r.get::<_, Option<String>>(10)? {
            d.ota = Some(json(&t, || format!("{}: ota", name()))?);
        }
        if let Some(t) = r.get::<_, Option<String>>(11)? {
            d.network = Some(json(&t, || format!("{}: network", name()))?);
        }
        if let Some(p) = r.get::<_, Option<String>>(12)? {
            d.protocol = Some(
                Protocol::from_name(&p).ok_or_else(|| Load::Row(format!("{}: protocol `{p}`", name())))?,
            );
        }
        d.last_seen = r.get::<_, Option<i64>>(13)?.and_then(|t| u64::try_from(t).ok());
        d.messages = u64::try_from(r.get::<_, i64>(14)?).unwrap_or(0);
        d.errors = u64::try_from(r.get::<_, i64>(15)?).unwrap_or(0);
        saved.devices.insert(id, d);
    }
    drop(rows);
    load_maps(conn, &mut saved)?;
    Ok(saved)
}

/// The device a row of another table belongs to (a device with no row of its own is a
/// registry device whose own fields never changed).
fn entry(saved: &mut Saved, pk: String, dk: String) -> &mut SavedDevice {
    saved
        .devices
        .entry(Identity {
            product_key: pk,
            device_key: dk,
        })
        .or_insert_with(|| SavedDevice::new(Origin::Registry))
}

/// Attributes, tags, the last events and each point's last value.
fn load_maps(conn: &Connection, saved: &mut Saved) -> Result<(), Load> {
    let mut stmt = conn.prepare("SELECT product_key, device_key, key, value FROM attributes")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (key, text): (String, String) = (r.get(2)?, r.get(3)?);
        let value = json(&text, || format!("attribute {key}"))?;
        entry(saved, r.get(0)?, r.get(1)?).attributes.insert(key, value);
    }
    let mut stmt = conn.prepare("SELECT product_key, device_key, key, value FROM tags")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (key, value): (String, String) = (r.get(2)?, r.get(3)?);
        entry(saved, r.get(0)?, r.get(1)?).tags.insert(key, value);
    }
    let mut stmt =
        conn.prepare("SELECT product_key, device_key, event, vals, time FROM events ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (event, text, time): (String, String, i64) = (r.get(2)?, r.get(3)?, r.get(4)?);
        let values = json(&text, || format!("event {event}"))?;
        entry(saved, r.get(0)?, r.get(1)?).events.push(EventValue {
            event,
            values,
            time: u64::try_from(time).unwrap_or(0),
        });
    }
    // Each point's last value: the newest of its history (one step down the index each).
    let mut stmt = conn.prepare(
        "SELECT s.product_key, s.device_key, s.point, h.time, h.value FROM series s
         JOIN history h ON h.series = s.id
          AND h.time = (SELECT max(time) FROM history WHERE series = s.id)",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (point, time, value): (String, i64, Stored) = (r.get(2)?, r.get(3)?, r.get(4)?);
        entry(saved, r.get(0)?, r.get(1)?).points.insert(
            point,
            PointValue {
                value: value.to_value(),
                time: u64::try_from(time).unwrap_or(0),
            },
        );
    }
    Ok(())
}
