//! The MQTT 3.1.1 side of `serve`, on rumqttc's packet codec (the one the probe uses). It is a
//! device endpoint, not a general broker: rumqttd cannot refuse a login with a CONNACK code,
//! cannot push to a client that never subscribed, and cannot tell who published a message, all
//! of which EnOS does. Each connection is one task: the EnOS login, then its own topics (and
//! those of sub-devices logged in through it), replies on `<topic>_reply`, the activation push,
//! and commands a test sends (replies and pushes reach the connection whether or not it
//! subscribed, as the official SDKs expect). Everything a client controls is bounded: packet
//! size, connections, the wait for CONNECT, writes to a client that does not read, idleness
//! (1.5 times the keep-alive), and the commands waiting for a reply.

use std::collections::{HashMap, HashSet};
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
use tokio::sync::{mpsc, oneshot, watch};

use super::{Answer, Downlink, Endpoint, Event, Identity, MAX_PACKET};
use crate::enos::{self, Reply, Request};

/// How long a client may take to send CONNECT after the TCP connection opens.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
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
    let l = &listener;
    let stop = shutdown.clone();
    super::accept_each(
        || l.accept(),
        shutdown,
        move |tcp, peer| {
            let (ep, shutdown, tls) = (ep.clone(), stop.clone(), tls.clone());
            async move {
                let _ = tcp.set_nodelay(true);
                match tls {
                    Some(acceptor) => match tokio::time::timeout(CONNECT_WAIT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection(stream, peer, protocol, &ep, shutdown).await,
                        _ => ep.emit(
                            Event::new("disconnect", protocol)
                                .peer(peer)
                                .message("the TLS handshake failed"),
                        ),
                    },
                    None => connection(tcp, peer, protocol, &ep, shutdown).await,
                }
            }
        },
    )
    .await;
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

    /// Write what is queued, if anything.
    async fn write_out(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let write = async { self.io.write_all(&self.out).await.is_ok() && self.io.flush().await.is_ok() };
        let ok = tokio::time::timeout(WRITE_WAIT, write).await.unwrap_or(false);
        self.out.clear();
        ok
    }

    async fn publish(&mut self, topic: &str, payload: Vec<u8>) -> bool {
        self.send(Packet::Publish(Publish::new(topic, QoS::AtMostOnce, payload)))
            .await
    }

    /// Whether a whole packet is already read, so the loop can answer it before writing.
    fn has_packet(&self) -> bool {
        rumqttc::mqttbytes::check(self.buf.iter(), MAX_PACKET).is_ok()
    }

    /// The next packet; cancel-safe (bytes read so far stay in the buffer).
    async fn next(&mut self) -> Read {
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(p) => return Read::Packet(p),
                Err(CodecError::InsufficientBytes(_)) => {}
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
struct Session {
    id: Identity,
    protocol: &'static str,
    subdevices: HashSet<Identity>,
    /// Commands waiting for their reply: (reply topic, request id) to the test waiting.
    commands: HashMap<(String, String), oneshot::Sender<Value>>,
}

impl Session {
    /// The device's own topics, and those of sub-devices logged in through it.
    fn may_use(&self, topic: &str) -> bool {
        enos::owns(topic, &self.id.product_key, &self.id.device_key)
            || self
                .subdevices
                .iter()
                .any(|s| enos::owns(topic, &s.product_key, &s.device_key))
    }
}

async fn connection<I: AsyncRead + AsyncWrite + Unpin>(
    io: I,
    peer: SocketAddr,
    protocol: &'static str,
    ep: &Arc<Endpoint>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut wire = Wire {
        io,
        buf: BytesMut::with_capacity(4096),
        out: BytesMut::with_capacity(4096),
    };
    let connect = match tokio::time::timeout(CONNECT_WAIT, wire.next()).await {
        Ok(Read::Packet(Packet::Connect(c))) => c,
        Ok(Read::Packet(_)) | Ok(Read::Broken(_)) => {
            ep.emit(
                Event::new("login_refused", protocol)
                    .peer(peer)
                    .message("the first packet is not CONNECT"),
            );
            return;
        }
        Ok(Read::Closed) => return,
        Err(_) => {
            ep.emit(
                Event::new("login_refused", protocol)
                    .peer(peer)
                    .message("no CONNECT within 10 s"),
            );
            return;
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
    let login = ep
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
        });
    let (id, secret) = match login {
        Ok(ok) => ok,
        Err(r) => {
            let code = match r.connack {
                2 => ConnectReturnCode::BadClientId,
                3 => ConnectReturnCode::ServiceUnavailable,
                4 => ConnectReturnCode::BadUserNamePassword,
                _ => ConnectReturnCode::NotAuthorized,
            };
            let _ = wire.send(Packet::ConnAck(ConnAck::new(code, false))).await;
            let mut e = Event::new("login_refused", protocol)
                .peer(peer)
                .code(i64::from(r.connack))
                .message(r.reason);
            if let Some((dk, pk)) = username.split_once('&') {
                e = e.keys(pk, dk);
            }
            ep.emit(e);
            return;
        }
    };
    if !wire
        .send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)))
        .await
    {
        return;
    }
    let mut login = Event::new("login", protocol).device(&id).peer(peer).code(0);
    if secret.is_some() {
        login = login.message("securemode 3: activating");
    }
    ep.emit(login);
    let (tx, mut rx) = mpsc::channel::<Downlink>(8);
    ep.connect_device(&id, tx.clone());
    let mut s = Session {
        id: id.clone(),
        protocol,
        subdevices: HashSet::new(),
        commands: HashMap::new(),
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
        wire.publish(&topic, push.to_bytes()).await;
        drop(secret);
    }
    let idle = match connect.keep_alive {
        0 => MAX_IDLE,
        k => Duration::from_millis(u64::from(k) * 1500).min(MAX_IDLE),
    };
    let why = loop {
        // Answers are queued while more packets are already read, and written before any
        // wait: a client that sends SUBSCRIBE and PUBLISH together gets SUBACK, PUBACK and
        // the reply in one segment. Writing here, outside `select!`, keeps a half-done write
        // from being cancelled.
        if !wire.has_packet() && !wire.write_out().await {
            break "the connection failed".to_string();
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
            Some(cmd) = rx.recv() => command(&mut wire, &mut s, ep, cmd).await,
            _ = shutdown.changed() => break "serve is stopping".to_string(),
        }
    };
    // Answers queued before a DISCONNECT in the same segment still go out.
    let _ = wire.write_out().await;
    ep.disconnect_device(&id, &tx);
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
                if s.may_use(&f.path) {
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
        Packet::Unsubscribe(u) => wire.queue(Packet::UnsubAck(UnsubAck::new(u.pkid))),
        Packet::PingReq => wire.queue(Packet::PingResp),
        Packet::Publish(p) => {
            // The acknowledgement is queued and leaves with the reply, or with the next write.
            let acked = match p.qos {
                QoS::AtMostOnce => true,
                QoS::AtLeastOnce => wire.queue(Packet::PubAck(PubAck::new(p.pkid))),
                // EnOS takes QoS 0 and 1; a QoS 2 message still gets its protocol's answer.
                QoS::ExactlyOnce => wire.queue(Packet::PubRec(PubRec::new(p.pkid))),
            };
            acked && publish(wire, s, ep, &p.topic, &p.payload).await
        }
        Packet::PubRel(r) => wire.queue(Packet::PubComp(PubComp::new(r.pkid))),
        // Acknowledgements of nothing we sent at QoS 1, and packets a server never gets.
        _ => true,
    }
}

