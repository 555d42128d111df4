//! The live connectivity probe: one stage model for MQTT, CoAP and HTTP.
//!
//! Every probe runs its stages in order ([`STAGES`]), each timed, inside one overall deadline:
//! it never hangs and never reconnects on its own (only dynamic activation logs in a second
//! time, as its `relogin` stage). A failure names its stage and one of the error kinds below.
//! With EnOS keys and `--measurepoint` it goes one level up: it posts a measure point and
//! reads EnOS's reply code ([`EnosReply`]).
//!
//! Why over 600 lines: the shared stage model, the login material and the options every
//! protocol's probe reads sit together; each protocol's own work is in its module.

pub mod coap;
pub mod fleet;
pub mod http;
pub mod load;
pub mod matrix;
pub mod mqtt;
pub mod needs;
pub mod tls;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::TcpStream;

use crate::base::Secret;
use crate::capabilities::Capabilities;

/// Why a probe failed. The JSON `error.kind` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Resolve,
    Refused,
    Timeout,
    Tls,
    Auth,
    Protocol,
    Io,
    /// EnOS answered with a code other than 200.
    Enos,
    /// A failure of enos-connect itself (a probe task that panicked), not of the peer.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Resolve => "resolve",
            ErrorKind::Refused => "refused",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::Auth => "auth",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Io => "io",
            ErrorKind::Enos => "enos",
            ErrorKind::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct ProbeError {
    pub kind: ErrorKind,
    pub stage: &'static str,
    pub message: String,
}

/// A failure inside a stage; the stage is filled in by the recorder.
#[derive(Debug)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }

    pub fn io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        // With TLS 1.3 a server refuses a client certificate after the handshake: the alert
        // arrives on the first read, and it is a TLS failure all the same.
        if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
            return tls::explain(e);
        }
        match e.kind() {
            K::ConnectionRefused => {
                Failure::new(ErrorKind::Refused, "connection refused: nothing listens there")
            }
            K::TimedOut | K::WouldBlock => Failure::new(ErrorKind::Timeout, format!("timed out: {e}")),
            K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe => Failure::new(
                ErrorKind::Protocol,
                format!("the peer closed the connection ({e})"),
            ),
            _ => Failure::new(ErrorKind::Io, e.to_string()),
        }
    }
}

/// Every stage name, in the order a probe can pass them.
pub const STAGES: [&str; 11] = [
    "resolve",
    "connect",
    "tls",
    "handshake",
    "request",
    "activate",
    "relogin",
    "subdevice_login",
    "roundtrip",
    "reply",
    "total",
];

/// EnOS's answer to a request the probe sent: the `enos` object of the JSON report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnosReply {
    pub code: i64,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageTiming {
    pub name: &'static str,
    pub ms: f64,
}

/// The result of one probe: the JSON object of `probe --format json`.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub ok: bool,
    pub protocol: String,
    pub target: String,
    /// The address that answered (or was tried last).
    pub address: Option<String>,
    pub stages: Vec<StageTiming>,
    pub error: Option<ProbeError>,
    /// EnOS's reply code and message, whenever a reply arrived.
    pub enos: Option<EnosReply>,
    /// Protocol facts worth showing: CONNACK code, CoAP response code, HTTP status, attempts.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// `--need`: each need's exchange, in the order given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<needs::NeedReport>,
}

impl ProbeReport {
    pub fn timed_out(&self) -> bool {
        self.error.as_ref().is_some_and(|e| e.kind == ErrorKind::Timeout)
    }
}

