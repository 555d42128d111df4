//! The MQTT 3.1.1 side of `serve`, on rumqttc's packet codec (the one the probe uses). It is a
//! device endpoint, not a general broker: rumqttd cannot refuse a login with a CONNACK code,
//! cannot push to a client that never subscribed, and cannot tell who published a message, all
//! of which EnOS does. Each connection is one task: this module accepts it (under
//! [`super::limits::MqttLimits`], TLS for `--mqtts`) and reads its CONNECT and login;
//! [`super::mqtt_held`] serves it once logged in; [`super::mqtt_wire`] reads and writes its
//! packets. Everything a client controls is bounded: packet size, connections, the wait for
//! CONNECT, writes to a client that does not read, idleness (1.5 times the keep-alive), and
//! the commands waiting for a reply.
//!
//! MQTT 3.1.1 as the specification says: a CONNECT at another protocol level gets CONNACK 0x01
//! (MQTT-3.1.2-2); a refused login gets its CONNACK code, never a silent close. A reply leaves
//! only once its request's event is in the record.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Packet};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};

use super::limits::{Admission, CONNECT_WAIT, CONNECT_WAIT_PRESSED, MAX_REFUSING, Slot, Waiting};
use super::mqtt_clients::Claimed;
use super::mqtt_held::{LoggedIn, Login, held};
use super::mqtt_wire::{Read, Wire, connect_level};
use super::policy::{Admit, Connecting};
use super::{Endpoint, Event, EventKind, Identity, Protocol, Refusal};
use crate::enos::{self, Request};
use crate::secret::Secret;

/// The protocol level of MQTT 3.1.1 (MQTT-3.1.2-2), the only one served.
pub(crate) const LEVEL_3_1_1: u8 = 4;

/// The number a CONNACK return code is on the wire, for events.
pub(crate) fn connack_number(code: ConnectReturnCode) -> i64 {
    i64::from(code as u8)
}

pub(crate) async fn accept(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ep: Arc<Endpoint>,
    shutdown: watch::Receiver<bool>,
) {
    let protocol = if tls.is_some() {
        Protocol::Mqtts
    } else {
        Protocol::Mqtt
    };
    let admit_ep = ep.clone();
    let admit = move || admit_ep.limits.admit().unless_closed();
    let refusing = ep.clone();
    let refuse = move |tcp: tokio::net::TcpStream, peer| {
        drop(tcp);
        refusing.events.emit(
            Event::new(EventKind::LoginRefused, protocol)
                .peer(peer)
                .code(connack_number(ConnectReturnCode::ServiceUnavailable))
                .message(format!(
                    "closed at once: {} connections are logged in (--max-connections) and {MAX_REFUSING} more are being refused",
                    refusing.limits.max(),
                )),
        );
    };
    // At shutdown every logged-in connection is told through its mailbox (a held connection
    // waits on nothing else), while the listener stops accepting.
    let stopping = ep.clone();
    let stop = super::stopped(shutdown.clone());
    let handle = move |tcp: tokio::net::TcpStream, peer, admission| {
        task(tcp, peer, protocol, ep.clone(), tls.clone(), admission)
    };
    let l = &listener;
    tokio::join!(
        super::accept_each(|| l.accept(), shutdown, admit, handle, refuse),
        async move {
            stop.await;
            stopping.clients.stop_all();
        }
    );
}

/// How a connection's task starts: over plain TCP the login, over TLS the handshake and
/// everything after it (boxed apart, so the plain task does not grow by a TLS stream's size).
enum Start {
    Plain(Login<tokio::net::TcpStream>),
    Tls(Pin<Box<dyn Future<Output = ()> + Send>>),
}

/// One connection's task. It is what a held connection costs, so it is kept small: the login
/// is a future of its own, boxed before the task starts and freed once done, and the held
/// loop is the task's own future, with nothing beside it but the peer and the endpoint.
pub(super) fn task(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    protocol: Protocol,
    ep: Arc<Endpoint>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    admission: Admission<Waiting>,
) -> impl Future<Output = ()> + Send + 'static {
    let _ = tcp.set_nodelay(true);
    let start = match tls {
        None => Start::Plain(Box::pin(log_in(tcp, peer, protocol, ep.clone(), admission))),
        Some(acceptor) => Start::Tls(Box::pin(tls_connection(
            tcp,
            acceptor,
            peer,
            protocol,
            ep.clone(),
            admission,
        ))),
    };
    async move {
        match start {
            Start::Tls(connection) => connection.await,
            Start::Plain(login) => held(login, peer, protocol, &ep).await,
        }
    }
}

