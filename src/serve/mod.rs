//! `serve`: a local endpoint that speaks the EnOS device protocol over MQTT, HTTP and CoAP, for
//! testing firmware and CI without the cloud. It checks logins and messages as EnOS documents
//! them ([`crate::enos`], with the signs from the recipes in `capabilities.toml`) and answers
//! as EnOS does. One [`Endpoint`] holds the state every listener shares: the registry, the
//! secrets issued by dynamic activation, HTTP sessions, CoAP bindings and the connected MQTT
//! devices a test can send commands to. Every event is one JSON line on stdout (and in the
//! record file); no secret is ever written anywhere.
//!
//! One module per protocol: [`mqtt`] (on rumqttc's MQTT 3.1.1 codec), [`http`] (hyper's server),
//! [`coap`] (coap-lite over UDP, and webrtc-dtls for DTLS-PSK).

pub mod coap;
pub mod http;
pub mod mqtt;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

use crate::base::Secret;
use crate::capabilities::Capabilities;
use crate::credentials;
use crate::enos::{self, Reply, Request, Upstream};
use crate::registry::Registry;

/// The largest MQTT packet, HTTP body or CoAP datagram accepted: larger is a broken or hostile
/// client, and the connection is closed (HTTP: 413).
pub const MAX_PACKET: usize = 1 << 20;
/// The largest EnOS message answered normally; a larger one gets code 1008 (assumed limit: EnOS
/// documents the code, not the size).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The most connections served at once per listener; more wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 4096;

/// Where `serve` listens and what it logs.
pub struct Options {
    pub mqtt: Option<SocketAddr>,
    pub mqtts: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    pub http: Option<SocketAddr>,
    pub coap: Option<SocketAddr>,
    pub coaps: Option<SocketAddr>,
    pub record: Option<PathBuf>,
    /// How long CONNACK waits: one official SDK misses an instant one.
    pub connack_delay: Duration,
    /// Also write the human-readable log to stderr.
    pub log: bool,
}

/// Who is logged in on a connection or session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub product_key: String,
    pub device_key: String,
}

impl Identity {
    pub fn new(pk: &str, dk: &str) -> Self {
        Identity {
            product_key: pk.to_string(),
            device_key: dk.to_string(),
        }
    }
}

/// A command a test sends to a connected device: the request and where its reply goes.
pub struct Downlink {
    pub topic: String,
    pub request: Request,
    pub reply: oneshot::Sender<Value>,
}

