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
//! ([`MAX_EVENTS`], oldest out), devices registered ([`MAX_DEVICES`]), each point's history by
//! the retention (`--retain`) and, in memory, all history by [`MAX_MEMORY_VALUES`].
//!
//! Kept across a restart with `serve --data FILE`: each method that changes what a restart
//! keeps pushes a [`Change`] to the [`Store`] while it holds the twin's lock (so the file sees
//! changes in the order they were made), and [`Twin::restore`] rebuilds the twin from the
//! registry with the file's state layered on it. Without a store, history is kept here, in
//! memory. Whether a device is online is never kept: after a restart it is offline.
//!
//! Why over 600 lines: one owner for every per-device field is the point of the module, and
//! what a restart keeps of each field is decided beside it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::history::{Query, Retention, Sample, Series, Stored};
use super::keyed::Keyed;
use super::store::{Change, Patch, Reader, Saved, Store};
use super::{Identity, Protocol};
use crate::registry::Registry;
use crate::secret::Secret;

/// The most measure points, attributes or tags kept per device.
pub(crate) const MAX_KEYS: usize = 10_000;
/// The most recent events kept per device.
pub(crate) const MAX_EVENTS: usize = 50;
/// The most devices the twin holds (the registry's and the registered ones).
pub(crate) const MAX_DEVICES: usize = 100_000;
/// The most history values kept in memory, all points together (without `--data`): past it,
/// a point's oldest value makes room for its new one. About 32 bytes each.
pub(crate) const MAX_MEMORY_VALUES: usize = 10_000_000;

/// Where a device came from: the registry file, or `thing.device.register`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    #[default]
    Registry,
    Register,
}

impl Origin {
    /// The name in `/twin/devices` and in the data file.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Registry => "registry",
            Origin::Register => "register",
        }
    }
}

/// Whether a device is connected now, was, or never was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Offline,
    Never,
}

/// A measure point's last value and the time it was measured (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointValue {
    pub value: Value,
    pub time: u64,
}

/// One posted event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventValue {
    /// The event id (`thing/event/{id}/post`).
    pub event: String,
    /// What the device sent as the event's values.
    pub values: Value,
    pub time: u64,
}

/// The firmware version a device reported with `ota.inform`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirmwareState {
    pub version: String,
    /// When it was reported (ms).
    pub time: u64,
}

/// The last OTA progress a device reported (`ota.progress`), and the upgrade pushed to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    origin: Origin,
    enabled: bool,
    /// Boxed, as `via`, the firmware and the OTA state below: most devices have none, and
    /// every device of the registry has a record (a test pins its size).
    gateway: Option<Box<Identity>>,
    /// Live MQTT connections (the device's own, or its gateway's after `combine.login`).
    connections: u32,
    /// An HTTP session or CoAP binding that is still valid.
    session_until: Option<Instant>,
    /// The protocol of that session: the device's again when its last connection closes.
    session_protocol: Option<Protocol>,
    protocol: Option<Protocol>,
    /// Through which gateway the device is online, when it is a logged-in sub-device.
    via: Option<Box<Identity>>,
    online_since: Option<u64>,
    last_seen: Option<u64>,
    ever: bool,
    messages: u64,
    errors: u64,
    measurepoints: Keyed<PointValue>,
    attributes: BTreeMap<String, Value>,
    tags: BTreeMap<String, String>,
    firmware: Option<Box<FirmwareState>>,
    ota: Option<Box<OtaState>>,
    events: VecDeque<EventValue>,
    network: Option<Box<Value>>,
    /// A secret serve issued: by `thing.device.register`, or by dynamic activation once the
    /// device acknowledged it (a registry device's own is in the registry).
    secret: Option<Secret>,
    /// Each point's values, without a store (with one, the file keeps them).
    history: Keyed<Series>,
    /// The store's mark of this device's last change a reply waits for.
    saved_at: u64,
    /// Activity (logins, requests) not queued for the data file yet.
    activity_unsaved: bool,
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
pub(crate) type Refused = (i64, String);

