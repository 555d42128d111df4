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
//! leave in one segment, written before the next read is polled so a write is never cancelled
//! halfway, and only once the events of their requests are in the record.
//!
//! A held connection's task is what a fleet's memory is made of: its future is pinned small
//! (a unit test below), and it keeps no buffer while it waits.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, Publish, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::commands::{Mail, Mailbox};
use super::limits::Slot;
use super::mqtt_clients::{MAX_KEPT_FILTERS, Subscriptions, next_connection};
use super::mqtt_wire::{Broken, Read, WRITE_WAIT, Wire};
use super::policy::{Fate, Inbound, Received};
use super::{Answer, Endpoint, Event, EventKind, Identity, Protocol};
use crate::enos;
use crate::secret::Secret;

/// The idle bound when a client asks for no keep-alive at all.
const MAX_IDLE: Duration = Duration::from_secs(3600);

/// A connection's login, boxed: it is freed once done, so a held connection's future does
/// not keep the login's room.
pub(super) type Login<I> = std::pin::Pin<Box<dyn std::future::Future<Output = Option<LoggedIn<I>>> + Send>>;

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

/// The tests waiting for a device's replies to their commands, by (reply topic, request id;
/// empty for raw bytes), oldest first.
pub(super) type Waiting = HashMap<(String, String), VecDeque<oneshot::Sender<Value>>>;

/// What a logged-in connection holds.
pub(super) struct Connection {
    pub(super) id: Identity,
    pub(super) protocol: Protocol,
    /// What few connections need (sub-devices, commands, QoS 2), made when first needed: a
    /// connection is held for as long as a device stays, and most never need it.
    pub(super) more: Option<Box<More>>,
    /// The topic filters subscribed, kept for a clean-session-0 client's return (none for a
    /// clean-session-1 client: nothing would read them).
    subscriptions: Option<Subscriptions>,
}

#[derive(Default)]
pub(super) struct More {
    subdevices: HashSet<Identity>,
    /// Commands waiting for their reply: (reply topic, request id, empty for raw bytes) to the
    /// tests waiting, oldest first.
    pub(super) commands: Waiting,
    /// QoS 2 packet ids whose PUBREL has not come yet (at most 65,536 by their size).
    qos2: HashSet<u16>,
}

impl Connection {
    /// The connection is open (CONNACK sent, its `login` event emitted): the device online in
    /// the twin, its mailbox for commands, and the session it continues.
    fn open(
        ep: &Endpoint,
        id: Identity,
        protocol: Protocol,
        (session, subscriptions): (Option<Vec<(String, QoS)>>, Option<Subscriptions>),
        mailbox: &Arc<Mailbox>,
    ) -> Connection {
        ep.twin.connected(&id, protocol, None);
        ep.mailboxes.connect(&id, mailbox.clone());
        if let (Some(kept), Some(Ok(mut subs))) = (session, subscriptions.as_ref().map(|s| s.lock())) {
            *subs = kept;
        }
        Connection {
            id,
            protocol,
            more: None,
            subscriptions,
        }
    }