/// One line of the event log.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Event {
    pub event: &'static str,
    pub protocol: &'static str,
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
    pub fn new(event: &'static str, protocol: &'static str) -> Self {
        Event {
            event,
            protocol,
            ..Default::default()
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

/// Where events go: stdout, the record file, and a line for people on stderr; or, for a
/// serve inside another program (the tests), a list in memory.
enum Sink {
    Streams {
        pending: Mutex<Pending>,
        /// Told when a line is pending; [`Endpoint::flusher`] waits on it.
        ready: tokio::sync::Notify,
        record: Mutex<Option<std::fs::File>>,
        log: bool,
    },
    Memory(Arc<Mutex<Vec<String>>>),
}

/// Lines written since the last flush, for stdout (and the record) and for stderr.
#[derive(Default)]
struct Pending {
    out: Vec<u8>,
    err: Vec<u8>,
}

/// The state every listener shares.
pub struct Endpoint {
    pub caps: Capabilities,
    pub registry: Registry,
    pub connack_delay: Duration,
    /// Device secrets issued by dynamic activation, once the device acknowledged them.
    activated: Mutex<HashMap<Identity, Secret>>,
    /// Secrets pushed to a device and not yet acknowledged.
    pending: Mutex<HashMap<Identity, Secret>>,
    /// HTTP sessions: id to device and expiry.
    sessions: Mutex<HashMap<String, (Identity, Instant)>>,
    /// CoAP clients authenticated without DTLS: address to device and expiry.
    coap_bindings: Mutex<HashMap<SocketAddr, (Identity, Instant)>>,
    /// Connected MQTT devices a command can be sent to.
    connected: Mutex<HashMap<Identity, mpsc::Sender<Downlink>>>,
    sink: Sink,
}

/// Why a login was refused, in the words the event log and stderr show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The MQTT CONNACK code (4 bad sign, 5 not authorised, 2 bad client id).
    pub connack: u8,
    /// The EnOS code for HTTP and CoAP (401 bad sign, 402 unknown device).
    pub code: i64,
    pub reason: String,
}

fn refusal(connack: u8, code: i64, reason: impl Into<String>) -> Refusal {
    Refusal {
        connack,
        code,
        reason: reason.into(),
    }
}

impl Endpoint {
    pub fn new(
        caps: Capabilities,
        registry: Registry,
        connack_delay: Duration,
        record: Option<&std::path::Path>,
        log: bool,
    ) -> std::io::Result<Self> {
        let record = match record {
            Some(p) => Some(std::fs::File::create(p)?),
            None => None,
        };
        let sink = Sink::Streams {
            pending: Mutex::default(),
            ready: tokio::sync::Notify::new(),
            record: Mutex::new(record),
            log,
        };
        Ok(Self::with_sink(caps, registry, connack_delay, sink))
    }

    /// An endpoint whose events are kept in the returned list instead of printed.
    pub fn in_memory(
        caps: Capabilities,
        registry: Registry,
        connack_delay: Duration,
    ) -> (Self, Arc<Mutex<Vec<String>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink::Memory(events.clone());
        (Self::with_sink(caps, registry, connack_delay, sink), events)
    }

    fn with_sink(caps: Capabilities, registry: Registry, connack_delay: Duration, sink: Sink) -> Self {
        Endpoint {
            caps,
            registry,
            connack_delay,
            activated: Mutex::default(),
            pending: Mutex::default(),
            sessions: Mutex::default(),
            coap_bindings: Mutex::default(),
            connected: Mutex::default(),
            sink,
        }
    }

    /// One JSON line on stdout and in the record.
    pub fn emit_line(&self, v: &impl Serialize) {
        let Ok(line) = serde_json::to_string(v) else {
            return;
        };
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
                }
                ready.notify_one();
            }
        }
    }

    /// Write one event: a JSON line on stdout and in the record, a sentence on stderr.
    pub fn emit(&self, e: Event) {
        let Ok(line) = serde_json::to_string(&e) else {
            return;
        };
        self.write_line(line);
        if let Sink::Streams {
            pending, log: true, ..
        } = &self.sink
        {
            let who = match (&e.product_key, &e.device_key) {
                (Some(p), Some(d)) => format!(" {p}/{d}"),
                _ => String::new(),
            };
            let mut text = format!("serve: {} {}{who}", e.protocol, e.event);
            for part in [&e.topic, &e.method].into_iter().flatten() {
                text.push_str(&format!(" {part}"));
            }
            if let Some(c) = e.code {
                text.push_str(&format!(" code {c}"));
            }
            if let Some(m) = &e.message {
                text.push_str(&format!(": {m}"));
            }
            if let Ok(mut p) = pending.lock() {
                p.err.extend_from_slice(text.as_bytes());
                p.err.push(b'\n');
            }
        }
    }

    /// Write every pending line to stdout, the record and stderr, and flush them.
    pub fn flush(&self) {
        let Sink::Streams { pending, record, .. } = &self.sink else {
            return;
        };
        let Pending { out, err } = match pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return,
        };
        if !out.is_empty() {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&out);
            let _ = stdout.flush();
            if let Ok(mut r) = record.lock()
                && let Some(f) = r.as_mut()
            {
                let _ = f.write_all(&out);
            }
        }
        if !err.is_empty() {
            let _ = std::io::stderr().lock().write_all(&err);
        }
    }

    /// Write the events out as they come, a batch at a time: after a line is pending, every
    /// task that is ready runs first and adds its own, so a loaded serve makes one write per
    /// batch instead of two per event (which had capped its connection rate), and an idle one
    /// still shows each event at once. Runs until `shutdown`, then writes what is left.
    pub async fn flusher(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let Sink::Streams { ready, .. } = &self.sink else {
            return;
        };
        loop {
            tokio::select! {
                () = ready.notified() => {}
                () = stopped(shutdown.clone()) => break,
            }
            tokio::task::yield_now().await;
            self.flush();
        }
        self.flush();
    }

    /// The device secret a securemode-2 login is checked against: the one issued by
    /// activation, else the registry's.
    fn device_secret(&self, id: &Identity) -> Option<Secret> {
        if let Some(s) = self.activated.lock().ok().and_then(|a| a.get(id).cloned()) {
            return Some(s);
        }
        self.registry
            .device(&id.product_key, &id.device_key)
            .and_then(|d| d.secret.clone())
    }

    fn activated(&self, id: &Identity) -> bool {
        self.device_secret(id).is_some()
    }

    /// Check the EnOS login of an MQTT CONNECT. `Ok` holds the identity and whether the device
    /// logged in to be activated (securemode 3).
    pub fn mqtt_login(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> Result<(Identity, bool), Refusal> {
        let login = enos::MqttLogin::parse(client_id, username).map_err(|e| {
            let connack = if matches!(e, enos::LoginFormat::UserName) {
                4
            } else {
                2
            };
            refusal(connack, 401, format!("not an EnOS login: {e}"))
        })?;
        let id = Identity::new(&login.product_key, &login.device_key);
        self.known(&id)?;
        let secret = match login.secure_mode {
            2 => self.device_secret(&id).ok_or_else(|| {
                refusal(
                    5,
                    401,
                    "the device has no device secret yet: activate it with securemode 3 first",
                )
            })?,
            3 => {
                if self.activated(&id) {
                    return Err(refusal(
                        5,
                        401,
                        "the device is already activated: log in with securemode 2 and the device secret",
                    ));
                }
                self.registry
                    .product(&id.product_key)
                    .and_then(|p| p.secret.clone())
                    .ok_or_else(|| refusal(5, 401, "the product does not allow dynamic activation (no product secret in the registry)"))?
            }
            other => {
                return Err(refusal(
                    5,
                    401,
                    format!("securemode {other} (message integration) is not served here"),
                ));
            }
        };
        let vars = BTreeMap::from([
            ("client_id", login.client_id.clone()),
            ("dk", login.device_key.clone()),
            ("pk", login.product_key.clone()),
            ("timestamp", login.timestamp.clone()),
        ]);
        // No recipe (a trimmed --capabilities file) means nothing can match, not "anything".
        let signed = credentials::expected_sign(&self.caps, "mqtt", &vars, &secret)
            .is_some_and(|expected| enos::sign_matches(&expected, password));
        if !signed {
            return Err(refusal(
                4,
                401,
                "the password is not the signed login (check the secret, the timestamp and the client id)",
            ));
        }
        Ok((id, login.secure_mode == 3))
    }

    /// A registered, enabled device.
    fn known(&self, id: &Identity) -> Result<&crate::registry::Device, Refusal> {
        let device = self
            .registry
            .device(&id.product_key, &id.device_key)
            .ok_or_else(|| {
                refusal(
                    5,
                    402,
                    format!("unknown device {}/{}", id.product_key, id.device_key),
                )
            })?;
        if device.disabled {
            return Err(refusal(5, 401, "the device is disabled"));
        }
        Ok(device)
    }

    /// Check a login made with a recipe's sign over `vars` (HTTP and CoAP auth), with the
    /// device secret.
    pub fn signed_login(
        &self,
        recipe: &str,
        id: &Identity,
        vars: &BTreeMap<&str, String>,
        sign: &str,
    ) -> Result<(), Refusal> {
        self.known(id)?;
        let secret = self
            .device_secret(id)
            .ok_or_else(|| refusal(5, 401, "the device has no device secret yet"))?;
        let signed = credentials::expected_sign(&self.caps, recipe, vars, &secret)
            .is_some_and(|expected| enos::sign_matches(&expected, sign));
        if signed {
            Ok(())
        } else {
            Err(refusal(
                4,
                401,
                "the sign does not match (check the secret and the signed fields)",
            ))
        }
    }

    /// The DTLS key for a PSK identity `pk,dk,securemode,lifetime`, when the device (mode 2)
    /// or its product (mode 3) has a secret.
    pub fn psk_for(&self, identity: &[u8]) -> Option<(Identity, zeroize::Zeroizing<Vec<u8>>)> {
        let text = std::str::from_utf8(identity).ok()?;
        let mut parts = text.split(',');
        let (pk, dk, mode) = (parts.next()?, parts.next()?, parts.next()?);
        let id = Identity::new(pk, dk);
        self.known(&id).ok()?;
        let secret = match mode {
            "2" => self.device_secret(&id)?,
            // As over MQTT: the product secret only for a device not activated yet.
            "3" if !self.activated(&id) => self.registry.product(pk)?.secret.clone()?,
            _ => return None,
        };
        let psk = self.caps.credentials.get("coap")?.psk_key.as_ref()?;
        Some((id, credentials::psk_key(psk, &secret)))
    }

    /// A fresh device secret for a securemode-3 login, held until the device acknowledges it;
    /// `None` when the system's random source fails (no secret is made without it).
    pub fn issue_secret(&self, id: &Identity) -> Option<Secret> {
        let secret = Secret::new(random_hex(16)?);
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id.clone(), secret.clone());
        }
        Some(secret)
    }

    /// The device acknowledged its new secret: from now on only securemode 2 with it logs in.
    pub fn confirm_activation(&self, id: &Identity) -> bool {
        let Some(secret) = self.pending.lock().ok().and_then(|mut p| p.remove(id)) else {
            return false;
        };
        if let Ok(mut a) = self.activated.lock() {
            a.insert(id.clone(), secret);
        }
        true
    }

    /// A new HTTP session for `lifetime`; `None` when the random source fails.
    pub fn open_session(&self, id: &Identity, lifetime: Duration) -> Option<String> {
        let session = random_hex(16)?;
        if let Ok(mut s) = self.sessions.lock() {
            let now = Instant::now();
            s.retain(|_, (_, until)| *until > now);
            make_room(&mut s);
            s.insert(session.clone(), (id.clone(), now + lifetime));
        }
        Some(session)
    }

    pub fn session(&self, session: &str) -> Option<Identity> {
        let s = self.sessions.lock().ok()?;
        s.get(session)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(id, _)| id.clone())
    }

    pub fn bind_coap(&self, peer: SocketAddr, id: &Identity, lifetime: Duration) {
        if let Ok(mut b) = self.coap_bindings.lock() {
            let now = Instant::now();
            b.retain(|_, (_, until)| *until > now);
            make_room(&mut b);
            b.insert(peer, (id.clone(), now + lifetime));
        }
    }

    pub fn coap_identity(&self, peer: SocketAddr) -> Option<Identity> {
        let b = self.coap_bindings.lock().ok()?;
        b.get(&peer)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(id, _)| id.clone())
    }

    pub fn connect_device(&self, id: &Identity, tx: mpsc::Sender<Downlink>) {
        if let Ok(mut c) = self.connected.lock() {
            c.insert(id.clone(), tx);
        }
    }

    pub fn disconnect_device(&self, id: &Identity, tx: &mpsc::Sender<Downlink>) {
        if let Ok(mut c) = self.connected.lock()
            && c.get(id).is_some_and(|t| t.same_channel(tx))
        {
            c.remove(id);
        }
    }

    pub fn device_channel(&self, id: &Identity) -> Option<mpsc::Sender<Downlink>> {
        self.connected.lock().ok()?.get(id).cloned()
    }

    /// Check a sub-device's `combine.login` through the gateway `gw`: the reply code and the
    /// sub-device when it logged in.
    pub fn subdevice_login(&self, gw: &Identity, params: &Value) -> (i64, Option<Identity>, String) {
        let field = |k: &str| text_field(params, k);
        let (Some(pk), Some(dk), Some(sign)) = (field("productKey"), field("deviceKey"), field("sign"))
        else {
            return (
                enos::BAD_FORMAT,
                None,
                "combine.login needs productKey, deviceKey and sign".into(),
            );
        };
        let id = Identity::new(&pk, &dk);
        let Some(device) = self.registry.device(&pk, &dk) else {
            return (enos::SUB_NO_DEVICE, None, format!("no device {pk}/{dk}"));
        };
        if device.disabled {
            return (enos::SUB_DISABLED, None, "the sub-device is disabled".into());
        }
        if !device.under(&gw.product_key, &gw.device_key) {
            return (
                enos::SUB_NOT_IN_TOPOLOGY,
                None,
                format!(
                    "{pk}/{dk} is not in the topology of {}/{}",
                    gw.product_key, gw.device_key
                ),
            );
        }
        if let Some(m) = field("signMethod")
            && !enos::is_sha256(&m)
        {
            return (enos::BAD_FORMAT, None, format!("sign method `{m}` is not sha256"));
        }
        let vars = BTreeMap::from([
            ("client_id", field("clientId").unwrap_or_default()),
            ("dk", dk.clone()),
            ("pk", pk.clone()),
            ("timestamp", field("timestamp").unwrap_or_default()),
        ]);
        let ok = self
            .device_secret(&id)
            .and_then(|s| credentials::expected_sign(&self.caps, "subdevice", &vars, &s))
            .is_some_and(|expected| enos::sign_matches(&expected, &sign));
        if ok {
            (enos::SUCCESS, Some(id), String::new())
        } else {
            (
                enos::SUB_BAD_SIGN,
                None,
                "the sub-device's sign check failed".into(),
            )
        }
    }

    /// Answer one upstream message on `topic`, whose sender the caller already checked may
    /// use it: the reply for `<topic>_reply`, `Raw` for raw bytes, or `NotEnos` for a topic that
    /// carries no EnOS request.
    pub fn answer(&self, protocol: &'static str, topic: &str, payload: &[u8]) -> Answer {
        self.answer_noted(protocol, topic, payload, None)
    }

    /// [`Endpoint::answer`], with a note for the request's event (what came with it).
    pub fn answer_noted(
        &self,
        protocol: &'static str,
        topic: &str,
        payload: &[u8],
        note: Option<&str>,
    ) -> Answer {
        let Some(t) = enos::split(topic) else {
            return Answer::NotEnos;
        };
        let Some(kind) = enos::upstream(&t) else {
            return Answer::NotEnos;
        };
        let id = Identity::new(t.product_key, t.device_key);
        let Upstream::Request(method) = kind else {
            self.emit(
                Event::new("request", protocol)
                    .device(&id)
                    .topic(topic)
                    .message(format!("{} raw bytes", payload.len())),
            );
            return Answer::Raw;
        };
        let (request_id, code, message) = if method.starts_with("combine.") && !protocol.starts_with("mqtt") {
            // Sub-devices log in through a gateway's MQTT connection only.
            let id = serde_json::from_slice::<Value>(payload)
                .ok()
                .as_ref()
                .and_then(enos::reply_id);
            (
                id,
                enos::NO_PERMISSION,
                "sub-devices log in through a gateway's MQTT connection".into(),
            )
        } else {
            self.check(&method, t.product_key, payload)
        };
        let reply = Reply::new(request_id.clone().unwrap_or_default(), code, Value::Null);
        let reply = if message.is_empty() {
            reply
        } else {
            reply.with_message(message.clone())
        };
        let mut e = Event::new("request", protocol)
            .device(&id)
            .topic(topic)
            .method(&method)
            .code(code);
        let words: Vec<&str> = [message.as_str(), note.unwrap_or_default()]
            .into_iter()
            .filter(|w| !w.is_empty())
            .collect();
        if !words.is_empty() {
            e = e.message(words.join("; "));
        }
        self.emit(e);
        Answer::Reply(reply)
    }

    /// The id, the code and a message for a request: checks in the order EnOS documents them.
    fn check(&self, method: &str, pk: &str, payload: &[u8]) -> (Option<String>, i64, String) {
        if payload.is_empty() {
            return (None, enos::EMPTY, String::new());
        }
        if payload.len() > MAX_MESSAGE {
            return (
                None,
                enos::TOO_LARGE,
                format!("{} bytes, more than {MAX_MESSAGE}", payload.len()),
            );
        }
        let Ok(v) = serde_json::from_slice::<Value>(payload) else {
            return (None, enos::BAD_FORMAT, "the payload is not JSON".into());
        };
        let id = enos::reply_id(&v);
        let Some(sent) = v.get("method").and_then(Value::as_str) else {
            return (id, enos::BAD_FORMAT, "the request has no method".into());
        };
        if id.is_none() {
            return (None, enos::BAD_FORMAT, "the request has no id".into());
        }
        if sent != method {
            return (
                id,
                enos::METHOD_MISMATCH,
                format!("method `{sent}` on a topic for `{method}`"),
            );
        }
        let params = v.get("params").unwrap_or(&Value::Null);
        let (code, message) = match method {
            "thing.measurepoint.post" | "thing.measurepoint.resume" => self.check_points(pk, params),
            "thing.measurepoint.post.batch" | "thing.measurepoint.resume.batch" => self.check_batch(params),
            _ if params.is_object() || params.is_array() => (enos::SUCCESS, String::new()),
            _ => (enos::BAD_FORMAT, "params must be an object".into()),
        };
        (id, code, message)
    }

    fn check_points(&self, pk: &str, params: &Value) -> (i64, String) {
        let Some(points) = params.get("measurepoints").and_then(Value::as_object) else {
            return (enos::BAD_FORMAT, "params.measurepoints must be an object".into());
        };
        if let Some(t) = params.get("time")
            && !t.is_u64()
            && !t.is_i64()
        {
            return (
                enos::BAD_FORMAT,
                "params.time must be milliseconds since the epoch".into(),
            );
        }
        let model = self.registry.product(pk).and_then(|p| p.measurepoints.as_ref());
        if let Some(model) = model
            && let Some(unknown) = points.keys().find(|k| !model.contains(k))
        {
            return (
                enos::MODEL_INVALID,
                format!("the product's model has no measure point {unknown}"),
            );
        }
        (enos::SUCCESS, String::new())
    }

    /// A batch answers with its first failing code, as EnOS documents.
    fn check_batch(&self, params: &Value) -> (i64, String) {
        let Some(items) = params.as_array() else {
            return (
                enos::BAD_FORMAT,
                "params must be a list of {productKey, deviceKey, measurepoints}".into(),
            );
        };
        for item in items {
            let Some(pk) = item.get("productKey").and_then(Value::as_str) else {
                return (enos::BAD_FORMAT, "a batch item has no productKey".into());
            };
            let (code, message) = self.check_points(pk, item);
            if code != enos::SUCCESS {
                return (code, message);
            }
        }
        (enos::SUCCESS, String::new())
    }
}

