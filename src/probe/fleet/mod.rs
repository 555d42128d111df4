//! `probe URL --fleet`: a fleet of devices on one machine. Each device connects, logs in once
//! with its own EnOS login (its own client id: a repeated one takes the older connection
//! over), holds the connection, and posts its measure points every `--every` for `--hold`,
//! answering the activation push when it logs in with the product secret. The report is a
//! load report (so `merge` joins fleets run on several machines: counts summed, each stage's
//! HdrHistogram added) with the fleet's own section: connected over time, messages offered,
//! acknowledged (PUBACK) and answered (EnOS's reply) per second, the codes seen, the
//! disconnects.
//!
//! MQTT only: an HTTP or CoAP "session" is a request per post, which `--count` already
//! measures; the CLI refuses `--fleet` on those schemes and says so.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use rumqttc::ConnectReturnCode;
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, Packet};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod devices;
mod hold;
mod report;
pub use devices::FleetDevice;
// Public for fuzz/fuzz_targets/fleet_devices.rs and load_reports.rs only.
#[doc(hidden)]
pub use devices::{devices_from_csv, duration};
pub(crate) use devices::{devices_from_registry, generated};
use hold::hold;
use report::report;
pub(crate) use report::{FleetPart, FleetReport, Tick};
#[doc(hidden)]
pub use report::{merge_parts, parse_parts};

use super::{ErrorKind, Io, Login, Target};
use crate::capabilities::Capabilities;

/// The largest packet a device accepts from the server.
const MAX_PACKET: usize = 1 << 20;
/// Posts a device keeps track of while their answers are due; older ones count as unanswered.
const MAX_IN_FLIGHT: usize = 64;
/// How long a device that sent DISCONNECT waits for the server to close the connection.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// The most seconds the timeline keeps (a day).
const MAX_TICKS: usize = 86_400;

/// What the fleet does.
pub struct FleetOptions {
    pub devices: Vec<FleetDevice>,
    /// Between two posts of one device.
    pub every: Duration,
    /// How long each device holds its connection after it logged in.
    pub hold: Duration,
    /// Logins started per second (the ramp); all at once when `None`.
    pub rate: Option<f64>,
    /// What each post carries; no posts when empty (the fleet only holds).
    pub measurepoints: serde_json::Map<String, serde_json::Value>,
    /// The bound on each wait: the connection, the login, the answers after the hold.
    pub timeout: Duration,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The local addresses devices connect from, round robin; empty: the default, which for
    /// an IPv4 loopback target is `LOOPBACK_SOURCES` addresses of 127.0.0.0/8.
    pub sources: Vec<IpAddr>,
    /// Where the device secrets that dynamic activation gives are written
    /// (`DIR/{product key}/{device key}.secret`, mode 0600), so that the next run finds them
    /// (`kept_secret`); `None`: they are acknowledged and forgotten.
    pub activate_to: Option<std::path::PathBuf>,
}

/// The file a device's secret is kept in under `--activate-to DIR`.
pub(crate) fn kept_secret(dir: &std::path::Path, d: &FleetDevice) -> std::path::PathBuf {
    dir.join(&d.product_key).join(format!("{}.secret", d.device_key))
}

/// How many loopback addresses a fleet against 127.x.x.x spreads its connections over. The
/// kernel picks a connection's local port by searching the ports already used towards that
/// server, and with ten thousand of them in use from one address a `connect()` took
/// milliseconds, stalling every device of the probe's one thread for up to a second (measured:
/// `__inet_check_established` at the top of the profile). Sixteen addresses keep each one's
/// ports sparse.
const LOOPBACK_SOURCES: u8 = 16;

/// Counts every device adds to, read by the timeline each second.
#[derive(Default)]
struct Counts {
    connected: AtomicU64,
    peak: AtomicU64,
    offered: AtomicU64,
    acked: AtomicU64,
    answered: AtomicU64,
    held: AtomicU64,
    login_failed: AtomicU64,
}

/// What the devices record under one lock: histograms and keyed counts.
#[derive(Default)]
struct Tally {
    histograms: BTreeMap<&'static str, Histogram<u64>>,
    codes: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    examples: BTreeMap<String, String>,
    disconnects: BTreeMap<String, u64>,
}

impl Tally {
    fn time(&mut self, stage: &'static str, d: Duration) {
        if !self.histograms.contains_key(stage) {
            let Some(h) = super::load::new_histogram() else {
                return;
            };
            self.histograms.insert(stage, h);
        }
        if let Some(h) = self.histograms.get_mut(stage) {
            let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            let _ = h.record(us.clamp(super::load::LOWEST_US, super::load::HIGHEST_US));
        }
    }

