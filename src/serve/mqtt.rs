//! The MQTT 3.1.1 side of `serve`, on rumqttc's packet codec (the one the probe uses). It is a
//! device endpoint, not a general broker: rumqttd cannot refuse a login with a CONNACK code,
//! cannot push to a client that never subscribed, and cannot tell who published a message, all
//! of which EnOS does. Each connection is one task: the EnOS login, then its own topics (and
//! those of sub-devices logged in through it), replies on `<topic>_reply`, the activation push,
//! and commands a test sends (replies and pushes reach the connection whether or not it
//! subscribed, as the official SDKs expect). Everything a client controls is bounded: packet
//! size, connections, the wait for CONNECT, writes to a client that does not read, idleness
//! (1.5 times the keep-alive), and the commands waiting for a reply.
//!
//! MQTT 3.1.1 as the specification says: a CONNECT at another protocol level gets CONNACK 0x01
//! (MQTT-3.1.2-2); a second connection with a client id in use takes over, and the older one
//! is closed (MQTT-3.1.4-2); a QoS 2 PUBLISH sent again before its PUBREL is acknowledged and
//! not processed again (MQTT-4.3.3-2); a clean-session-0 client's subscriptions are kept for
//! its return, and CONNACK's session present says whether they were (MQTT-3.2.2-2), bounded by
//! [`super::clients::MAX_KEPT_SESSIONS`]. A reply leaves only once its request's event is in the record.
//!
//! Why over 600 lines: one connection's life (CONNECT, the loop, every packet kind, replies,
//! commands) reads in one place; client ids and kept sessions are in [`super::clients`], the
//! gateway's sub-devices in [`super::gateway`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, Publish, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, oneshot, watch};

use super::clients::{MAX_KEPT_FILTERS, Subscriptions, connect_level, next_connection};
use super::commands::Mailbox;
use super::limits::{Admission, CONNECT_WAIT, CONNECT_WAIT_PRESSED, Held};
use super::{Answer, Downlink, Endpoint, Event, Identity, MAX_PACKET};
use crate::base::Secret;
use crate::enos::{self, Reply, Request};

/// What a read reserves when the buffer is full: a measure point post fits in one read. A
/// connection holds no buffer at all between packets.
const READ_CHUNK: usize = 256;
/// How long a write may wait for a client that does not read.
const WRITE_WAIT: Duration = Duration::from_secs(10);
/// The idle bound when a client asks for no keep-alive at all.
const MAX_IDLE: Duration = Duration::from_secs(3600);

pub async fn accept(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ep: Arc<Endpoint>,
    shutdown: watch::Receiver<bool>,
) {
    let protocol = if tls.is_some() { "mqtts" } else { "mqtt" };
    let admit_ep = ep.clone();
    let admit = move || match admit_ep.limits.admit() {
        Admission::Closed => None,
        admission => Some(admission),
    };
    let refusing = ep.clone();
    let refuse = move |tcp: tokio::net::TcpStream, peer| {
        drop(tcp);
        refusing.emit(Event::new("login_refused", protocol).peer(peer).code(3).message(format!(
            "closed at once: {} connections are logged in (--max-connections) and {} more are being refused",
            refusing.limits.max(),
            super::limits::MAX_REFUSING
        )));
    };
    let stop = shutdown.clone();
    let handle = move |tcp: tokio::net::TcpStream, peer, admission| {
        let (ep, shutdown, tls) = (ep.clone(), stop.clone(), tls.clone());
        async move {
            let _ = tcp.set_nodelay(true);
            match tls {
                Some(acceptor) => match tokio::time::timeout(CONNECT_WAIT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => connection(stream, peer, protocol, &ep, shutdown, admission).await,
                    // With --client-ca, a missing or unknown client certificate ends here.
                    Ok(Err(e)) => ep.emit(
                        Event::new("login_refused", protocol)
                            .peer(peer)
                            .message(format!("the TLS handshake failed: {e}")),
                    ),
                    Err(_) => ep.emit(
                        Event::new("disconnect", protocol)
                            .peer(peer)
                            .message("the TLS handshake failed: no handshake in time"),
                    ),
                },
                None => connection(tcp, peer, protocol, &ep, shutdown, admission).await,
            }
        }
    };
    let l = &listener;
    super::accept_each(|| l.accept(), shutdown, admit, handle, refuse).await;
}

