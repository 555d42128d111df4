//! Real peers on loopback for the probe tests: an MQTT 3.1.1 broker on rumqttc's codec, a TLS
//! front made with rcgen certificates, a CoAP server built on coap-lite, a webrtc-dtls DTLS-PSK
//! server, an HTTP/1.1 server, and scripted TCP peers for misbehaviour. Each binds port 0 and
//! holds its socket, so a port is never freed and then taken again.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// An MQTT 3.1.1 broker for the probe tests, on rumqttc's packet codec: CONNECT (checked
/// against `auth`, user name to password, refused with CONNACK 5 as mosquitto does),
/// SUBSCRIBE with `+` and `#`, PUBLISH at QoS 0 and 1 delivered to every matching
/// subscription (the publisher's own included), PINGREQ and DISCONNECT. It binds port 0 and
/// keeps the socket, so no other process can take the port between choosing and binding.
pub fn broker(auth: &[(&str, &str)]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let auth: Arc<Vec<(String, String)>> =
        Arc::new(auth.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect());
    let subscribers: Arc<std::sync::Mutex<Vec<Subscriber>>> = Arc::default();
    thread::spawn(move || {
        for (id, stream) in listener.incoming().flatten().enumerate() {
            let (auth, subscribers) = (auth.clone(), subscribers.clone());
            thread::spawn(move || broker_connection(id, stream, &auth, &subscribers));
        }
    });
    addr
}

/// Write one MQTT packet; a peer that went away is not the test's concern here.
pub fn send_packet(stream: &mut TcpStream, packet: rumqttc::mqttbytes::v4::Packet) {
    let mut out = bytes::BytesMut::new();
    if packet.write(&mut out, 1 << 20).is_ok() {
        let _ = stream.write_all(&out);
    }
}

struct Subscriber {
    connection: usize,
    filter: String,
    out: TcpStream,
}

fn broker_connection(
    id: usize,
    mut stream: TcpStream,
    auth: &[(String, String)],
    subscribers: &std::sync::Mutex<Vec<Subscriber>>,
) {
    use rumqttc::mqttbytes::QoS;
    use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet, PubAck, SubAck, SubscribeReasonCode};
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let send = send_packet;
    let mut buf = bytes::BytesMut::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    'read: loop {
        loop {
            let packet = match Packet::read(&mut buf, 1 << 20) {
                Ok(p) => p,
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => break,
                Err(_) => break 'read,
            };
            match packet {
                Packet::Connect(c) => {
                    let allowed = auth.is_empty()
                        || c.login
                            .as_ref()
                            .is_some_and(|l| auth.iter().any(|(u, p)| *u == l.username && *p == l.password));
                    let code = if allowed {
                        ConnectReturnCode::Success
                    } else {
                        ConnectReturnCode::NotAuthorized
                    };
                    send(&mut stream, Packet::ConnAck(ConnAck::new(code, false)));
                    if !allowed {
                        break 'read;
                    }
                }
                Packet::Subscribe(s) => {
                    let mut codes = Vec::new();
                    for f in &s.filters {
                        if let Ok(out) = stream.try_clone()
                            && let Ok(mut subs) = subscribers.lock()
                        {
                            subs.push(Subscriber {
                                connection: id,
                                filter: f.path.clone(),
                                out,
                            });
                        }
                        codes.push(SubscribeReasonCode::Success(f.qos));
                    }
                    send(&mut stream, Packet::SubAck(SubAck::new(s.pkid, codes)));
                }
                Packet::Publish(p) => {
                    if p.qos == QoS::AtLeastOnce {
                        send(&mut stream, Packet::PubAck(PubAck::new(p.pkid)));
                    }
                    if let Ok(mut subs) = subscribers.lock() {
                        for sub in subs
                            .iter_mut()
                            .filter(|s| rumqttc::mqttbytes::matches(&p.topic, &s.filter))
                        {
                            let mut copy = p.clone();
                            copy.pkid = if copy.qos == QoS::AtLeastOnce { 1 } else { 0 };
                            send(&mut sub.out, Packet::Publish(copy));
                        }
                    }
                }
                Packet::PingReq => send(&mut stream, Packet::PingResp),
                Packet::Disconnect => break 'read,
                _ => {}
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    if let Ok(mut subs) = subscribers.lock() {
        subs.retain(|s| s.connection != id);
    }
}

/// A CA and a server certificate for `names`, written as PEM files, plus a client certificate
/// and key signed by the same CA (for two-way TLS).
pub struct Pki {
    /// Holds the PEM files for as long as the peer lives.
    pub _dir: tempfile::TempDir,
    pub ca: PathBuf,
    /// The server's certificate and key as PEM files (for `serve --mqtts`).
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub server_config: Arc<rustls::ServerConfig>,
    /// The same server, but it requires a client certificate signed by the CA.
    pub mutual_config: Arc<rustls::ServerConfig>,
}

pub fn pki(names: &[&str], expired: bool) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "enos-connect test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).expect("write ca");
    let server_cert = dir.path().join("server.pem");
    let server_key = dir.path().join("server.key");
    std::fs::write(&server_cert, cert.pem()).expect("write server cert");
    std::fs::write(&server_key, key.serialize_pem()).expect("write server key");
    let chain = vec![cert.der().clone()];
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key_der.clone_key())
        .expect("server config");
    let client_key = KeyPair::generate().expect("client key");
    let client = CertificateParams::new(vec!["device-1".to_string()])
        .expect("client params")
        .signed_by(&client_key, &issuer)
        .expect("client cert");
    let client_cert = dir.path().join("client.pem");
    let client_key_path = dir.path().join("client.key");
    std::fs::write(&client_cert, client.pem()).expect("write client cert");
    std::fs::write(&client_key_path, client_key.serialize_pem()).expect("write client key");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("ca root");
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .expect("client verifier");
    let mutual_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .expect("mutual server config");
    Pki {
        _dir: dir,
        ca: ca_path,
        server_cert,
        server_key,
        client_cert,
        client_key: client_key_path,
        server_config: Arc::new(server_config),
        mutual_config: Arc::new(mutual_config),
    }
}