    pub(super) fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }

    /// The sub-devices logged in through this connection.
    pub(super) fn subdevices(&self) -> impl Iterator<Item = &Identity> {
        self.more.iter().flat_map(|m| m.subdevices.iter())
    }

    /// A sub-device logged in through this connection: `false` when it already was.
    pub(super) fn add_subdevice(&mut self, sub: Identity) -> bool {
        self.more().subdevices.insert(sub)
    }

    /// A sub-device logged out: `false` when it was not logged in through this connection.
    pub(super) fn remove_subdevice(&mut self, sub: &Identity) -> bool {
        self.more.as_mut().is_some_and(|m| m.subdevices.remove(sub))
    }

    /// The filters subscribed, taken to be kept for the client's return.
    fn take_subscriptions(&self) -> Vec<(String, QoS)> {
        self.subscriptions
            .as_ref()
            .and_then(|s| s.lock().ok().map(|mut v| std::mem::take(&mut *v)))
            .unwrap_or_default()
    }

    /// The device's own topics, and those of enabled sub-devices logged in through it.
    fn may_use(&self, ep: &Endpoint, topic: &str) -> bool {
        enos::owns(topic, &self.id.product_key, &self.id.device_key)
            || self
                .subdevices()
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

/// A logged-in connection: CONNACK, then its packets and commands until it ends. This future
/// is what a held connection's task is made of (`mqtt::task`): what it keeps across its
/// waits is the connection, the socket, an idle timer and a few words; the waits for the
/// record are boxed while they last, the socket and the mailbox are polled in place.
pub(super) async fn held<I: AsyncRead + AsyncWrite + Unpin>(
    login: Login<I>,
    peer: SocketAddr,
    protocol: Protocol,
    ep: &Arc<Endpoint>,
) {
    // Taken apart as it comes out of the login's box (freed here), so this future holds each
    // part once.
    let Some(LoggedIn {
        mut wire,
        client_id,
        clean_session,
        keep_alive,
        id,
        secret,
        slot: _slot,
    }) = login.await
    else {
        return;
    };
    let client_id: Arc<str> = client_id.into();
    let connection = next_connection();
    let mailbox = Arc::new(Mailbox::default());
    let subscriptions = (!clean_session).then(Subscriptions::default);
    let claimed = ep
        .clients
        .claim(&client_id, connection, &mailbox, subscriptions.clone());
    let present = claimed.session.is_some();
    if !wire
        .send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, present)))
        .await
    {
        ep.clients.release(&client_id, connection);
        return;
    }
    ep.events.emit(super::mqtt::login_event(
        &id,
        peer,
        protocol,
        secret.is_some(),
        &claimed,
    ));
    let session = (claimed.session, subscriptions);
    let mut c = Connection::open(ep, id, protocol, session, &mailbox);
    if let Some(secret) = secret {
        super::mqtt::push_activation(&mut wire, &c.id, secret);
    }
    // 1.5 times the keep-alive (MQTT-3.1.2-24).
    let idle = match keep_alive {
        0 => MAX_IDLE,
        k => Duration::from_millis(u64::from(k) * 1500).min(MAX_IDLE),
    };
    let ended = serve_packets(&mut wire, &mut c, ep, &mailbox, idle).await;
    // Answers queued before a DISCONNECT in the same segment still go out.
    Box::pin(ep.committed()).await;
    let _ = wire.write_out().await;
    ep.mailboxes.disconnect(&c.id, &mailbox);
    ep.clients.release(&client_id, connection);
    if !clean_session && ended.keeps_session() {
        ep.clients.keep(&client_id, c.take_subscriptions());
    }
    ep.twin.disconnected(&c.id);
    for sub in c.subdevices() {
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

/// What woke a held connection.
enum Woke {
    Mail(Mail),
    Read(Read),
    /// The timer: idle, or a write that did not finish in time.
    Timer,
}

/// The packets and commands of a logged-in connection, until it ends. One timer bounds both
/// the idle wait and a write: it is set again only when it fires (a packet moves the idle
/// deadline by a store, not by a timer registration each), and while answers are being
/// written it counts the write's bound instead.
async fn serve_packets<I: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<I>,
    c: &mut Connection,
    ep: &Endpoint,
    mailbox: &Mailbox,
    idle: Duration,
) -> Ended {
    let mut last_read = Instant::now();
    let timer = tokio::time::sleep_until(last_read + idle);
    tokio::pin!(timer);
    loop {
        // Answers are queued while more packets are already read, and written before any
        // wait: a client that sends SUBSCRIBE and PUBLISH together gets SUBACK, PUBACK and
        // the reply in one segment. The write is never cancelled halfway.
        if wire.buf.is_empty() {
            // Nothing half-read: a held connection keeps no buffer while it waits.
            wire.buf = BytesMut::new();
        }
        if !wire.has_packet() && !wire.out.is_empty() {
            // No reply leaves before its request's event is in the record and what it
            // changed is in the data file.
            Box::pin(ep.committed()).await;
            timer.as_mut().reset(Instant::now() + WRITE_WAIT);
            let written = std::future::poll_fn(|cx| match wire.poll_write_out(cx) {
                Poll::Ready(ok) => Poll::Ready(ok),
                Poll::Pending => timer.as_mut().poll(cx).map(|()| false),
            })
            .await;
            if !written {
                return Ended::Failed;
            }
            timer.as_mut().reset(last_read + idle);
        }
        let woke = std::future::poll_fn(|cx| {
            if let Poll::Ready(mail) = mailbox.poll_recv(cx) {
                return Poll::Ready(Woke::Mail(mail));
            }
            if let Poll::Ready(read) = wire.poll_next(cx) {
                return Poll::Ready(Woke::Read(read));
            }
            timer.as_mut().poll(cx).map(|()| Woke::Timer)
        })
        .await;
        match woke {
            Woke::Read(Read::Closed) => return Ended::ClientClosed,
            Woke::Read(Read::Broken(why)) => return Ended::Broken(why),
            Woke::Read(Read::Packet(Packet::Disconnect)) => return Ended::Disconnect,
            Woke::Read(Read::Packet(p)) => {
                last_read = Instant::now();
                if !handle(wire, c, ep, p) {
                    return Ended::Failed;
                }
            }
            Woke::Mail(Mail::Command(cmd)) => super::mqtt_commands::command(wire, c, ep, cmd),
            Woke::Mail(Mail::HangUp) => return Ended::HungUp,
            Woke::Mail(Mail::TakenOver) => return Ended::TakenOver,
            Woke::Mail(Mail::Stopping) => return Ended::Stopping,
            Woke::Timer if last_read.elapsed() >= idle => return Ended::Idle,
            // A packet came since the timer was set: it waits the rest of the idle time.
            Woke::Timer => timer.as_mut().reset(last_read + idle),
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
            if let Some(Ok(mut subs)) = c.subscriptions.as_ref().map(|s| s.lock()) {
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
            if let Some(m) = c.more.as_mut() {
                m.qos2.remove(&r.pkid);
            }
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
    if let Some(Ok(mut subs)) = c.subscriptions.as_ref().map(|s| s.lock())
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
            let fresh = c.more().qos2.insert(p.pkid);
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
        && super::mqtt_commands::device_reply(c, ep, topic, request_topic, payload)
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

#[cfg(test)]
#[path = "mqtt_held_tests.rs"]
mod tests;
