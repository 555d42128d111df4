//! The device twin: what `serve` knows about each device, in memory, kept by the one
//! [`Twin`] that owns it. Seeded from the registry (every device, its enabled state, and the
//! topology from `gateway =`), then changed by what devices send (logins, measure points,
//! events, attributes, tags, topology, registrations, the secrets serve issued (by
//! registration and by dynamic activation), firmware and OTA progress) and by the commands a
//! test sends (sub-device enable, disable, delete). Every change of device state is one of
//! [`Twin`]'s methods: a store that keeps it across a restart belongs under them. Queries answer from it, and
//! `GET /twin/devices` shows it as JSON: [`DeviceView`] is that JSON, field for field, and its
//! fields are a contract (added, never renamed).
//!
//! Every table a device can grow is bounded: keys per device ([`MAX_KEYS`]), events kept
//! ([`MAX_EVENTS`], oldest out), devices registered ([`MAX_DEVICES`]).
//!
//! Why over 600 lines: one owner for every per-device field is the point of the module (and
//! its tests are here).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Identity, Protocol};
use crate::base::Secret;
use crate::registry::Registry;

/// The most measure points, attributes or tags kept per device.
pub const MAX_KEYS: usize = 10_000;
/// The most recent events kept per device.
pub const MAX_EVENTS: usize = 50;
/// The most devices the twin holds (the registry's and the registered ones).
pub const MAX_DEVICES: usize = 100_000;

/// Whether a device is connected now, was, or never was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Offline,
    Never,
}

/// A measure point's last value and the time it was measured (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointValue {
    pub value: Value,
    pub time: u64,
}

/// One posted event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventValue {
    /// The event id (`thing/event/{id}/post`).
    pub event: String,
    /// What the device sent as the event's values.
    pub values: Value,
    pub time: u64,
}

/// The firmware version a device reported with `ota.inform`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FirmwareState {
    pub version: String,
    /// When it was reported (ms).
    pub time: u64,
}

/// The last OTA progress a device reported (`ota.progress`), and the upgrade pushed to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtaState {
    /// The version an `ota.device.upgrade` command pushed, if one did.
    pub target: Option<String>,
    /// The step the device reported: a percentage, or a negative failure code (EnOS).
    pub step: Option<Value>,
    pub desc: Option<String>,
    /// When the last report or push happened (ms).
    pub time: u64,
}

/// A device by its keys, as the JSON shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Keys {
    pub product_key: String,
    pub device_key: String,
}

impl From<&Identity> for Keys {
    fn from(id: &Identity) -> Self {
        Keys {
            product_key: id.product_key.clone(),
            device_key: id.device_key.clone(),
        }
    }
}

/// What the twin holds about one device.
#[derive(Debug, Clone, Default)]
struct DeviceState {
    /// `registry`, or `register` for a device made by `thing.device.register`.
    origin: &'static str,
    asset_id: String,
    enabled: bool,
    gateway: Option<Identity>,
    /// Live MQTT connections (the device's own, or its gateway's after `combine.login`).
    connections: u32,
    /// An HTTP session or CoAP binding that is still valid.
    session_until: Option<Instant>,
    protocol: Option<Protocol>,
    /// Through which gateway the device is online, when it is a logged-in sub-device.
    via: Option<Identity>,
    online_since: Option<u64>,
    last_seen: Option<u64>,
    ever: bool,
    messages: u64,
    errors: u64,
    measurepoints: BTreeMap<String, PointValue>,
    attributes: BTreeMap<String, Value>,
    tags: BTreeMap<String, String>,
    firmware: Option<FirmwareState>,
    ota: Option<OtaState>,
    events: VecDeque<EventValue>,
    network: Option<Value>,
    /// A secret serve issued: by `thing.device.register`, or by dynamic activation once the
    /// device acknowledged it (a registry device's own is in the registry).
    secret: Option<Secret>,
}

