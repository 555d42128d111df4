//! CoAP probe over a connected UDP socket (so an ICMP port-unreachable surfaces as "refused").
//! No path: a CoAP ping (an empty confirmable message, answered by a reset). A path: a GET, or
//! the method given. Retransmission follows RFC 7252 4.8: ACK_TIMEOUT 2 s times a random factor
//! up to 1.5, doubling, MAX_RETRANSMIT 4, all inside the probe's deadline.
//!
//! Why over 600 lines: plain CoAP and DTLS share the datagram link, the RFC 7252 retransmission
//! and the socket that reports a port-unreachable; one file keeps that link private.

use std::time::{Duration, Instant};

use std::sync::Arc;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use tokio::net::UdpSocket;
use webrtc_dtls::cipher_suite::CipherSuiteId;
use webrtc_dtls::config::{Config as DtlsConfig, ExtendedMasterSecretType};
use webrtc_dtls::conn::DTLSConn;
use zeroize::Zeroizing;

use super::{ErrorKind, Failure, Login, ProbeOptions, Recorder, Target, resolve, time_left};
use crate::capabilities::Capabilities;
use crate::random::random_u64;

/// A DTLS pre-shared key: the identity and the key bytes (wiped on drop).
pub(crate) type Psk = (String, Zeroizing<Vec<u8>>);

/// The datagram link: a connected UDP socket, or DTLS over one, and the commands the endpoint
/// announced on it.
struct Link {
    wire: Wire,
    /// Option 2100 of every response so far, oldest first (at most [`MAX_KEPT`]): EnOS
    /// announces a command on the response to the device's next request, whichever it is (the
    /// login's too), so a device that waits for a command looks here first.
    announced: std::sync::Mutex<std::collections::VecDeque<Vec<u8>>>,
}

/// The announcements a link keeps.
const MAX_KEPT: usize = 8;
/// The largest datagram a receive takes whole (a UDP payload is at most 65,507 bytes).
const MAX_DATAGRAM: usize = 65_536;

enum Wire {
    Udp(UdpSocket),
    Dtls(Box<DTLSConn>),
}

impl Link {
    fn new(wire: Wire) -> Self {
        Link {
            wire,
            announced: std::sync::Mutex::default(),
        }
    }

    /// Keep the command a response announces in option 2100, if it announces one.
    fn keep_announced(&self, p: &Packet) {
        let Some(value) = p
            .get_option(CoapOption::Unknown(crate::enos::COAP_COMMAND_OPTION))
            .and_then(|v| v.front())
        else {
            return;
        };
        if let Ok(mut kept) = self.announced.lock() {
            if kept.len() >= MAX_KEPT {
                kept.pop_front();
            }
            kept.push_back(value.clone());
        }
    }

    /// The announcements kept so far, taken.
    fn take_announced(&self) -> Vec<Vec<u8>> {
        self.announced
            .lock()
            .map(|mut k| k.drain(..).collect())
            .unwrap_or_default()
    }

    async fn send(&self, bytes: &[u8]) -> Result<(), Failure> {
        match &self.wire {
            Wire::Udp(s) => s.send(bytes).await.map(|_| ()).map_err(|e| Failure::io(&e)),
            Wire::Dtls(c) => c
                .write(bytes, None)
                .await
                .map(|_| ())
                .map_err(|e| Failure::new(ErrorKind::Tls, format!("DTLS write failed: {e}"))),
        }
    }

    /// One datagram into `buf` (emptied first), or `None` when `until` passes first. Over
    /// UDP it lands in the vector's spare capacity, unzeroed: a 64 KiB buffer zeroed for each
    /// exchange was 16 of a CoAP probe's page faults (docs/performance.md).
    async fn recv(&self, buf: &mut Vec<u8>, until: Instant) -> Result<Option<usize>, Failure> {
        let wait = until.saturating_duration_since(Instant::now());
        buf.clear();
        match &self.wire {
            Wire::Udp(s) => match tokio::time::timeout(wait, s.recv_buf(buf)).await {
                Err(_) => Ok(None),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(Failure::new(
                    ErrorKind::Refused,
                    "port unreachable: nothing listens on that UDP port",
                )),
                Ok(Err(e)) => Err(Failure::io(&e)),
                Ok(Ok(n)) => Ok(Some(n)),
            },
            Wire::Dtls(c) => {
                buf.resize(MAX_DATAGRAM, 0);
                match tokio::time::timeout(wait, c.read(buf, None)).await {
                    Err(_) => Ok(None),
                    Ok(Err(e)) => Err(Failure::new(ErrorKind::Tls, format!("DTLS read failed: {e}"))),
                    Ok(Ok(n)) => {
                        buf.truncate(n);
                        Ok(Some(n))
                    }
                }
            }
        }
    }
}