/// A TLS front: terminates TLS and relays the bytes to `backend` (a real broker or server).
pub fn tls_front(config: Arc<rustls::ServerConfig>, backend: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = config.clone();
            thread::spawn(move || relay_tls(config, stream, backend));
        }
    });
    addr
}

fn relay_tls(config: Arc<rustls::ServerConfig>, stream: TcpStream, backend: SocketAddr) {
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let Ok(mut back) = TcpStream::connect(backend) else {
        return;
    };
    let _ = tls.sock.set_read_timeout(Some(Duration::from_millis(5)));
    let _ = back.set_read_timeout(Some(Duration::from_millis(5)));
    let mut buf = [0u8; 16384];
    // A small poll loop: enough for one probe at a time, and simple to reason about.
    for _ in 0..200_000 {
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if back.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
        match back.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// A TCP peer that runs `script` on every connection it accepts.
pub fn tcp_peer(script: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let script = Arc::new(script);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let script = script.clone();
            thread::spawn(move || script(stream));
        }
    });
    addr
}

/// A minimal HTTP/1.1 server: `handler(method, path, body) -> (status line, headers, body)`.
pub fn http_server(
    handler: impl Fn(&str, &str, &[u8]) -> (String, Vec<(String, String)>, Vec<u8>) + Send + Sync + 'static,
) -> SocketAddr {
    tcp_peer(move |mut s| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut first = head.lines().next().unwrap_or_default().split(' ');
        let (method, path) = (
            first.next().unwrap_or_default().to_string(),
            first.next().unwrap_or_default().to_string(),
        );
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < len {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        let (status, headers, out) = handler(&method, &path, &body);
        let mut resp = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            out.len()
        );
        for (k, v) in headers {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        let _ = s.write_all(resp.as_bytes());
        let _ = s.write_all(&out);
    })
}