/// One device as `GET /twin/devices` shows it: a contract, every field in docs/serve-reference.md.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    pub product_key: String,
    pub device_key: String,
    pub asset_id: String,
    pub origin: &'static str,
    pub status: Status,
    pub protocol: Option<Protocol>,
    pub via: Option<Keys>,
    pub online_since: Option<u64>,
    pub last_seen: Option<u64>,
    pub messages: u64,
    pub errors: u64,
    pub enabled: bool,
    pub gateway: Option<Keys>,
    pub sub_devices: Vec<Keys>,
    pub measurepoints: BTreeMap<String, PointValue>,
    pub attributes: BTreeMap<String, Value>,
    pub tags: BTreeMap<String, String>,
    pub firmware: Option<FirmwareState>,
    pub ota: Option<OtaState>,
    pub events: Vec<EventValue>,
    /// The last `network.status.report` params (rssi, snr, packetLossRate, networkType, ...).
    pub network: Option<Value>,
}

/// Why the twin refused a change: an EnOS code and a message.
pub type Refused = (i64, String);

/// The device twin of every device `serve` knows.
pub struct Twin {
    devices: Mutex<BTreeMap<Identity, DeviceState>>,
}

fn now_ms() -> u64 {
    crate::credentials::now_ms()
}

fn asset_id(id: &Identity) -> String {
    // Stable and readable: a test can predict it; EnOS's are opaque strings.
    format!("asset-{}-{}", id.product_key, id.device_key)
}

impl Twin {
    /// Every registry device, with its enabled state and topology.
    pub fn seed(registry: &Registry) -> Self {
        let mut devices = BTreeMap::new();
        for d in &registry.devices {
            let id = Identity::new(&d.product, &d.key);
            let gateway = d
                .gateway
                .as_deref()
                .and_then(|g| g.split_once('/'))
                .map(|(p, k)| Identity::new(p, k));
            devices.insert(
                id.clone(),
                DeviceState {
                    origin: "registry",
                    asset_id: asset_id(&id),
                    enabled: !d.disabled,
                    gateway,
                    ..Default::default()
                },
            );
        }
        Twin {
            devices: Mutex::new(devices),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<Identity, DeviceState>) -> R) -> Option<R> {
        let mut d = self.devices.lock().ok()?;
        Some(f(&mut d))
    }

    fn device<R>(&self, id: &Identity, f: impl FnOnce(&mut DeviceState) -> R) -> Option<R> {
        self.with(|d| d.get_mut(id).map(f)).flatten()
    }

    /// Whether the device exists (not deleted), and whether it is enabled.
    pub fn enabled(&self, id: &Identity) -> Option<bool> {
        self.device(id, |d| d.enabled)
    }

    pub fn exists(&self, id: &Identity) -> bool {
        self.enabled(id).is_some()
    }

    /// The secret serve issued the device (by registration or activation), if it did.
    pub fn issued_secret(&self, id: &Identity) -> Option<Secret> {
        self.device(id, |d| d.secret.clone()).flatten()
    }

    /// The device acknowledged the secret dynamic activation pushed: from now on it logs in
    /// with it. `false` when there is no such device.
    pub fn set_issued_secret(&self, id: &Identity, secret: Secret) -> bool {
        self.device(id, |d| d.secret = Some(secret)).is_some()
    }

    pub fn asset_id(&self, id: &Identity) -> Option<String> {
        self.device(id, |d| d.asset_id.clone())
    }

    /// The gateway whose topology holds the device now.
    pub fn gateway_of(&self, id: &Identity) -> Option<Identity> {
        self.device(id, |d| d.gateway.clone()).flatten()
    }

    /// The gateway a sub-device is logged in through, while it is.
    pub fn via(&self, id: &Identity) -> Option<Identity> {
        self.device(id, |d| d.via.clone().filter(|_| d.connections > 0))
            .flatten()
    }

    /// A connection of the device opened (MQTT, DTLS), directly or through `via`.
    pub fn connected(&self, id: &Identity, protocol: Protocol, via: Option<&Identity>) {
        self.device(id, |d| {
            if d.connections == 0 && !d.session_alive() {
                d.online_since = Some(now_ms());
            }
            d.connections = d.connections.saturating_add(1);
            d.protocol = Some(protocol);
            d.via = via.cloned();
            d.ever = true;
            d.last_seen = Some(now_ms());
        });
    }

    /// A connection of the device closed.
    pub fn disconnected(&self, id: &Identity) {
        self.device(id, |d| {
            d.connections = d.connections.saturating_sub(1);
            if d.connections == 0 {
                d.via = None;
            }
        });
    }

