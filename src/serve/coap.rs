//! The CoAP side of `serve` (EnOS 2.x): RFC 7252 over UDP with coap-lite, and DTLS-PSK with
//! webrtc-dtls in server mode. Without DTLS a device authenticates with
//! `POST /auth/{pk}/{dk}` and is then known by its address for the lifetime (assumed: EnOS does
//! not document how later requests are tied to the auth); over DTLS the PSK identity
//! `pk,dk,securemode,lifetime` says who it is. `POST /topic/sys/...` is answered 2.04 with the
//! same reply JSON as MQTT; errors are 4.00, 4.01, 4.03, 4.04 and 4.05. A retransmitted request
//! gets the answer it already got (RFC 7252 4.5), not a second one. A test's command for a
//! CoAP device rides on its next response as option 2100 (`coap_commands.rs`). The DTLS
//! listener and its sessions are in `coap_dtls.rs`; both hand each datagram to [`datagram`].
//!
//! Dynamic activation: a DTLS session whose PSK identity is `pk,dk,3,lifetime` (keyed from the
//! product secret) may `GET /topic/ext/session/{pk}/{dk}/thing/activate/info`, answered 2.05
//! with the activation payload MQTT pushes (`params {productKey, deviceKey, deviceSecret}`).
//! Assumed: EnOS documents no reply to it over CoAP, so the answer itself confirms the secret
//! (a retransmitted GET gets the same answer again, RFC 7252 4.5); from then on mode 3 is
//! refused and mode 2 with the new secret logs in, as after MQTT's activation.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::coap_commands::{self as commands, COMMAND_OPTION};
use super::commands::Mailbox;
use super::{Answer, Endpoint, Event, EventKind, Identity, Protocol};
use crate::enos::{self, Request};

/// Who a DTLS session authenticated, and whether it logged in to be activated (securemode 3).
#[derive(Debug, Clone)]
pub struct DtlsSession {
    pub id: Identity,
    pub activating: bool,
}

/// How many answered (peer, message id) pairs are remembered for retransmissions.
const REMEMBERED: usize = 4096;
/// The class of a CoAP success response (2.xx), the top three bits of its code.
const SUCCESS_CLASS: u8 = 2;
/// The code of the answer when no secret can be made (a server error, as HTTP's 500).
const NO_SECRET: i64 = 500;

/// CoAP over DTLS is `coaps`, plain CoAP `coap`.
fn protocol_of(dtls: bool) -> Protocol {
    if dtls { Protocol::Coaps } else { Protocol::Coap }
}

/// The answers already sent, by peer and message id, oldest first out.
#[derive(Default)]
pub(super) struct Answered {
    map: HashMap<(SocketAddr, u16), Vec<u8>>,
    order: VecDeque<(SocketAddr, u16)>,
}

impl Answered {
    pub(super) fn get(&self, key: &(SocketAddr, u16)) -> Option<&Vec<u8>> {
        self.map.get(key)
    }