/// A request parameter as text: SDKs send some as strings and some as numbers.
pub fn text_field(params: &Value, key: &str) -> Option<String> {
    match params.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// What an upstream message gets.
#[derive(Debug)]
pub enum Answer {
    Reply(Reply),
    Raw,
    NotEnos,
}

/// Random hex from the TLS stack's secure random source, for secrets and session ids; `None`
/// when the system's random source fails: no secret is made without it.
pub fn random_hex(bytes: usize) -> Option<String> {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; bytes]);
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut buf)
        .ok()?;
    Some(credentials::hex_lower(&buf))
}

/// The most live HTTP sessions or CoAP bindings kept: past it the one expiring first goes, so
/// replayed logins cannot grow the table without bound.
const MAX_SESSIONS: usize = 100_000;

fn make_room<K: Clone + std::hash::Hash + Eq>(table: &mut HashMap<K, (Identity, Instant)>) {
    while table.len() >= MAX_SESSIONS {
        let Some(first) = table
            .iter()
            .min_by_key(|(_, (_, until))| *until)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        table.remove(&first);
    }
}

/// The listeners, bound: their addresses are known before anything is served.
pub struct Bound {
    pub mqtt: Option<tokio::net::TcpListener>,
    pub mqtts: Option<(tokio::net::TcpListener, Arc<rustls::ServerConfig>)>,
    pub http: Option<tokio::net::TcpListener>,
    pub coap: Option<tokio::net::UdpSocket>,
    pub coaps: Option<Arc<dyn webrtc_util::conn::Listener + Send + Sync>>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {message}")]
pub struct BindError {
    pub what: &'static str,
    pub addr: SocketAddr,
    pub message: String,
}

/// Bind every listener asked for.
pub async fn bind(opts: &Options) -> Result<Bound, BindError> {
    let tcp = |what: &'static str, addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr).await.map_err(|e| BindError {
            what,
            addr,
            message: e.to_string(),
        })
    };
    let mqtt = match opts.mqtt {
        Some(a) => Some(tcp("mqtt", a).await?),
        None => None,
    };
    let mqtts = match &opts.mqtts {
        Some((a, config)) => Some((tcp("mqtts", *a).await?, config.clone())),
        None => None,
    };
    let http = match opts.http {
        Some(a) => Some(tcp("http", a).await?),
        None => None,
    };
    let coap = match opts.coap {
        Some(addr) => Some(tokio::net::UdpSocket::bind(addr).await.map_err(|e| BindError {
            what: "coap",
            addr,
            message: e.to_string(),
        })?),
        None => None,
    };
    let coaps = match opts.coaps {
        Some(addr) => Some(coap::dtls_listener(addr).await?),
        None => None,
    };
    Ok(Bound {
        mqtt,
        mqtts,
        http,
        coap,
        coaps,
    })
}

