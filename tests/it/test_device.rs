//! A device under test, written for the test suite on rumqttc's MQTT 3.1.1 codec (packet by
//! packet, so each behaviour can be broken on purpose): it logs in as EnOS's SDKs do, posts a
//! measure point with its time at an interval (QoS 1), answers measure point set and get,
//! services and OTA upgrades (progress 0, 50, 100, then the new version), logs its sub-devices
//! in, resends an unacknowledged PUBLISH with DUP, buffers points while offline and resumes
//! them, and reconnects with a jittered backoff. [`Behaviour::well_behaved`] passes every case;
//! each fault of [`Fault`] breaks one behaviour. `device_process` runs it as a process for
//! `device-test --run` (the docs' example).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, Packet, PubAck, Publish};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// One thing the device does wrong on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Never replies to a command.
    NeverReplies,
    /// Replies to commands with an id of its own.
    RepliesWithAnotherId,
    /// Reconnects at once after a drop or a refusal.
    ReconnectsAtOnce,
    /// Every third post names a point outside the product's model.
    PostsOutsideTheModel,
    /// Never resends a QoS 1 PUBLISH that was not acknowledged (not even after a reconnect).
    NeverResends,
    /// Reports the new firmware version without any ota.progress step.
    SkipsOtaProgress,
    /// Trusts any server certificate.
    TrustsAnyCertificate,
    /// Resends an unacknowledged PUBLISH only after a reconnect (as paho does): a warning.
    ResendsOnlyAfterReconnect,
    /// Backs off by doubling, without jitter (as the official SDKs do): a warning.
    NoJitter,
}

/// How the device behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub post_every: Duration,
    /// An unacknowledged QoS 1 PUBLISH is resent (with DUP) this long after it went out.
    pub resend_after: Duration,
    /// The first wait after a drop, grown by `backoff_factor` after each failed attempt, with
    /// jitter: each wait times a factor from a fixed irregular sequence (0.9 to 1.3).
    pub first_backoff: Duration,
    pub backoff_factor: f64,
    pub keep_alive: u16,
    pub faults: Vec<Fault>,
}

impl Behaviour {
    /// Passes every case of the catalogue, at the pace of the suite's tests.
    pub fn well_behaved() -> Self {
        Behaviour {
            post_every: Duration::from_millis(100),
            resend_after: Duration::from_millis(300),
            first_backoff: Duration::from_millis(300),
            backoff_factor: 1.6,
            keep_alive: 60,
            faults: Vec::new(),
        }
    }

    pub fn with(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    fn has(&self, fault: Fault) -> bool {
        self.faults.contains(&fault)
    }
}

/// How it verifies the server over TLS.
#[derive(Debug, Clone)]
pub enum Tls {
    /// Against this CA (PEM), for the name `localhost`.
    Verify(PathBuf),
    /// Not at all.
    AnyCertificate,
}

/// Where the device connects, and who it is.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub tls: Option<Tls>,
    pub pk: String,
    pub dk: String,
    pub secret: String,
    /// Its sub-devices: product key, device key, secret.
    pub subdevices: Vec<(String, String, String)>,
    /// The firmware version it runs first.
    pub version: String,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The jitter of the n-th wait: irregular, so no fixed rule explains the gaps.
const JITTER: [f64; 7] = [1.0, 1.3, 0.9, 1.25, 0.95, 1.2, 1.1];

/// What the device keeps across its connections.
struct State {
    b: Behaviour,
    t: Target,
    pkid: u16,
    request: u64,
    /// QoS 1 PUBLISHes not acknowledged: packet id to (topic, payload, sent, resent).
    unacked: BTreeMap<u16, (String, Vec<u8>, Instant, bool)>,
    /// Points measured while offline: (time, value).
    offline: VecDeque<(i64, f64)>,
    posts: u64,
    version: String,
    /// OTA reports due: (when, topic, request).
    due: VecDeque<(Instant, String, Value)>,
    subs_logged_once: bool,
}

impl State {
    fn next_pkid(&mut self) -> u16 {
        self.pkid = self.pkid.checked_add(1).unwrap_or(1).max(1);
        self.pkid
    }

    fn request(&mut self, method: &str, params: Value) -> Vec<u8> {
        self.request += 1;
        serde_json::to_vec(
            &json!({"id": self.request.to_string(), "version": "1.0", "method": method, "params": params}),
        )
        .unwrap_or_default()
    }

    fn topic(&self, rest: &str) -> String {
        format!("/sys/{}/{}/{rest}", self.t.pk, self.t.dk)
    }