/// `--mqtts`: the TLS handshake within its wait, then the connection.
async fn tls_connection(
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    peer: SocketAddr,
    protocol: Protocol,
    ep: Arc<Endpoint>,
    admission: Admission<Waiting>,
) {
    // A harness may present another certificate to this connection.
    let acceptor = ep
        .policy
        .mqtts_config(peer)
        .map_or(acceptor, tokio_rustls::TlsAcceptor::from);
    match tokio::time::timeout(CONNECT_WAIT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => connection(stream, peer, protocol, ep, admission).await,
        // With --client-ca, a missing or unknown client certificate ends here.
        Ok(Err(e)) => ep.events.emit(
            Event::new(EventKind::LoginRefused, protocol)
                .peer(peer)
                .message(format!("the TLS handshake failed: {e}")),
        ),
        Err(_) => ep.events.emit(
            Event::new(EventKind::Disconnect, protocol)
                .peer(peer)
                .message("the TLS handshake failed: no handshake in time"),
        ),
    }
}

/// One connection: the login (its own boxed future, freed once done), then the packets until
/// it ends, in this future.
async fn connection<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: I,
    peer: SocketAddr,
    protocol: Protocol,
    ep: Arc<Endpoint>,
    admission: Admission<Waiting>,
) {
    let login = Box::pin(log_in(io, peer, protocol, ep.clone(), admission));
    held(login, peer, protocol, &ep).await;
}

/// What came first on a new connection.
enum First {
    Connect(Box<Connect>),
    /// A CONNECT for another protocol name or level (MQTT-3.1.2-2): its name and level.
    OtherLevel(String, u8),
    /// Anything else, or nothing in time: what the `login_refused` event says.
    NotConnect(String),
    /// The client closed first.
    Closed,
    /// Closed to make room for a newer connection, the waiting ones being at their bound.
    Evicted,
}