/// A connected UDP socket to the first address that does not refuse at once. UDP has no
/// handshake, so "refuses" means an ICMP port-unreachable seen by a zero-length probe write.
async fn connect_udp(rec: &mut Recorder, addrs: &[std::net::SocketAddr]) -> Result<UdpSocket, Failure> {
    let mut last = Failure::new(ErrorKind::Io, "no address to connect to");
    for (i, addr) in addrs.iter().enumerate() {
        rec.address = Some(*addr);
        let local = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
        let sock = match UdpSocket::bind(local).await {
            Ok(s) => s,
            Err(e) => {
                last = Failure::io(&e);
                continue;
            }
        };
        if let Err(e) = sock.connect(addr).await {
            rec.note(format_args!("{addr}: {e}"));
            last = Failure::io(&e);
            continue;
        }
        if i + 1 == addrs.len() {
            return Ok(sock);
        }
        // With more addresses to try, spend a moment learning whether this one refuses.
        let _ = sock.send(&[]).await;
        let mut probe = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(50), sock.recv(&mut probe)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                rec.note(format_args!("{addr}: port unreachable, trying the next address"));
                last = Failure::new(ErrorKind::Refused, format!("{addr}: port unreachable"));
            }
            _ => return Ok(sock),
        }
    }
    Err(last)
}

/// The PSK to use: the one given, or the EnOS identity and key derived from the secret.
fn psk(caps: &Capabilities, opts: &ProbeOptions) -> Result<Psk, Failure> {
    if let Some((identity, key)) = &opts.psk {
        return Ok((identity.clone(), key.clone()));
    }
    let Some(creds) = opts.login.enos_credentials(caps, "coap") else {
        return Err(Failure::new(
            ErrorKind::Tls,
            "coaps:// needs a pre-shared key: --psk-identity with ENOS_CONNECT_PSK, or --product-key/--device-key",
        ));
    };
    let creds = creds?;
    let key = Zeroizing::new(hex_decode(creds.field("psk_key").unwrap_or_default()).unwrap_or_default());
    Ok((creds.field("psk_identity").unwrap_or_default().to_string(), key))
}

