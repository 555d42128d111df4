//! A logged-in MQTT connection, from its CONNACK to its end: its own topics (and those of
//! sub-devices logged in through it, [`super::gateway`]), replies on `<topic>_reply`, the
//! activation push, and the commands a test sends (replies and pushes reach the connection
//! whether or not it subscribed, as the official SDKs expect).
//!
//! MQTT 3.1.1 as the specification says: a second connection with a client id in use takes
//! over, and the older one is closed (MQTT-3.1.4-2); a QoS 2 PUBLISH sent again before its
//! PUBREL is acknowledged and not processed again (MQTT-4.3.3-2); a clean-session-0 client's
//! subscriptions are kept for its return, and CONNACK's session present says whether they were
//! (MQTT-3.2.2-2), in [`super::mqtt_clients::ClientTable`]. Answers to packets read together
//! leave in one segment, written only outside `select!` so a write is never cancelled halfway,
//! and only once the events of their requests are in the record.
//!
//! A held connection's task is what a fleet's memory is made of: its future is pinned small
//! (a unit test below), and it keeps no buffer while it waits.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, Publish, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, oneshot, watch};

use super::commands::{Mail, Mailbox};
use super::limits::Slot;
use super::mqtt_clients::{Claimed, MAX_KEPT_FILTERS, Subscriptions, next_connection};
use super::mqtt_wire::{Broken, Read, Wire};
use super::policy::{Fate, Inbound, Received};
use super::{Answer, Downlink, Endpoint, Event, EventKind, Identity, Protocol};
use crate::enos::{self, Downstream, Lifecycle, Reply};
use crate::secret::Secret;

/// The idle bound when a client asks for no keep-alive at all.
const MAX_IDLE: Duration = Duration::from_secs(3600);

/// A connection whose login succeeded, and what its CONNECT asked for.
pub(super) struct LoggedIn<I> {
    pub(super) wire: Wire<I>,
    pub(super) client_id: String,
    pub(super) clean_session: bool,
    pub(super) keep_alive: u16,
    pub(super) id: Identity,
    /// The secret an activation pushes.
    pub(super) secret: Option<Secret>,
    pub(super) slot: Slot,
}

/// What a logged-in connection holds.
pub(super) struct Connection {
    pub(super) id: Identity,
    pub(super) protocol: Protocol,
    pub(super) subdevices: HashSet<Identity>,
    /// Commands waiting for their reply: (reply topic, request id, empty for raw bytes) to the
    /// tests waiting, oldest first.
    commands: HashMap<(String, String), VecDeque<oneshot::Sender<Value>>>,
    /// QoS 2 packet ids whose PUBREL has not come yet (at most 65,536 by their size).
    qos2: HashSet<u16>,
    /// The topic filters subscribed, kept for a clean-session-0 client's return.
    subscriptions: Subscriptions,
}

impl Connection {
    /// The connection is open (CONNACK sent): its `login` event, the device online in the
    /// twin, its mailbox for commands, and the session it continues.
    fn open(
        ep: &Endpoint,
        id: Identity,
        peer: SocketAddr,
        protocol: Protocol,
        activating: bool,
        claimed: Claimed,
        subscriptions: Subscriptions,
    ) -> (Connection, Arc<Mailbox>) {
        ep.events.emit(super::mqtt::login_event(
            &id, peer, protocol, activating, &claimed,
        ));
        ep.twin.connected(&id, protocol, None);
        let mailbox = Arc::new(Mailbox::default());
        ep.mailboxes.connect(&id, mailbox.clone());
        if let (Some(kept), Ok(mut subs)) = (claimed.session, subscriptions.lock()) {
            *subs = kept;
        }
        let c = Connection {
            id,
            protocol,
            subdevices: HashSet::new(),
            commands: HashMap::new(),
            qos2: HashSet::new(),
            subscriptions,
        };
        (c, mailbox)
    }