/// The device twin of every device `serve` knows.
pub struct Twin {
    devices: Mutex<BTreeMap<Identity, Box<DeviceState>>>,
    /// Where what a restart keeps is kept (`--data`); `None`: in memory only.
    store: Option<Store>,
    retention: Retention,
    /// History values held in memory, all points together.
    in_memory: AtomicUsize,
    /// The devices whose activity is not queued for the data file yet.
    active: Mutex<Vec<Identity>>,
}

/// A device in the data file that the registry no longer serves: reported at start, and kept
/// in the file (a registry that lists it again serves it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub device: Identity,
    /// `true`: the registry lists the product, not the device; `false`: the product left it.
    pub product_listed: bool,
}

/// Where a device's history is read: from memory, at once, or from the file, by a blocking
/// call ([`Reader::history`]).
pub enum HistoryRead {
    Ready(Vec<Sample>),
    Stored(Reader),
}

fn now_ms() -> u64 {
    crate::credentials::now_ms()
}

fn asset_id(id: &Identity) -> String {
    // Stable and readable: a test can predict it; EnOS's are opaque strings. Made when asked
    // for, not kept in each device's record: a fleet's registry has tens of thousands.
    format!("asset-{}-{}", id.product_key, id.device_key)
}

impl Twin {
    /// Every registry device, with its enabled state and topology; history in memory, kept
    /// for the default retention.
    pub fn seed(registry: &Registry) -> Self {
        Self::in_memory(registry, Retention::default())
    }

    /// [`Twin::seed`], history kept for `retention`.
    pub fn in_memory(registry: &Registry, retention: Retention) -> Self {
        Twin {
            devices: Mutex::new(seeded(registry)),
            store: None,
            retention,
            in_memory: AtomicUsize::new(0),
            active: Mutex::default(),
        }
    }

    /// The registry's devices with what the data file kept layered on them, and the devices
    /// `thing.device.register` made; from now on every change goes to `store` too. The
    /// devices the file holds and the registry no longer serves are the conflicts: kept in
    /// the file, not served.
    pub fn restore(
        registry: &Registry,
        store: Store,
        saved: Saved,
        retention: Retention,
    ) -> (Self, Vec<Conflict>) {
        let mut devices = seeded(registry);
        let mut conflicts = Vec::new();
        for (id, s) in saved.devices {
            let product_listed = registry.product(&id.product_key).is_some();
            let listed = devices.contains_key(&id);
            if s.deleted {
                // A registry device deleted by a command stays deleted.
                devices.remove(&id);
                continue;
            }
            let d = match (listed, s.origin) {
                (true, _) => devices.entry(id.clone()).or_default(),
                (false, Origin::Register) if product_listed && devices.len() < MAX_DEVICES => {
                    devices.entry(id.clone()).or_insert_with(|| {
                        Box::new(DeviceState {
                            origin: Origin::Register,
                            enabled: true,
                            ..Default::default()
                        })
                    })
                }
                _ => {
                    conflicts.push(Conflict {
                        device: id,
                        product_listed,
                    });
                    continue;
                }
            };
            d.secret = s.secret.or(d.secret.take());
            d.enabled = s.enabled.unwrap_or(d.enabled);
            if let Some(gw) = s.gateway {
                d.gateway = gw.map(Box::new);
            }
            d.firmware = s.firmware.map(Box::new);
            d.ota = s.ota.map(Box::new);
            d.network = s.network.map(Box::new);
            d.protocol = s.protocol;
            d.last_seen = s.last_seen;
            d.ever = s.last_seen.is_some();
            d.messages = s.messages;
            d.errors = s.errors;
            d.attributes = s.attributes;
            d.tags = s.tags;
            d.events = s.events.into_iter().collect();
            d.measurepoints = s.points.into();
        }
        let twin = Twin {
            devices: Mutex::new(devices),
            store: Some(store),
            retention,
            in_memory: AtomicUsize::new(0),
            active: Mutex::default(),
        };
        (twin, conflicts)
    }