pub(crate) fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A UDP socket connected to `addr` (a second login's, to the address that answered).
async fn connect_udp_to(addr: std::net::SocketAddr) -> Result<UdpSocket, Failure> {
    let local = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
    let sock = UdpSocket::bind(local).await.map_err(|e| Failure::io(&e))?;
    sock.connect(addr).await.map_err(|e| Failure::io(&e))?;
    Ok(sock)
}

/// The DTLS handshake, bounded by the deadline. libcoap answers a wrong key with silence: the
/// deadline ends the handshake, and the message says what to check.
async fn handshake_within(
    rec: &mut Recorder,
    sock: UdpSocket,
    psk: Psk,
    enos: bool,
    deadline: Instant,
) -> Result<Link, Failure> {
    match tokio::time::timeout(time_left(deadline)?, dtls_handshake(rec, sock, psk, enos)).await {
        Ok(link) => link,
        Err(_) => Err(Failure::new(
            ErrorKind::Timeout,
            "no DTLS handshake before the timeout: wrong PSK identity or key, or not a DTLS port",
        )),
    }
}

async fn dtls_handshake(rec: &mut Recorder, sock: UdpSocket, psk: Psk, enos: bool) -> Result<Link, Failure> {
    let (identity, key) = psk;
    rec.detail("psk_identity", identity.clone());
    let config = DtlsConfig {
        psk: Some(Arc::new(move |_hint: &[u8]| Ok(key.to_vec()))),
        // On a client, the "hint" is the identity it sends.
        psk_identity_hint: Some(identity.into_bytes()),
        cipher_suites: vec![CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8],
        extended_master_secret: ExtendedMasterSecretType::Request,
        ..Default::default()
    };
    let refused = Arc::new(tokio::sync::Notify::new());
    let watched = Watched {
        sock,
        refused: refused.clone(),
    };
    let handshake = DTLSConn::new(Arc::new(watched), config, true, None);
    // The DTLS layer retransmits its ClientHello past a port-unreachable; the socket's own
    // ECONNREFUSED ends the handshake at once, as it ends a plain CoAP probe.
    let conn = tokio::select! {
        conn = handshake => conn,
        () = refused.notified() => {
            return Err(Failure::new(
                ErrorKind::Refused,
                "port unreachable: nothing listens on that UDP port",
            ));
        }
    };
    let conn = conn.map_err(|e| {
        // With a key derived from the device secret, a refused handshake is a refused
        // login: the server did not know the identity or the key did not match.
        if enos {
            Failure::new(
                ErrorKind::Auth,
                format!("the DTLS-PSK login was refused: {e} (check the keys and the secret)"),
            )
        } else {
            Failure::new(
                ErrorKind::Tls,
                format!("the DTLS handshake failed: {e} (check the PSK identity and key)"),
            )
        }
    })?;
    Ok(Link::new(Wire::Dtls(Box::new(conn))))
}

/// A connected UDP socket that tells when the peer's host answered with a port-unreachable.
/// webrtc-dtls reads its socket through `webrtc_util::Conn` and treats a read error as one to
/// retry; this wrapper (no crate offers one) passes everything through and notifies `refused`.
struct Watched {
    sock: UdpSocket,
    refused: Arc<tokio::sync::Notify>,
}

impl Watched {
    fn seen<T>(&self, r: std::io::Result<T>) -> webrtc_util::Result<T> {
        if let Err(e) = &r
            && e.kind() == std::io::ErrorKind::ConnectionRefused
        {
            self.refused.notify_one();
        }
        Ok(r?)
    }
}

#[async_trait::async_trait]
impl webrtc_util::Conn for Watched {
    async fn connect(&self, addr: std::net::SocketAddr) -> webrtc_util::Result<()> {
        self.seen(self.sock.connect(addr).await)
    }
    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        self.seen(self.sock.recv(buf).await)
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, std::net::SocketAddr)> {
        self.seen(self.sock.recv_from(buf).await)
    }
    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.seen(self.sock.send(buf).await)
    }
    async fn send_to(&self, buf: &[u8], target: std::net::SocketAddr) -> webrtc_util::Result<usize> {
        self.seen(self.sock.send_to(buf, target).await)
    }
    fn local_addr(&self) -> webrtc_util::Result<std::net::SocketAddr> {
        Ok(self.sock.local_addr()?)
    }
    fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        self.sock.peer_addr().ok()
    }
    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

const ACK_TIMEOUT: Duration = Duration::from_secs(2);
const ACK_RANDOM_FACTOR: f64 = 1.5;
const MAX_RETRANSMIT: u32 = 4;

fn code_text(class: MessageClass) -> String {
    let raw: u8 = class.into();
    format!("{}.{:02}", raw >> 5, raw & 0x1f)
}

/// The method of the URL's own request: none for a ping (no path, no --method).
fn method_of(target: &Target, opts: &ProbeOptions) -> Result<Option<RequestType>, Failure> {
    if target.path.trim_matches('/').is_empty() && opts.method.is_none() {
        return Ok(None);
    }
    Ok(Some(
        match opts
            .method
            .as_deref()
            .unwrap_or("get")
            .to_ascii_lowercase()
            .as_str()
        {
            "get" => RequestType::Get,
            "post" => RequestType::Post,
            "put" => RequestType::Put,
            "delete" => RequestType::Delete,
            other => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("CoAP has no method `{other}`"),
                ));
            }
        },
    ))
}

/// A confirmable request (or, without a method, a ping) with its message id and token.
fn packet(method: Option<RequestType>, path: &str, payload: Vec<u8>, mid: u16, token: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(MessageType::Confirmable);
    p.header.message_id = mid;
    let Some(method) = method else {
        p.header.code = MessageClass::Empty;
        return p;
    };
    p.header.code = MessageClass::Request(method);
    p.set_token(token.to_vec());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    p.payload = payload;
    p
}