    fn count(map: &mut BTreeMap<String, u64>, key: String) {
        let n = map.entry(key).or_default();
        *n = n.saturating_add(1);
    }

    fn error(&mut self, kind: &str, example: String) {
        Self::count(&mut self.errors, kind.to_string());
        self.examples.entry(kind.to_string()).or_insert(example);
    }
}

struct Shared {
    caps: &'static Capabilities,
    target: Target,
    addr: SocketAddr,
    opts: FleetOptions,
    counts: Counts,
    tally: Mutex<Tally>,
    started: Instant,
    /// The local addresses to connect from (empty: the system's choice).
    sources: Vec<IpAddr>,
    /// Set when binding the default loopback sources failed once (a system with only
    /// 127.0.0.1): from then on the system chooses.
    no_default_sources: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn tally(&self, f: impl FnOnce(&mut Tally)) {
        if let Ok(mut t) = self.tally.lock() {
            f(&mut t);
        }
    }
}

/// Run the fleet against `target` (already resolved to `addr`); `progress` is called once a
/// second with the latest tick.
pub async fn run(
    caps: &'static Capabilities,
    target: Target,
    addr: SocketAddr,
    opts: FleetOptions,
    progress: &(dyn Fn(&Tick, u64) + Sync),
) -> FleetReport {
    run_until(caps, target, addr, opts, progress, std::future::pending()).await
}

/// [`run`] until `stop` completes (Ctrl-C) first: then the devices are dropped where they are
/// and the report, marked interrupted, holds what ran until then.
pub(crate) async fn run_until(
    caps: &'static Capabilities,
    target: Target,
    addr: SocketAddr,
    opts: FleetOptions,
    progress: &(dyn Fn(&Tick, u64) + Sync),
    stop: impl std::future::Future<Output = ()>,
) -> FleetReport {
    let devices = u64::try_from(opts.devices.len()).unwrap_or(u64::MAX);
    let sources = match addr.ip() {
        _ if !opts.sources.is_empty() => opts.sources.clone(),
        IpAddr::V4(ip) if ip.is_loopback() && opts.devices.len() > 1 => (1..=LOOPBACK_SOURCES)
            .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
            .collect(),
        _ => Vec::new(),
    };
    let shared = Arc::new(Shared {
        caps,
        target,
        addr,
        no_default_sources: false.into(),
        opts,
        counts: Counts::default(),
        tally: Mutex::default(),
        started: Instant::now(),
        sources,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..shared.opts.devices.len() {
        let s = shared.clone();
        tasks.spawn(async move { device(&s, i).await });
    }
    let mut timeline = Vec::new();
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    second.tick().await;
    let mut interrupted = None;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => {
                // Still connected when stopped: they held as long as the run lasted.
                interrupted = Some(shared.counts.connected.load(Ordering::Relaxed));
                tasks.abort_all();
                break;
            }
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(())) => {}
                Some(Err(e)) => shared.tally(|t| t.error(ErrorKind::Internal.as_str(), format!("a device task failed: {e}"))),
            },
            _ = second.tick() => {
                let tick = tick_now(&shared);
                progress(&tick, devices);
                if timeline.len() < MAX_TICKS {
                    timeline.push(tick);
                }
            }
        }
    }
    let last = tick_now(&shared);
    if timeline.last().is_none_or(|t| t.t_s != last.t_s || *t != last) {
        timeline.push(last);
    }
    report(&shared, devices, timeline, interrupted)
}

fn tick_now(s: &Shared) -> Tick {
    let c = &s.counts;
    Tick {
        t_s: s.started.elapsed().as_secs(),
        connected: c.connected.load(Ordering::Relaxed),
        offered: c.offered.load(Ordering::Relaxed),
        acked: c.acked.load(Ordering::Relaxed),
        answered: c.answered.load(Ordering::Relaxed),
    }
}

/// One device's connection: bytes in and out with the codec.
struct Wire {
    io: Box<dyn Io>,
    buf: BytesMut,
    out: BytesMut,
}

enum Got {
    Packet(Packet),
    Closed(String),
}

impl Wire {
    fn queue(&mut self, p: Packet) {
        let _ = p.write(&mut self.out, MAX_PACKET);
    }