    /// An HTTP session or CoAP binding that lasts until `until`.
    pub fn session_opened(&self, id: &Identity, protocol: Protocol, until: Instant) {
        self.device(id, |d| {
            if d.connections == 0 && !d.session_alive() {
                d.online_since = Some(now_ms());
            }
            d.session_until = Some(until);
            d.protocol = Some(protocol);
            d.ever = true;
            d.last_seen = Some(now_ms());
        });
    }

    /// A request from the device was answered with `code`.
    pub fn seen(&self, id: &Identity, code: i64) {
        self.device(id, |d| {
            d.last_seen = Some(now_ms());
            d.messages = d.messages.saturating_add(1);
            if code != crate::enos::SUCCESS {
                d.errors = d.errors.saturating_add(1);
            }
        });
    }

    /// Measure point values measured at `time`; a value older than the one kept (a resumed
    /// point) does not replace it. `Err` when the device would hold more than [`MAX_KEYS`].
    pub fn set_points(&self, id: &Identity, points: &Map<String, Value>, time: u64) -> Result<(), Refused> {
        self.device(id, |d| {
            let new = points
                .keys()
                .filter(|k| !d.measurepoints.contains_key(*k))
                .count();
            if d.measurepoints.len().saturating_add(new) > MAX_KEYS {
                return Err(too_many("measure points"));
            }
            for (k, v) in points {
                let keep_old = d.measurepoints.get(k).is_some_and(|old| old.time > time);
                if !keep_old {
                    d.measurepoints.insert(
                        k.clone(),
                        PointValue {
                            value: v.clone(),
                            time,
                        },
                    );
                }
            }
            Ok(())
        })
        .unwrap_or_else(|| Err(gone(id)))
    }

    pub fn add_event(&self, id: &Identity, event: &str, values: Value, time: u64) {
        self.device(id, |d| {
            if d.events.len() >= MAX_EVENTS {
                d.events.pop_front();
            }
            d.events.push_back(EventValue {
                event: event.to_string(),
                values,
                time,
            });
        });
    }

    pub fn update_attributes(&self, id: &Identity, values: &Map<String, Value>) -> Result<(), Refused> {
        self.device(id, |d| {
            let new = values.keys().filter(|k| !d.attributes.contains_key(*k)).count();
            if d.attributes.len().saturating_add(new) > MAX_KEYS {
                return Err(too_many("attributes"));
            }
            for (k, v) in values {
                d.attributes.insert(k.clone(), v.clone());
            }
            Ok(())
        })
        .unwrap_or_else(|| Err(gone(id)))
    }

    /// The attributes named (all of them when `keys` is empty), as `{id: value}`.
    pub fn query_attributes(&self, id: &Identity, keys: &[String]) -> Value {
        self.device(id, |d| pick(&d.attributes, keys, Clone::clone))
            .unwrap_or(Value::Null)
    }

    pub fn delete_attributes(&self, id: &Identity, keys: &[String]) {
        self.device(id, |d| {
            for k in keys {
                d.attributes.remove(k);
            }
        });
    }

    pub fn update_tags(&self, id: &Identity, tags: &[(String, String)]) -> Result<(), Refused> {
        self.device(id, |d| {
            let new = tags.iter().filter(|(k, _)| !d.tags.contains_key(k)).count();
            if d.tags.len().saturating_add(new) > MAX_KEYS {
                return Err(too_many("tags"));
            }
            for (k, v) in tags {
                d.tags.insert(k.clone(), v.clone());
            }
            Ok(())
        })
        .unwrap_or_else(|| Err(gone(id)))
    }

    pub fn query_tags(&self, id: &Identity, keys: &[String]) -> Value {
        self.device(id, |d| pick(&d.tags, keys, |v| Value::String(v.clone())))
            .unwrap_or(Value::Null)
    }

    pub fn delete_tags(&self, id: &Identity, keys: &[String]) {
        self.device(id, |d| {
            for k in keys {
                d.tags.remove(k);
            }
        });
    }

    /// Put `sub` in the topology of `gw` (out of any other gateway's).
    pub fn topo_add(&self, gw: &Identity, sub: &Identity) -> Result<(), Refused> {
        if gw == sub {
            return Err((
                crate::enos::BAD_FORMAT,
                "a device cannot be its own sub-device".into(),
            ));
        }
        self.device(sub, |d| d.gateway = Some(gw.clone()))
            .ok_or_else(|| gone(sub))
    }