pub(crate) async fn probe(
    caps: &Capabilities,
    target: &Target,
    opts: &ProbeOptions,
    rec: &mut Recorder,
    deadline: Instant,
) -> Result<(), Failure> {
    let addrs = resolve(rec, target).await?;
    rec.begin("connect");
    let sock = connect_udp(rec, &addrs).await?;
    rec.end();
    let link = if target.secure {
        let enos_psk = opts.psk.is_none() && matches!(opts.login, Login::Enos { .. });
        let psk = psk(caps, opts)?;
        rec.begin("tls");
        let link = handshake_within(rec, sock, psk, enos_psk, deadline).await?;
        rec.end();
        link
    } else {
        Link::new(Wire::Udp(sock))
    };
    let prefix = target.path.trim_end_matches('/');
    let enos = opts.login.enos_keys();
    // Dynamic activation over DTLS: the device secret answered to a GET, then a second login.
    let link = match (&opts.activate_to, enos) {
        (Some(_), Some(keys))
            if opts.login.mode() == Some("dynamic")
                && caps.activates_over(&target.protocol, &target.security) =>
        {
            activate::activate(caps, link, opts, keys, prefix, rec, deadline).await?
        }
        _ => link,
    };
    let Some((pk, dk)) = enos else {
        rec.begin("request");
        let method = method_of(target, opts)?;
        let payload = opts.payload.clone().unwrap_or_default();
        return exchange(&link, rec, deadline, method, &target.path, payload)
            .await
            .map(|_| rec.end());
    };
    // Without DTLS the EnOS login is the auth call; over DTLS the handshake was the login.
    if !target.secure {
        rec.begin("handshake");
        auth(caps, &link, opts, prefix, rec, deadline).await?;
        rec.end();
    }
    if !opts.needs.needs.is_empty() {
        let mut t = Needs {
            link: &link,
            prefix: prefix.to_string(),
            deadline,
        };
        super::needs::run(caps, target, &mut t, opts, (pk, dk), rec, deadline).await;
        return Ok(());
    }
    match &opts.measurepoints {
        Some(points) => {
            rec.begin("reply");
            let body = super::measurepoint_request(points).payload;
            let path = format!("{prefix}/topic{}", crate::enos::measurepoint_post(pk, dk));
            if let Exchanged::Response(p) =
                exchange(&link, rec, deadline, Some(RequestType::Post), &path, body).await?
            {
                rec.enos_reply(&p.payload, None)?;
            }
            rec.end();
        }
        None if target.secure => {
            rec.begin("request");
            let method = method_of(target, opts)?;
            let payload = opts.payload.clone().unwrap_or_default();
            exchange(&link, rec, deadline, method, &target.path, payload).await?;
            rec.end();
        }
        None => {}
    }
    Ok(())
}

/// The EnOS login over plain CoAP: `POST /auth/{pk}/{dk}` signed as the recipe says, and the
/// answer read (a 2.xx can still carry EnOS's refusal in its JSON, as HTTP's auth answer does).
async fn auth(
    caps: &Capabilities,
    link: &Link,
    opts: &ProbeOptions,
    prefix: &str,
    rec: &mut Recorder,
    deadline: Instant,
) -> Result<(), Failure> {
    let creds = opts
        .login
        .enos_credentials(caps, "coap")
        .ok_or_else(|| Failure::new(ErrorKind::Auth, "no EnOS login"))??;
    let auth = creds
        .request
        .ok_or_else(|| Failure::new(ErrorKind::Auth, "no CoAP auth request in the capabilities"))?;
    let path = format!("{prefix}{}", auth.path);
    let answer = exchange(
        link,
        rec,
        deadline,
        Some(RequestType::Post),
        &path,
        auth.body.into_bytes(),
    )
    .await?;
    // A 2.xx can still carry EnOS's refusal in its JSON, as HTTP's auth answer does.
    if let Exchanged::Response(p) = &answer
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload)
        && let Some(code) = v.get("code").and_then(serde_json::Value::as_i64)
        && code != 0
        && code != crate::enos::SUCCESS
    {
        let message = v.get("message").and_then(|m| m.as_str()).unwrap_or_default();
        return Err(Failure::new(
            ErrorKind::Auth,
            format!("EnOS refused the login: {}", crate::enos::describe(code, message)),
        ));
    }
    Ok(())
}

#[path = "coap_activate.rs"]
mod activate;
#[path = "coap_cert.rs"]
mod cert;
pub(crate) use cert::certificate_login;
#[path = "coap_needs.rs"]
mod needs_transport;
use needs_transport::Needs;
pub use needs_transport::{MAX_ANNOUNCED, announced_topic};

/// What an exchange got back.
enum Exchanged {
    /// A ping answered by a reset or an empty acknowledgement.
    Pong,
    /// A 2.xx response.
    Response(Packet),
}