    async fn flush(&mut self, wait: Duration) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let write = async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        };
        let r = match tokio::time::timeout(wait, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write: {e}")),
            Err(_) => Err("write: the server did not read in time".to_string()),
        };
        self.out = BytesMut::new();
        r
    }

    /// The next packet (cancel-safe: bytes read stay in the buffer).
    async fn next(&mut self) -> Got {
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(p) => return Got::Packet(p),
                Err(CodecError::InsufficientBytes(n)) => {
                    if self.buf.capacity() == self.buf.len() {
                        self.buf.reserve(n.max(256));
                    }
                }
                Err(e) => return Got::Closed(format!("not MQTT: {e}")),
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => return Got::Closed("the server closed the connection".into()),
                Err(e) => return Got::Closed(format!("read: {}", e.kind())),
                Ok(_) => {}
            }
        }
    }
}

/// When device `i` starts, by the ramp.
fn start_of(s: &Shared, i: usize) -> Instant {
    let Some(rate) = s.opts.rate.filter(|r| r.is_finite() && *r > 0.0) else {
        return s.started;
    };
    Duration::try_from_secs_f64(i as f64 / rate)
        .ok()
        .and_then(|d| s.started.checked_add(d))
        .unwrap_or(s.started)
}

/// A socket for device `i`, bound to its local address when the fleet has several.
fn socket(s: &Shared, i: usize) -> Result<tokio::net::TcpSocket, (ErrorKind, String)> {
    let new = || {
        if s.addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(|e| (ErrorKind::Io, format!("cannot open a socket: {e}")))
    };
    let socket = new()?;
    let defaults = s.opts.sources.is_empty();
    if s.sources.is_empty() || defaults && s.no_default_sources.load(Ordering::Relaxed) {
        return Ok(socket);
    }
    let Some(ip) = s.sources.get(i % s.sources.len()) else {
        return Ok(socket);
    };
    match socket.bind(SocketAddr::new(*ip, 0)) {
        Ok(()) => Ok(socket),
        // The default loopback addresses are a convenience: where only 127.0.0.1 exists, the
        // system chooses, for this device and every later one.
        Err(_) if defaults => {
            s.no_default_sources.store(true, Ordering::Relaxed);
            new()
        }
        Err(e) => Err((ErrorKind::Io, format!("--source {ip}: {e}"))),
    }
}

async fn connect(s: &Shared, i: usize) -> Result<Box<dyn Io>, (ErrorKind, String)> {
    let socket = socket(s, i)?;
    let tcp = tokio::time::timeout(s.opts.timeout, socket.connect(s.addr))
        .await
        .map_err(|_| {
            (
                ErrorKind::Timeout,
                "the TCP connection was not accepted in time".to_string(),
            )
        })?
        .map_err(|e| (ErrorKind::Refused, format!("{}: {e}", s.addr)))?;
    let _ = tcp.set_nodelay(true);
    match &s.opts.tls {
        None => Ok(Box::new(tcp)),
        Some(config) => {
            let tls = tokio::time::timeout(
                s.opts.timeout,
                super::tls::connect(config.clone(), &s.target.host, tcp),
            )
            .await
            .map_err(|_| {
                (
                    ErrorKind::Timeout,
                    "the TLS handshake did not finish in time".to_string(),
                )
            })?
            .map_err(|f| (ErrorKind::Tls, f.message))?;
            Ok(Box::new(tls))
        }
    }
}

/// The CONNECT of device `d`: its EnOS login, with its own client id.
fn connect_packet(s: &Shared, d: &FleetDevice) -> Result<Connect, String> {
    let login = Login::Enos {
        product_key: d.product_key.as_str().into(),
        device_key: d.device_key.as_str().into(),
        mode: if d.dynamic { "dynamic" } else { "static" }.into(),
        secret: d.secret.clone().into(),
        timestamp: crate::credentials::now_ms(),
        client_id: None,
        prepared: None,
    };
    let creds = login
        .enos_credentials(s.caps, "mqtt")
        .ok_or("not an EnOS login")?
        .map_err(|f| f.message)?;
    let field = |name: &str| creds.field(name).unwrap_or_default().to_string();
    let mut connect = Connect::new(field("client_id"));
    // Posts keep the connection alive; the keep-alive only has to outlast two intervals.
    let every = s.opts.every.as_secs().saturating_mul(2).saturating_add(30);
    connect.keep_alive = u16::try_from(every).unwrap_or(u16::MAX);
    connect.clean_session = true;
    connect.set_login(field("username"), field("password"));
    Ok(connect)
}