    pub(super) fn put(&mut self, key: (SocketAddr, u16), bytes: Vec<u8>) {
        if self.map.insert(key, bytes).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

pub async fn serve_udp(sock: tokio::net::UdpSocket, ep: Arc<Endpoint>, shutdown: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 65536];
    let mut answered = Answered::default();
    loop {
        tokio::select! {
            () = super::stopped(shutdown.clone()) => break,
            got = sock.recv_from(&mut buf) => {
                let Ok((n, peer)) = got else { continue };
                let Some(bytes) = buf.get(..n) else { continue };
                let key = Packet::from_bytes(bytes).ok().map(|p| (peer, p.header.message_id));
                if let Some(again) = key.and_then(|k| answered.get(&k)) {
                    let _ = sock.send_to(again, peer).await;
                    continue;
                }
                if let Some(answer) = datagram(&ep, peer, bytes, None) {
                    ep.committed().await;
                    let _ = sock.send_to(&answer, peer).await;
                    if let Some(k) = key {
                        answered.put(k, answer);
                    }
                }
            }
        }
    }
}

/// The answer to one datagram, if it gets one. `dtls` is the device a DTLS session
/// authenticated; without DTLS the peer's address is looked up.
pub fn datagram(
    ep: &Endpoint,
    peer: SocketAddr,
    bytes: &[u8],
    dtls: Option<&DtlsSession>,
) -> Option<Vec<u8>> {
    let req = Packet::from_bytes(bytes).ok()?;
    let mut resp = response_to(&req)?;
    if req.header.code == MessageClass::Empty {
        // A CoAP ping: answered by a reset.
        return resp.to_bytes().ok();
    }
    let path: Vec<String> = req
        .get_option(CoapOption::UriPath)
        .map(|segs| {
            segs.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let protocol = protocol_of(dtls.is_some());
    // The device this request comes from: its DTLS session's, or its auth binding's.
    let device = dtls
        .map(|d| d.id.clone())
        .or_else(|| ep.coap_bindings.holder(&peer));
    let answered = match (&device, path.split_first()) {
        (Some(id), Some((first, rest))) if first == "topic" => command_exchange(ep, protocol, id, &req, rest),
        _ => None,
    };
    let (status, payload) = match answered {
        Some(exchanged) => exchanged,
        None => {
            let (status, payload) = request(ep, peer, &req, &path, dtls);
            (status, serde_json::to_vec(&payload).unwrap_or_default())
        }
    };
    resp.header.code = MessageClass::Response(status);
    resp.payload = payload;
    // EnOS piggybacks a command waiting for the device on the response to its next request.
    // The device is looked up again: an auth call may have bound it just now.
    let device = device.or_else(|| ep.coap_bindings.holder(&peer));
    if let (Some(id), true) = (&device, u8::from(resp.header.code) >> 5 == SUCCESS_CLASS)
        && let Some(next) = commands::offer(ep, protocol, id)
    {
        resp.add_option(CoapOption::Unknown(COMMAND_OPTION), next.into_bytes());
    }
    resp.to_bytes().ok()
}

/// The response's head for a request (its type, message id and token), a reset for a ping;
/// `None` for a message that gets no answer (an acknowledgement, a reset).
fn response_to(req: &Packet) -> Option<Packet> {
    let kind = req.header.get_type();
    if !matches!(kind, MessageType::Confirmable | MessageType::NonConfirmable) {
        return None;
    }
    let mut resp = Packet::new();
    resp.header.set_version(1);
    resp.header.message_id = req.header.message_id;
    if req.header.code == MessageClass::Empty {
        resp.header.set_type(MessageType::Reset);
        return Some(resp);
    }
    resp.header.set_type(if kind == MessageType::Confirmable {
        MessageType::Acknowledgement
    } else {
        MessageType::NonConfirmable
    });
    resp.set_token(req.get_token().to_vec());
    Some(resp)
}

/// A command announced in option 2100 (`/topic{topic}`, `rest` the path after `topic`): its
/// `GET`, and the device's answer on `_reply`. `None` when the request is not about one.
fn command_exchange(
    ep: &Endpoint,
    protocol: Protocol,
    id: &Identity,
    req: &Packet,
    rest: &[String],
) -> Option<(ResponseType, Vec<u8>)> {
    let topic = format!("/{}", rest.join("/"));
    match req.header.code {
        MessageClass::Request(RequestType::Get) => {
            commands::fetch(ep, id, &topic).map(|bytes| (ResponseType::Content, bytes))
        }
        MessageClass::Request(RequestType::Post)
            if commands::reply(ep, protocol, id, &topic, &req.payload) =>
        {
            Some((ResponseType::Changed, Vec::new()))
        }
        _ => None,
    }
}

/// The device API: `POST /auth` (without DTLS), `POST /topic/...`, and the activation's `GET`.
fn request(
    ep: &Endpoint,
    peer: SocketAddr,
    req: &Packet,
    path: &[String],
    dtls: Option<&DtlsSession>,
) -> (ResponseType, Value) {
    let rest = path.get(1..).unwrap_or_default();
    match (req.header.code, path.first().map(String::as_str)) {
        (MessageClass::Request(RequestType::Post), Some("auth")) if dtls.is_none() => {
            auth(ep, peer, rest, &req.payload)
        }
        (MessageClass::Request(RequestType::Post), Some("topic")) => {
            post_topic(ep, peer, rest, &req.payload, dtls.map(|d| &d.id))
        }
        (MessageClass::Request(RequestType::Get), Some("topic")) if is_activation(rest) => {
            activate(ep, peer, rest, dtls)
        }
        (MessageClass::Request(_), Some("auth" | "topic")) => (
            ResponseType::MethodNotAllowed,
            json!({"message": "use POST (GET only for /topic/ext/session/{pk}/{dk}/thing/activate/info)"}),
        ),
        _ => (
            ResponseType::NotFound,
            json!({"message": "the device API is /auth and /topic"}),
        ),
    }
}

/// `POST /auth/{pk}/{dk}` with `{"secureMode":2,"lifetime":S,"sign":...}`.
fn auth(ep: &Endpoint, peer: SocketAddr, rest: &[String], body: &[u8]) -> (ResponseType, Value) {
    let [pk, dk] = rest else {
        return (
            ResponseType::NotFound,
            json!({"message": "use /auth/{productKey}/{deviceKey}"}),
        );
    };
    let id = Identity::new(pk, dk);
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (
            ResponseType::BadRequest,
            json!({"code": enos::BAD_FORMAT, "message": "the auth body is not JSON"}),
        );
    };
    let mode = v.get("secureMode").and_then(Value::as_u64).unwrap_or(2);
    let lifetime = v.get("lifetime").and_then(Value::as_u64).unwrap_or(3600);
    if !(30..=86_400).contains(&lifetime) {
        return (
            ResponseType::BadRequest,
            json!({"code": enos::PARAMETER_ERROR, "message": "lifetime is 30 to 86400 seconds"}),
        );
    }
    if mode != 2 {
        return (
            ResponseType::Unauthorized,
            json!({"code": enos::AUTH_FAILED, "message": "only secureMode 2 authenticates here"}),
        );
    }
    let vars = BTreeMap::from([
        ("dk", id.device_key.clone()),
        ("pk", id.product_key.clone()),
        ("lifetime", lifetime.to_string()),
        ("secure_mode", mode.to_string()),
    ]);
    let sign = v.get("sign").and_then(Value::as_str).unwrap_or_default();
    match ep.signed_login("coap", &id, &vars, sign) {
        Ok(()) => {
            let until = Instant::now() + Duration::from_secs(lifetime);
            ep.coap_bindings.grant(peer, &id, until);
            ep.twin.session_opened(&id, Protocol::Coap, until);
            // Commands for the device wait until its next request (option 2100).
            ep.mailboxes.connect(&id, Arc::new(Mailbox::default()));
            ep.events.emit(
                Event::new(EventKind::Login, Protocol::Coap)
                    .device(&id)
                    .peer(peer)
                    .code(enos::SUCCESS),
            );
            (
                ResponseType::Changed,
                json!({"code": enos::SUCCESS, "message": "", "data": {"lifetime": lifetime}}),
            )
        }
        Err(r) => {
            ep.events.emit(
                Event::new(EventKind::LoginRefused, Protocol::Coap)
                    .device(&id)
                    .peer(peer)
                    .code(r.code)
                    .message(r.reason.clone()),
            );
            let status = if r.code == enos::DEVICE_NOT_FOUND {
                ResponseType::NotFound
            } else {
                ResponseType::Unauthorized
            };
            (status, json!({"code": r.code, "message": r.reason}))
        }
    }
}

/// `POST /topic/sys/{pk}/{dk}/...`: the reply JSON, as over MQTT.
fn post_topic(
    ep: &Endpoint,
    peer: SocketAddr,
    rest: &[String],
    body: &[u8],
    dtls: Option<&Identity>,
) -> (ResponseType, Value) {
    let topic = format!("/{}", rest.join("/"));
    let protocol = protocol_of(dtls.is_some());
    let Some(id) = dtls.cloned().or_else(|| ep.coap_bindings.holder(&peer)) else {
        ep.events.emit(
            Event::new(EventKind::Denied, protocol)
                .topic(&topic)
                .peer(peer)
                .code(enos::NO_PERMISSION)
                .message("not authenticated"),
        );
        return (
            ResponseType::Unauthorized,
            json!({"code": enos::NO_PERMISSION, "message": "authenticate first: POST /auth/{pk}/{dk}, or DTLS"}),
        );
    };
    if !enos::owns(&topic, &id.product_key, &id.device_key) {
        ep.events.emit(
            Event::new(EventKind::Denied, protocol)
                .device(&id)
                .topic(&topic)
                .code(enos::NO_PERMISSION),
        );
        return (
            ResponseType::Forbidden,
            json!({"code": enos::NO_PERMISSION, "message": "not the device's own topic"}),
        );
    }
    match ep.answer(protocol, &topic, body) {
        Answer::Reply(r) => (
            ResponseType::Changed,
            serde_json::to_value(&r).unwrap_or(Value::Null),
        ),
        // A feature the capabilities table does not offer over CoAP.
        Answer::NotOffered(r) => (
            ResponseType::MethodNotAllowed,
            serde_json::to_value(&r).unwrap_or(Value::Null),
        ),
        Answer::Raw(bytes) => (
            ResponseType::Changed,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ),
        Answer::NotEnos => (
            ResponseType::NotFound,
            json!({"message": "not an EnOS upstream topic"}),
        ),
    }
}

/// Whether `rest` (the path after `/topic`) is `ext/session/{pk}/{dk}/thing/activate/info`.
fn is_activation(rest: &[String]) -> bool {
    matches!(rest, [ext, session, _, _, thing, activate, info]
        if ext == "ext" && session == "session" && thing == "thing" && activate == "activate" && info == "info")
}

/// `GET /topic/ext/session/{pk}/{dk}/thing/activate/info` in a securemode-3 DTLS session: a
/// fresh device secret, answered 2.05 in the payload MQTT's activation pushes, and confirmed.
fn activate(
    ep: &Endpoint,
    peer: SocketAddr,
    rest: &[String],
    dtls: Option<&DtlsSession>,
) -> (ResponseType, Value) {
    let topic = format!("/{}", rest.join("/"));
    let protocol = protocol_of(dtls.is_some());
    let denied = |status: ResponseType, id: Option<&Identity>, why: &str| {
        let mut e = Event::new(EventKind::Denied, protocol)
            .topic(&topic)
            .peer(peer)
            .code(enos::NO_PERMISSION)
            .message(why);
        if let Some(id) = id {
            e = e.device(id);
        }
        ep.events.emit(e);
        (status, json!({"code": enos::NO_PERMISSION, "message": why}))
    };
    let Some(session) = dtls else {
        return denied(
            ResponseType::Unauthorized,
            None,
            "activation needs a DTLS session with the PSK identity pk,dk,3,lifetime (the product secret's key)",
        );
    };
    let id = &session.id;
    if !session.activating {
        return denied(
            ResponseType::Forbidden,
            Some(id),
            "this DTLS session is securemode 2: the device is activated already",
        );
    }
    if !enos::owns(&topic, &id.product_key, &id.device_key) {
        return denied(
            ResponseType::Forbidden,
            Some(id),
            "activation of another device than the DTLS session's",
        );
    }
    if ep.is_activated(id) {
        return denied(
            ResponseType::Forbidden,
            Some(id),
            "the device is already activated: log in with securemode 2 and the device secret",
        );
    }
    let Some(secret) = ep.activations.issue(id) else {
        return (
            ResponseType::InternalServerError,
            json!({"code": NO_SECRET, "message": "no secret can be issued: the system's random source failed"}),
        );
    };
    let payload = Request::new(
        enos::new_id(),
        enos::ACTIVATE_INFO,
        json!({
            "productKey": id.product_key,
            "deviceKey": id.device_key,
            "deviceSecret": secret.expose_for_login(),
        }),
    );
    drop(secret);
    // No reply is documented over CoAP: the answer confirms (see the module's comment).
    if ep.confirm_activation(id) {
        ep.events.emit(
            Event::new(EventKind::Activated, protocol)
                .device(id)
                .topic(&topic)
                .peer(peer)
                .code(enos::SUCCESS)
                .message("the device secret was answered to its GET (over CoAP the answer confirms it)"),
        );
    }
    (
        ResponseType::Content,
        serde_json::to_value(&payload).unwrap_or(Value::Null),
    )
}
