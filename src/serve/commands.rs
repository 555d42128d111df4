//! Commands a test sends a device (`POST /twin/commands/{pk}/{dk}`), as EnOS sends them: the
//! downstream methods of [`enos::DOWNSTREAM`] only, each on its topic, to the MQTT connection
//! that reaches the device (its own, or its gateway's), or to its CoAP session, where it waits
//! for the device's next request (option 2100, `serve/coap_commands.rs`). Lifecycle commands change the twin
//! first, as the platform does, then tell the device; an OTA upgrade carries the firmware
//! from the registry. The device's reply (JSON, or raw bytes for `model/down_raw`) is matched
//! to its command and handed back.

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, oneshot};

use super::{Endpoint, Identity, apply::firmware_json};
use crate::enos::{self, Downstream, Request};

/// A command on its way to a connected device, and where its reply goes.
pub struct Downlink {
    pub topic: String,
    pub method: String,
    /// The JSON request, or the raw bytes of `model/down_raw`.
    pub payload: Vec<u8>,
    /// The request id a reply carries; `None` for raw bytes (whose reply carries none).
    pub id: Option<String>,
    pub reply: oneshot::Sender<Value>,
}

/// The most commands queued for one connection.
pub const MAILBOX: usize = 8;

/// A connection's queue of commands. Unlike a channel it allocates nothing until the first
/// command: most held connections never get one, and a tokio channel's first block is
/// kilobytes per connection.
#[derive(Default)]
pub struct Mailbox {
    queue: Mutex<(VecDeque<Downlink>, bool)>,
    ready: Notify,
}

impl Mailbox {
    /// Queue a command; it comes back when the connection is gone or its queue is full.
    pub fn send(&self, d: Downlink) -> Result<(), Downlink> {
        let Ok(mut q) = self.queue.lock() else {
            return Err(d);
        };
        if q.1 || q.0.len() >= MAILBOX {
            return Err(d);
        }
        q.0.push_back(d);
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    /// The next command; waits until one comes (cancel-safe).
    pub async fn recv(&self) -> Downlink {
        loop {
            if let Some(d) = self.queue.lock().ok().and_then(|mut q| q.0.pop_front()) {
                return d;
            }
            self.ready.notified().await;
        }
    }

    /// The next command, if one is queued (CoAP: announced on the device's next request).
    pub fn try_recv(&self) -> Option<Downlink> {
        self.queue.lock().ok().and_then(|mut q| q.0.pop_front())
    }

    /// The connection is gone: later commands are refused, queued ones dropped (their
    /// tests see the device disconnect).
    pub fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.1 = true;
            q.0 = VecDeque::new();
        }
    }
}

/// A command made from a test's request, not yet sent.
pub struct Prepared {
    /// The connection that reaches the device.
    pub via: Identity,
    pub topic: String,
    pub method: String,
    pub payload: Vec<u8>,
    pub id: Option<String>,
    /// What the twin changed, for the answer when the device cannot be told.
    pub applied: Option<String>,
}

/// Why a command is not sent: an HTTP status and a message.
pub type Rejected = (u16, String);