/// One device: connect, log in, hold and post, then leave.
async fn device(s: &Shared, i: usize) {
    let Some(d) = s.opts.devices.get(i) else { return };
    tokio::time::sleep_until(start_of(s, i).into()).await;
    let t0 = Instant::now();
    let io = match connect(s, i).await {
        Ok(io) => io,
        Err((kind, why)) => {
            s.counts.login_failed.fetch_add(1, Ordering::Relaxed);
            s.tally(|t| t.error(kind.as_str(), why));
            return;
        }
    };
    s.tally(|t| t.time("connect", t0.elapsed()));
    let mut w = Wire {
        io,
        buf: BytesMut::new(),
        out: BytesMut::new(),
    };
    if let Err((kind, why)) = log_in(s, d, &mut w).await {
        s.counts.login_failed.fetch_add(1, Ordering::Relaxed);
        s.tally(|t| t.error(&kind, why));
        return;
    }
    let now = s
        .counts
        .connected
        .fetch_add(1, Ordering::Relaxed)
        .saturating_add(1);
    s.counts.peak.fetch_max(now, Ordering::Relaxed);
    let why = hold(s, d, &mut w).await;
    s.counts.connected.fetch_sub(1, Ordering::Relaxed);
    match why {
        None => {
            s.counts.held.fetch_add(1, Ordering::Relaxed);
            w.queue(Packet::Disconnect);
            let _ = w.flush(s.opts.timeout).await;
            // The server closes after a DISCONNECT: waiting for that (bounded) leaves the
            // closed connection's TIME_WAIT on the server's side, so a fleet run right after
            // another finds the local ports free.
            let drain = async { while let Got::Packet(_) = w.next().await {} };
            let _ = tokio::time::timeout(CLOSE_WAIT.min(s.opts.timeout), drain).await;
        }
        Some(why) => s.tally(|t| {
            Tally::count(&mut t.disconnects, why.clone());
            t.error("disconnect", why);
        }),
    }
}

/// The device's CONNECT and the server's CONNACK, timed as `handshake` and counted by code.
/// `Err`: the error kind (or `connack:N`) and what went wrong.
async fn log_in(s: &Shared, d: &FleetDevice, w: &mut Wire) -> Result<(), (String, String)> {
    let t1 = Instant::now();
    let connect = connect_packet(s, d).map_err(|why| (ErrorKind::Auth.as_str().to_string(), why))?;
    w.queue(Packet::Connect(connect));
    w.flush(s.opts.timeout)
        .await
        .map_err(|why| (ErrorKind::Io.as_str().to_string(), why))?;
    let ack = match tokio::time::timeout(s.opts.timeout, w.next()).await {
        Ok(Got::Packet(Packet::ConnAck(a))) => a,
        Ok(Got::Packet(p)) => {
            return Err((
                ErrorKind::Protocol.as_str().to_string(),
                format!("expected CONNACK, got {p:?}"),
            ));
        }
        Ok(Got::Closed(why)) => {
            return Err((
                ErrorKind::Protocol.as_str().to_string(),
                format!("before CONNACK: {why}"),
            ));
        }
        Err(_) => {
            return Err((
                ErrorKind::Timeout.as_str().to_string(),
                "no CONNACK in time".to_string(),
            ));
        }
    };
    let ConnAck { code, .. } = ack;
    let code_n = code as u8;
    s.tally(|t| {
        Tally::count(&mut t.codes, format!("connack:{code_n}"));
        t.time("handshake", t1.elapsed());
    });
    if code != ConnectReturnCode::Success {
        let (kind, words) = super::mqtt::refusal(code);
        let mut why = format!("{}: {words}", kind.as_str());
        if d.dynamic && kind == ErrorKind::Auth {
            why.push_str(&activated_before(s, d));
        }
        return Err((format!("connack:{code_n}"), why));
    }
    Ok(())
}

/// Why a device that logs in with its product's secret may be refused: EnOS activates a device
/// once, and from then on it logs in with the device secret its activation gave.
fn activated_before(s: &Shared, d: &FleetDevice) -> String {
    match &s.opts.activate_to {
        None => "; a device activated by an earlier run logs in with the device secret it was given, \
                 not the product secret: run the fleet with --activate-to DIR to keep the secrets it \
                 activates, and again with the same DIR"
            .into(),
        Some(dir) => format!(
            "; {} holds no secret for it: a device activated by a run without --activate-to DIR \
             needs its device secret (a --devices CSV with a `secret` column)",
            kept_secret(dir, d).display()
        ),
    }
}