    /// The filters subscribed, taken to be kept for the client's return.
    fn take_subscriptions(&self) -> Vec<(String, QoS)> {
        self.subscriptions
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    /// The device's own topics, and those of enabled sub-devices logged in through it.
    fn may_use(&self, ep: &Endpoint, topic: &str) -> bool {
        enos::owns(topic, &self.id.product_key, &self.id.device_key)
            || self
                .subdevices
                .iter()
                .any(|s| enos::owns(topic, &s.product_key, &s.device_key) && ep.twin.enabled(s) == Some(true))
    }
}

/// Why a logged-in connection ended: what its `disconnect` event says, and what the end does
/// to the client's session and socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ended {
    /// The client sent DISCONNECT.
    Disconnect,
    /// The client closed the connection.
    ClientClosed,
    /// Nothing came for 1.5 times the keep-alive.
    Idle,
    /// Bytes that are not MQTT 3.1.1, or a packet over the bound.
    Broken(Broken),
    /// A write failed, or the client did not read for the write's bound.
    Failed,
    /// A newer connection logged in with the same client id (MQTT-3.1.4-2).
    TakenOver,
    /// serve is stopping.
    Stopping,
    /// A harness dropped the connection ([`super::commands::Mailboxes::hang_up`]).
    HungUp,
}

impl Ended {
    /// Whether a clean-session-0 client's subscriptions are kept for its return: not when a
    /// newer connection took the session over (it goes on there).
    fn keeps_session(&self) -> bool {
        *self != Ended::TakenOver
    }

    /// Whether the client has left already (DISCONNECT, or it closed): dropping the socket
    /// closes it, and a shutdown first would cost a system call for nothing.
    fn client_left(&self) -> bool {
        matches!(self, Ended::Disconnect | Ended::ClientClosed)
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Disconnect => f.write_str("DISCONNECT"),
            Ended::ClientClosed => f.write_str("the client closed the connection"),
            Ended::Idle => f.write_str("idle for 1.5 times the keep-alive"),
            Ended::Broken(why) => write!(f, "{why}"),
            Ended::Failed => f.write_str("the connection failed"),
            Ended::TakenOver => {
                f.write_str("taken over: a new connection logged in with the same client id (MQTT-3.1.4-2)")
            }
            Ended::Stopping => f.write_str("serve is stopping"),
            Ended::HungUp => f.write_str("dropped by serve's policy (a harness ended the connection)"),
        }
    }
}

/// A logged-in connection: CONNACK, then its packets and commands until it ends.
pub(super) async fn held<I: AsyncRead + AsyncWrite + Unpin>(
    l: LoggedIn<I>,
    peer: SocketAddr,
    protocol: Protocol,
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
    let claimed = ep.clients.claim(
        &client_id,
        connection,
        taken.clone(),
        clean_session,
        subscriptions.clone(),
    );
    let present = claimed.session.is_some();
    if !wire
        .send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, present)))
        .await
    {
        ep.clients.release(&client_id, connection);
        return;
    }
    let activating = secret.is_some();
    let (mut c, mailbox) = Connection::open(ep, id, peer, protocol, activating, claimed, subscriptions);
    if let Some(secret) = secret {
        super::mqtt::push_activation(&mut wire, &c.id, secret);
    }
    // 1.5 times the keep-alive (MQTT-3.1.2-24).
    let idle = match keep_alive {
        0 => MAX_IDLE,
        k => Duration::from_millis(u64::from(k) * 1500).min(MAX_IDLE),
    };
    let ended = serve_packets(&mut wire, &mut c, ep, &mailbox, &taken, &mut shutdown, idle).await;
    // Answers queued before a DISCONNECT in the same segment still go out.
    ep.committed().await;
    let _ = wire.write_out().await;
    ep.mailboxes.disconnect(&c.id, &mailbox);
    ep.clients.release(&client_id, connection);
    if !clean_session && ended.keeps_session() {
        ep.clients.keep(&client_id, c.take_subscriptions());
    }
    ep.twin.disconnected(&c.id);
    for sub in &c.subdevices {
        ep.twin.disconnected(sub);
    }
    if !ended.client_left() {
        let _ = wire.io.shutdown().await;
    }
    ep.events.emit(
        Event::new(EventKind::Disconnect, protocol)
            .device(&c.id)
            .message(ended.to_string()),
    );
}