    /// The data file, when there is one (`None`: state in memory only, not saved).
    pub fn saved_to(&self) -> Option<&std::path::Path> {
        self.store.as_ref().map(Store::path)
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// The changes made so far, as a mark to wait for with [`Twin::wait_saved`].
    pub fn save_target(&self) -> u64 {
        self.store.as_ref().map_or(0, Store::target)
    }

    /// Wait until the changes up to `target` are in the data file (at once without one).
    /// After a failed write it never returns: serve stops instead of acknowledging.
    pub async fn wait_saved(&self, target: u64) {
        if let Some(s) = &self.store {
            s.wait_saved(target).await;
        }
    }

    /// Have the data file's writer commit what is queued now (replies wait for it).
    pub fn save_now(&self) {
        if let Some(s) = &self.store {
            s.kick();
        }
    }

    /// Wake the replies waiting on the data file from this (the runtime's) thread, once per
    /// commit, until `shutdown`: see [`Store::relay`].
    pub async fn relay(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        if let Some(s) = &self.store {
            tokio::select! {
                () = s.relay() => {}
                () = super::stopped(shutdown) => {}
            }
            s.relay_gone();
        }
    }

    /// Wait until a write to the data file fails, and say why (never without a file).
    pub async fn save_failed(&self) -> String {
        match &self.store {
            Some(s) => s.failed().await,
            None => std::future::pending().await,
        }
    }

    /// Commit what is queued (the last activity too) and close the data file; `Err` says
    /// why a write failed.
    pub fn close(&self) -> Result<(), String> {
        self.save_activity();
        self.store.as_ref().map_or(Ok(()), Store::close)
    }

    /// Queue a change for the data file, if there is one (called under the twin's lock).
    fn save(&self, change: impl FnOnce() -> Change) {
        if let Some(s) = &self.store {
            s.push(change());
        }
    }

    /// Many devices at once: a reply that saw them waits for every change made so far.
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<Identity, Box<DeviceState>>) -> R) -> Option<R> {
        let mut all = self.devices.lock().ok()?;
        let r = f(&mut all);
        note_seen(self.save_target());
        Some(r)
    }

    /// One device: a reply that changed or saw it waits until the device's last change is in
    /// the data file (a login with a secret whose activation is not committed yet waits for
    /// it), and for no other device's.
    fn device<R>(&self, id: &Identity, f: impl FnOnce(&mut DeviceState) -> R) -> Option<R> {
        let mut all = self.devices.lock().ok()?;
        let d = all.get_mut(id)?;
        let before = self.save_target();
        let r = f(d);
        // Changes are pushed only under this lock: what moved the mark is this device's.
        let after = self.save_target();
        if after > before {
            d.saved_at = after;
        }
        note_seen(d.saved_at);
        Some(r)
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
        self.patch(id, |d| {
            d.secret = Some(secret.clone());
            Patch::Secret(secret)
        })
    }

    /// Change one field of the device's own state, and keep it: `false` when there is no such
    /// device.
    fn patch(&self, id: &Identity, f: impl FnOnce(&mut DeviceState) -> Patch) -> bool {
        self.device(id, |d| {
            let patch = f(d);
            self.save(|| Change::Device {
                id: id.clone(),
                origin: d.origin,
                patch,
            });
        })
        .is_some()
    }

    /// The gateway whose topology holds the device now.
    pub fn gateway_of(&self, id: &Identity) -> Option<Identity> {
        self.device(id, |d| d.gateway.as_deref().cloned()).flatten()
    }

    /// The gateway a sub-device is logged in through, while it is.
    pub fn via(&self, id: &Identity) -> Option<Identity> {
        self.device(id, |d| d.via.as_deref().cloned().filter(|_| d.connections > 0))
            .flatten()
    }

    /// The device logged in, made a request or a session: when, over what, and the
    /// requests (and errors) to count. Kept with [`Twin::save_activity`], a row per device per
    /// batch, so a device seen before is offline after a restart, not "never".
    fn active(
        &self,
        id: &Identity,
        d: &mut DeviceState,
        protocol: Option<Protocol>,
        requests: u64,
        errors: u64,
    ) {
        d.ever = true;
        d.last_seen = Some(now_ms());
        if let Some(p) = protocol {
            d.protocol = Some(p);
        }
        d.messages = d.messages.saturating_add(requests);
        d.errors = d.errors.saturating_add(errors);
        if self.store.is_some() && !d.activity_unsaved {
            d.activity_unsaved = true;
            if let Ok(mut dirty) = self.active.lock() {
                dirty.push(id.clone());
            }
        }
    }

    /// Queue the activity of the devices active since the last call (their login times,
    /// protocols and counts) for the data file: once per batch of the group commit
    /// ([`super::Endpoint::flusher`]), and at [`Twin::close`]. No reply waits for it.
    pub fn save_activity(&self) {
        let Some(active) = self.active.lock().ok().map(|mut a| std::mem::take(&mut *a)) else {
            return;
        };
        if active.is_empty() {
            return;
        }
        self.with(|all| {
            for id in active {
                let Some(d) = all.get_mut(&id) else { continue };
                if std::mem::take(&mut d.activity_unsaved) {
                    self.save(|| Change::Activity {
                        id,
                        origin: d.origin,
                        protocol: d.protocol,
                        last_seen: d.last_seen.unwrap_or(0),
                        messages: d.messages,
                        errors: d.errors,
                    });
                }
            }
        });
    }

    /// A connection of the device opened (MQTT, DTLS), directly or through `via`.
    pub fn connected(&self, id: &Identity, protocol: Protocol, via: Option<&Identity>) {
        self.device(id, |d| {
            if d.connections == 0 && !d.session_alive() {
                d.online_since = Some(now_ms());
            }
            d.connections = d.connections.saturating_add(1);
            d.via = via.cloned().map(Box::new);
            self.active(id, d, Some(protocol), 0, 0);
        });
    }

    /// A connection of the device closed.
    pub fn disconnected(&self, id: &Identity) {
        self.device(id, |d| {
            d.connections = d.connections.saturating_sub(1);
            if d.connections == 0 {
                d.via = None;
                // Still online through a session: the twin says over which protocol.
                if d.session_alive() {
                    d.protocol = d.session_protocol.or(d.protocol);
                }
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
            d.session_protocol = Some(protocol);
            self.active(id, d, Some(protocol), 0, 0);
        });
    }

    /// A request from the device was answered with `code`.
    pub fn seen(&self, id: &Identity, code: i64) {
        self.device(id, |d| {
            let error = u64::from(code != crate::enos::SUCCESS);
            self.active(id, d, None, 1, error);
        });
    }

    /// Measure point values measured at `time`, each kept in the point's history; a value
    /// older than the one kept as the last (a resumed point) does not replace it. `Err` when
    /// the device would hold more than [`MAX_KEYS`].
    pub fn set_points(&self, id: &Identity, points: &Map<String, Value>, time: u64) -> Result<(), Refused> {
        let at = i64::try_from(time).unwrap_or(i64::MAX);
        self.device(id, |d| {
            let new = points.keys().filter(|k| !d.measurepoints.contains_key(k)).count();
            if d.measurepoints.len().saturating_add(new) > MAX_KEYS {
                return Err(too_many("measure points"));
            }
            let mut kept = Vec::with_capacity(points.len());
            for (k, v) in points {
                let latest = d.measurepoints.get(k).is_none_or(|old| old.time <= time);
                if latest {
                    d.measurepoints.insert(
                        k,
                        PointValue {
                            value: v.clone(),
                            time,
                        },
                    );
                }
                let stored = Stored::from_value(v);
                if self.store.is_some() {
                    kept.push((k.clone(), stored));
                } else {
                    self.remember(d.history.get_or_default(k), at, stored);
                }
            }
            if !kept.is_empty() {
                self.save(|| Change::Points {
                    id: id.clone(),
                    time: at,
                    values: kept,
                });
            }
            Ok(())
        })
        .unwrap_or_else(|| Err(gone(id)))
    }

    /// One value into a point's history in memory, within the retention and within
    /// [`MAX_MEMORY_VALUES`] for all points.
    fn remember(&self, series: &mut Series, time: i64, value: Stored) {
        let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
        let added = usize::from(series.put(time, value));
        let gone = series.prune(&self.retention, now);
        if added > gone {
            // One more value held: past the bound, the point's oldest makes room.
            if self.in_memory.fetch_add(1, Ordering::Relaxed) >= MAX_MEMORY_VALUES && series.drop_oldest() {
                self.in_memory.fetch_sub(1, Ordering::Relaxed);
            }
        } else if gone > added {
            self.in_memory.fetch_sub(gone - added, Ordering::Relaxed);
        }
    }

    /// The point's values that `q` asks for (`None`: no such device): from memory, or a
    /// reader of the data file.
    pub fn history(&self, id: &Identity, point: &str, q: &Query) -> Option<HistoryRead> {
        let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
        self.device(id, |d| match &self.store {
            Some(s) => HistoryRead::Stored(s.reader()),
            None => HistoryRead::Ready(match d.history.get_mut(point) {
                Some(series) => {
                    let gone = series.prune(&self.retention, now);
                    self.in_memory.fetch_sub(gone, Ordering::Relaxed);
                    series.range(q)
                }
                None => Vec::new(),
            }),
        })
    }

    pub fn add_event(&self, id: &Identity, event: &str, values: Value, time: u64) {
        self.device(id, |d| {
            if d.events.len() >= MAX_EVENTS {
                d.events.pop_front();
            }
            let e = EventValue {
                event: event.to_string(),
                values,
                time,
            };
            self.save(|| Change::Event {
                id: id.clone(),
                event: e.clone(),
            });
            d.events.push_back(e);
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
            self.save(|| Change::Attributes {
                id: id.clone(),
                set: values.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            });
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
            self.save(|| Change::AttributesDeleted {
                id: id.clone(),
                keys: keys.to_vec(),
            });
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
            self.save(|| Change::Tags {
                id: id.clone(),
                set: tags.to_vec(),
            });
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
            self.save(|| Change::TagsDeleted {
                id: id.clone(),
                keys: keys.to_vec(),
            });
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
        self.patch(sub, |d| {
            d.gateway = Some(Box::new(gw.clone()));
            Patch::Gateway(Some(gw.clone()))
        })
        .then_some(())
        .ok_or_else(|| gone(sub))
    }

    /// Take `sub` out of the topology of `gw`; `Err` when it is not in it.
    pub fn topo_delete(&self, gw: &Identity, sub: &Identity) -> Result<(), Refused> {
        self.device(sub, |d| {
            if d.gateway.as_deref() == Some(gw) {
                d.gateway = None;
                self.save(|| Change::Device {
                    id: sub.clone(),
                    origin: d.origin,
                    patch: Patch::Gateway(None),
                });
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
                .filter(|(_, d)| d.gateway.as_deref() == Some(gw))
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
            let attributes: BTreeMap<String, Value> = attributes.into_iter().take(MAX_KEYS).collect();
            self.save(|| Change::Registered {
                id: id.clone(),
                secret: secret.clone(),
                attributes: attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            });
            all.insert(
                id.clone(),
                Box::new(DeviceState {
                    origin: Origin::Register,
                    enabled: true,
                    attributes,
                    secret: Some(secret),
                    ..Default::default()
                }),
            );
            Ok(asset_id(id))
        })
        .unwrap_or_else(|| Err((crate::enos::INTERNAL_ERROR, "the twin is unavailable".into())))
    }

    pub fn set_firmware(&self, id: &Identity, version: &str) {
        self.patch(id, |d| {
            let f = FirmwareState {
                version: version.to_string(),
                time: now_ms(),
            };
            d.firmware = Some(Box::new(f.clone()));
            Patch::Firmware(f)
        });
    }

    pub fn firmware(&self, id: &Identity) -> Option<String> {
        self.device(id, |d| d.firmware.as_ref().map(|f| f.version.clone()))
            .flatten()
    }

    /// An OTA progress report, or (with `target`) an upgrade pushed.
    pub fn set_ota(&self, id: &Identity, target: Option<&str>, step: Option<Value>, desc: Option<String>) {
        self.patch(id, |d| {
            let old = d.ota.take();
            let ota = OtaState {
                target: target
                    .map(str::to_string)
                    .or_else(|| old.as_ref().and_then(|o| o.target.clone())),
                step,
                desc,
                time: now_ms(),
            };
            d.ota = Some(Box::new(ota.clone()));
            Patch::Ota(ota)
        });
    }

    /// A network status report (the Java SDK's `network/status/report`).
    pub fn set_network(&self, id: &Identity, report: Value) {
        self.patch(id, |d| {
            d.network = Some(Box::new(report.clone()));
            Patch::Network(report)
        });
    }

    /// Enable or disable a device; `false` when there is no such device.
    pub fn set_enabled(&self, id: &Identity, enabled: bool) -> bool {
        self.patch(id, |d| {
            d.enabled = enabled;
            Patch::Enabled(enabled)
        })
    }

    /// Delete a device: it no longer logs in, and leaves every topology (its own sub-devices
    /// lose their gateway).
    pub fn delete(&self, id: &Identity) -> bool {
        self.with(|all| {
            let Some(d) = all.remove(id) else {
                return false;
            };
            let held: usize = d.history.values().map(Series::len).sum();
            self.in_memory.fetch_sub(held, Ordering::Relaxed);
            self.save(|| Change::Deleted {
                id: id.clone(),
                origin: d.origin,
            });
            for (sub, s) in all.iter_mut() {
                if s.gateway.as_deref() == Some(id) {
                    s.gateway = None;
                    self.save(|| Change::Device {
                        id: sub.clone(),
                        origin: s.origin,
                        patch: Patch::Gateway(None),
                    });
                }
            }
            true
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

tokio::task_local! {
    /// The store's mark that the current connection's reply waits for: the last change of
    /// every device it changed or looked at (see [`Twin::device`]).
    static SEEN: std::cell::Cell<u64>;
}

/// Run a connection's task with a mark of its own, so its replies wait only for the changes
/// of the devices it touched, not for every device's ([`seen_mark`]).
pub(crate) fn scoped<F: std::future::Future>(task: F) -> impl std::future::Future<Output = F::Output> {
    SEEN.scope(std::cell::Cell::new(0), task)
}

/// The mark the current task's reply waits for; `None` outside [`scoped`] (then a reply waits
/// for every change made so far).
pub(crate) fn seen_mark() -> Option<u64> {
    SEEN.try_with(std::cell::Cell::get).ok()
}

fn note_seen(mark: u64) {
    if mark > 0 {
        let _ = SEEN.try_with(|c| c.set(c.get().max(mark)));
    }
}

/// The registry's devices, with their enabled state and topology.
fn seeded(registry: &Registry) -> BTreeMap<Identity, Box<DeviceState>> {
    let mut devices = BTreeMap::new();
    for d in &registry.devices {
        let id = Identity::new(&d.product, &d.key);
        let gateway = d
            .gateway
            .as_deref()
            .and_then(|g| g.split_once('/'))
            .map(|(p, k)| Identity::new(p, k));
        // Boxed: a map node holds eleven entries, and most are half full.
        devices.insert(
            id.clone(),
            Box::new(DeviceState {
                origin: Origin::Registry,
                enabled: !d.disabled,
                gateway: gateway.map(Box::new),
                ..Default::default()
            }),
        );
    }
    devices
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

fn view(all: &BTreeMap<Identity, Box<DeviceState>>, id: &Identity, d: &DeviceState) -> DeviceView {
    DeviceView {
        product_key: id.product_key.clone(),
        device_key: id.device_key.clone(),
        asset_id: asset_id(id),
        origin: d.origin.name(),
        status: d.status(),
        protocol: d.protocol,
        via: d.via.as_deref().filter(|_| d.connections > 0).map(Keys::from),
        online_since: d.online_since.filter(|_| d.status() == Status::Online),
        last_seen: d.last_seen,
        messages: d.messages,
        errors: d.errors,
        enabled: d.enabled,
        gateway: d.gateway.as_deref().map(Keys::from),
        sub_devices: all
            .iter()
            .filter(|(_, s)| s.gateway.as_deref() == Some(id))
            .map(|(k, _)| Keys::from(k))
            .collect(),
        measurepoints: d.measurepoints.to_map(),
        attributes: d.attributes.clone(),
        tags: d.tags.clone(),
        firmware: d.firmware.as_deref().cloned(),
        ota: d.ota.as_deref().cloned(),
        events: d.events.iter().cloned().collect(),
        network: d.network.as_deref().cloned(),
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
    use crate::source_text::SourceFile;

    #[test]
    fn a_devices_record_stays_small() {
        // Every device of the registry has one, online or not (docs/performance.md).
        let size = std::mem::size_of::<DeviceState>();
        println!("DeviceState: {size} bytes");
        assert!(size <= 288, "DeviceState is {size} bytes");
    }

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