/// The packets of one connection, read and written with the codec.
struct Wire<I> {
    io: I,
    buf: BytesMut,
    out: BytesMut,
}

enum Read {
    Packet(Packet),
    Closed,
    /// Not MQTT, or larger than the bound: the connection ends.
    Broken(String),
}

impl<I: AsyncRead + AsyncWrite + Unpin> Wire<I> {
    /// Write one packet, after any queued ones; a client that stops reading for
    /// [`WRITE_WAIT`] is given up.
    async fn send(&mut self, packet: Packet) -> bool {
        self.queue(packet) && self.write_out().await
    }

    /// Add a packet to what the next write sends: a PUBACK and the reply that follows it go
    /// out in one segment instead of two system calls.
    fn queue(&mut self, packet: Packet) -> bool {
        packet.write(&mut self.out, MAX_PACKET).is_ok()
    }

    /// Write what is queued, if anything; the buffer is freed once written (a held
    /// connection holds none between packets).
    async fn write_out(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let write = async { self.io.write_all(&self.out).await.is_ok() && self.io.flush().await.is_ok() };
        let ok = tokio::time::timeout(WRITE_WAIT, write).await.unwrap_or(false);
        self.out = BytesMut::new();
        ok
    }

    /// Make room for a read: nothing is allocated until a packet starts coming, then what
    /// the packet still needs (read from its header), so one read usually takes it whole.
    fn reserve(&mut self, missing: usize) {
        if self.buf.is_empty() && self.buf.capacity() > 4 * READ_CHUNK {
            self.buf = BytesMut::new();
        }
        if self.buf.capacity() == self.buf.len() {
            self.buf.reserve(missing.clamp(READ_CHUNK, MAX_PACKET + 5));
        }
    }

    /// Queue a QoS 0 PUBLISH; it leaves with the next write, after the record has its event.
    fn publish(&mut self, topic: &str, payload: Vec<u8>) -> bool {
        self.queue(Packet::Publish(Publish::new(topic, QoS::AtMostOnce, payload)))
    }

    /// Whether a whole packet is already read, so the loop can answer it before writing.
    fn has_packet(&self) -> bool {
        rumqttc::mqttbytes::check(self.buf.iter(), MAX_PACKET).is_ok()
    }