/// The packets and commands of a logged-in connection, until it ends.
async fn serve_packets<I: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<I>,
    c: &mut Connection,
    ep: &Endpoint,
    mailbox: &Mailbox,
    taken: &Notify,
    shutdown: &mut watch::Receiver<bool>,
    idle: Duration,
) -> Ended {
    loop {
        // Answers are queued while more packets are already read, and written before any
        // wait: a client that sends SUBSCRIBE and PUBLISH together gets SUBACK, PUBACK and
        // the reply in one segment. Writing here, outside `select!`, keeps a half-done write
        // from being cancelled.
        if wire.buf.is_empty() {
            // Nothing half-read: a held connection keeps no buffer while it waits.
            wire.buf = BytesMut::new();
        }
        if !wire.has_packet() && !wire.out.is_empty() {
            // No reply leaves before its request's event is in the record and what it
            // changed is in the data file.
            ep.committed().await;
            if !wire.write_out().await {
                return Ended::Failed;
            }
        }
        tokio::select! {
            read = tokio::time::timeout(idle, wire.next()) => match read {
                Err(_) => return Ended::Idle,
                Ok(Read::Closed) => return Ended::ClientClosed,
                Ok(Read::Broken(why)) => return Ended::Broken(why),
                Ok(Read::Packet(Packet::Disconnect)) => return Ended::Disconnect,
                Ok(Read::Packet(p)) => {
                    if !handle(wire, c, ep, p) {
                        return Ended::Failed;
                    }
                }
            },
            mail = mailbox.recv() => match mail {
                Mail::Command(cmd) => command(wire, c, ep, cmd),
                Mail::HangUp => return Ended::HungUp,
            },
            () = taken.notified() => return Ended::TakenOver,
            _ = shutdown.changed() => return Ended::Stopping,
        }
    }
}

/// One packet from a logged-in device, its answers queued; false when the connection must end.
fn handle<I: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<I>,
    c: &mut Connection,
    ep: &Endpoint,
    p: Packet,
) -> bool {
    ep.policy.received(&c.id, received(&p));
    match p {
        Packet::Subscribe(sub) => {
            let codes = sub
                .filters
                .iter()
                .map(|f| subscribe(c, ep, &f.path, f.qos))
                .collect();
            wire.queue(Packet::SubAck(SubAck::new(sub.pkid, codes)))
        }
        Packet::Unsubscribe(u) => {
            if let Ok(mut subs) = c.subscriptions.lock() {
                subs.retain(|(p, _)| !u.topics.contains(p));
            }
            wire.queue(Packet::UnsubAck(UnsubAck::new(u.pkid)))
        }
        Packet::PingReq => wire.queue(Packet::PingResp),
        Packet::Publish(p) => {
            let inbound = Inbound {
                device: &c.id,
                protocol: c.protocol,
                topic: &p.topic,
                qos: p.qos,
                pkid: p.pkid,
                dup: p.dup,
                payload: &p.payload,
            };
            if ep.policy.publish(&inbound) == Fate::Lose {
                ep.events.emit(
                    Event::new(EventKind::Withheld, c.protocol)
                        .device(&c.id)
                        .topic(&p.topic)
                        .message(format!(
                            "packet {} (QoS {:?}, dup flag {}) lost on purpose by serve's policy: not acknowledged, not processed",
                            p.pkid, p.qos, p.dup
                        )),
                );
                return true;
            }
            match acknowledge(wire, c, ep, &p) {
                Acked::Process => publish(wire, c, ep, &p.topic, &p.payload),
                Acked::Duplicate => true,
                Acked::Failed => false,
            }
        }
        Packet::PubRel(r) => {
            c.qos2.remove(&r.pkid);
            wire.queue(Packet::PubComp(PubComp::new(r.pkid)))
        }
        // Acknowledgements of nothing we sent at QoS 1, and packets a server never gets.
        _ => true,
    }
}