    /// Take `sub` out of the topology of `gw`; `Err` when it is not in it.
    pub fn topo_delete(&self, gw: &Identity, sub: &Identity) -> Result<(), Refused> {
        self.device(sub, |d| {
            if d.gateway.as_ref() == Some(gw) {
                d.gateway = None;
                Ok(())
            } else {
                Err((
                    crate::enos::SUB_NOT_IN_TOPOLOGY,
                    format!(
                        "{}/{} is not in the topology of {}/{}",
                        sub.product_key, sub.device_key, gw.product_key, gw.device_key
                    ),
                ))
            }
        })
        .unwrap_or_else(|| Err(gone(sub)))
    }

    /// The sub-devices in the topology of `gw`.
    pub fn topo_get(&self, gw: &Identity) -> Vec<Identity> {
        self.with(|all| {
            all.iter()
                .filter(|(_, d)| d.gateway.as_ref() == Some(gw))
                .map(|(id, _)| id.clone())
                .collect()
        })
        .unwrap_or_default()
    }

    /// A device made by `thing.device.register`, with its secret and attributes.
    pub fn register(
        &self,
        id: &Identity,
        secret: Secret,
        attributes: Map<String, Value>,
    ) -> Result<String, Refused> {
        self.with(|all| {
            if all.contains_key(id) {
                return Err((
                    crate::enos::PARAMETER_ERROR,
                    format!("device {}/{} already exists", id.product_key, id.device_key),
                ));
            }
            if all.len() >= MAX_DEVICES {
                return Err((
                    crate::enos::TOO_MANY_REQUESTS,
                    format!("serve holds at most {MAX_DEVICES} devices"),
                ));
            }
            let asset = asset_id(id);
            all.insert(
                id.clone(),
                DeviceState {
                    origin: "register",
                    asset_id: asset.clone(),
                    enabled: true,
                    attributes: attributes.into_iter().take(MAX_KEYS).collect(),
                    secret: Some(secret),
                    ..Default::default()
                },
            );
            Ok(asset)
        })
        .unwrap_or_else(|| Err((crate::enos::INTERNAL_ERROR, "the twin is unavailable".into())))
    }

    pub fn set_firmware(&self, id: &Identity, version: &str) {
        self.device(id, |d| {
            d.firmware = Some(FirmwareState {
                version: version.to_string(),
                time: now_ms(),
            });
        });
    }

    pub fn firmware(&self, id: &Identity) -> Option<String> {
        self.device(id, |d| d.firmware.as_ref().map(|f| f.version.clone()))
            .flatten()
    }

    /// An OTA progress report, or (with `target`) an upgrade pushed.
    pub fn set_ota(&self, id: &Identity, target: Option<&str>, step: Option<Value>, desc: Option<String>) {
        self.device(id, |d| {
            let old = d.ota.take();
            d.ota = Some(OtaState {
                target: target
                    .map(str::to_string)
                    .or_else(|| old.as_ref().and_then(|o| o.target.clone())),
                step,
                desc,
                time: now_ms(),
            });
        });
    }

    /// A network status report (the Java SDK's `network/status/report`).
    pub fn set_network(&self, id: &Identity, report: Value) {
        self.device(id, |d| d.network = Some(report));
    }

    /// Enable or disable a device; `false` when there is no such device.
    pub fn set_enabled(&self, id: &Identity, enabled: bool) -> bool {
        self.device(id, |d| d.enabled = enabled).is_some()
    }

    /// Delete a device: it no longer logs in, and leaves every topology (its own sub-devices
    /// lose their gateway).
    pub fn delete(&self, id: &Identity) -> bool {
        self.with(|all| {
            let gone = all.remove(id).is_some();
            for d in all.values_mut() {
                if d.gateway.as_ref() == Some(id) {
                    d.gateway = None;
                }
            }
            gone
        })
        .unwrap_or(false)
    }

    /// Every device, by product key then device key.
    pub fn views(&self) -> Vec<DeviceView> {
        self.with(|all| all.iter().map(|(id, d)| view(all, id, d)).collect())
            .unwrap_or_default()
    }

    pub fn view(&self, id: &Identity) -> Option<DeviceView> {
        self.with(|all| all.get(id).map(|d| view(all, id, d))).flatten()
    }
}