/// One request (or ping) and its answer, with RFC 7252 retransmission inside the deadline. A
/// response outside 2.xx is a failure: 4.01 and 4.03 of kind `auth`.
async fn exchange(
    link: &Link,
    rec: &mut Recorder,
    deadline: Instant,
    method: Option<RequestType>,
    path: &str,
    payload: Vec<u8>,
) -> Result<Exchanged, Failure> {
    exchange_with(link, rec, deadline, method, path, payload, false).await
}

/// [`exchange`]; with `any_code`, a response of any code is returned, for its EnOS payload.
async fn exchange_with(
    link: &Link,
    rec: &mut Recorder,
    deadline: Instant,
    method: Option<RequestType>,
    path: &str,
    payload: Vec<u8>,
    any_code: bool,
) -> Result<Exchanged, Failure> {
    let rand = random_u64();
    let mid = rand as u16;
    let token = ((rand >> 16) as u32).to_be_bytes();
    let ping = method.is_none();
    let bytes = packet(method, path, payload, mid, &token)
        .to_bytes()
        .map_err(|e| Failure::new(ErrorKind::Protocol, format!("cannot encode the request: {e:?}")))?;
    let factor = 1.0 + (((rand >> 48) as f64) / 65535.0) * (ACK_RANDOM_FACTOR - 1.0);
    let mut wait = ACK_TIMEOUT.mul_f64(factor);
    let mut buf = Vec::with_capacity(MAX_DATAGRAM);
    let mut acked_empty = false;
    let mut attempts = 0;
    loop {
        if !acked_empty {
            attempts += 1;
            rec.detail("attempts", attempts);
            link.send(&bytes).await?;
            rec.note(format_args!(
                "sent {} (attempt {attempts}, next wait {:.2} s)",
                if ping { "ping" } else { "request" },
                wait.as_secs_f64()
            ));
        }
        let until = if acked_empty {
            deadline
        } else {
            (Instant::now() + wait).min(deadline)
        };
        match receive(link, &mut buf, until, mid, &token, rec).await? {
            Some(Reply::Reset) if ping => {
                rec.detail("reply", "reset (pong)");
                return Ok(Exchanged::Pong);
            }
            Some(Reply::Reset) => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    "the server reset the request (RST): it did not understand it",
                ));
            }
            Some(Reply::EmptyAck) if ping => {
                rec.detail("reply", "empty acknowledgement");
                return Ok(Exchanged::Pong);
            }
            Some(Reply::EmptyAck) => {
                rec.note("empty ACK: the response will come separately");
                acked_empty = true;
            }
            Some(Reply::Response(p)) => return response(p, any_code, rec),
            None => {
                time_left(deadline)?;
                if acked_empty || attempts > MAX_RETRANSMIT {
                    return Err(Failure::new(
                        ErrorKind::Timeout,
                        format!("no answer after {attempts} transmissions (RFC 7252 retransmission)"),
                    ));
                }
                wait *= 2;
            }
        }
    }
}

/// A response to the request, shown in the report; a code other than 2.xx is a failure
/// (4.01 and 4.03 of the login's kind) unless `any_code` (a need reads EnOS's payload whatever
/// the code).
fn response(p: Packet, any_code: bool, rec: &mut Recorder) -> Result<Exchanged, Failure> {
    let code = code_text(p.header.code);
    rec.detail("code", code.clone());
    rec.detail("payload_bytes", p.payload.len());
    if !p.payload.is_empty() {
        let shown = p.payload.get(..p.payload.len().min(200)).unwrap_or_default();
        rec.detail("payload", String::from_utf8_lossy(shown).into_owned());
    }
    if let MessageClass::Response(status) = p.header.code {
        let raw: u8 = p.header.code.into();
        if raw >> 5 != 2 && !any_code {
            let kind = if matches!(raw, 0x81 | 0x83) {
                ErrorKind::Auth
            } else {
                ErrorKind::Protocol
            };
            // An EnOS endpoint says why in the payload's `message`.
            let why = serde_json::from_slice::<serde_json::Value>(&p.payload)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_string))
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Err(Failure::new(
                kind,
                format!("the server answered {code} {status:?}{why}"),
            ));
        }
    }
    Ok(Exchanged::Response(p))
}

enum Reply {
    Reset,
    EmptyAck,
    Response(Packet),
}

