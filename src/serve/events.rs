//! The event log and the record: one JSON line per event on stdout and in the record file, a
//! sentence per event on stderr with `--log` (on a terminal, the sentence on stdout instead of
//! the JSON: each event once), or a list in memory for a serve inside a test.
//! [`EventLog`] owns them: lines are gathered and written by [`EventLog::flusher`], a batch per
//! write; a listener awaits [`EventLog::wait_written`] before a reply leaves, so the record
//! holds every request that was answered. Every event is also published on the [`Hub`], where
//! the console's live streams (and a harness, [`EventLog::subscribe`]) hear it.

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use super::{Identity, Protocol};

/// What happened: the `event` field of a line, a contract (variants are added, not renamed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Login,
    LoginRefused,
    Request,
    Reply,
    Refused,
    Denied,
    Activated,
    SubdeviceLogin,
    SubdeviceLogout,
    Command,
    Duplicate,
    Disconnect,
    ConnectionRefused,
    /// A [`super::Policy`] lost a PUBLISH on purpose (no PUBACK, not processed).
    Withheld,
}

impl EventKind {
    /// The name in the JSON line.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Login => "login",
            EventKind::LoginRefused => "login_refused",
            EventKind::Request => "request",
            EventKind::Reply => "reply",
            EventKind::Refused => "refused",
            EventKind::Denied => "denied",
            EventKind::Activated => "activated",
            EventKind::SubdeviceLogin => "subdevice_login",
            EventKind::SubdeviceLogout => "subdevice_logout",
            EventKind::Command => "command",
            EventKind::Duplicate => "duplicate",
            EventKind::Disconnect => "disconnect",
            EventKind::ConnectionRefused => "connection_refused",
            EventKind::Withheld => "withheld",
        }
    }
}

/// One line of the event log.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub event: EventKind,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

impl Event {
    pub fn new(event: EventKind, protocol: Protocol) -> Self {
        Event {
            event,
            protocol,
            product_key: None,
            device_key: None,
            topic: None,
            method: None,
            code: None,
            message: None,
            peer: None,
        }
    }

    /// The device the event names, if it names one.
    pub fn device_named(&self) -> Option<Identity> {
        match (&self.product_key, &self.device_key) {
            (Some(p), Some(d)) => Some(Identity::new(p, d)),
            _ => None,
        }
    }

    pub fn device(mut self, id: &Identity) -> Self {
        self.product_key = Some(id.product_key.clone());
        self.device_key = Some(id.device_key.clone());
        self
    }

    pub fn keys(mut self, pk: &str, dk: &str) -> Self {
        self.product_key = Some(pk.to_string());
        self.device_key = Some(dk.to_string());
        self
    }

    pub fn topic(mut self, topic: &str) -> Self {
        self.topic = Some(topic.to_string());
        self
    }

    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_string());
        self
    }

    pub fn code(mut self, code: i64) -> Self {
        self.code = Some(code);
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub fn peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer.to_string());
        self
    }
}

/// The event lines the hub keeps for a page that opens (the event log's history).
pub(crate) const RING: usize = 1000;
/// The events a listener may fall behind the hub before it is told it lagged.
const CHANNEL: usize = 4096;

/// One event as its listeners hear it: the event, and its JSON line.
pub struct Published {
    pub event: Event,
    /// When serve emitted it, ms since the epoch (event lines carry no time of their own).
    pub at: u64,
    pub line: String,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Published {
    /// The device the event names, if it names one.
    pub fn device(&self) -> Option<Identity> {
        self.event.device_named()
    }

    /// Whether the event names device `id`.
    pub fn names(&self, id: &Identity) -> bool {
        self.event.product_key.as_deref() == Some(id.product_key.as_str())
            && self.event.device_key.as_deref() == Some(id.device_key.as_str())
    }

    /// `{"at": ms, "event": {...}}`, as the page reads it.
    pub(crate) fn push_json(&self, out: &mut String) {
        out.push_str("{\"at\":");
        out.push_str(&self.at.to_string());
        out.push_str(",\"event\":");
        out.push_str(&self.line);
        out.push('}');
    }
}

/// Where serve's events meet the console's streams (and a harness's). Costs one atomic load
/// per event while no one listens.
pub struct Hub {
    on: AtomicBool,
    ring: Mutex<VecDeque<Arc<Published>>>,
    tx: broadcast::Sender<Arc<Published>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            on: AtomicBool::new(false),
            ring: Mutex::new(VecDeque::with_capacity(RING)),
            tx: broadcast::channel(CHANNEL).0,
        }
    }
}