impl DeviceState {
    fn session_alive(&self) -> bool {
        self.session_until.is_some_and(|u| u > Instant::now())
    }

    fn status(&self) -> Status {
        if self.connections > 0 || self.session_alive() {
            Status::Online
        } else if self.ever {
            Status::Offline
        } else {
            Status::Never
        }
    }
}

fn view(all: &BTreeMap<Identity, DeviceState>, id: &Identity, d: &DeviceState) -> DeviceView {
    DeviceView {
        product_key: id.product_key.clone(),
        device_key: id.device_key.clone(),
        asset_id: d.asset_id.clone(),
        origin: d.origin,
        status: d.status(),
        protocol: d.protocol,
        via: d.via.as_ref().filter(|_| d.connections > 0).map(Keys::from),
        online_since: d.online_since.filter(|_| d.status() == Status::Online),
        last_seen: d.last_seen,
        messages: d.messages,
        errors: d.errors,
        enabled: d.enabled,
        gateway: d.gateway.as_ref().map(Keys::from),
        sub_devices: all
            .iter()
            .filter(|(_, s)| s.gateway.as_ref() == Some(id))
            .map(|(k, _)| Keys::from(k))
            .collect(),
        measurepoints: d.measurepoints.clone(),
        attributes: d.attributes.clone(),
        tags: d.tags.clone(),
        firmware: d.firmware.clone(),
        ota: d.ota.clone(),
        events: d.events.iter().cloned().collect(),
        network: d.network.clone(),
    }
}

fn pick<V>(map: &BTreeMap<String, V>, keys: &[String], f: impl Fn(&V) -> Value) -> Value {
    let out: Map<String, Value> = if keys.is_empty() {
        map.iter().map(|(k, v)| (k.clone(), f(v))).collect()
    } else {
        keys.iter()
            .filter_map(|k| map.get(k).map(|v| (k.clone(), f(v))))
            .collect()
    };
    Value::Object(out)
}

fn too_many(what: &str) -> Refused {
    (
        crate::enos::TOO_MANY_REQUESTS,
        format!("a device holds at most {MAX_KEYS} {what} in serve"),
    )
}

fn gone(id: &Identity) -> Refused {
    (
        crate::enos::DEVICE_NOT_FOUND,
        format!("no device {}/{}", id.product_key, id.device_key),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    fn twin() -> Twin {
        let r = Registry::parse(&SourceFile::new(
            "r.toml",
            "[[products]]\nkey = \"p\"\n[[devices]]\nproduct = \"p\"\nkey = \"gw\"\n\
             [[devices]]\nproduct = \"p\"\nkey = \"s\"\ngateway = \"p/gw\"\ndisabled = true\n",
        ))
        .expect("registry");
        Twin::seed(&r)
    }

    #[test]
    fn the_registry_seeds_topology_and_enabled_state() {
        let t = twin();
        let (gw, s) = (Identity::new("p", "gw"), Identity::new("p", "s"));
        assert_eq!(t.topo_get(&gw), vec![s.clone()]);
        assert_eq!(t.enabled(&s), Some(false));
        assert_eq!(t.view(&gw).map(|v| v.status), Some(Status::Never));
        t.connected(&gw, Protocol::Mqtt, None);
        assert_eq!(t.view(&gw).map(|v| v.status), Some(Status::Online));
        t.disconnected(&gw);
        assert_eq!(t.view(&gw).map(|v| v.status), Some(Status::Offline));
        assert!(t.topo_delete(&gw, &s).is_ok());
        assert!(t.topo_delete(&gw, &s).is_err(), "not in it any more");
        assert!(t.delete(&s));
        assert!(!t.exists(&s));
    }

    #[test]
    fn an_older_value_does_not_replace_a_newer_one() {
        let t = twin();
        let gw = Identity::new("p", "gw");
        let points = |v: i64| {
            let mut m = Map::new();
            m.insert("temp".into(), Value::from(v));
            m
        };
        t.set_points(&gw, &points(2), 200).expect("stored");
        t.set_points(&gw, &points(1), 100).expect("stored");
        let v = t.view(&gw).expect("view");
        assert_eq!(v.measurepoints["temp"].value, Value::from(2));
        assert_eq!(v.measurepoints["temp"].time, 200);
    }
}
