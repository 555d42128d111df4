//! Commands over CoAP: CoAP has no subscription, so EnOS announces a command waiting for a
//! device in option 2100 (`/topic/{RequestTopic}`) of the response to the device's next
//! request; the device then `GET`s that path for the command and `POST`s its answer on the
//! `_reply` topic. A test's command (`POST /twin/commands`) waits in the CoAP device's mailbox
//! (a DTLS session's, or a plain auth binding's) until that next request; once announced it is
//! held in [`Offered`] by device and topic until its reply, at most [`MAX_OFFERED`].

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use super::{Downlink, Endpoint, Event, EventKind, Identity, Protocol};

pub(crate) use crate::enos::COAP_COMMAND_OPTION as COMMAND_OPTION;
/// The most commands offered and not yet answered, over every CoAP device.
pub(crate) const MAX_OFFERED: usize = 1024;

/// The commands announced to CoAP devices, by device and request topic, until replied.
#[derive(Default)]
pub struct Offered {
    table: Mutex<HashMap<(Identity, String), Downlink>>,
}

impl Offered {
    /// Hold a command announced to `id`; it comes back when [`MAX_OFFERED`] are held.
    fn hold(&self, id: &Identity, d: Downlink) -> Result<(), Downlink> {
        let Ok(mut t) = self.table.lock() else {
            return Err(d);
        };
        if t.len() >= MAX_OFFERED {
            return Err(d);
        }
        t.insert((id.clone(), d.topic.clone()), d);
        Ok(())
    }

    /// The command offered to `id` on `topic`, as sent.
    fn payload(&self, id: &Identity, topic: &str) -> Option<Vec<u8>> {
        let t = self.table.lock().ok()?;
        t.get(&(id.clone(), topic.to_string())).map(|d| d.payload.clone())
    }

    /// The command offered to `id` on `topic`, taken out: its reply came.
    fn take(&self, id: &Identity, topic: &str) -> Option<Downlink> {
        self.table.lock().ok()?.remove(&(id.clone(), topic.to_string()))
    }

    /// The device's session ended: the commands offered to it will get no reply (their tests
    /// are told so as they drop).
    pub fn forget(&self, id: &Identity) {
        if let Ok(mut t) = self.table.lock() {
            t.retain(|(who, _), _| who != id);
        }
    }
}

/// A command waiting for `id`, moved to the offered table: the option 2100 value to attach.
pub(super) fn offer(ep: &Endpoint, protocol: Protocol, id: &Identity) -> Option<String> {
    let d = ep.mailboxes.get(id)?.try_recv()?;
    let value = format!("/topic{}", d.topic);
    let event = Event::new(EventKind::Command, protocol)
        .device(id)
        .topic(&d.topic)
        .method(&d.method)
        .message("announced in CoAP option 2100");
    // Past the bound it is dropped: the test waiting on it is told the device is gone.
    ep.coap_offered.hold(id, d).ok()?;
    ep.events.emit(event);
    Some(value)
}

/// `GET /topic/{RequestTopic}`: the command offered on it, as sent.
pub(super) fn fetch(ep: &Endpoint, id: &Identity, topic: &str) -> Option<Vec<u8>> {
    ep.coap_offered.payload(id, topic)
}

/// `POST /topic/{RequestTopic}_reply`: the device's answer to a command offered, handed to the
/// test waiting. `false` when no command was offered on that topic.
pub(super) fn reply(ep: &Endpoint, protocol: Protocol, id: &Identity, topic: &str, body: &[u8]) -> bool {
    let Some(request_topic) = topic.strip_suffix("_reply") else {
        return false;
    };
    let Some(d) = ep.coap_offered.take(id, request_topic) else {
        return false;
    };
    let json_reply = serde_json::from_slice::<Value>(body)
        .ok()
        .filter(|_| d.id.is_some());
    let mut e = Event::new(EventKind::Reply, protocol).device(id).topic(topic);
    let answer = match json_reply {
        Some(v) => {
            if let Some(code) = v.get("code").and_then(Value::as_i64) {
                e = e.code(code);
            }
            v
        }
        None => {
            e = e.message(format!("{} raw bytes", body.len()));
            super::commands::raw_answer(body)
        }
    };
    ep.events.emit(e);
    let _ = d.reply.send(answer);
    true
}
