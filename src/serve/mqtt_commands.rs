//! A held MQTT connection's commands (a child of `mqtt_held.rs`): a test's command pushed to
//! the device (EnOS pushes commands; the SDKs never subscribe to them), and the device's replies
//! matched to whoever waits for them: the activation push's acknowledgement, or a test waiting
//! on its command (by the request id, raw bytes by topic, oldest first).

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::mqtt_held::{Connection, Waiting};
use super::mqtt_wire::Wire;
use super::{Downlink, Endpoint, Event, EventKind};
use crate::enos::{self, Downstream, Lifecycle, Reply};

/// A device's reply on `topic` (`request_topic` + `_reply`): to the activation push, or to a
/// command a test is waiting on. `false` when no one waits for it (then it is a request).
pub(super) fn device_reply(
    c: &mut Connection,
    ep: &Endpoint,
    topic: &str,
    request_topic: &str,
    payload: &[u8],
) -> bool {
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
    let Some(commands) = c.more.as_mut().map(|m| &mut m.commands) else {
        return false;
    };
    let (waiting, raw) = match json_reply.then(|| take_waiting(commands, &by_id)).flatten() {
        Some(w) => (w, false),
        None => match take_waiting(commands, &(topic.to_string(), String::new())) {
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
fn take_waiting(commands: &mut Waiting, key: &(String, String)) -> Option<oneshot::Sender<Value>> {
    let queue = commands.get_mut(key)?;
    let first = queue.pop_front();
    if queue.is_empty() {
        commands.remove(key);
    }
    first
}

/// A command from a test, pushed to the device (EnOS pushes commands; the SDKs never subscribe
/// to them), and the device's reply handed back when it comes.
pub(super) fn command<I: AsyncRead + AsyncWrite + Unpin>(
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
    let commands = &mut c.more().commands;
    for queue in commands.values_mut() {
        queue.retain(|waiting| !waiting.is_closed());
    }
    commands.retain(|_, queue| !queue.is_empty());
    if wire.publish(&cmd.topic, cmd.payload) {
        commands
            .entry((enos::reply_topic(&cmd.topic), cmd.id.unwrap_or_default()))
            .or_default()
            .push_back(cmd.reply);
    }
}