    /// Read until the buffer holds a whole packet (or bytes that cannot be one); `None` when
    /// the client closes first.
    async fn whole_packet(&mut self) -> Option<()> {
        loop {
            match rumqttc::mqttbytes::check(self.buf.iter(), MAX_PACKET) {
                Err(CodecError::InsufficientBytes(n)) if self.buf.len() <= MAX_PACKET + 5 => self.reserve(n),
                _ => return Some(()),
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next packet; cancel-safe (bytes read so far stay in the buffer).
    async fn next(&mut self) -> Read {
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(p) => return Read::Packet(p),
                Err(CodecError::InsufficientBytes(n)) => self.reserve(n),
                Err(e) => return Read::Broken(format!("not MQTT 3.1.1: {e}")),
            }
            if self.buf.len() > MAX_PACKET + 5 {
                return Read::Broken(format!("a packet larger than {MAX_PACKET} bytes"));
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Read::Closed,
                Ok(_) => {}
            }
        }
    }
}

/// What a connection holds after the login.
pub(super) struct Session {
    pub(super) id: Identity,
    pub(super) protocol: &'static str,
    pub(super) subdevices: HashSet<Identity>,
    /// Commands waiting for their reply: (reply topic, request id, empty for raw bytes) to the
    /// tests waiting, oldest first.
    commands: HashMap<(String, String), VecDeque<oneshot::Sender<Value>>>,
    /// QoS 2 packet ids whose PUBREL has not come yet (at most 65,536 by their size).
    qos2: HashSet<u16>,
    /// The topic filters subscribed, kept for a clean-session-0 client's return.
    subscriptions: Subscriptions,
}

impl Session {
    /// The device's own topics, and those of enabled sub-devices logged in through it.
    fn may_use(&self, ep: &Endpoint, topic: &str) -> bool {
        enos::owns(topic, &self.id.product_key, &self.id.device_key)
            || self
                .subdevices
                .iter()
                .any(|s| enos::owns(topic, &s.product_key, &s.device_key) && ep.twin.enabled(s) == Some(true))
    }
}

/// A connection whose login succeeded, and what its CONNECT asked for.
struct LoggedIn<I> {
    wire: Wire<I>,
    client_id: String,
    clean_session: bool,
    keep_alive: u16,
    id: Identity,
    /// The secret an activation pushes.
    secret: Option<Secret>,
    slot: Held,
}

/// One connection: the login (its own boxed future, freed once done, so a held connection's
/// task is only as large as the loop), then the packets until it ends.
async fn connection<I: AsyncRead + AsyncWrite + Unpin>(
    io: I,
    peer: SocketAddr,
    protocol: &'static str,
    ep: &Arc<Endpoint>,
    shutdown: watch::Receiver<bool>,
    admission: Admission,
) {
    let login = Box::pin(log_in(io, peer, protocol, ep, admission)).await;
    if let Some(l) = login {
        Box::pin(held(l, peer, protocol, ep, shutdown)).await;
    }
}

/// The CONNECT, within its wait, and the login; `None` when the connection ends there.
async fn log_in<I: AsyncRead + AsyncWrite + Unpin>(
    io: I,
    peer: SocketAddr,
    protocol: &'static str,
    ep: &Arc<Endpoint>,
    admission: Admission,
) -> Option<LoggedIn<I>> {
    let mut wire = Wire {
        io,
        buf: BytesMut::new(),
        out: BytesMut::new(),
    };
    // A refused connection keeps its refusal slot until it is answered.
    let (waiting, wait, _refusing) = match admission {
        Admission::Waiting(w) => {
            let wait = w.wait;
            (Some(w), wait, None)
        }
        Admission::Refused(r) => (None, CONNECT_WAIT_PRESSED, Some(r)),
        Admission::Closed => (None, CONNECT_WAIT_PRESSED, None),
    };
    let evicted = waiting.as_ref().map(|w| w.evicted.clone());
    let first = async {
        wire.whole_packet().await?;
        if let Some((name, level)) = connect_level(&wire.buf)
            && (name != "MQTT" || level != 4)
        {
            return Some(Err((name, level)));
        }
        Some(Ok(wire.next().await))
    };
    let first = async {
        tokio::select! {
            r = tokio::time::timeout(wait, first) => Some(r),
            () = async {
                match &evicted {
                    Some(e) => e.notified().await,
                    None => std::future::pending().await,
                }
            } => None,
        }
    };
    let Some(first) = first.await else {
        ep.emit(Event::new("disconnect", protocol).peer(peer).message(format!(
            "closed before its CONNECT: {} connections were waiting for theirs, and the oldest makes room for a new one",
            ep.limits.max_waiting()
        )));
        return None;
    };
    let connect = match first {
        Ok(Some(Err((name, level)))) => {
            // MQTT-3.1.2-2: CONNACK 0x01 (unacceptable protocol version), then close; the
            // event is in the record first.
            ep.emit(
                Event::new("login_refused", protocol)
                    .peer(peer)
                    .code(1)
                    .message(format!(
                        "CONNECT for protocol `{name}` level {level}: serve speaks MQTT 3.1.1 (level 4) only; CONNACK 1 (unacceptable protocol version)"
                    )),
            );
            ep.recorded().await;
            wire.out.extend_from_slice(&[0x20, 0x02, 0x00, 0x01]);
            let _ = wire.write_out().await;
            return None;
        }
        Ok(None) | Ok(Some(Ok(Read::Closed))) => return None,
        Ok(Some(Ok(Read::Packet(Packet::Connect(c))))) => c,
        Ok(Some(Ok(Read::Packet(p)))) => {
            ep.emit(
                Event::new("login_refused", protocol)
                    .peer(peer)
                    .message(format!("the first packet is {p:?}, not CONNECT")),
            );
            return None;
        }
        Ok(Some(Ok(Read::Broken(why)))) => {
            ep.emit(
                Event::new("login_refused", protocol)
                    .peer(peer)
                    .message(format!("the first packet is not a CONNECT: {why}")),
            );
            return None;
        }
        Err(_) => {
            ep.emit(
                Event::new("login_refused", protocol)
                    .peer(peer)
                    .message(format!("no CONNECT within {} s", wait.as_secs())),
            );
            return None;
        }
    };
    let (username, password) = connect
        .login
        .as_ref()
        .map(|l| (l.username.as_str(), l.password.as_str()))
        .unwrap_or_default();
    // One official SDK starts waiting for CONNACK only after its CONNECT is out: an instant
    // answer is lost and it hangs. EnOS answers after a moment too.
    if !ep.connack_delay.is_zero() {
        tokio::time::sleep(ep.connack_delay).await;
    }
    // Past --max-connections a device is told so (CONNACK 3), never left in silence; the slot
    // is taken before the login is checked, so a refused device is issued no activation secret.
    let slot = waiting.and_then(|w| w.log_in());
    let login = match slot {
        None => Err(super::Refusal {
            connack: 3,
            code: 503,
            reason: format!(
                "serve holds {} logged-in connections (--max-connections): CONNACK 3 (server unavailable)",
                ep.limits.max()
            ),
        }),
        Some(slot) => ep
            .mqtt_login(&connect.client_id, username, password)
            .and_then(|(id, activating)| {
                // The secret an activation will push is made now: without the system's random
                // source there is none to give, and the device is told so in its CONNACK.
                let secret = match activating {
                    true => Some(ep.issue_secret(&id).ok_or_else(|| super::Refusal {
                        connack: 3,
                        code: 400,
                        reason: "no secret can be issued: the system's random source failed".into(),
                    })?),
                    false => None,
                };
                Ok((id, secret))
            })
            .map(|ok| (ok, slot)),
    };
    let ((id, secret), slot) = match login {
        Ok(ok) => ok,
        Err(r) => {
            let code = match r.connack {
                2 => ConnectReturnCode::BadClientId,
                3 => ConnectReturnCode::ServiceUnavailable,
                4 => ConnectReturnCode::BadUserNamePassword,
                _ => ConnectReturnCode::NotAuthorized,
            };
            let mut e = Event::new("login_refused", protocol)
                .peer(peer)
                .code(i64::from(r.connack))
                .message(r.reason);
            if let Some((dk, pk)) = username.split_once('&') {
                e = e.keys(pk, dk);
            }
            ep.emit(e);
            // The refusal leaves after its event is in the record, as every answer does.
            ep.recorded().await;
            let _ = wire.send(Packet::ConnAck(ConnAck::new(code, false))).await;
            return None;
        }
    };
    Some(LoggedIn {
        wire,
        client_id: connect.client_id,
        clean_session: connect.clean_session,
        keep_alive: connect.keep_alive,
        id,
        secret,
        slot,
    })
}

/// A logged-in connection: CONNACK, then its packets and commands until it ends.
async fn held<I: AsyncRead + AsyncWrite + Unpin>(
    l: LoggedIn<I>,
    peer: SocketAddr,
    protocol: &'static str,
    ep: &Arc<Endpoint>,
    mut shutdown: watch::Receiver<bool>,
) {
    let LoggedIn {
        mut wire,
        client_id,
        clean_session,
        keep_alive,
        id,
        secret,
        slot: _slot,
    } = l;
    let connection = next_connection();
    let taken = Arc::new(Notify::new());
    let subscriptions = Subscriptions::default();
    let claimed = ep.claim_client(
        &client_id,
        connection,
        taken.clone(),
        clean_session,
        subscriptions.clone(),
    );
    let (took_over, kept) = (claimed.took_over, claimed.session);
    if !wire
        .send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            kept.is_some(),
        )))
        .await
    {
        ep.release_client(&client_id, connection);
        return;
    }
    let mut words = Vec::new();
    if secret.is_some() {
        words.push("securemode 3: activating".to_string());
    }
    if id.device_key == enos::INTEGRATION_DK {
        words.push("securemode 4: message integration".to_string());
    }
    if took_over {
        words.push("took over a connection with the same client id".to_string());
    }
    if kept.is_some() {
        words.push("session present: the subscriptions of the client's last session".to_string());
    }
    let mut login = Event::new("login", protocol).device(&id).peer(peer).code(0);
    if !words.is_empty() {
        login = login.message(words.join("; "));
    }
    ep.emit(login);
    ep.twin.connected(&id, protocol, None);
    let tx = Arc::new(Mailbox::default());
    ep.connect_device(&id, tx.clone());
    if let (Some(k), Ok(mut subs)) = (&kept, subscriptions.lock()) {
        subs.clone_from(k);
    }
    let mut s = Session {
        id: id.clone(),
        protocol,
        subdevices: HashSet::new(),
        commands: HashMap::new(),
        qos2: HashSet::new(),
        subscriptions,
    };
    if let Some(secret) = secret {
        // The platform pushes the device secret; the device never subscribes to it.
        let push = Request::new(
            enos::new_id(),
            enos::ACTIVATE_INFO,
            json!({
                "productKey": id.product_key,
                "deviceKey": id.device_key,
                "deviceSecret": secret.expose_for_login(),
            }),
        );
        let topic = enos::activate_info(&id.product_key, &id.device_key);
        wire.publish(&topic, push.to_bytes());
        drop(secret);
    }
    let idle = match keep_alive {
        0 => MAX_IDLE,
        k => Duration::from_millis(u64::from(k) * 1500).min(MAX_IDLE),
    };
    let why = loop {
        // Answers are queued while more packets are already read, and written before any
        // wait: a client that sends SUBSCRIBE and PUBLISH together gets SUBACK, PUBACK and
        // the reply in one segment. Writing here, outside `select!`, keeps a half-done write
        // from being cancelled.
        if wire.buf.is_empty() {
            // Nothing half-read: a held connection keeps no buffer while it waits.
            wire.buf = BytesMut::new();
        }
        if !wire.has_packet() && !wire.out.is_empty() {
            // No reply leaves before its request's event is in the record.
            ep.recorded().await;
            if !wire.write_out().await {
                break "the connection failed".to_string();
            }
        }
        tokio::select! {
            read = tokio::time::timeout(idle, wire.next()) => match read {
                Err(_) => break "idle for 1.5 times the keep-alive".to_string(),
                Ok(Read::Closed) => break "the client closed the connection".to_string(),
                Ok(Read::Broken(why)) => break why,
                Ok(Read::Packet(Packet::Disconnect)) => break "DISCONNECT".to_string(),
                Ok(Read::Packet(p)) => {
                    if !handle(&mut wire, &mut s, ep, p).await {
                        break "the connection failed".to_string();
                    }
                }
            },
            cmd = tx.recv() => command(&mut wire, &mut s, ep, cmd),
            () = taken.notified() => {
                break "taken over: a new connection logged in with the same client id (MQTT-3.1.4-2)".to_string()
            }
            _ = shutdown.changed() => break "serve is stopping".to_string(),
        }
    };
    // Answers queued before a DISCONNECT in the same segment still go out.
    ep.recorded().await;
    let _ = wire.write_out().await;
    ep.disconnect_device(&id, &tx);
    ep.release_client(&client_id, connection);
    // A session taken over went on with the newer connection; a clean one is not kept.
    if !clean_session && !why.starts_with("taken over") {
        let subs = s
            .subscriptions
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        ep.keep_session(&client_id, subs);
    }
    ep.twin.disconnected(&id);
    for sub in &s.subdevices {
        ep.twin.disconnected(sub);
    }
    // A client that sent DISCONNECT or closed has left: dropping the socket closes it, and a
    // shutdown first would cost a system call per connection for nothing.
    if why != "DISCONNECT" && why != "the client closed the connection" {
        let _ = wire.io.shutdown().await;
    }
    ep.emit(Event::new("disconnect", protocol).device(&id).message(why));
}