/// What one datagram means to a probe waiting on message id `mid` with `token`. Pure, so the
/// fuzzer can throw any bytes at it.
#[derive(Debug)]
pub enum Datagram {
    Malformed,
    Reset,
    EmptyAck,
    /// A response to our request; `ack` holds the message id to acknowledge (a separate
    /// confirmable response).
    Response {
        packet: Box<Packet>,
        ack: Option<u16>,
    },
    /// Not for us: another message id or token.
    Other(String),
}

pub fn classify(bytes: &[u8], mid: u16, token: &[u8]) -> Datagram {
    let Ok(p) = Packet::from_bytes(bytes) else {
        return Datagram::Malformed;
    };
    if p.payload.is_empty() && has_payload_marker(bytes) {
        // RFC 7252 3: a payload marker followed by nothing is a message format error, which
        // coap-lite lets through.
        return Datagram::Malformed;
    }
    let kind = p.header.get_type();
    if p.header.message_id == mid && matches!(kind, MessageType::Reset) {
        return Datagram::Reset;
    }
    if p.header.message_id == mid && matches!(kind, MessageType::Acknowledgement) {
        if p.header.code == MessageClass::Empty {
            return Datagram::EmptyAck;
        }
        if p.get_token() == token {
            return Datagram::Response {
                packet: Box::new(p),
                ack: None,
            };
        }
        return Datagram::Other("an acknowledgement with our message id but another token".into());
    }
    if matches!(kind, MessageType::Confirmable | MessageType::NonConfirmable)
        && p.get_token() == token
        && !token.is_empty()
        && p.header.code != MessageClass::Empty
    {
        let ack = matches!(kind, MessageType::Confirmable).then_some(p.header.message_id);
        return Datagram::Response {
            packet: Box::new(p),
            ack,
        };
    }
    Datagram::Other(format!(
        "a {kind:?} with message id {} (waiting for {mid})",
        p.header.message_id
    ))
}

/// Whether the options of a datagram coap-lite accepted end in a payload marker (0xFF). Walks
/// the option headers only far enough to find where they end; every length is checked.
fn has_payload_marker(bytes: &[u8]) -> bool {
    let Some(&first) = bytes.first() else {
        return false;
    };
    let mut at = 4 + usize::from(first & 0x0f);
    // Extended delta or length: 13 takes one more byte, 14 two more (RFC 7252 3.1).
    let extended = |nibble: u8, at: &mut usize| -> Option<usize> {
        match nibble {
            13 => {
                let v = usize::from(*bytes.get(*at)?) + 13;
                *at += 1;
                Some(v)
            }
            14 => {
                let hi = usize::from(*bytes.get(*at)?);
                let lo = usize::from(*bytes.get(*at + 1)?);
                *at += 2;
                Some((hi << 8 | lo) + 269)
            }
            15 => None,
            n => Some(usize::from(n)),
        }
    };
    while let Some(&b) = bytes.get(at) {
        if b == 0xff {
            return true;
        }
        at += 1;
        if extended(b >> 4, &mut at).is_none() {
            return false;
        }
        let Some(len) = extended(b & 0x0f, &mut at) else {
            return false;
        };
        let Some(next) = at.checked_add(len) else {
            return false;
        };
        at = next;
    }
    false
}

/// Wait for a datagram that answers our message: the same message id (ACK or RST), or a
/// separate response carrying our token. Anything else is noted and ignored.
async fn receive(
    link: &Link,
    buf: &mut Vec<u8>,
    until: Instant,
    mid: u16,
    token: &[u8],
    rec: &mut Recorder,
) -> Result<Option<Reply>, Failure> {
    loop {
        let Some(n) = link.recv(buf, until).await? else {
            return Ok(None);
        };
        match classify(&buf[..n], mid, token) {
            Datagram::Malformed => rec.note(format_args!("ignored a malformed datagram of {n} bytes")),
            Datagram::Reset => return Ok(Some(Reply::Reset)),
            Datagram::EmptyAck => return Ok(Some(Reply::EmptyAck)),
            Datagram::Response { packet, ack } => {
                if let Some(id) = ack {
                    let mut a = Packet::new();
                    a.header.set_version(1);
                    a.header.set_type(MessageType::Acknowledgement);
                    a.header.message_id = id;
                    if let Ok(bytes) = a.to_bytes() {
                        let _ = link.send(&bytes).await;
                    }
                }
                link.keep_announced(&packet);
                return Ok(Some(Reply::Response(*packet)));
            }
            Datagram::Other(what) => rec.note(format_args!("ignored {what}")),
        }
    }
}