/// A packet's kind, as a policy observes it.
fn received(p: &Packet) -> Received {
    match p {
        Packet::Publish(_) => Received::Publish,
        Packet::PingReq => Received::PingReq,
        Packet::Subscribe(_) => Received::Subscribe,
        Packet::Unsubscribe(_) => Received::Unsubscribe,
        Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
            Received::Acknowledgement
        }
        _ => Received::Other,
    }
}

/// One filter of a SUBSCRIBE: granted on the device's own topics (and kept for its session),
/// refused elsewhere.
fn subscribe(c: &mut Connection, ep: &Endpoint, path: &str, qos: QoS) -> SubscribeReasonCode {
    if !c.may_use(ep, path) {
        ep.events.emit(
            Event::new(EventKind::Denied, c.protocol)
                .device(&c.id)
                .topic(path)
                .message("a subscription outside the device's own topics"),
        );
        return SubscribeReasonCode::Failure;
    }
    if let Ok(mut subs) = c.subscriptions.lock()
        && subs.len() < MAX_KEPT_FILTERS
        && !subs.iter().any(|(p, _)| p == path)
    {
        subs.push((path.to_string(), qos));
    }
    // Replies go out at QoS 0 and 1 is the most granted: QoS 2 is not EnOS's.
    let granted = if qos == QoS::AtMostOnce {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    SubscribeReasonCode::Success(granted)
}

/// What the acknowledgement of a PUBLISH leaves to do.
enum Acked {
    Process,
    /// A QoS 2 packet again before its PUBREL: acknowledged, not processed again.
    Duplicate,
    /// The acknowledgement could not be queued: the connection ends.
    Failed,
}

/// The acknowledgement of a PUBLISH, queued to leave with the reply or the next write.
fn acknowledge<I: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<I>,
    c: &mut Connection,
    ep: &Endpoint,
    p: &Publish,
) -> Acked {
    let queued = match p.qos {
        QoS::AtMostOnce => true,
        QoS::AtLeastOnce => wire.queue(Packet::PubAck(PubAck::new(p.pkid))),
        // EnOS takes QoS 0 and 1; a QoS 2 message still gets its protocol's answer, and one
        // sent again before its PUBREL is not processed twice (MQTT-4.3.3-2).
        QoS::ExactlyOnce => {
            let fresh = c.qos2.insert(p.pkid);
            let rec = wire.queue(Packet::PubRec(PubRec::new(p.pkid)));
            if rec && !fresh {
                ep.events.emit(
                    Event::new(EventKind::Duplicate, c.protocol)
                        .device(&c.id)
                        .topic(&p.topic)
                        .message(format!(
                            "QoS 2 packet {} again before its PUBREL (dup flag {}): acknowledged, not processed again",
                            p.pkid, p.dup
                        )),
                );
                return Acked::Duplicate;
            }
            rec
        }
    };
    if queued { Acked::Process } else { Acked::Failed }
}

/// A PUBLISH on one of the connection's topics: a device's reply (to the activation push or a
/// command), else a request, answered on `<topic>_reply`.
fn publish<I: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<I>,
    c: &mut Connection,
    ep: &Endpoint,
    topic: &str,
    payload: &[u8],
) -> bool {
    if !c.may_use(ep, topic) {
        ep.events.emit(
            Event::new(EventKind::Denied, c.protocol)
                .device(&c.id)
                .topic(topic)
                .message("a publish outside the device's own topics, dropped"),
        );
        return true;
    }
    if let Some(request_topic) = topic.strip_suffix("_reply")
        && device_reply(c, ep, topic, request_topic, payload)
    {
        return true;
    }
    let reply = match ep.answer(c.protocol, topic, payload) {
        Answer::Reply(r) | Answer::NotOffered(r) => r,
        Answer::Raw(bytes) => {
            let reply_topic = enos::reply_topic(topic);
            ep.events.emit(
                Event::new(EventKind::Reply, c.protocol)
                    .device(&c.id)
                    .topic(&reply_topic)
                    .message(format!("{} raw bytes", bytes.len())),
            );
            return wire.publish(&reply_topic, bytes);
        }
        Answer::NotEnos => {
            ep.events.emit(
                Event::new(EventKind::Request, c.protocol)
                    .device(&c.id)
                    .topic(topic)
                    .message("not an EnOS upstream topic; no reply"),
            );
            return true;
        }
    };
    let reply = super::gateway::sub_devices(c, ep, topic, payload, reply);
    // Delivered to the connection whether or not it subscribed: the official Python SDK does
    // not subscribe again after a reconnect and still expects its replies.
    let reply_topic = enos::reply_topic(topic);
    ep.events.emit(
        Event::new(EventKind::Reply, c.protocol)
            .device(&c.id)
            .topic(&reply_topic)
            .code(reply.code),
    );
    wire.publish(&reply_topic, reply.to_bytes())
}

