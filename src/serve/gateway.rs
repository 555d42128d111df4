//! A gateway's sub-devices on its MQTT connection: `combine.login`, `combine.login.batch` and
//! `combine.logout` on the gateway's session topic, checked against the twin (the device
//! exists, is enabled, is in this gateway's topology now, and signed its login). A logged-in
//! sub-device is online in the twin through its gateway until it logs out or the gateway's
//! connection ends.

use serde_json::{Value, json};

use super::mqtt_held::Connection;
use super::{Endpoint, Event, EventKind, Identity, text_field};
use crate::enos::{self, Reply};

/// The sub-device methods on the gateway's session topic: checked further once the message
/// itself is well-formed.
pub(super) fn sub_devices(
    s: &mut Connection,
    ep: &Endpoint,
    topic: &str,
    payload: &[u8],
    reply: Reply,
) -> Reply {
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
    match rest {
        "combine/login" => {
            let (code, message, data) = log_in(s, ep, topic, &params);
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
        "combine/login/batch" => log_in_batch(s, ep, topic, &params, reply.id),
        "combine/logout" => {
            let (pk, dk) = keys_in(&params);
            log_out(s, ep, &params, "combine.logout");
            Reply::new(
                reply.id,
                enos::SUCCESS,
                json!({"productKey": pk, "deviceKey": dk}),
            )
        }
        _ => reply,
    }
}

/// One sub-device's login through the gateway: the code, why not, and the sub-device's keys;
/// once logged in it is online in the twin through the gateway, and its topics open.
fn log_in(s: &mut Connection, ep: &Endpoint, topic: &str, params: &Value) -> (i64, String, Value) {
    let (code, sub, message) = ep.subdevice_login(&s.id, params);
    let (pk, dk) = keys_in(params);
    let mut e = Event::new(EventKind::SubdeviceLogin, s.protocol)
        .keys(&pk, &dk)
        .topic(topic)
        .code(code);
    if !message.is_empty() {
        e = e.message(message.clone());
    }
    ep.events.emit(e);
    if let Some(sub) = sub
        && s.add_subdevice(sub.clone())
    {
        ep.twin.connected(&sub, s.protocol, Some(&s.id));
    }
    (code, message, json!({"productKey": pk, "deviceKey": dk}))
}

/// `combine.login.batch`: each entry logged in (signed with the batch's client id and
/// timestamp); the reply lists those that did, with the first failure's code.
fn log_in_batch(s: &mut Connection, ep: &Endpoint, topic: &str, params: &Value, id: String) -> Reply {
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
        let (code, message, data) = log_in(s, ep, topic, &p);
        if code == enos::SUCCESS {
            logged.push(data);
        } else if first_failure.is_none() {
            first_failure = Some((code, message));
        }
    }
    match first_failure {
        None => Reply::new(id, enos::SUCCESS, json!({"loginedSubDevices": logged})),
        Some((code, message)) => {
            Reply::new(id, code, json!({"loginedSubDevices": logged})).with_message(message)
        }
    }
}

/// The `productKey` and `deviceKey` a sub-device request names (strings or numbers).
fn keys_in(params: &Value) -> (String, String) {
    let key = |k: &str| text_field(params, k).unwrap_or_default();
    (key("productKey"), key("deviceKey"))
}

/// Take the sub-device `params` names out of the gateway's session (a logout, or a disable or
/// delete command): offline in the twin, its topics closed to the connection.
pub(super) fn log_out(s: &mut Connection, ep: &Endpoint, params: &Value, why: &str) {
    let (pk, dk) = keys_in(params);
    let sub = Identity::new(&pk, &dk);
    if s.remove_subdevice(&sub) {
        ep.twin.disconnected(&sub);
        ep.events.emit(
            Event::new(EventKind::SubdeviceLogout, s.protocol)
                .device(&sub)
                .message(format!(
                    "{why} through gateway {}/{}",
                    s.id.product_key, s.id.device_key
                )),
        );
    }
}