/// A CoAP server on a UDP socket built with coap-lite: answers pings with RST, `GET /time`
/// with 2.05 Content, other paths with 4.04. `silent` drops everything.
/// The answer of a test CoAP server to one datagram: a reset to a ping, else a piggy-backed
/// ACK with what `answer` gives for the request's path; nothing for what is not CoAP.
fn coap_reply(
    bytes: &[u8],
    answer: impl Fn(&[&str]) -> (coap_lite::ResponseType, Vec<u8>),
) -> Option<Vec<u8>> {
    use coap_lite::{MessageClass, MessageType, Packet};
    let req = Packet::from_bytes(bytes).ok()?;
    let mut reply = Packet::new();
    reply.header.set_version(1);
    reply.header.message_id = req.header.message_id;
    if req.header.code == MessageClass::Empty {
        reply.header.set_type(MessageType::Reset);
    } else {
        reply.header.set_type(MessageType::Acknowledgement);
        reply.set_token(req.get_token().to_vec());
        let path: Vec<String> = req
            .get_option(coap_lite::CoapOption::UriPath)
            .map(|segs| {
                segs.iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let (code, payload) = answer(&path);
        reply.header.code = MessageClass::Response(code);
        reply.payload = payload;
    }
    reply.to_bytes().ok()
}

pub fn coap_server(silent: bool) -> SocketAddr {
    use coap_lite::ResponseType;
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let addr = sock.local_addr().expect("addr");
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if silent {
                continue;
            }
            let reply = coap_reply(&buf[..n], |path| match path {
                ["time"] => (ResponseType::Content, b"Nov 25 09:00:00".to_vec()),
                _ => (ResponseType::NotFound, Vec::new()),
            });
            if let Some(bytes) = reply {
                let _ = sock.send_to(&bytes, from);
            }
        }
    });
    addr
}

/// A DTLS-PSK (TLS_PSK_WITH_AES_128_CCM_8) CoAP server built with webrtc-dtls: `identity` and
/// `key` must match; it answers pings with RST and `GET /time` with 2.05.
pub fn dtls_coap_server(identity: &'static str, key: &'static [u8]) -> SocketAddr {
    use coap_lite::ResponseType;
    use webrtc_dtls::cipher_suite::CipherSuiteId;
    use webrtc_dtls::config::{Config, ExtendedMasterSecretType};
    use webrtc_util::conn::Listener;
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async move {
            let config = Config {
                psk: Some(Arc::new(move |hint: &[u8]| {
                    if hint == identity.as_bytes() {
                        Ok(key.to_vec())
                    } else {
                        Ok(b"no such identity".to_vec())
                    }
                })),
                psk_identity_hint: Some(b"enos-connect test".to_vec()),
                cipher_suites: vec![CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8],
                extended_master_secret: ExtendedMasterSecretType::Request,
                ..Default::default()
            };
            let Ok(listener) = webrtc_dtls::listener::listen("127.0.0.1:0", config).await else {
                return;
            };
            let Ok(addr) = listener.addr().await else { return };
            let _ = tx.send(addr);
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    while let Ok(n) = conn.recv(&mut buf).await {
                        let reply =
                            coap_reply(&buf[..n], |_| (ResponseType::Content, b"secure time".to_vec()));
                        if let Some(bytes) = reply {
                            let _ = conn.send(&bytes).await;
                        }
                    }
                });
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the DTLS server started")
}