/// One packet from a logged-in device; false when the connection must end.
async fn handle<I: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<I>,
    s: &mut Session,
    ep: &Endpoint,
    p: Packet,
) -> bool {
    match p {
        Packet::Subscribe(sub) => {
            let mut codes = Vec::with_capacity(sub.filters.len());
            for f in &sub.filters {
                if s.may_use(ep, &f.path) {
                    if let Ok(mut subs) = s.subscriptions.lock()
                        && subs.len() < MAX_KEPT_FILTERS
                        && !subs.iter().any(|(p, _)| *p == f.path)
                    {
                        subs.push((f.path.clone(), f.qos));
                    }
                    // Replies go out at QoS 0 and 1 is the most granted: QoS 2 is not EnOS's.
                    let granted = if f.qos == QoS::AtMostOnce {
                        QoS::AtMostOnce
                    } else {
                        QoS::AtLeastOnce
                    };
                    codes.push(SubscribeReasonCode::Success(granted));
                } else {
                    ep.emit(
                        Event::new("denied", s.protocol)
                            .device(&s.id)
                            .topic(&f.path)
                            .message("a subscription outside the device's own topics"),
                    );
                    codes.push(SubscribeReasonCode::Failure);
                }
            }
            wire.queue(Packet::SubAck(SubAck::new(sub.pkid, codes)))
        }
        Packet::Unsubscribe(u) => {
            if let Ok(mut subs) = s.subscriptions.lock() {
                subs.retain(|(p, _)| !u.topics.contains(p));
            }
            wire.queue(Packet::UnsubAck(UnsubAck::new(u.pkid)))
        }
        Packet::PingReq => wire.queue(Packet::PingResp),
        Packet::Publish(p) => {
            // The acknowledgement is queued and leaves with the reply, or with the next write.
            let acked = match p.qos {
                QoS::AtMostOnce => true,
                QoS::AtLeastOnce => wire.queue(Packet::PubAck(PubAck::new(p.pkid))),
                // EnOS takes QoS 0 and 1; a QoS 2 message still gets its protocol's answer,
                // and one sent again before its PUBREL is not processed twice (MQTT-4.3.3-2).
                QoS::ExactlyOnce => {
                    let fresh = s.qos2.insert(p.pkid);
                    let rec = wire.queue(Packet::PubRec(PubRec::new(p.pkid)));
                    if !fresh {
                        ep.emit(
                            Event::new("duplicate", s.protocol)
                                .device(&s.id)
                                .topic(&p.topic)
                                .message(format!(
                                    "QoS 2 packet {} again before its PUBREL (dup flag {}): acknowledged, not processed again",
                                    p.pkid, p.dup
                                )),
                        );
                        return rec;
                    }
                    rec
                }
            };
            acked && publish(wire, s, ep, &p.topic, &p.payload)
        }
        Packet::PubRel(r) => {
            s.qos2.remove(&r.pkid);
            wire.queue(Packet::PubComp(PubComp::new(r.pkid)))
        }
        // Acknowledgements of nothing we sent at QoS 1, and packets a server never gets.
        _ => true,
    }
}