    fn value(&self) -> f64 {
        20.0 + (self.posts % 10) as f64 / 2.0
    }
}

/// Run the device until the task is dropped: connect, serve the session, back off, again.
pub async fn run(t: Target, b: Behaviour) {
    let mut s = State {
        version: t.version.clone(),
        b,
        t,
        pkid: 0,
        request: 0,
        unacked: BTreeMap::new(),
        offline: VecDeque::new(),
        posts: 0,
        due: VecDeque::new(),
        subs_logged_once: false,
    };
    let mut failures: i32 = 0;
    loop {
        if let Some(io) = connect(&s).await {
            failures = 0;
            session(&mut s, io).await;
        } else {
            failures += 1;
        }
        if s.b.has(Fault::NeverResends) {
            s.unacked.clear();
        }
        let wait = if s.b.has(Fault::ReconnectsAtOnce) {
            Duration::from_millis(5)
        } else if s.b.has(Fault::NoJitter) {
            s.b.first_backoff.mul_f64(2f64.powi(failures))
        } else {
            let n = usize::try_from(failures).unwrap_or_default();
            s.b.first_backoff
                .mul_f64(s.b.backoff_factor.powi(failures) * JITTER[n % JITTER.len()])
                .min(Duration::from_secs(60))
        };
        // Offline: the points it measures wait for the reconnect.
        let until = Instant::now() + wait;
        while Instant::now() < until {
            tokio::time::sleep(
                s.b.post_every
                    .min(until.saturating_duration_since(Instant::now())),
            )
            .await;
            if s.offline.len() < 1000 {
                s.offline.push_back((now_ms(), s.value()));
            }
        }
    }
}

/// TCP (and TLS), CONNECT, CONNACK 0: the connection, or `None`.
async fn connect(s: &State) -> Option<Box<dyn Io>> {
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(s.t.addr))
        .await
        .ok()?
        .ok()?;
    let _ = tcp.set_nodelay(true);
    let mut io: Box<dyn Io> = match &s.t.tls {
        None => Box::new(tcp),
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(client_config(tls));
            let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
            let stream = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
                .await
                .ok()?
                .ok()?;
            Box::new(stream)
        }
    };
    let (client_id, username, password) = login(&s.t.pk, &s.t.dk, &s.t.secret);
    let mut c = Connect::new(client_id);
    c.keep_alive = s.b.keep_alive;
    c.set_login(username, password);
    write(&mut io, Packet::Connect(c)).await?;
    let mut buf = BytesMut::new();
    match tokio::time::timeout(Duration::from_secs(5), read(&mut io, &mut buf)).await {
        Ok(Some(Packet::ConnAck(a))) if a.code as u8 == 0 => Some(io),
        _ => None,
    }
}

/// The CONNECT fields of an EnOS login (securemode 2), signed now.
fn login(pk: &str, dk: &str, secret: &str) -> (String, String, String) {
    let c = credentials("mqtt", pk, dk, secret);
    let f = |n: &str| c.field(n).unwrap_or_default().to_string();
    (f("client_id"), f("username"), f("password"))
}

fn credentials(protocol: &str, pk: &str, dk: &str, secret: &str) -> enos_connect::credentials::Credentials {
    let req = enos_connect::credentials::CredentialRequest {
        protocol: protocol.into(),
        product_key: pk.into(),
        device_key: dk.into(),
        mode: "static".into(),
        client_id: None,
        timestamp: u64::try_from(now_ms()).unwrap_or_default(),
        lifetime: None,
    };
    let caps = enos_connect::capabilities::embedded().expect("the embedded capabilities");
    enos_connect::credentials::compute(&caps, &req, &enos_connect::secret::Secret::new(secret.into()))
        .expect("credentials")
}

async fn write(io: &mut Box<dyn Io>, p: Packet) -> Option<()> {
    let mut out = BytesMut::new();
    p.write(&mut out, 1 << 20).ok()?;
    tokio::time::timeout(Duration::from_secs(5), io.write_all(&out))
        .await
        .ok()?
        .ok()
}