/// Times stages as they happen; what it holds survives a timeout that drops the probe.
pub struct Recorder {
    started: Instant,
    stage: &'static str,
    stage_started: Instant,
    pub stages: Vec<StageTiming>,
    pub address: Option<SocketAddr>,
    pub details: serde_json::Map<String, serde_json::Value>,
    pub enos: Option<EnosReply>,
    pub verbose: bool,
    pub needs: Vec<needs::NeedReport>,
    /// With a client certificate over TLS: whether the server asked for it.
    pub client_cert_requested: Option<bool>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Recorder {
    pub fn new(verbose: bool) -> Self {
        let now = Instant::now();
        Recorder {
            started: now,
            stage: "resolve",
            stage_started: now,
            stages: Vec::new(),
            address: None,
            details: serde_json::Map::new(),
            enos: None,
            verbose,
            needs: Vec::new(),
            client_cert_requested: None,
        }
    }

    pub fn begin(&mut self, stage: &'static str) {
        self.stage = stage;
        self.stage_started = Instant::now();
    }

    pub fn end(&mut self) {
        self.stages.push(StageTiming {
            name: self.stage,
            ms: ms(self.stage_started.elapsed()),
        });
    }

    pub fn detail(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.details.insert(key.to_string(), value.into());
    }

    /// A line on stderr in --verbose mode: what happened and when.
    pub fn note(&self, text: &str) {
        if self.verbose {
            eprintln!("[{:>9.3} ms] {}: {text}", ms(self.started.elapsed()), self.stage);
        }
    }

    fn finish(mut self, protocol: &str, target: &str, result: Result<(), Failure>) -> ProbeReport {
        let mut error = result.err().map(|f| ProbeError {
            kind: f.kind,
            stage: self.stage,
            message: f.message,
        });
        if error.is_some() {
            // The failing stage is timed too: how long a timeout or a refusal took matters.
            self.end();
        }
        // A need that failed fails the probe, with its own kind (a timeout exits 3).
        if error.is_none()
            && let Some(e) = self.needs.iter().find_map(|n| n.error.clone())
        {
            error = Some(ProbeError {
                message: format!("need: {}", e.message),
                ..e
            });
        }
        self.stages.push(StageTiming {
            name: "total",
            ms: ms(self.started.elapsed()),
        });
        ProbeReport {
            ok: error.is_none(),
            protocol: protocol.to_string(),
            target: target.to_string(),
            address: self.address.map(|a| a.to_string()),
            stages: self.stages,
            error,
            enos: self.enos,
            details: self.details,
            needs: self.needs,
        }
    }

    /// Read EnOS's reply to the request `id` (MQTT matches by id; `None` takes any). `Ok(None)`:
    /// a reply to something else, to be ignored. A reply with a code other than 200 is a
    /// failure of kind `enos` that names the code and its meaning.
    pub fn enos_reply(&mut self, payload: &[u8], id: Option<&str>) -> Result<Option<()>, Failure> {
        let shown =
            || String::from_utf8_lossy(payload.get(..payload.len().min(60)).unwrap_or_default()).into_owned();
        let v: serde_json::Value = serde_json::from_slice(payload).map_err(|_| {
            Failure::new(
                ErrorKind::Protocol,
                format!("the reply is not JSON: {:?}", shown()),
            )
        })?;
        if let Some(want) = id
            && crate::enos::reply_id(&v).as_deref() != Some(want)
        {
            self.note(&format!(
                "ignored a reply to another request ({:?})",
                crate::enos::reply_id(&v)
            ));
            return Ok(None);
        }
        let reply: crate::enos::Reply = serde_json::from_value(v).map_err(|e| {
            Failure::new(
                ErrorKind::Protocol,
                format!("the reply is not an EnOS reply ({e}): {:?}", shown()),
            )
        })?;
        self.enos = Some(EnosReply {
            code: reply.code,
            message: reply.message.clone(),
        });
        if reply.ok() {
            return Ok(Some(()));
        }
        Err(Failure::new(
            ErrorKind::Enos,
            format!(
                "EnOS answered {}",
                crate::enos::describe(reply.code, &reply.message)
            ),
        ))
    }
}

/// The measure point post `--measurepoint` sends: a fresh string id, the points, and now.
pub fn measurepoint_request(points: &serde_json::Map<String, serde_json::Value>) -> crate::enos::Request {
    crate::enos::Request::new(
        crate::enos::new_id(),
        crate::enos::MEASUREPOINT_POST,
        serde_json::json!({"measurepoints": points, "time": crate::credentials::now_ms()}),
    )
}

/// A probe target parsed from a URL: `scheme://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: String,
    pub protocol: String,
    pub secure: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Target {
    /// Parse a probe URL; the scheme picks the protocol and the default port comes from the
    /// capabilities (the EnOS port of that scheme).
    pub fn parse(caps: &Capabilities, url: &str) -> Result<Self, String> {
        let schemes: Vec<String> = caps
            .protocols
            .iter()
            .flat_map(|p| p.ports.iter().map(|x| x.scheme.clone()))
            .collect();
        let help = || {
            format!(
                "use one of {}, for example mqtt://127.0.0.1:11883",
                schemes.join("://, ") + "://"
            )
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` has no scheme; {}", help()))?;
        let scheme = scheme.to_ascii_lowercase();
        let (proto, port) = caps
            .protocols
            .iter()
            .find_map(|p| p.ports.iter().find(|x| x.scheme == scheme).map(|x| (p, x)))
            .ok_or_else(|| format!("unknown scheme `{scheme}://`; {}", help()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not accepted: process lists and logs keep URLs; use --username with ENOS_CONNECT_PASSWORD, or --product-key/--device-key".into());
        }
        let (host, port_text) = if let Some(stripped) = authority.strip_prefix('[') {
            let end = stripped
                .find(']')
                .ok_or_else(|| format!("`{url}`: unclosed `[` in an IPv6 address"))?;
            let after = &stripped[end + 1..];
            (&stripped[..end], after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        let port = match port_text {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("`{p}` is not a port number (1-65535)"))?,
            None => port.port,
        };
        if port == 0 {
            return Err("port 0 cannot be probed".into());
        }
        Ok(Target {
            scheme: scheme.clone(),
            protocol: proto.id.clone(),
            secure: port_security(caps, &scheme) != "none",
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    pub fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{host}:{}{}", self.scheme, self.port, self.path)
    }
}

fn port_security(caps: &Capabilities, scheme: &str) -> String {
    caps.protocols
        .iter()
        .flat_map(|p| p.ports.iter())
        .find(|x| x.scheme == scheme)
        .map_or("none".into(), |x| x.security.clone())
}

/// How to log in: nothing, a plain user name with a password, or the EnOS login.
#[derive(Clone)]
pub enum Login {
    None,
    Plain {
        username: String,
        password: Option<Secret>,
    },
    Enos {
        product_key: String,
        device_key: String,
        mode: String,
        secret: Secret,
        timestamp: u64,
        client_id: Option<String>,
    },
}

impl Login {
    /// The EnOS login material for `protocol`, when the login is an EnOS one.
    pub fn enos_credentials(
        &self,
        caps: &Capabilities,
        protocol: &str,
    ) -> Option<Result<crate::credentials::Credentials, Failure>> {
        let Login::Enos {
            product_key,
            device_key,
            mode,
            secret,
            timestamp,
            client_id,
        } = self
        else {
            return None;
        };
        let req = crate::credentials::CredentialRequest {
            protocol: protocol.into(),
            product_key: product_key.clone(),
            device_key: device_key.clone(),
            mode: mode.clone(),
            client_id: client_id.clone(),
            timestamp: *timestamp,
            lifetime: None,
        };
        Some(
            crate::credentials::compute(caps, &req, secret)
                .map_err(|e| Failure::new(ErrorKind::Auth, e.to_string())),
        )
    }
}

/// A sub-device to log in through the gateway's connection (`--subdevice PK/DK`).
#[derive(Clone)]
pub struct SubDevice {
    pub product_key: String,
    pub device_key: String,
    pub secret: Secret,
}

impl Login {
    /// The secure mode of an EnOS login (`static`, `dynamic`).
    pub fn mode(&self) -> Option<&str> {
        match self {
            Login::Enos { mode, .. } => Some(mode),
            _ => None,
        }
    }

    /// The product and device keys of an EnOS login.
    pub fn enos_keys(&self) -> Option<(&str, &str)> {
        match self {
            Login::Enos {
                product_key,
                device_key,
                ..
            } => Some((product_key, device_key)),
            _ => None,
        }
    }

    /// The same login with the same secret, signed as a securemode-2 login: what a device
    /// trying dynamic activation sends over a protocol whose recipe has no securemode 3.
    pub fn signed_as_static(&self) -> Login {
        let mut l = self.clone();
        if let Login::Enos { mode, .. } = &mut l {
            *mode = "static".into();
        }
        l
    }

    /// The same EnOS device, logging in with securemode 2 and `secret` (after activation).
    pub fn with_device_secret(&self, secret: Secret) -> Login {
        match self {
            Login::Enos {
                product_key,
                device_key,
                client_id,
                ..
            } => Login::Enos {
                product_key: product_key.clone(),
                device_key: device_key.clone(),
                mode: "static".into(),
                secret,
                timestamp: crate::credentials::now_ms(),
                client_id: client_id.clone(),
            },
            Login::None => Login::None,
            Login::Plain { username, .. } => Login::Plain {
                username: username.clone(),
                password: Some(secret),
            },
        }
    }
}

impl ProbeOptions {
    /// The options of probe `n` of a load run: an EnOS login with no client id of its own
    /// gets `{deviceKey}.{n}`, so that the probes of one device, each a connection of its own,
    /// do not take each other over (MQTT-3.1.4-2: a server closes the older connection with
    /// the same client id). The sign covers the client id, so each login is still valid.
    pub fn for_load(&self, n: u64) -> ProbeOptions {
        let mut o = self.clone();
        if let Login::Enos {
            device_key,
            client_id: client_id @ None,
            ..
        } = &mut o.login
        {
            *client_id = Some(format!("{device_key}.{n}"));
        }
        o
    }
}

/// A file for a device secret, readable by its owner only (mode 0600). An existing file is
/// refused unless `force`: a secret is not something to overwrite by accident. Opened before
/// the secret is acknowledged, so a file that cannot be written never costs the secret.
pub fn secret_file(file: &std::path::Path, force: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(!force)
        .create(force)
        .truncate(force)
        .mode(0o600)
        .open(file)?;
    // `mode` only applies to a file created now; a replaced one gets it here.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Write the secret, with a newline, and make it durable.
pub fn write_secret(mut f: std::fs::File, secret: &Secret) -> std::io::Result<()> {
    use std::io::Write;
    let text = zeroize::Zeroizing::new(format!("{}\n", secret.expose_for_login()));
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[derive(Clone)]
pub struct ProbeOptions {
    pub timeout: Duration,
    pub verbose: bool,
    pub login: Login,
    pub client_id: Option<String>,
    pub tls: tls::TlsOptions,
    pub publish: Option<String>,
    pub roundtrip: Option<String>,
    pub qos: u8,
    /// The message or body; each protocol has its own default when it is not given.
    pub payload: Option<Vec<u8>>,
    pub method: Option<String>,
    pub psk: Option<coap::Psk>,
    /// `--measurepoint ID=VALUE`: post these and read EnOS's reply.
    pub measurepoints: Option<serde_json::Map<String, serde_json::Value>>,
    /// Dynamic activation: where to write the device secret EnOS pushes, and whether an
    /// existing file may be replaced.
    pub activate_to: Option<std::path::PathBuf>,
    pub force: bool,
    pub subdevice: Option<SubDevice>,
    /// `--need` and `--matrix`: the exchanges of the features asked for, after the login.
    pub needs: needs::NeedOptions,
}

impl Default for ProbeOptions {
    /// A plain probe: no login, no message, ten seconds.
    fn default() -> Self {
        ProbeOptions {
            timeout: Duration::from_secs(10),
            verbose: false,
            login: Login::None,
            client_id: None,
            tls: tls::TlsOptions::default(),
            publish: None,
            roundtrip: None,
            qos: 1,
            payload: None,
            method: None,
            psk: None,
            measurepoints: None,
            activate_to: None,
            force: false,
            subdevice: None,
            needs: needs::NeedOptions::default(),
        }
    }
}

/// Run one probe to completion or to its deadline.
pub async fn run(caps: &Capabilities, target: &Target, opts: &ProbeOptions) -> ProbeReport {
    let mut rec = Recorder::new(opts.verbose);
    let deadline = Instant::now() + opts.timeout;
    let result = tokio::time::timeout(opts.timeout, async {
        match target.protocol.as_str() {
            "mqtt" => mqtt::probe(caps, target, opts, &mut rec, deadline).await,
            "coap" => coap::probe(caps, target, opts, &mut rec, deadline).await,
            "http" => http::probe(caps, target, opts, &mut rec, deadline).await,
            other => Err(Failure::new(
                ErrorKind::Protocol,
                format!("no probe for protocol `{other}`"),
            )),
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(Failure::new(
            ErrorKind::Timeout,
            format!("no answer within the {:.1} s timeout", opts.timeout.as_secs_f64()),
        ))
    });
    rec.finish(&target.protocol, &target.url(), result)
}

/// Resolve the host: every address, in the order the resolver gives them.
pub async fn resolve(rec: &mut Recorder, target: &Target) -> Result<Vec<SocketAddr>, Failure> {
    rec.begin("resolve");
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| {
            Failure::new(
                ErrorKind::Resolve,
                format!("cannot resolve `{}`: {e}", target.host),
            )
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Failure::new(
            ErrorKind::Resolve,
            format!("`{}` resolves to no address", target.host),
        ));
    }
    rec.note(&format!("{} -> {:?}", target.host, addrs));
    rec.end();
    Ok(addrs)
}

/// Connect over TCP address by address, as curl does; the first that accepts wins.
pub async fn connect_tcp(
    rec: &mut Recorder,
    addrs: &[SocketAddr],
    deadline: Instant,
) -> Result<TcpStream, Failure> {
    rec.begin("connect");
    let mut last = Failure::new(ErrorKind::Io, "no address to connect to");
    for (i, addr) in addrs.iter().enumerate() {
        rec.address = Some(*addr);
        let left = deadline.saturating_duration_since(Instant::now());
        // Leave the later addresses a share of the time, so one black-holed address cannot eat it all.
        let share = left / u32::try_from(addrs.len() - i).unwrap_or(1);
        match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                rec.note(&format!("connected to {addr}"));
                rec.end();
                return Ok(stream);
            }
            Ok(Err(e)) => {
                rec.note(&format!("{addr}: {e}"));
                last = Failure::io(&e);
                last.message = format!("{addr}: {}", last.message);
            }
            Err(_) => {
                rec.note(&format!("{addr}: no answer"));
                last = Failure::new(
                    ErrorKind::Timeout,
                    format!("{addr}: the TCP connection was not accepted in time"),
                );
            }
        }
    }
    Err(last)
}

/// A byte stream to the peer: plain TCP or TLS over it.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Resolve, connect over TCP, and run TLS when the scheme asks for it: the stages every
/// TCP protocol shares.
pub async fn connect_stream(
    rec: &mut Recorder,
    target: &Target,
    opts: &ProbeOptions,
    deadline: Instant,
    alpn: &[&[u8]],
) -> Result<Box<dyn Io>, Failure> {
    let addrs = resolve(rec, target).await?;
    let tcp = connect_tcp(rec, &addrs, deadline).await?;
    if !target.secure {
        return Ok(Box::new(tcp));
    }
    let (config, asked) =
        tls::client_config_asked(&opts.tls, alpn).map_err(|e| Failure::new(ErrorKind::Tls, e))?;
    let stream = tls::handshake(rec, config, &target.host, tcp).await?;
    if let Some(asked) = asked {
        let asked = asked.load(std::sync::atomic::Ordering::Relaxed);
        rec.client_cert_requested = Some(asked);
        rec.detail(
            "client_certificate",
            if asked {
                "requested by the server, sent"
            } else {
                "not requested by the server (one-way TLS)"
            },
        );
    }
    Ok(Box::new(stream))
}

/// A second connection to the address that answered, with TLS where the scheme asks: timed
/// as part of the stage running (dynamic activation's `relogin`), not as stages of its own.
pub async fn reconnect(
    rec: &mut Recorder,
    target: &Target,
    opts: &ProbeOptions,
) -> Result<Box<dyn Io>, Failure> {
    let addr = rec
        .address
        .ok_or_else(|| Failure::new(ErrorKind::Io, "no address to connect to again"))?;
    let tcp = TcpStream::connect(addr).await.map_err(|e| Failure::io(&e))?;
    let _ = tcp.set_nodelay(true);
    if !target.secure {
        return Ok(Box::new(tcp));
    }
    let config = tls::client_config(&opts.tls, &[]).map_err(|e| Failure::new(ErrorKind::Tls, e))?;
    Ok(Box::new(tls::connect(config, &target.host, tcp).await?))
}

/// Time left before the deadline, as an error when there is none.
pub fn left(deadline: Instant) -> Result<Duration, Failure> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(Failure::new(ErrorKind::Timeout, "the timeout ran out"))
    } else {
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_tries_each_address_and_names_the_one_that_answered() {
        let open = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let open_addr = open.local_addr().expect("addr");
        let closed_addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("closed");
        let mut rec = Recorder::new(false);
        let deadline = Instant::now() + Duration::from_secs(5);
        let stream = connect_tcp(&mut rec, &[closed_addr, open_addr], deadline).await;
        assert!(stream.is_ok());
        assert_eq!(rec.address, Some(open_addr));
        let mut rec = Recorder::new(false);
        let err = connect_tcp(&mut rec, &[closed_addr], deadline)
            .await
            .expect_err("refused");
        assert_eq!(err.kind, ErrorKind::Refused);
    }

    #[test]
    fn targets_take_the_enos_port_of_their_scheme() {
        let caps = crate::capabilities::embedded().expect("caps");
        let port = |url: &str| Target::parse(&caps, url).map(|t| t.port);
        assert_eq!(port("mqtt://h"), Ok(11883));
        assert_eq!(port("mqtts://h"), Ok(18883));
        assert_eq!(port("coap://h"), Ok(5683));
        assert_eq!(port("coaps://h"), Ok(5684));
        assert_eq!(port("http://h"), Ok(8080));
        assert_eq!(port("https://h"), Ok(443));
        assert_eq!(port("MQTT://h:1883"), Ok(1883));
        let v6 = Target::parse(&caps, "coap://[::1]:5690/a/b").expect("v6");
        assert_eq!(
            (v6.host.as_str(), v6.port, v6.path.as_str()),
            ("::1", 5690, "/a/b")
        );
        assert_eq!(v6.url(), "coap://[::1]:5690/a/b");
        assert!(Target::parse(&caps, "mqtt://u:p@h").is_err());
        assert!(Target::parse(&caps, "mqtt://[::1").is_err());
    }
}
