//! Commands a test sends a device (`POST /twin/commands/{pk}/{dk}`, the console, a harness
//! through [`Endpoint::send_command`]), as EnOS sends them: the downstream methods of
//! [`enos::DOWNSTREAM`] only, each on its topic, to the MQTT connection that reaches the device
//! (its own, or its gateway's), or to its CoAP session, where it waits for the device's next
//! request (option 2100, `serve/coap_commands.rs`). Lifecycle commands change the twin first,
//! as the platform does, then tell the device; an OTA upgrade carries the firmware from the
//! registry. The device's reply (JSON, or raw bytes for `model/down_raw`) is matched to its
//! command and handed back.
//!
//! [`Mailboxes`] owns the way to each connected device: a [`Mailbox`] per MQTT connection or
//! CoAP session, which also lets a harness drop the connection ([`Mailboxes::hang_up`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{Endpoint, Identity, apply::firmware_json};
use crate::enos::{self, Downstream, Lifecycle, Request};

/// A command on its way to a connected device, and where its reply goes.
pub struct Downlink {
    pub topic: String,
    pub method: String,
    pub kind: Downstream,
    /// The JSON request, or the raw bytes of `model/down_raw`.
    pub payload: Vec<u8>,
    /// The request id a reply carries; `None` for raw bytes (whose reply carries none).
    pub id: Option<String>,
    pub reply: oneshot::Sender<Value>,
}

/// The most commands queued for one connection.
pub(crate) const MAILBOX: usize = 8;

/// What a connection finds in its mailbox.
pub enum Mail {
    Command(Downlink),
    /// A harness drops the connection.
    HangUp,
    /// A newer connection logged in with the same client id (MQTT-3.1.4-2).
    TakenOver,
    /// serve is stopping.
    Stopping,
}

/// A connection's way in from the rest of serve: a test's commands, and the word that it must
/// end (a harness hangs up, a newer connection takes its client id over, serve stops). Unlike a
/// channel it allocates nothing until the first command (most held connections never get
/// one, and a tokio channel's first block is kilobytes per connection), and its one reader is
/// woken through the waker kept here, so a waiting connection holds no future for it.
#[derive(Default)]
pub struct Mailbox {
    queue: Mutex<Queue>,
    reader: AtomicWaker,
}

#[derive(Default)]
struct Queue {
    commands: VecDeque<Downlink>,
    /// The connection is gone: nothing more is taken.
    closed: bool,
    /// Why the connection must end, once told.
    end: Option<End>,
}

/// Why a connection must end, as its mailbox was told.
#[derive(Clone, Copy)]
enum End {
    HangUp,
    TakenOver,
    Stopping,
}

impl Mailbox {
    /// Queue a command; it comes back when the connection is gone or its queue is full.
    pub fn send(&self, d: Downlink) -> Result<(), Downlink> {
        let Ok(mut q) = self.queue.lock() else {
            return Err(d);
        };
        if q.closed || q.commands.len() >= MAILBOX {
            return Err(d);
        }
        q.commands.push_back(d);
        drop(q);
        self.reader.wake();
        Ok(())
    }

    /// The next command, or why the connection must end; waits until one comes (cancel-safe).
    pub async fn recv(&self) -> Mail {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`Mailbox::recv`] for a connection that polls its mailbox beside its socket: ready with
    /// the next command or the end, else the reader is woken when one comes. The end comes
    /// first, then the commands in order.
    pub fn poll_recv(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Mail> {
        // Registered before the queue is read, so a command sent in between wakes it.
        self.reader.register(cx.waker());
        let Ok(mut q) = self.queue.lock() else {
            return std::task::Poll::Ready(Mail::HangUp);
        };
        match q.end {
            Some(End::HangUp) => return std::task::Poll::Ready(Mail::HangUp),
            Some(End::TakenOver) => return std::task::Poll::Ready(Mail::TakenOver),
            Some(End::Stopping) => return std::task::Poll::Ready(Mail::Stopping),
            None => {}
        }
        match q.commands.pop_front() {
            Some(d) => std::task::Poll::Ready(Mail::Command(d)),
            None => std::task::Poll::Pending,
        }
    }

    /// The next command, if one is queued (CoAP: announced on the device's next request).
    pub fn try_recv(&self) -> Option<Downlink> {
        self.queue.lock().ok().and_then(|mut q| q.commands.pop_front())
    }

    /// The connection is gone: later commands are refused, queued ones dropped (their
    /// tests see the device disconnect).
    pub fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.closed = true;
            q.commands = VecDeque::new();
        }
    }

    /// Ask the connection to end (an MQTT connection ends at once).
    pub fn hang_up(&self) {
        self.end(End::HangUp);
    }

    /// A newer connection took the client id over (MQTT-3.1.4-2): this one ends.
    pub fn take_over(&self) {
        self.end(End::TakenOver);
    }

    /// serve is stopping: the connection ends.
    pub fn stop(&self) {
        self.end(End::Stopping);
    }

    /// The first reason told is the one the connection ends for.
    fn end(&self, why: End) {
        if let Ok(mut q) = self.queue.lock() {
            q.end.get_or_insert(why);
        }
        self.reader.wake();
    }
}

