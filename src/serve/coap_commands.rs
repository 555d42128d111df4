//! Commands over CoAP, a child of `coap.rs`: CoAP has no subscription, so EnOS announces a
//! command waiting for a device in option 2100 (`/topic/{RequestTopic}`) of the response to the
//! device's next request; the device then `GET`s that path for the command and `POST`s its
//! answer on the `_reply` topic. A test's command (`POST /twin/commands`) waits in the CoAP
//! device's mailbox (a DTLS session's, or a plain auth binding's) until that next request.
//! Offered commands are held by device and topic until their reply, at most [`MAX_OFFERED`].

use serde_json::{Value, json};

use super::super::{Endpoint, Event, Identity};

pub use crate::enos::COAP_COMMAND_OPTION as COMMAND_OPTION;
/// The most commands offered and not yet answered, over every CoAP device.
const MAX_OFFERED: usize = 1024;

/// A command waiting for `id`, moved to the offered table: the option 2100 value to attach.
pub(super) fn offer(ep: &Endpoint, protocol: &'static str, id: &Identity) -> Option<String> {
    let d = ep.device_channel(id)?.try_recv()?;
    let mut offered = ep.coap_commands.lock().ok()?;
    if offered.len() >= MAX_OFFERED {
        // Dropped: the test waiting on it is told the device is gone.
        return None;
    }
    ep.emit(
        Event::new("command", protocol)
            .device(id)
            .topic(&d.topic)
            .method(&d.method)
            .message("announced in CoAP option 2100"),
    );
    let value = format!("/topic{}", d.topic);
    offered.insert((id.clone(), d.topic.clone()), d);
    Some(value)
}

/// `GET /topic/{RequestTopic}`: the command offered on it, as sent.
pub(super) fn fetch(ep: &Endpoint, id: &Identity, topic: &str) -> Option<Vec<u8>> {
    let offered = ep.coap_commands.lock().ok()?;
    offered
        .get(&(id.clone(), topic.to_string()))
        .map(|d| d.payload.clone())
}

/// `POST /topic/{RequestTopic}_reply`: the device's answer to a command offered, handed to the
/// test waiting. `false` when no command was offered on that topic.
pub(super) fn reply(ep: &Endpoint, protocol: &'static str, id: &Identity, topic: &str, body: &[u8]) -> bool {
    let Some(request_topic) = topic.strip_suffix("_reply") else {
        return false;
    };
    let Some(d) = ep
        .coap_commands
        .lock()
        .ok()
        .and_then(|mut o| o.remove(&(id.clone(), request_topic.to_string())))
    else {
        return false;
    };
    let json_reply = serde_json::from_slice::<Value>(body)
        .ok()
        .filter(|_| d.id.is_some());
    let mut e = Event::new("reply", protocol).device(id).topic(topic);
    let answer = match json_reply {
        Some(v) => {
            if let Some(code) = v.get("code").and_then(Value::as_i64) {
                e = e.code(code);
            }
            v
        }
        None => {
            use base64::Engine;
            e = e.message(format!("{} raw bytes", body.len()));
            json!({
                "payload": String::from_utf8_lossy(body),
                "payload_base64": base64::engine::general_purpose::STANDARD.encode(body),
            })
        }
    };
    ep.emit(e);
    let _ = d.reply.send(answer);
    true
}

/// The device's session ended: the commands offered to it will get no reply.
pub(super) fn forget(ep: &Endpoint, id: &Identity) {
    if let Ok(mut o) = ep.coap_commands.lock() {
        o.retain(|(who, _), _| who != id);
    }
}