/// The next packet; `None` when the connection ends.
async fn read(io: &mut Box<dyn Io>, buf: &mut BytesMut) -> Option<Packet> {
    loop {
        match Packet::read(buf, 1 << 20) {
            Ok(p) => return Some(p),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(_) => return None,
        }
        if io.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// A QoS 1 PUBLISH, kept until its PUBACK.
async fn publish1(s: &mut State, io: &mut Box<dyn Io>, topic: &str, payload: Vec<u8>) -> Option<()> {
    let pkid = s.next_pkid();
    let mut p = Publish::new(topic, QoS::AtLeastOnce, payload.clone());
    p.pkid = pkid;
    if s.unacked.len() >= 100
        && let Some(oldest) = s.unacked.keys().next().copied()
    {
        s.unacked.remove(&oldest);
    }
    s.unacked
        .insert(pkid, (topic.to_string(), payload, Instant::now(), false));
    write(io, Packet::Publish(p)).await
}

async fn publish0(io: &mut Box<dyn Io>, topic: &str, payload: Vec<u8>) -> Option<()> {
    write(io, Packet::Publish(Publish::new(topic, QoS::AtMostOnce, payload))).await
}

/// What the device sends as a connection opens: its version, its sub-devices, the points it
/// measured offline, and what was not acknowledged.
async fn on_connect(s: &mut State, io: &mut Box<dyn Io>) -> Option<()> {
    let inform = s.request("ota.inform", json!({"version": s.version}));
    publish1(s, io, &s.topic("ota/device/inform"), inform).await?;
    for (pk, dk, secret) in s.t.subdevices.clone() {
        let c = credentials("subdevice", &pk, &dk, &secret);
        let params: serde_json::Map<String, Value> =
            c.fields.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let body = s.request("combine.login", Value::Object(params));
        let topic = format!("/ext/session/{}/{}/combine/login", s.t.pk, s.t.dk);
        publish1(s, io, &topic, body).await?;
    }
    s.subs_logged_once = true;
    while let Some((time, value)) = s.offline.pop_front() {
        let body = s.request(
            "thing.measurepoint.resume",
            json!({"measurepoints": {"temp": value}, "time": time}),
        );
        publish1(s, io, &s.topic("thing/measurepoint/resume"), body).await?;
    }
    let pending: Vec<(u16, String, Vec<u8>)> = s
        .unacked
        .iter()
        .map(|(k, (t, p, _, _))| (*k, t.clone(), p.clone()))
        .collect();
    for (pkid, topic, payload) in pending {
        let mut p = Publish::new(topic, QoS::AtLeastOnce, payload);
        p.pkid = pkid;
        p.dup = true;
        write(io, Packet::Publish(p)).await?;
        if let Some(e) = s.unacked.get_mut(&pkid) {
            e.2 = Instant::now();
            e.3 = true;
        }
    }
    Some(())
}

/// One connection, until it ends.
async fn session(s: &mut State, mut io: Box<dyn Io>) {
    if on_connect(s, &mut io).await.is_none() {
        return;
    }
    let mut buf = BytesMut::new();
    let mut post = tokio::time::interval(s.b.post_every);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut last_sent = Instant::now();
    loop {
        let ok = tokio::select! {
            packet = read(&mut io, &mut buf) => match packet {
                Some(p) => incoming(s, &mut io, p).await,
                None => None,
            },
            _ = post.tick() => {
                s.posts += 1;
                let point = if s.b.has(Fault::PostsOutsideTheModel) && s.posts.is_multiple_of(3) { "humidity" } else { "temp" };
                let body = s.request("thing.measurepoint.post", json!({"measurepoints": {point: s.value()}, "time": now_ms()}));
                last_sent = Instant::now();
                publish1(s, &mut io, &s.topic("thing/measurepoint/post"), body).await
            }
            _ = tick.tick() => housekeeping(s, &mut io, &mut last_sent).await,
        };
        if ok.is_none() {
            return;
        }
    }
}

/// Resends, OTA reports that are due, and PINGREQ when nothing went out for half the
/// keep-alive.
async fn housekeeping(s: &mut State, io: &mut Box<dyn Io>, last_sent: &mut Instant) -> Option<()> {
    if !s.b.has(Fault::NeverResends) && !s.b.has(Fault::ResendsOnlyAfterReconnect) {
        let late: Vec<u16> = s
            .unacked
            .iter()
            .filter(|(_, (_, _, sent, resent))| !resent && sent.elapsed() >= s.b.resend_after)
            .map(|(k, _)| *k)
            .collect();
        for pkid in late {
            if let Some((topic, payload, sent, resent)) = s.unacked.get_mut(&pkid) {
                let mut p = Publish::new(topic.as_str(), QoS::AtLeastOnce, payload.clone());
                p.pkid = pkid;
                p.dup = true;
                *sent = Instant::now();
                *resent = true;
                write(io, Packet::Publish(p)).await?;
            }
        }
    }
    while s.due.front().is_some_and(|(at, _, _)| *at <= Instant::now()) {
        let Some((_, topic, body)) = s.due.pop_front() else {
            break;
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        publish1(s, io, &topic, bytes).await?;
    }
    if last_sent.elapsed() >= Duration::from_secs(u64::from(s.b.keep_alive) / 2) {
        *last_sent = Instant::now();
        write(io, Packet::PingReq).await?;
    }
    Some(())
}

/// A packet from serve: PUBACK, or a command to answer.
async fn incoming(s: &mut State, io: &mut Box<dyn Io>, p: Packet) -> Option<()> {
    let publish = match p {
        Packet::PubAck(a) => {
            s.unacked.remove(&a.pkid);
            return Some(());
        }
        Packet::Publish(p) => p,
        _ => return Some(()),
    };
    if publish.qos == QoS::AtLeastOnce {
        write(io, Packet::PubAck(PubAck::new(publish.pkid))).await?;
    }
    let topic = publish.topic.clone();
    if topic.ends_with("_reply") {
        return Some(());
    }
    let Ok(command) = serde_json::from_slice::<Value>(&publish.payload) else {
        return Some(());
    };
    if s.b.has(Fault::NeverReplies) {
        return Some(());
    }
    let id = command["id"].as_str().unwrap_or_default().to_string();
    let id = if s.b.has(Fault::RepliesWithAnotherId) {
        format!("9{}", s.request)
    } else {
        id
    };
    let data = if topic.ends_with("/thing/service/measurepoint/get") {
        json!({"temp": s.value()})
    } else {
        json!({})
    };
    if topic.ends_with("/ota/device/upgrade") {
        let target = command["params"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        ota(s, &target);
    }
    let reply = json!({"id": id, "code": 200, "data": data, "message": ""});
    publish0(
        io,
        &format!("{topic}_reply"),
        serde_json::to_vec(&reply).unwrap_or_default(),
    )
    .await
}

/// Schedule the reports of an upgrade to `target`.
fn ota(s: &mut State, target: &str) {
    let start = Instant::now();
    let steps: &[i64] = if s.b.has(Fault::SkipsOtaProgress) {
        &[]
    } else {
        &[0, 50, 100]
    };
    let mut at = start;
    for step in steps {
        at += Duration::from_millis(50);
        let body = json!({"id": format!("ota-{step}"), "version": "1.0", "method": "ota.progress", "params": {"step": step.to_string(), "desc": "upgrading"}});
        s.due.push_back((at, s.topic("ota/device/progress"), body));
    }
    at += Duration::from_millis(50);
    let body =
        json!({"id": "ota-inform", "version": "1.0", "method": "ota.inform", "params": {"version": target}});
    s.due.push_back((at, s.topic("ota/device/inform"), body));
    s.version = target.to_string();
}

/// A client configuration that verifies the server against the CA, or not at all.
fn client_config(tls: &Tls) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let config = match tls {
        Tls::Verify(ca) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).expect("the CA").flatten() {
                roots.add(c).expect("a CA certificate");
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Tls::AnyCertificate => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(TrustsAnything(provider)))
            .with_no_client_auth(),
    };
    Arc::new(config)
}

/// The fault of a device that does not verify the server.
#[derive(Debug)]
struct TrustsAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for TrustsAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The device as a process, for `device-test --run` (the docs' example): it connects to
/// `ENOS_CONNECT_MQTT_URL`, as `ENOS_PRODUCT_KEY`/`ENOS_DEVICE_KEY` with `ENOS_DEVICE_SECRET`,
/// logs in the sub-device `ENOS_TEST_SUBDEVICE` (`PK/DK`) with `ENOS_SUBDEVICE_SECRET`, and
/// keeps the pace of a small real device: a post every half second, a resend after 1 s, a first
/// backoff of 1.05 s growing by 1.3 with jitter.
#[test]
#[ignore = "a device process for device-test --run: started by the docs' example, runs until stopped"]
fn device_process() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let url = var("ENOS_CONNECT_MQTT_URL");
    let addr: SocketAddr = url
        .trim_start_matches("mqtt://")
        .parse()
        .expect("ENOS_CONNECT_MQTT_URL is mqtt://IP:PORT");
    let subdevices = var("ENOS_TEST_SUBDEVICE")
        .split_once('/')
        .map(|(p, d)| vec![(p.to_string(), d.to_string(), var("ENOS_SUBDEVICE_SECRET"))])
        .unwrap_or_default();
    let target = Target {
        addr,
        tls: None,
        pk: var("ENOS_PRODUCT_KEY"),
        dk: var("ENOS_DEVICE_KEY"),
        secret: var("ENOS_DEVICE_SECRET"),
        subdevices,
        version: "1.0".into(),
    };
    let behaviour = Behaviour {
        post_every: Duration::from_millis(500),
        resend_after: Duration::from_secs(1),
        first_backoff: Duration::from_millis(1050),
        backoff_factor: 1.3,
        keep_alive: 60,
        faults: Vec::new(),
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "test device {}/{} connecting to {url}", target.pk, target.dk);
        let _ = out.flush();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(target, behaviour));
}