fn publish<I: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<I>,
    s: &mut Session,
    ep: &Endpoint,
    topic: &str,
    payload: &[u8],
) -> bool {
    if !s.may_use(ep, topic) {
        ep.emit(
            Event::new("denied", s.protocol)
                .device(&s.id)
                .topic(topic)
                .message("a publish outside the device's own topics, dropped"),
        );
        return true;
    }
    // Replies from the device: to the activation push, or to a command.
    if let Some(request_topic) = topic.strip_suffix("_reply") {
        let reply: Option<Value> = serde_json::from_slice(payload).ok();
        let rid = reply.as_ref().and_then(enos::reply_id).unwrap_or_default();
        let code = reply
            .as_ref()
            .and_then(|r| serde_json::from_value::<Reply>(r.clone()).ok())
            .map(|r| r.code);
        if request_topic == enos::activate_info(&s.id.product_key, &s.id.device_key) {
            if code == Some(enos::SUCCESS) && ep.confirm_activation(&s.id) {
                ep.emit(
                    Event::new("activated", s.protocol)
                        .device(&s.id)
                        .topic(topic)
                        .code(enos::SUCCESS),
                );
            } else {
                ep.emit(
                    Event::new("reply", s.protocol)
                        .device(&s.id)
                        .topic(topic)
                        .code(code.unwrap_or(0))
                        .message("the activation was not acknowledged with code 200"),
                );
            }
            return true;
        }
        // A JSON reply by its id; raw bytes (`model/down_raw_reply`) by topic, oldest first.
        let raw_key = (topic.to_string(), String::new());
        let key = (topic.to_string(), rid);
        let json_reply = reply.is_some() && !key.1.is_empty();
        let (waiting, raw) = match json_reply.then(|| take_waiting(&mut s.commands, &key)).flatten() {
            Some(w) => (Some(w), false),
            None => (take_waiting(&mut s.commands, &raw_key), true),
        };
        if let Some(waiting) = waiting {
            let mut e = Event::new("reply", s.protocol).device(&s.id).topic(topic);
            if let Some(c) = code.filter(|_| !raw) {
                e = e.code(c);
            }
            if raw {
                e = e.message(format!("{} raw bytes", payload.len()));
            }
            ep.emit(e);
            let answer = if raw {
                use base64::Engine;
                json!({
                    "payload": String::from_utf8_lossy(payload),
                    "payload_base64": base64::engine::general_purpose::STANDARD.encode(payload),
                })
            } else {
                reply.unwrap_or(Value::Null)
            };
            let _ = waiting.send(answer);
            return true;
        }
    }
    let reply = match ep.answer(s.protocol, topic, payload) {
        Answer::Reply(r) | Answer::NotOffered(r) => r,
        Answer::Raw(bytes) => {
            let reply_topic = enos::reply_topic(topic);
            ep.emit(
                Event::new("reply", s.protocol)
                    .device(&s.id)
                    .topic(&reply_topic)
                    .message(format!("{} raw bytes", bytes.len())),
            );
            return wire.publish(&reply_topic, bytes);
        }
        Answer::NotEnos => {
            ep.emit(
                Event::new("request", s.protocol)
                    .device(&s.id)
                    .topic(topic)
                    .message("not an EnOS upstream topic; no reply"),
            );
            return true;
        }
    };
    let reply = super::gateway::sub_devices(s, ep, topic, payload, reply);
    // Delivered to the connection whether or not it subscribed: the official Python SDK does
    // not subscribe again after a reconnect and still expects its replies.
    let reply_topic = enos::reply_topic(topic);
    ep.emit(
        Event::new("reply", s.protocol)
            .device(&s.id)
            .topic(&reply_topic)
            .code(reply.code),
    );
    wire.publish(&reply_topic, reply.to_bytes())
}