/// An EnOS endpoint (the library's `serve`) inside this process, every listener on port 0,
/// its events kept in memory. Stopped when dropped.
pub struct Enos {
    pub mqtt: SocketAddr,
    /// With [`enos_mqtts`]: MQTT over TLS.
    pub mqtts: Option<SocketAddr>,
    pub http: SocketAddr,
    /// With [`enos_tls`]: HTTP over (one-way) TLS.
    pub https: Option<SocketAddr>,
    pub coap: SocketAddr,
    pub coaps: SocketAddr,
    pub events: Arc<std::sync::Mutex<Vec<String>>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Enos {
    /// Every event so far, one JSON line each.
    pub fn events(&self) -> String {
        self.events.lock().map(|e| e.join("\n")).unwrap_or_default()
    }
}

impl Drop for Enos {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The registry most EnOS-level tests use. The secrets are canaries: no output may hold them.
pub const REGISTRY: &str = r#"
[[products]]
key = "pk1"
secret = "Product-Canary-7f3"
measurepoints = ["temp", "on", "label"]

[[devices]]
product = "pk1"
key = "dk1"
secret = "Device-Canary-9a1"

[[devices]]
product = "pk1"
key = "fresh1"

[[devices]]
product = "pk1"
key = "fresh2"

[[devices]]
product = "pk1"
key = "sub1"
secret = "Sub-Canary-4c2"
gateway = "pk1/dk1"

[[devices]]
product = "pk1"
key = "stranger"
secret = "Sub-Canary-4c2"

[[devices]]
product = "pk1"
key = "off1"
secret = "Device-Canary-9a1"
disabled = true

[[products]]
key = "pk2"

[[devices]]
product = "pk2"
key = "d2"
"#;

pub const SECRETS: [&str; 3] = ["Product-Canary-7f3", "Device-Canary-9a1", "Sub-Canary-4c2"];

pub fn enos(registry: &str) -> Enos {
    enos_with(registry, None)
}

/// [`enos`] holding at most `max_connections` MQTT logins, and apart from them as many open
/// HTTP connections (serve's `--max-connections`).
pub fn enos_with(registry: &str, max_connections: Option<usize>) -> Enos {
    enos_full(registry, max_connections, None, None)
}

/// [`enos`] with an MQTT-over-TLS listener too, on `tls` (serve's `--mqtts`; a configuration
/// that verifies client certificates is serve's `--client-ca`).
pub fn enos_mqtts(registry: &str, tls: Arc<rustls::ServerConfig>) -> Enos {
    enos_full(registry, None, Some(tls), None)
}

/// [`enos_mqtts`] with an HTTPS listener too, on `https` (serve's `--https`, which is one-way:
/// serve builds its configuration without client authentication), and at most
/// `max_connections` of each kind when given.
pub fn enos_tls(
    registry: &str,
    mqtts: Arc<rustls::ServerConfig>,
    https: Arc<rustls::ServerConfig>,
    max_connections: Option<usize>,
) -> Enos {
    enos_full(registry, max_connections, Some(mqtts), Some(https))
}

fn enos_full(
    registry: &str,
    max_connections: Option<usize>,
    tls: Option<Arc<rustls::ServerConfig>>,
    https: Option<Arc<rustls::ServerConfig>>,
) -> Enos {
    use enos_connect::serve::{Endpoint, Options, bind, serve};
    let registry = enos_connect::registry::Registry::parse(&enos_connect::source_text::SourceFile::new(
        "registry.toml",
        registry,
    ))
    .expect("a valid registry");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async move {
            let caps = enos_connect::capabilities::embedded().expect("caps");
            let (ep, events) = Endpoint::in_memory(caps, registry, Duration::from_millis(5));
            if let Some(n) = max_connections {
                ep.limits.set_max(n);
                ep.http_limits.set_max(n);
            }
            let ep = Arc::new(ep);
            let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
            let opts = Options {
                mqtt: Some(any),
                mqtts: tls.map(|c| (any, c)),
                http: Some(any),
                https: https.map(|c| (any, c)),
                coap: Some(any),
                coaps: Some(any),
                record: None,
                connack_delay: Duration::from_millis(5),
                log: false,
                console: None,
            };
            let bound = bind(&opts).await.expect("binds");
            let listening = bound.listening().await;
            let (stop, shutdown) = tokio::sync::watch::channel(false);
            let _ = tx.send((listening, events, stop));
            serve(bound, ep, shutdown).await;
        });
    });
    let (v, events, stop) = rx.recv_timeout(Duration::from_secs(10)).expect("serve started");
    let addr = |k: &str| -> SocketAddr {
        v[k].as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {v}"))
    };
    Enos {
        mqtt: addr("mqtt"),
        mqtts: v["mqtts"].as_str().and_then(|a| a.parse().ok()),
        http: addr("http"),
        https: v["https"].as_str().and_then(|a| a.parse().ok()),
        coap: addr("coap"),
        coaps: addr("coaps"),
        events,
        stop,
    }
}

/// What a scripted EnOS MQTT peer answers to a request: the reply's bytes, or nothing.
pub type Script = fn(request_id: &str) -> Option<Vec<u8>>;