/// The mailbox of each connected device: the newest connection's, when it has several.
#[derive(Default)]
pub struct Mailboxes {
    by_device: Mutex<HashMap<Identity, Arc<Mailbox>>>,
}

impl Mailboxes {
    /// A connection of the device opened: commands for it go to `mailbox` from now on.
    pub fn connect(&self, id: &Identity, mailbox: Arc<Mailbox>) {
        if let Ok(mut m) = self.by_device.lock() {
            m.insert(id.clone(), mailbox);
        }
    }

    /// The connection with `mailbox` ended: the mailbox is closed, and forgotten unless a newer
    /// connection of the device replaced it.
    pub fn disconnect(&self, id: &Identity, mailbox: &Arc<Mailbox>) {
        mailbox.close();
        if let Ok(mut m) = self.by_device.lock()
            && m.get(id).is_some_and(|t| Arc::ptr_eq(t, mailbox))
        {
            m.remove(id);
        }
    }

    /// The mailbox of the device's connection, while it is connected.
    pub fn get(&self, id: &Identity) -> Option<Arc<Mailbox>> {
        self.by_device.lock().ok()?.get(id).cloned()
    }

    /// Drop the device's connection (a harness testing how it reconnects); `false` when it is
    /// not connected.
    pub fn hang_up(&self, id: &Identity) -> bool {
        self.get(id).map(|m| m.hang_up()).is_some()
    }
}

/// A device's raw reply (`model/down_raw_reply`) as the test that sent the command gets it.
pub(crate) fn raw_answer(payload: &[u8]) -> Value {
    use base64::Engine;
    json!({
        "payload": String::from_utf8_lossy(payload),
        "payload_base64": base64::engine::general_purpose::STANDARD.encode(payload),
    })
}

/// A command made from a test's request, not yet sent.
pub struct Prepared {
    /// The connection that reaches the device.
    pub via: Identity,
    pub topic: String,
    pub method: String,
    pub kind: Downstream,
    pub payload: Vec<u8>,
    pub id: Option<String>,
    /// What the twin changed, for the answer when the device cannot be told.
    pub applied: Option<String>,
}

/// Why a command got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandFailed {
    /// Not a command EnOS sends, or not one for this device (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// No such device, or it is not connected, or its queue is full (HTTP 404).
    #[error("{0}")]
    NotReached(String),
    /// The device disconnected before replying (HTTP 410).
    #[error("the device disconnected before replying")]
    Gone,
    /// No reply in time (HTTP 504).
    #[error("the device did not reply in time")]
    TimedOut,
}

/// Where a command goes and what it carries, before its payload is made.
struct Route {
    via: Option<Identity>,
    topic: String,
    params: Value,
    applied: Option<String>,
}