impl Hub {
    /// From now on, keep the last [`RING`] events and publish each one.
    pub fn open(&self) {
        self.on.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_open(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    pub(crate) fn publish(&self, event: Event, line: &str) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let p = Arc::new(Published {
            event,
            at: now_ms(),
            line: line.to_string(),
        });
        if let Ok(mut ring) = self.ring.lock() {
            if ring.len() >= RING {
                ring.pop_front();
            }
            ring.push_back(p.clone());
        }
        // No stream open: nothing to send, and that is fine.
        let _ = self.tx.send(p);
    }

    /// The kept event lines (of one device, or all), oldest first, as a JSON list.
    pub(crate) fn recent(&self, device: Option<&Identity>) -> String {
        let mut out = String::from("{\"events\":[");
        if let Ok(r) = self.ring.lock() {
            let mut first = true;
            for p in r.iter().filter(|p| device.is_none_or(|d| p.names(d))) {
                if !first {
                    out.push(',');
                }
                first = false;
                p.push_json(&mut out);
            }
        }
        out.push_str("]}");
        out
    }
}

/// Stdout is /dev/null (serve started with `> /dev/null`): its lines would be formatted and
/// written for no one, at two events a post.
fn stdout_is_null() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        match (std::fs::metadata("/dev/stdout"), std::fs::metadata("/dev/null")) {
            (Ok(out), Ok(null)) => out.file_type().is_char_device() && out.rdev() == null.rdev(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    false
}

/// Where events go: stdout, the record file, and a line for people on stderr; or, for a
/// serve inside another program (the tests), a list in memory.
enum Sink {
    Streams {
        pending: Mutex<Pending>,
        /// Told when a line is pending; [`EventLog::flusher`] waits on it.
        ready: tokio::sync::Notify,
        record: Mutex<Option<std::fs::File>>,
        /// How many lines are written to stdout and the record so far.
        written: watch::Sender<u64>,
        log: bool,
        /// Lines go to stdout too (serve's); a harness keeps stdout for its report.
        stdout: bool,
        /// Nothing reads the lines: stdout is /dev/null (or a harness's), no record, no
        /// sentences on stderr. An event is then only heard by the hub, when it is open.
        unread: bool,
        /// Stdout is a terminal: the readable lines go there, once, and the JSON only to the
        /// record ([`EventLog::readable_on_stdout`]).
        readable: AtomicBool,
    },
    Memory(Arc<Mutex<Vec<String>>>),
}

/// The event log: where events are written, and who hears them.
pub struct EventLog {
    sink: Sink,
    /// Where events meet the console's live streams (and a harness's).
    pub hub: Hub,
}

impl EventLog {
    /// Events on stdout, in the record file `record` (created, or appended to: a record is
    /// never truncated, and each run's lines start with its `listening` line), and with `log`
    /// a sentence each on stderr.
    pub(crate) fn streams(record: Option<&std::path::Path>, log: bool) -> std::io::Result<Self> {
        Self::written_to(record, log, true)
    }

    /// Events in the record file `record` only (if any), and heard by subscribers: for a
    /// harness whose stdout is its report.
    pub(crate) fn record_only(record: Option<&std::path::Path>) -> std::io::Result<Self> {
        Self::written_to(record, false, false)
    }

    fn written_to(record: Option<&std::path::Path>, log: bool, stdout: bool) -> std::io::Result<Self> {
        let record = match record {
            Some(p) => Some(std::fs::OpenOptions::new().create(true).append(true).open(p)?),
            None => None,
        };
        let stdout = stdout && !stdout_is_null();
        Ok(EventLog {
            sink: Sink::Streams {
                pending: Mutex::default(),
                ready: tokio::sync::Notify::new(),
                unread: !stdout && !log && record.is_none(),
                record: Mutex::new(record),
                written: watch::Sender::new(0),
                log,
                stdout,
                readable: AtomicBool::new(false),
            },
            hub: Hub::default(),
        })
    }

    /// For a terminal on stdout: each event once, as its readable line there (the line that
    /// otherwise goes to stderr), and its JSON only in the record. With `log` only.
    pub fn readable_on_stdout(&self) {
        if let Sink::Streams {
            readable, log: true, ..
        } = &self.sink
        {
            readable.store(true, Ordering::Relaxed);
        }
    }

    /// Events kept as lines in `lines`, for a serve inside a test.
    pub(crate) fn memory(lines: Arc<Mutex<Vec<String>>>) -> Self {
        EventLog {
            sink: Sink::Memory(lines),
            hub: Hub::default(),
        }
    }

    /// Every event from now on, as it is emitted (the console's streams, a harness). A
    /// receiver that falls more than the hub's channel behind is told it lagged.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.hub.open();
        self.hub.tx.subscribe()
    }
}

/// Lines written since the last flush, for stdout (and the record) and for stderr.
#[derive(Default)]
pub(crate) struct Pending {
    out: Vec<u8>,
    err: Vec<u8>,
    /// How many lines were ever added to `out`.
    lines: u64,
}

/// An event as a sentence for people (stderr with `--log`).
fn sentence(e: &Event) -> String {
    let who = match (&e.product_key, &e.device_key) {
        (Some(p), Some(d)) => format!(" {p}/{d}"),
        _ => String::new(),
    };
    let mut text = format!("serve: {} {}{who}", e.protocol, e.event.name());
    for part in [&e.topic, &e.method].into_iter().flatten() {
        text.push_str(&format!(" {part}"));
    }
    if let Some(c) = e.code {
        text.push_str(&format!(" code {c}"));
    }
    if let Some(m) = &e.message {
        text.push_str(&format!(": {m}"));
    }
    text
}

/// A JSON object line as a sentence: `serve: listening: mqtt 127.0.0.1:11883, http ...`.
fn fields_sentence(line: &str) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(line) else {
        return format!("serve: {line}");
    };
    let what = fields.get("event").and_then(|e| e.as_str()).unwrap_or("serve");
    let rest: Vec<String> = fields
        .iter()
        .filter(|(k, _)| *k != "event")
        .map(|(k, v)| format!("{k} {}", v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        .collect();
    format!("serve: {what}: {}", rest.join(", "))
}

/// How long a reply waits for its event to be written before it leaves anyway (a stdout no one
/// reads must not hold every device).
const RECORD_WAIT: Duration = Duration::from_secs(5);

impl EventLog {
    /// One JSON line on stdout and in the record (on a terminal, its fields as a readable line).
    pub fn emit_line(&self, v: &impl Serialize) {
        let Ok(line) = serde_json::to_string(v) else {
            return;
        };
        if let Sink::Streams {
            pending, readable, ..
        } = &self.sink
            && readable.load(Ordering::Relaxed)
            && let Ok(mut p) = pending.lock()
        {
            p.err.extend_from_slice(fields_sentence(&line).as_bytes());
            p.err.push(b'\n');
        }
        self.write_line(line);
    }

    fn write_line(&self, line: String) {
        match &self.sink {
            Sink::Memory(m) => {
                if let Ok(mut m) = m.lock() {
                    m.push(line);
                }
            }
            Sink::Streams { pending, ready, .. } => {
                if let Ok(mut p) = pending.lock() {
                    p.out.extend_from_slice(line.as_bytes());
                    p.out.push(b'\n');
                    p.lines = p.lines.saturating_add(1);
                }
                ready.notify_one();
            }
        }
    }

    /// Write one event: a JSON line on stdout and in the record, a sentence on stderr.
    pub fn emit(&self, e: Event) {
        if let Sink::Streams {
            unread: true, ready, ..
        } = &self.sink
            && !self.hub.is_open()
        {
            // No line to write; the flusher still runs, as the data file's commits follow it.
            ready.notify_one();
            return;
        }
        let Ok(line) = serde_json::to_string(&e) else {
            return;
        };
        if let Sink::Streams {
            pending, log: true, ..
        } = &self.sink
            && let Ok(mut p) = pending.lock()
        {
            p.err.extend_from_slice(sentence(&e).as_bytes());
            p.err.push(b'\n');
        }
        self.hub.publish(e, &line);
        self.write_line(line);
    }

    /// Write every pending line to stdout, the record and stderr, and say so to the replies
    /// waiting for them.
    pub fn flush(&self) {
        let written = self.write_pending();
        self.mark_written(written);
    }

    /// Write every pending line to stdout, the record and stderr: how many lines are written
    /// now, for [`EventLog::mark_written`] (the group commit of [`super::Endpoint::flusher`]
    /// says so once the data file has committed too).
    pub(crate) fn write_pending(&self) -> u64 {
        let Sink::Streams {
            pending,
            record,
            stdout: to_stdout,
            readable,
            ..
        } = &self.sink
        else {
            return 0;
        };
        let readable = readable.load(Ordering::Relaxed);
        // The record's lock is taken first and held through the write, so two flushes write
        // in order.
        let mut record = record.lock().ok();
        let (out, err, lines) = match pending.lock() {
            Ok(mut p) => (std::mem::take(&mut p.out), std::mem::take(&mut p.err), p.lines),
            Err(_) => return 0,
        };
        if !out.is_empty() {
            if *to_stdout && !readable {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(&out);
                let _ = stdout.flush();
            }
            // A write(2) puts the lines in the kernel's page cache: a `kill -9` of serve
            // cannot lose them from then on (a power cut can; that is not the promise).
            if let Some(f) = record.as_mut().and_then(|r| r.as_mut()) {
                let _ = f.write_all(&out);
            }
        }
        drop(record);
        if !err.is_empty() && readable && *to_stdout {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&err);
            let _ = stdout.flush();
        } else if !err.is_empty() {
            let _ = std::io::stderr().lock().write_all(&err);
        }
        lines
    }

    /// The first `lines` lines are written: the replies waiting for them may leave.
    pub(crate) fn mark_written(&self, lines: u64) {
        if let Sink::Streams { written, .. } = &self.sink {
            written.send_if_modified(|w| {
                let grew = lines > *w;
                *w = (*w).max(lines);
                grew
            });
        }
    }

    /// Wait until a line is pending (never, for a list in memory).
    pub(crate) async fn pending(&self) {
        match &self.sink {
            Sink::Streams { ready, .. } => ready.notified().await,
            Sink::Memory(_) => std::future::pending().await,
        }
    }

    /// Wait until every event emitted so far is written to stdout and the record: a reply
    /// leaves only after the request's event is in the record, so no request that was answered
    /// is missing from it, whenever serve dies. The flusher writes for many connections at
    /// once (group commit), so this costs a wake-up, not a write per reply. Bounded by
    /// [`RECORD_WAIT`].
    pub async fn wait_written(&self) {
        let Sink::Streams { pending, written, .. } = &self.sink else {
            return;
        };
        let Ok(target) = pending.lock().map(|p| p.lines) else {
            return;
        };
        let mut rx = written.subscribe();
        if *rx.borrow() >= target {
            return;
        }
        let _ = tokio::time::timeout(RECORD_WAIT, rx.wait_for(|w| *w >= target)).await;
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