/// The first packet, within `wait`, unless a newer connection evicts this one first.
async fn first_packet<I: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<I>,
    wait: std::time::Duration,
    evicted: Option<Arc<Notify>>,
) -> First {
    let read = async {
        if wire.whole_packet().await.is_none() {
            return First::Closed;
        }
        if let Some((name, level)) = connect_level(&wire.buf)
            && (name != "MQTT" || level != LEVEL_3_1_1)
        {
            return First::OtherLevel(name, level);
        }
        match wire.next().await {
            Read::Packet(Packet::Connect(c)) => First::Connect(Box::new(c)),
            Read::Packet(p) => First::NotConnect(format!("the first packet is {p:?}, not CONNECT")),
            Read::Broken(why) => First::NotConnect(format!("the first packet is not a CONNECT: {why}")),
            Read::Closed => First::Closed,
        }
    };
    let evicted = async {
        match &evicted {
            Some(e) => e.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = tokio::time::timeout(wait, read) => r.unwrap_or_else(|_| {
            First::NotConnect(format!("no CONNECT within {} s", wait.as_secs()))
        }),
        () = evicted => First::Evicted,
    }
}

/// The CONNECT, within its wait, and the login; `None` when the connection ends there.
async fn log_in<I: AsyncRead + AsyncWrite + Unpin>(
    io: I,
    peer: SocketAddr,
    protocol: Protocol,
    ep: Arc<Endpoint>,
    admission: Admission<Waiting>,
) -> Option<LoggedIn<I>> {
    let ep = &*ep;
    let mut wire = Wire::new(io);
    // A refused connection keeps its refusal slot until it is answered.
    let (waiting, wait, _refusing) = match admission {
        Admission::Admitted(w) => {
            let wait = w.wait;
            (Some(w), wait, None)
        }
        Admission::Refused(r) => (None, CONNECT_WAIT_PRESSED, Some(r)),
        Admission::Closed => (None, CONNECT_WAIT_PRESSED, None),
    };
    let evicted = waiting.as_ref().map(|w| w.evicted.clone());
    let refused = |message: String| {
        Event::new(EventKind::LoginRefused, protocol)
            .peer(peer)
            .message(message)
    };
    let connect = match first_packet(&mut wire, wait, evicted).await {
        First::Connect(c) => c,
        First::OtherLevel(name, level) => {
            // MQTT-3.1.2-2: CONNACK 0x01 (unacceptable protocol version), then close; the
            // event is in the record first.
            let code = ConnectReturnCode::RefusedProtocolVersion;
            ep.events.emit(refused(format!(
                "CONNECT for protocol `{name}` level {level}: serve speaks MQTT 3.1.1 (level {LEVEL_3_1_1}) only; CONNACK 1 (unacceptable protocol version)"
            )).code(connack_number(code)));
            ep.events.wait_written().await;
            let _ = wire.send(Packet::ConnAck(ConnAck::new(code, false))).await;
            return None;
        }
        First::NotConnect(why) => {
            ep.events.emit(refused(why));
            return None;
        }
        First::Closed => return None,
        First::Evicted => {
            ep.events.emit(Event::new(EventKind::Disconnect, protocol).peer(peer).message(format!(
                "closed before its CONNECT: {} connections were waiting for theirs, and the oldest makes room for a new one",
                ep.limits.max_waiting()
            )));
            return None;
        }
    };
    match admitted(ep, protocol, peer, waiting, &connect).await {
        Ok((id, secret, slot)) => Some(LoggedIn {
            wire,
            client_id: connect.client_id,
            clean_session: connect.clean_session,
            keep_alive: connect.keep_alive,
            id,
            secret,
            slot,
        }),
        Err(r) => {
            let mut e = Event::new(EventKind::LoginRefused, protocol)
                .peer(peer)
                .code(connack_number(r.connack))
                .message(r.reason);
            if let Some((dk, pk)) = user_name(&connect).split_once('&') {
                e = e.keys(pk, dk);
            }
            ep.events.emit(e);
            // The refusal leaves after its event is in the record, as every answer does.
            ep.events.wait_written().await;
            let _ = wire.send(Packet::ConnAck(ConnAck::new(r.connack, false))).await;
            None
        }
    }
}

/// The login of a CONNECT after serve's CONNACK delay, unless a harness's policy, which sees
/// the CONNECT as it arrives, refuses it whatever its login.
async fn admitted(
    ep: &Endpoint,
    protocol: Protocol,
    peer: SocketAddr,
    waiting: Option<Waiting>,
    connect: &Connect,
) -> Result<(Identity, Option<Secret>, Slot), Refusal> {
    let admit = ep.policy.connect(&Connecting {
        protocol,
        peer,
        client_id: &connect.client_id,
        user_name: user_name(connect),
        keep_alive: connect.keep_alive,
        clean_session: connect.clean_session,
    });
    // One official SDK starts waiting for CONNACK only after its CONNECT is out: an instant
    // answer is lost and it hangs. EnOS answers after a moment too.
    if !ep.connack_delay.is_zero() {
        tokio::time::sleep(ep.connack_delay).await;
    }
    match admit {
        Admit::Check => check(ep, waiting, connect),
        Admit::Refuse(connack) => Err(Refusal {
            connack,
            code: enos::INTERNAL_ERROR,
            reason: format!(
                "refused by serve's policy (a harness testing how the device reconnects): CONNACK {}",
                connack_number(connack)
            ),
        }),
    }
}

fn user_name(connect: &Connect) -> &str {
    connect
        .login
        .as_ref()
        .map(|l| l.username.as_str())
        .unwrap_or_default()
}

/// The login of a CONNECT: the device, the secret an activation pushes, and its logged-in
/// slot. Past `--max-connections` a device is told so (CONNACK 3), never left in silence; the
/// slot is taken before the login is checked, so a refused device is issued no secret.
fn check(
    ep: &Endpoint,
    waiting: Option<Waiting>,
    connect: &Connect,
) -> Result<(Identity, Option<Secret>, Slot), Refusal> {
    let Some(slot) = waiting.and_then(Waiting::log_in) else {
        return Err(Refusal {
            connack: ConnectReturnCode::ServiceUnavailable,
            code: enos::TOO_MANY_REQUESTS,
            reason: format!(
                "serve holds {} logged-in connections (--max-connections): CONNACK 3 (server unavailable)",
                ep.limits.max()
            ),
        });
    };
    let password = connect
        .login
        .as_ref()
        .map(|l| l.password.as_str())
        .unwrap_or_default();
    let (id, activating) = ep.mqtt_login(&connect.client_id, user_name(connect), password)?;
    // The secret an activation will push is made now: without the system's random source
    // there is none to give, and the device is told so in its CONNACK.
    let secret = match activating {
        true => Some(ep.activations.issue(&id).ok_or_else(|| Refusal {
            connack: ConnectReturnCode::ServiceUnavailable,
            code: enos::INTERNAL_ERROR,
            reason: "no secret can be issued: the system's random source failed".into(),
        })?),
        false => None,
    };
    Ok((id, secret, slot))
}

/// The `login` event: what the login did beyond logging in, in words.
pub(super) fn login_event(
    id: &Identity,
    peer: SocketAddr,
    protocol: Protocol,
    activating: bool,
    claimed: &Claimed,
) -> Event {
    let mut words = Vec::new();
    if activating {
        words.push("securemode 3: activating");
    }
    if id.device_key == enos::INTEGRATION_DK {
        words.push("securemode 4: message integration");
    }
    if claimed.took_over {
        words.push("took over a connection with the same client id");
    }
    if claimed.session.is_some() {
        words.push("session present: the subscriptions of the client's last session");
    }
    let login = Event::new(EventKind::Login, protocol)
        .device(id)
        .peer(peer)
        .code(connack_number(ConnectReturnCode::Success));
    if words.is_empty() {
        login
    } else {
        login.message(words.join("; "))
    }
}

/// The platform pushes the device secret of a securemode-3 login; the device never subscribes
/// to it. It leaves with the next write.
pub(super) fn push_activation<I: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<I>,
    id: &Identity,
    secret: Secret,
) {
    let push = Request::new(
        enos::new_id(),
        enos::ACTIVATE_INFO,
        json!({
            "productKey": id.product_key,
            "deviceKey": id.device_key,
            "deviceSecret": secret.expose_for_login(),
        }),
    );
    drop(secret);
    wire.publish(
        &enos::activate_info(&id.product_key, &id.device_key),
        push.to_bytes(),
    );
}

#[cfg(test)]
#[path = "mqtt_tests.rs"]
mod tests;