/// An MQTT peer that takes any login, acknowledges subscriptions and publishes, and answers
/// each request on `<topic>_reply` with what `script` makes of the request's id: for replies
/// that EnOS would not give (other ids, not JSON, silence, every documented code).
pub fn enos_script(script: Script) -> SocketAddr {
    use rumqttc::mqttbytes::QoS;
    use rumqttc::mqttbytes::v4::{
        ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode,
    };
    tcp_peer(move |mut stream| {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let send = send_packet;
        let mut buf = bytes::BytesMut::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Ok(packet) = Packet::read(&mut buf, 1 << 20) {
                match packet {
                    Packet::Connect(_) => send(
                        &mut stream,
                        Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)),
                    ),
                    Packet::Subscribe(s) => {
                        let codes = s
                            .filters
                            .iter()
                            .map(|_| SubscribeReasonCode::Success(QoS::AtLeastOnce))
                            .collect();
                        send(&mut stream, Packet::SubAck(SubAck::new(s.pkid, codes)));
                    }
                    Packet::Publish(p) => {
                        send(&mut stream, Packet::PubAck(PubAck::new(p.pkid)));
                        let id = serde_json::from_slice::<serde_json::Value>(&p.payload)
                            .ok()
                            .and_then(|v| v["id"].as_str().map(str::to_string))
                            .unwrap_or_default();
                        if let Some(reply) = script(&id) {
                            let topic = format!("{}_reply", p.topic);
                            send(
                                &mut stream,
                                Packet::Publish(Publish::new(topic, QoS::AtMostOnce, reply)),
                            );
                        }
                    }
                    Packet::Disconnect => return,
                    _ => {}
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
}

/// A plain MQTT 3.1.1 client on rumqttc's codec, for tests that speak to `serve` packet by
/// packet (what the probe would never send).
pub struct Mqtt {
    stream: TcpStream,
    buf: bytes::BytesMut,
    pkid: u16,
}

/// The CONNECT fields of an EnOS login, signed as the recipe says.
pub fn enos_login(pk: &str, dk: &str, mode: &str, secret: &str) -> (String, String, String) {
    let c = crate::common::creds("mqtt", pk, dk, mode, secret);
    let f = |n: &str| c.field(n).unwrap_or_default().to_string();
    (f("client_id"), f("username"), f("password"))
}

impl Mqtt {
    /// CONNECT, and the CONNACK code (0 accepted).
    pub fn connect(addr: SocketAddr, client_id: &str, username: &str, password: &str) -> (u8, Mqtt) {
        use rumqttc::mqttbytes::v4::{Connect, Packet};
        let stream = TcpStream::connect(addr).expect("connects");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut m = Mqtt {
            stream,
            buf: bytes::BytesMut::new(),
            pkid: 0,
        };
        let mut c = Connect::new(client_id);
        c.set_login(username, password);
        m.send(Packet::Connect(c));
        match m.next() {
            Some(Packet::ConnAck(a)) => (a.code as u8, m),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub fn send(&mut self, packet: rumqttc::mqttbytes::v4::Packet) {
        let mut out = bytes::BytesMut::new();
        packet.write(&mut out, 1 << 21).expect("encodes");
        self.stream.write_all(&out).expect("writes");
    }

    /// The next packet, or None when the peer closes or stays silent for 5 s.
    pub fn next(&mut self) -> Option<rumqttc::mqttbytes::v4::Packet> {
        use rumqttc::mqttbytes::v4::Packet;
        let mut chunk = [0u8; 8192];
        loop {
            if let Ok(p) = Packet::read(&mut self.buf, 1 << 21) {
                return Some(p);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// SUBSCRIBE to one filter: whether it was granted.
    pub fn subscribe(&mut self, filter: &str) -> bool {
        use rumqttc::mqttbytes::QoS;
        use rumqttc::mqttbytes::v4::{Packet, Subscribe, SubscribeReasonCode};
        self.pkid += 1;
        self.send(Packet::Subscribe(Subscribe::new(filter, QoS::AtLeastOnce)));
        loop {
            match self.next() {
                Some(Packet::SubAck(a)) => {
                    return !matches!(a.return_codes.first(), Some(SubscribeReasonCode::Failure) | None);
                }
                Some(_) => {}
                None => panic!("no SUBACK"),
            }
        }
    }

    pub fn publish(&mut self, topic: &str, payload: &[u8]) {
        use rumqttc::mqttbytes::QoS;
        use rumqttc::mqttbytes::v4::{Packet, Publish};
        self.pkid += 1;
        let mut p = Publish::new(topic, QoS::AtLeastOnce, payload.to_vec());
        p.pkid = self.pkid;
        self.send(Packet::Publish(p));
    }

    /// The next PUBLISH that reaches this client: topic and payload.
    pub fn next_publish(&mut self) -> Option<(String, Vec<u8>)> {
        use rumqttc::mqttbytes::v4::Packet;
        loop {
            match self.next()? {
                Packet::Publish(p) => return Some((p.topic, p.payload.to_vec())),
                _ => continue,
            }
        }
    }

    /// Publish a request and return the reply that comes back on `<topic>_reply`.
    pub fn request(&mut self, topic: &str, payload: &[u8]) -> serde_json::Value {
        self.publish(topic, payload);
        let want = format!("{topic}_reply");
        loop {
            let (t, body) = self
                .next_publish()
                .unwrap_or_else(|| panic!("no reply on {want}"));
            if t == want {
                return serde_json::from_slice(&body).expect("the reply is JSON");
            }
        }
    }
}