async fn publish<I: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<I>,
    s: &mut Session,
    ep: &Endpoint,
    topic: &str,
    payload: &[u8],
) -> bool {
    if !s.may_use(topic) {
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
        if let Some(waiting) = s.commands.remove(&(topic.to_string(), rid)) {
            let mut e = Event::new("reply", s.protocol).device(&s.id).topic(topic);
            if let Some(c) = code {
                e = e.code(c);
            }
            ep.emit(e);
            let _ = waiting.send(reply.unwrap_or(Value::Null));
            return true;
        }
    }
    let reply = match ep.answer(s.protocol, topic, payload) {
        Answer::Reply(r) => r,
        Answer::Raw => return true,
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
    let reply = sub_devices(s, ep, topic, payload, reply);
    // Delivered to the connection whether or not it subscribed: the official Python SDK does
    // not subscribe again after a reconnect and still expects its replies.
    let reply_topic = enos::reply_topic(topic);
    ep.emit(
        Event::new("reply", s.protocol)
            .device(&s.id)
            .topic(&reply_topic)
            .code(reply.code),
    );
    wire.publish(&reply_topic, reply.to_bytes()).await
}

/// The sub-device methods on the gateway's session topic: checked further once the message
/// itself is well-formed.
fn sub_devices(s: &mut Session, ep: &Endpoint, topic: &str, payload: &[u8], reply: Reply) -> Reply {
    if reply.code != enos::SUCCESS {
        return reply;
    }
    let session = format!("/ext/session/{}/{}/", s.id.product_key, s.id.device_key);
    let Some(rest) = topic.strip_prefix(&session) else {
        return reply;
    };
    let params = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| v.get("params").cloned())
        .unwrap_or(Value::Null);
    let mut login = |params: &Value| {
        let (code, sub, message) = ep.subdevice_login(&s.id, params);
        let (pk, dk) = keys_in(params);
        let (pk, dk) = (pk.as_str(), dk.as_str());
        let mut e = Event::new("subdevice_login", s.protocol)
            .keys(pk, dk)
            .topic(topic)
            .code(code);
        if !message.is_empty() {
            e = e.message(message.clone());
        }
        ep.emit(e);
        if let Some(sub) = sub {
            s.subdevices.insert(sub);
        }
        (code, message, json!({"productKey": pk, "deviceKey": dk}))
    };
    match rest {
        "combine/login" => {
            let (code, message, data) = login(&params);
            let r = Reply::new(
                reply.id,
                code,
                if code == enos::SUCCESS { data } else { Value::Null },
            );
            if message.is_empty() {
                r
            } else {
                r.with_message(message)
            }
        }
        "combine/login/batch" => {
            // Each entry is signed with the batch's client id and timestamp.
            let shared = ["clientId", "timestamp", "signMethod"];
            let mut first_failure = None;
            let mut logged = Vec::new();
            for item in params
                .get("subDevices")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let mut p = item.clone();
                for k in shared {
                    if let (Some(v), Some(obj)) = (params.get(k), p.as_object_mut()) {
                        obj.entry(k).or_insert(v.clone());
                    }
                }
                let (code, message, data) = login(&p);
                if code == enos::SUCCESS {
                    logged.push(data);
                } else if first_failure.is_none() {
                    first_failure = Some((code, message));
                }
            }
            match first_failure {
                None => Reply::new(reply.id, enos::SUCCESS, json!({"loginedSubDevices": logged})),
                Some((code, message)) => {
                    Reply::new(reply.id, code, json!({"loginedSubDevices": logged})).with_message(message)
                }
            }
        }
        "combine/logout" => {
            let (pk, dk) = keys_in(&params);
            let (pk, dk) = (pk.as_str(), dk.as_str());
            s.subdevices.remove(&Identity::new(pk, dk));
            Reply::new(
                reply.id,
                enos::SUCCESS,
                json!({"productKey": pk, "deviceKey": dk}),
            )
        }
        _ => reply,
    }
}

/// The `productKey` and `deviceKey` a sub-device request names (strings or numbers).
fn keys_in(params: &Value) -> (String, String) {
    let key = |k: &str| super::text_field(params, k).unwrap_or_default();
    (key("productKey"), key("deviceKey"))
}

/// A command from a test, pushed to the device (EnOS pushes commands; the SDKs never subscribe
/// to them), and the device's reply handed back.
async fn command<I: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<I>,
    s: &mut Session,
    ep: &Endpoint,
    cmd: Downlink,
) {
    ep.emit(
        Event::new("command", s.protocol)
            .device(&s.id)
            .topic(&cmd.topic)
            .method(&cmd.request.method),
    );
    // Commands whose test stopped waiting are dropped, so the table stays small.
    s.commands.retain(|_, waiting| !waiting.is_closed());
    if wire.publish(&cmd.topic, cmd.request.to_bytes()).await {
        s.commands
            .insert((enos::reply_topic(&cmd.topic), cmd.request.id.clone()), cmd.reply);
    }
}