impl Bound {
    /// The first line on stdout: every bound listener's address.
    pub async fn listening(&self) -> Value {
        let mut v = json!({"event": "listening"});
        let addr = |l: &tokio::net::TcpListener| l.local_addr().map(|a| a.to_string()).ok();
        if let Some(l) = &self.mqtt {
            v["mqtt"] = json!(addr(l));
        }
        if let Some((l, _)) = &self.mqtts {
            v["mqtts"] = json!(addr(l));
        }
        if let Some(l) = &self.http {
            v["http"] = json!(addr(l));
        }
        if let Some(s) = &self.coap {
            v["coap"] = json!(s.local_addr().map(|a| a.to_string()).ok());
        }
        if let Some(l) = &self.coaps {
            v["coaps"] = json!(l.addr().await.map(|a| a.to_string()).ok());
        }
        v
    }
}

/// Serve until `shutdown` turns true; then stop accepting, close the connections and return.
pub async fn serve(bound: Bound, endpoint: Arc<Endpoint>, shutdown: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(endpoint.clone().flusher(shutdown.clone()));
    if let Some(l) = bound.mqtt {
        tasks.spawn(mqtt::accept(l, None, endpoint.clone(), shutdown.clone()));
    }
    if let Some((l, config)) = bound.mqtts {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tasks.spawn(mqtt::accept(
            l,
            Some(acceptor),
            endpoint.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(l) = bound.http {
        tasks.spawn(http::accept(l, endpoint.clone(), shutdown.clone()));
    }
    if let Some(s) = bound.coap {
        tasks.spawn(coap::serve_udp(s, endpoint.clone(), shutdown.clone()));
    }
    if let Some(l) = bound.coaps {
        tasks.spawn(coap::serve_dtls(l, endpoint.clone(), shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
    endpoint.flush();
}

/// Accept connections until shutdown, each handled in a task of its own, at most
/// [`MAX_CONNECTIONS`] at once (more wait in the accept queue). At shutdown the listener stops
/// accepting and the connections, which see the shutdown too, get two seconds to close.
pub(crate) async fn accept_each<C, A, F, H, Fut>(mut accept: A, shutdown: watch::Receiver<bool>, handle: H)
where
    A: FnMut() -> F,
    F: std::future::Future<Output = std::io::Result<(C, SocketAddr)>>,
    H: Fn(C, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(shutdown.clone()) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = accept() => {
                let (conn, peer) = match accepted {
                    Ok(c) => c,
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().acquire_owned().await else { break };
                let work = handle(conn, peer);
                conns.spawn(async move {
                    work.await;
                    drop(permit);
                });
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

/// Wait until `shutdown` says stop (or its sender is gone).
pub async fn stopped(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    fn endpoint(caps: Capabilities) -> Endpoint {
        let registry = Registry::parse(&SourceFile::new(
            "r.toml",
            "[[products]]\nkey = \"p\"\nsecret = \"ps\"\n[[devices]]\nproduct = \"p\"\nkey = \"d\"\n",
        ))
        .expect("registry");
        Endpoint::in_memory(caps, registry, Duration::ZERO).0
    }

    #[test]
    fn without_a_recipe_no_login_matches_not_every_login() {
        let mut caps = crate::capabilities::embedded().expect("caps");
        caps.credentials.clear();
        let ep = endpoint(caps);
        let refused = ep.mqtt_login("d|securemode=3,signmethod=sha256,timestamp=1|", "d&p", "");
        assert_eq!(refused.map(|_| ()).map_err(|r| r.connack), Err(4));
    }

    #[test]
    fn an_activated_device_gets_no_psk_for_the_product_secret() {
        let ep = endpoint(crate::capabilities::embedded().expect("caps"));
        assert!(ep.psk_for(b"p,d,3,3600").is_some(), "before activation");
        assert!(ep.psk_for(b"p,d,2,3600").is_none(), "no device secret yet");
        let id = Identity::new("p", "d");
        assert!(ep.issue_secret(&id).is_some());
        assert!(ep.confirm_activation(&id));
        assert!(
            ep.psk_for(b"p,d,3,3600").is_none(),
            "securemode 3 after activation"
        );
        assert!(ep.psk_for(b"p,d,2,3600").is_some());
    }

    #[test]
    fn sub_devices_log_in_over_mqtt_only() {
        let ep = endpoint(crate::capabilities::embedded().expect("caps"));
        let login =
            br#"{"id":"1","method":"combine.login","params":{"productKey":"p","deviceKey":"d","sign":"00"}}"#;
        let Answer::Reply(r) = ep.answer("http", "/ext/session/p/d/combine/login", login) else {
            panic!("a reply");
        };
        assert_eq!(r.code, enos::NO_PERMISSION);
    }
}