impl Endpoint {
    /// Send the command `body` to device `id` and wait up to `timeout` for its reply: the
    /// reply's JSON (with a `"twin"` field saying what a lifecycle or OTA command changed).
    pub async fn send_command(
        &self,
        id: &Identity,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, CommandFailed> {
        let prepared = self.prepare_command(id, body)?;
        self.send_prepared(prepared, timeout).await
    }

    /// Send a command made by [`Endpoint::prepare_command`] (a harness reads its request id
    /// first) and wait up to `timeout` for its reply.
    pub async fn send_prepared(&self, prepared: Prepared, timeout: Duration) -> Result<Value, CommandFailed> {
        let Some(mailbox) = self.mailboxes.get(&prepared.via) else {
            return Err(CommandFailed::NotReached(
                "the device is not connected over MQTT or CoAP".into(),
            ));
        };
        let (reply, wait) = oneshot::channel();
        let applied = prepared.applied;
        let sent = mailbox.send(Downlink {
            topic: prepared.topic,
            method: prepared.method,
            kind: prepared.kind,
            payload: prepared.payload,
            id: prepared.id,
            reply,
        });
        if sent.is_err() {
            return Err(CommandFailed::NotReached(format!(
                "the device disconnected, or has {MAILBOX} commands waiting to go out"
            )));
        }
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(mut v)) => {
                if let (Some(a), Some(obj)) = (&applied, v.as_object_mut()) {
                    obj.insert("twin".into(), json!(a));
                }
                Ok(v)
            }
            Ok(Err(_)) => Err(CommandFailed::Gone),
            Err(_) => Err(CommandFailed::TimedOut),
        }
    }

    /// The command `body` (`{"method", "params"}`, `"payload"` for raw bytes) for device `id`,
    /// checked against what EnOS sends; lifecycle commands are applied to the twin here.
    pub fn prepare_command(&self, id: &Identity, body: &Value) -> Result<Prepared, CommandFailed> {
        let (method, down, service) = downstream_of(body)?;
        if !self.twin.exists(id) {
            return Err(CommandFailed::NotReached(format!(
                "no device {}/{}",
                id.product_key, id.device_key
            )));
        }
        let params = body.get("params").cloned().unwrap_or_else(|| json!({}));
        let route = self.route(id, method, down, service, params)?;
        let (payload, rid) = if down == Downstream::Raw {
            (raw_payload(body)?, None)
        } else {
            let request = Request::new(enos::new_id(), method, route.params);
            (request.to_bytes(), Some(request.id))
        };
        let Some(via) = route.via else {
            return Err(CommandFailed::NotReached(match route.applied {
                Some(a) => format!("{a}; the device is not connected over MQTT or CoAP, so it was not told"),
                None => {
                    "the device is not connected over MQTT (directly or through its gateway) or CoAP".into()
                }
            }));
        };
        Ok(Prepared {
            via,
            topic: route.topic,
            method: method.to_string(),
            kind: down,
            payload,
            id: rid,
            applied: route.applied,
        })
    }

    /// Where the command goes (the connection that reaches the device, and the topic), its
    /// params, and what it changed in the twin.
    fn route(
        &self,
        id: &Identity,
        method: &str,
        down: Downstream,
        service: Option<&str>,
        params: Value,
    ) -> Result<Route, CommandFailed> {
        let own_topic = |service| down.topic(&id.product_key, &id.device_key, service);
        let route = |via, topic, params, applied| Route {
            via,
            topic,
            params,
            applied,
        };
        Ok(match down {
            Downstream::Service => {
                self.check_service(id, service)?;
                route(self.reaches(id), own_topic(service), params, None)
            }
            Downstream::OtaUpgrade => {
                let (firmware, applied) = self.upgrade(id, &params)?;
                route(self.reaches(id), own_topic(None), firmware, Some(applied))
            }
            Downstream::SubLifecycle(change) => {
                let Some(gw) = self.twin.gateway_of(id) else {
                    return Err(CommandFailed::Invalid(format!(
                        "{method} is for a sub-device: {}/{} is in no gateway's topology",
                        id.product_key, id.device_key
                    )));
                };
                let applied = self.lifecycle(id, change);
                let topic = down.topic(&gw.product_key, &gw.device_key, None);
                let params = json!({"productKey": id.product_key, "deviceKey": id.device_key});
                route(Some(gw), topic, params, Some(applied))
            }
            Downstream::Lifecycle(change) => {
                let via = self.reaches(id);
                let applied = self.lifecycle(id, change);
                route(via, own_topic(None), params, Some(applied))
            }
            Downstream::Raw | Downstream::MeasurepointSet | Downstream::MeasurepointGet => {
                route(self.reaches(id), own_topic(None), params, None)
            }
        })
    }

    /// A service the product's model lists, when it lists services.
    fn check_service(&self, id: &Identity, service: Option<&str>) -> Result<(), CommandFailed> {
        let services = self
            .registry
            .product(&id.product_key)
            .and_then(|p| p.services.as_ref());
        if let (Some(service), Some(services)) = (service, services)
            && !services.contains_key(service)
        {
            let names: Vec<&str> = services.keys().map(String::as_str).collect();
            return Err(CommandFailed::Invalid(format!(
                "the product's model has no service `{service}`; it has: {}",
                names.join(", ")
            )));
        }
        Ok(())
    }

    /// `ota.device.upgrade`: the registry's firmware `params.version` names, as the command's
    /// params, and the twin's OTA target set to it.
    fn upgrade(&self, id: &Identity, params: &Value) -> Result<(Value, String), CommandFailed> {
        let version = super::text_field(params, "version").unwrap_or_default();
        let firmwares: Vec<_> = self.registry.firmwares_of(&id.product_key).collect();
        let Some(f) = firmwares.iter().find(|f| f.version == version) else {
            let known: Vec<&str> = firmwares.iter().map(|f| f.version.as_str()).collect();
            return Err(CommandFailed::Invalid(format!(
                "ota.device.upgrade needs params.version, a [[firmwares]] version of product {}: {}",
                id.product_key,
                if known.is_empty() {
                    "none listed".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        self.twin.set_ota(id, Some(&f.version), None, None);
        Ok((
            firmware_json(f),
            format!("the twin's ota.target is {}", f.version),
        ))
    }

    /// The connected device whose connection reaches `id`: itself, or the gateway it is
    /// logged in through.
    fn reaches(&self, id: &Identity) -> Option<Identity> {
        if self.mailboxes.get(id).is_some() {
            return Some(id.clone());
        }
        self.twin.via(id).filter(|gw| self.mailboxes.get(gw).is_some())
    }

    /// Enable, disable or delete a device in the twin; what changed, in words.
    fn lifecycle(&self, id: &Identity, change: Lifecycle) -> String {
        match change {
            Lifecycle::Enable => {
                self.twin.set_enabled(id, true);
                "enabled in the twin".into()
            }
            Lifecycle::Disable => {
                self.twin.set_enabled(id, false);
                "disabled in the twin".into()
            }
            Lifecycle::Delete => {
                self.twin.delete(id);
                "deleted from the twin".into()
            }
        }
    }
}

/// The method of a command, and what kind of downstream message it is.
fn downstream_of(body: &Value) -> Result<(&str, Downstream, Option<&str>), CommandFailed> {
    let listed = || {
        enos::DOWNSTREAM
            .iter()
            .map(|d| d.method)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(method) = body.get("method").and_then(Value::as_str) else {
        return Err(CommandFailed::Invalid(format!(
            "the command needs a method, one of: {}",
            listed()
        )));
    };
    let Some((down, service)) = enos::downstream(method) else {
        return Err(CommandFailed::Invalid(format!(
            "`{method}` is not a method EnOS sends a device; one of: {}",
            listed()
        )));
    };
    Ok((method, down, service))
}

/// The bytes of `thing.model.down_raw`: `"payload"` (text) or `"payload_base64"`.
fn raw_payload(body: &Value) -> Result<Vec<u8>, CommandFailed> {
    match (body.get("payload"), body.get("payload_base64")) {
        (Some(Value::String(s)), _) => Ok(s.clone().into_bytes()),
        (_, Some(Value::String(b))) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| CommandFailed::Invalid(format!("payload_base64 is not base64: {e}")))
        }
        _ => Err(CommandFailed::Invalid(
            "thing.model.down_raw sends raw bytes: give \"payload\" (text) or \"payload_base64\"".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        let caps = crate::capabilities::embedded().expect("caps");
        let registry = crate::registry::Registry::parse(&crate::source_text::SourceFile::new(
            "r.toml",
            "[[products]]\nkey = \"p\"\n[[devices]]\nproduct = \"p\"\nkey = \"d\"\n",
        ))
        .expect("registry");
        Endpoint::in_memory(caps, registry, Duration::ZERO).0
    }

    /// The device's side of a command: take it from the mailbox and answer with `reply`, or
    /// drop it unanswered (the connection went) when `reply` is `None`.
    async fn device(mailbox: &Mailbox, reply: Option<Value>) {
        if let Mail::Command(d) = mailbox.recv().await
            && let Some(r) = reply
        {
            let _ = d.reply.send(r);
        }
    }

    /// Each way a command ends, as a harness and `POST /twin/commands` see it.
    #[tokio::test]
    async fn a_command_gets_its_reply_or_says_why_not() {
        let ep = endpoint();
        let id = Identity::new("p", "d");
        let get = json!({"method": "thing.service.measurepoint.get", "params": {}});
        let wait = Duration::from_millis(100);
        let not_sent = ep
            .send_command(&id, &json!({"method": "thing.reboot"}), wait)
            .await;
        assert!(
            matches!(&not_sent, Err(CommandFailed::Invalid(m)) if m.contains("thing.service.measurepoint.set")),
            "{not_sent:?}"
        );
        let offline = ep.send_command(&id, &get, wait).await;
        assert!(
            matches!(offline, Err(CommandFailed::NotReached(_))),
            "{offline:?}"
        );
        let mailbox = Arc::new(Mailbox::default());
        ep.mailboxes.connect(&id, mailbox.clone());
        let (answered, ()) = tokio::join!(
            ep.send_command(&id, &get, wait),
            device(&mailbox, Some(json!({"code": 200})))
        );
        assert_eq!(answered, Ok(json!({"code": 200})));
        let (gone, ()) = tokio::join!(ep.send_command(&id, &get, wait), device(&mailbox, None));
        assert_eq!(gone, Err(CommandFailed::Gone));
        assert_eq!(
            ep.send_command(&id, &get, wait).await,
            Err(CommandFailed::TimedOut)
        );
        assert!(ep.mailboxes.hang_up(&id));
        assert!(matches!(mailbox.recv().await, Mail::HangUp));
        ep.mailboxes.disconnect(&id, &mailbox);
        assert!(!ep.mailboxes.hang_up(&id), "not connected any more");
    }
}