impl Endpoint {
    /// The command `body` (`{"method", "params"}`, `"payload"` for raw bytes) for device `id`,
    /// checked against what EnOS sends; lifecycle commands are applied to the twin here.
    pub fn prepare_command(&self, id: &Identity, body: &Value) -> Result<Prepared, Rejected> {
        let listed = || {
            enos::DOWNSTREAM
                .iter()
                .map(|d| d.method)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(method) = body.get("method").and_then(Value::as_str) else {
            return Err((400, format!("the command needs a method, one of: {}", listed())));
        };
        let Some((down, service)) = enos::downstream(method) else {
            return Err((
                400,
                format!(
                    "`{method}` is not a method EnOS sends a device; one of: {}",
                    listed()
                ),
            ));
        };
        if !self.twin.exists(id) {
            return Err((404, format!("no device {}/{}", id.product_key, id.device_key)));
        }
        let mut params = body.get("params").cloned().unwrap_or_else(|| json!({}));
        let mut applied = None;
        let gateway = self.twin.gateway_of(id);
        let (via, topic) = match down {
            Downstream::Service => {
                if let (Some(service), Some(services)) = (
                    service,
                    self.registry
                        .product(&id.product_key)
                        .and_then(|p| p.services.as_ref()),
                ) && !services.contains_key(service)
                {
                    let names: Vec<&str> = services.keys().map(String::as_str).collect();
                    return Err((
                        400,
                        format!(
                            "the product's model has no service `{service}`; it has: {}",
                            names.join(", ")
                        ),
                    ));
                }
                (
                    self.reaches(id),
                    down.topic(&id.product_key, &id.device_key, service),
                )
            }
            Downstream::OtaUpgrade => {
                let version = super::text_field(&params, "version").unwrap_or_default();
                let firmwares: Vec<_> = self.registry.firmwares_of(&id.product_key).collect();
                let Some(f) = firmwares.iter().find(|f| f.version == version) else {
                    let known: Vec<&str> = firmwares.iter().map(|f| f.version.as_str()).collect();
                    return Err((
                        400,
                        format!(
                            "ota.device.upgrade needs params.version, a [[firmwares]] version of product {}: {}",
                            id.product_key,
                            if known.is_empty() {
                                "none listed".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                };
                params = firmware_json(f);
                self.twin.set_ota(id, Some(&f.version), None, None);
                applied = Some(format!("the twin's ota.target is {}", f.version));
                (
                    self.reaches(id),
                    down.topic(&id.product_key, &id.device_key, None),
                )
            }
            Downstream::SubLifecycle(change) => {
                let Some(gw) = gateway else {
                    return Err((
                        400,
                        format!(
                            "{method} is for a sub-device: {}/{} is in no gateway's topology",
                            id.product_key, id.device_key
                        ),
                    ));
                };
                applied = Some(self.lifecycle(id, change));
                params = json!({"productKey": id.product_key, "deviceKey": id.device_key});
                (
                    Some(gw.clone()),
                    down.topic(&gw.product_key, &gw.device_key, None),
                )
            }
            Downstream::Lifecycle(change) => {
                let via = self.reaches(id);
                applied = Some(self.lifecycle(id, change));
                (via, down.topic(&id.product_key, &id.device_key, None))
            }
            Downstream::Raw | Downstream::MeasurepointSet | Downstream::MeasurepointGet => (
                self.reaches(id),
                down.topic(&id.product_key, &id.device_key, None),
            ),
        };
        let (payload, rid) = if down == Downstream::Raw {
            let raw = match (body.get("payload"), body.get("payload_base64")) {
                (Some(Value::String(s)), _) => s.clone().into_bytes(),
                (_, Some(Value::String(b))) => {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|e| (400, format!("payload_base64 is not base64: {e}")))?
                }
                _ => {
                    return Err((
                        400,
                        "thing.model.down_raw sends raw bytes: give \"payload\" (text) or \"payload_base64\""
                            .into(),
                    ));
                }
            };
            (raw, None)
        } else {
            let request = Request::new(enos::new_id(), method, params);
            (request.to_bytes(), Some(request.id))
        };
        let Some(via) = via else {
            return Err((
                404,
                match applied {
                    Some(a) => {
                        format!("{a}; the device is not connected over MQTT or CoAP, so it was not told")
                    }
                    None => "the device is not connected over MQTT (directly or through its gateway) or CoAP"
                        .into(),
                },
            ));
        };
        Ok(Prepared {
            via,
            topic,
            method: method.to_string(),
            payload,
            id: rid,
            applied,
        })
    }

    /// The connected device whose connection reaches `id`: itself, or the gateway it is
    /// logged in through.
    fn reaches(&self, id: &Identity) -> Option<Identity> {
        if self.device_channel(id).is_some() {
            return Some(id.clone());
        }
        self.twin.via(id).filter(|gw| self.device_channel(gw).is_some())
    }

    /// Enable, disable or delete a device in the twin; what changed, in words.
    fn lifecycle(&self, id: &Identity, change: enos::Lifecycle) -> String {
        match change {
            enos::Lifecycle::Enable => {
                self.twin.set_enabled(id, true);
                "enabled in the twin".into()
            }
            enos::Lifecycle::Disable => {
                self.twin.set_enabled(id, false);
                "disabled in the twin".into()
            }
            enos::Lifecycle::Delete => {
                self.twin.delete(id);
                "deleted from the twin".into()
            }
        }
    }

    pub fn connect_device(&self, id: &Identity, tx: Arc<Mailbox>) {
        if let Ok(mut c) = self.connected.lock() {
            c.insert(id.clone(), tx);
        }
    }

    pub fn disconnect_device(&self, id: &Identity, tx: &Arc<Mailbox>) {
        tx.close();
        if let Ok(mut c) = self.connected.lock()
            && c.get(id).is_some_and(|t| Arc::ptr_eq(t, tx))
        {
            c.remove(id);
        }
    }

    pub fn device_channel(&self, id: &Identity) -> Option<Arc<Mailbox>> {
        self.connected.lock().ok()?.get(id).cloned()
    }
}