/// The oldest test waiting on `key`, if any.
fn take_waiting(
    commands: &mut HashMap<(String, String), VecDeque<oneshot::Sender<Value>>>,
    key: &(String, String),
) -> Option<oneshot::Sender<Value>> {
    let queue = commands.get_mut(key)?;
    let first = queue.pop_front();
    if queue.is_empty() {
        commands.remove(key);
    }
    first
}

/// A command from a test, pushed to the device (EnOS pushes commands; the SDKs never subscribe
/// to them), and the device's reply handed back when it comes.
fn command<I: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<I>,
    s: &mut Session,
    ep: &Endpoint,
    cmd: Downlink,
) {
    ep.emit(
        Event::new("command", s.protocol)
            .device(&s.id)
            .topic(&cmd.topic)
            .method(&cmd.method),
    );
    // A sub-device disabled or deleted is logged out of its gateway's session at once.
    if matches!(cmd.method.as_str(), "combine.disable" | "combine.delete")
        && let Ok(v) = serde_json::from_slice::<Value>(&cmd.payload)
    {
        super::gateway::log_out(s, ep, v.get("params").unwrap_or(&Value::Null), &cmd.method);
    }
    // Commands whose test stopped waiting are dropped, so the table stays small.
    for queue in s.commands.values_mut() {
        queue.retain(|waiting| !waiting.is_closed());
    }
    s.commands.retain(|_, queue| !queue.is_empty());
    if wire.publish(&cmd.topic, cmd.payload) {
        s.commands
            .entry((enos::reply_topic(&cmd.topic), cmd.id.unwrap_or_default()))
            .or_default()
            .push_back(cmd.reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one held connection's task costs in futures: the login's future is boxed apart
    /// and freed once done, so the held loop is what stays.
    #[test]
    fn a_held_connection_s_future_stays_small() {
        let caps = crate::capabilities::embedded().expect("caps");
        let registry = crate::registry::Registry::parse(&crate::source::SourceFile::new("r.toml", ""))
            .expect("registry");
        let (ep, _) = Endpoint::in_memory(caps, registry, Duration::ZERO);
        let ep = Arc::new(ep);
        let (io, _peer) = tokio::io::duplex(64);
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let (_stop, shutdown) = watch::channel(false);
        let Admission::Waiting(w) = ep.limits.admit() else {
            panic!("admitted")
        };
        let slot = w.log_in().expect("a slot");
        let held_future = held(
            LoggedIn {
                wire: Wire {
                    io,
                    buf: BytesMut::new(),
                    out: BytesMut::new(),
                },
                client_id: "c".into(),
                clean_session: true,
                keep_alive: 60,
                id: Identity::new("p", "d"),
                secret: None,
                slot,
            },
            peer,
            "mqtt",
            &ep,
            shutdown,
        );
        let size = std::mem::size_of_val(&held_future);
        println!("held future: {size} bytes");
        assert!(size <= 2048, "the held connection's future is {size} bytes");
    }
}