/// A device's reply on `topic` (`request_topic` + `_reply`): to the activation push, or to a
/// command a test is waiting on. `false` when no one waits for it (then it is a request).
fn device_reply(c: &mut Connection, ep: &Endpoint, topic: &str, request_topic: &str, payload: &[u8]) -> bool {
    let reply: Option<Value> = serde_json::from_slice(payload).ok();
    let code = reply
        .as_ref()
        .and_then(|r| serde_json::from_value::<Reply>(r.clone()).ok())
        .map(|r| r.code);
    if request_topic == enos::activate_info(&c.id.product_key, &c.id.device_key) {
        let event = if code == Some(enos::SUCCESS) && ep.confirm_activation(&c.id) {
            Event::new(EventKind::Activated, c.protocol).code(enos::SUCCESS)
        } else {
            Event::new(EventKind::Reply, c.protocol)
                .code(code.unwrap_or(0))
                .message("the activation was not acknowledged with code 200")
        };
        ep.events.emit(event.device(&c.id).topic(topic));
        return true;
    }
    // A JSON reply by its id; raw bytes (`model/down_raw_reply`) by topic, oldest first.
    let rid = reply.as_ref().and_then(enos::reply_id).unwrap_or_default();
    let by_id = (topic.to_string(), rid);
    let json_reply = reply.is_some() && !by_id.1.is_empty();
    let (waiting, raw) = match json_reply
        .then(|| take_waiting(&mut c.commands, &by_id))
        .flatten()
    {
        Some(w) => (w, false),
        None => match take_waiting(&mut c.commands, &(topic.to_string(), String::new())) {
            Some(w) => (w, true),
            None => return false,
        },
    };
    let mut e = Event::new(EventKind::Reply, c.protocol)
        .device(&c.id)
        .topic(topic);
    let answer = if raw {
        e = e.message(format!("{} raw bytes", payload.len()));
        super::commands::raw_answer(payload)
    } else {
        if let Some(code) = code {
            e = e.code(code);
        }
        reply.unwrap_or(Value::Null)
    };
    ep.events.emit(e);
    let _ = waiting.send(answer);
    true
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
    c: &mut Connection,
    ep: &Endpoint,
    cmd: Downlink,
) {
    ep.events.emit(
        Event::new(EventKind::Command, c.protocol)
            .device(&c.id)
            .topic(&cmd.topic)
            .method(&cmd.method),
    );
    // A sub-device disabled or deleted is logged out of its gateway's session at once.
    if matches!(
        cmd.kind,
        Downstream::SubLifecycle(Lifecycle::Disable | Lifecycle::Delete)
    ) && let Ok(v) = serde_json::from_slice::<Value>(&cmd.payload)
    {
        super::gateway::log_out(c, ep, v.get("params").unwrap_or(&Value::Null), &cmd.method);
    }
    // Commands whose test stopped waiting are dropped, so the table stays small.
    for queue in c.commands.values_mut() {
        queue.retain(|waiting| !waiting.is_closed());
    }
    c.commands.retain(|_, queue| !queue.is_empty());
    if wire.publish(&cmd.topic, cmd.payload) {
        c.commands
            .entry((enos::reply_topic(&cmd.topic), cmd.id.unwrap_or_default()))
            .or_default()
            .push_back(cmd.reply);
    }
}

#[cfg(test)]
#[path = "mqtt_held_tests.rs"]
mod tests;
