//! What a well-formed request does: stored in the [`super::twin`] and answered with the `data`
//! the official SDKs' response classes parse: measure points (also in batches and through
//! message integration), attributes, tags, events, topology, registrations, the thing model
//! (`thing.tsltemplate.get`), firmware reports and the registry's firmwares.

use serde_json::{Map, Value, json};

use super::requests::check_type;
use super::twin::Refused;
use super::{Endpoint, Event, EventKind, Identity, Protocol, random_hex, text_field};
use crate::enos::{self, Topic};
use crate::registry::Point;
use crate::secret::Secret;

/// The most devices one `thing.device.register` creates (the SDKs' own bound).
const MAX_REGISTER: usize = 1000;

impl Endpoint {
    /// What a well-formed request does, and the reply's `data`.
    pub(super) fn apply(
        &self,
        protocol: Protocol,
        t: &Topic<'_>,
        id: &Identity,
        topic: &str,
        method: &str,
        params: &Value,
    ) -> Result<Value, Refused> {
        let time = params
            .get("time")
            .and_then(Value::as_u64)
            .unwrap_or_else(crate::credentials::now_ms);
        match method {
            "thing.measurepoint.post" | "thing.measurepoint.resume" => self
                .twin
                .set_points(id, &points_in(params), time)
                .map(|()| Value::Null),
            "thing.measurepoint.post.batch" | "thing.measurepoint.resume.batch" => self.batch(id, params),
            "thing.attribute.update" => self.update_attributes(t.product_key, id, params),
            "thing.attribute.query" => Ok(self.twin.query_attributes(id, &names(params, "attributes")?)),
            "thing.attribute.delete" => {
                self.twin.delete_attributes(id, &names(params, "attributes")?);
                Ok(Value::Null)
            }
            "thing.tag.update" => self.twin.update_tags(id, &tags(params)?).map(|()| Value::Null),
            "thing.tag.query" => Ok(self.twin.query_tags(id, &names(params, "tags")?)),
            "thing.tag.delete" => {
                self.twin.delete_tags(id, &names(params, "tags")?);
                Ok(Value::Null)
            }
            "thing.topo.add" => self.topo_add(id, params),
            "thing.topo.delete" => {
                for (pk, dk) in listed_devices(params)? {
                    self.twin.topo_delete(id, &Identity::new(&pk, &dk))?;
                }
                Ok(Value::Null)
            }
            "thing.topo.get" => Ok(Value::Array(
                self.twin.topo_get(id).iter().map(keys_json).collect(),
            )),
            "thing.device.register" => self.register(params),
            "thing.tsltemplate.get" => self.tsl_template(t.product_key),
            "ota.inform" | "ota.device.inform" => {
                let Some(version) = text_field(params, "version").filter(|v| !v.is_empty()) else {
                    return Err((enos::BAD_FORMAT, "params.version is missing".into()));
                };
                self.twin.set_firmware(id, &version);
                Ok(Value::Null)
            }
            "ota.progress" | "ota.device.progress" => {
                let (step, desc) = (params.get("step").cloned(), text_field(params, "desc"));
                self.twin.set_ota(id, None, step, desc);
                Ok(Value::Null)
            }
            "Ota.device.getversion" | "ota.device.getversion" => Ok(Value::Array(
                self.registry
                    .firmwares_of(t.product_key)
                    .map(firmware_json)
                    .collect(),
            )),
            "ota.request" | "ota.device.request" => Ok(self.firmware_offer(t.product_key, id)),
            "network.status.report" => {
                self.twin.set_network(id, params.clone());
                Ok(Value::Null)
            }
            m if m.starts_with("integration.") => self.integration(protocol, t, topic, m, params),
            m if m.starts_with("thing.event.") => self.post_event(t, id, params, time),
            // combine.*: the MQTT listener answers them with the gateway's session.
            _ => Ok(Value::Null),
        }
    }

    /// `thing.attribute.update`: typed by the product's model, when it has attributes.
    fn update_attributes(&self, pk: &str, id: &Identity, params: &Value) -> Result<Value, Refused> {
        let Some(attrs) = params.get("attributes").and_then(Value::as_object) else {
            return Err((enos::BAD_FORMAT, "params.attributes must be an object".into()));
        };
        self.check_attributes(pk, attrs)?;
        self.twin.update_attributes(id, attrs).map(|()| Value::Null)
    }

    /// `ota.request`: the newest firmware listed that is not the version the device reported.
    fn firmware_offer(&self, pk: &str, id: &Identity) -> Value {
        let current = self.twin.firmware(id);
        let offer = self
            .registry
            .firmwares_of(pk)
            .filter(|f| Some(&f.version) != current.as_ref())
            .last();
        Value::Array(offer.into_iter().map(firmware_json).collect())
    }

    /// `thing.event.{eventId}.post`: an event the product's model has, when it lists events.
    fn post_event(&self, t: &Topic<'_>, id: &Identity, params: &Value, time: u64) -> Result<Value, Refused> {
        let event = t.rest.split('/').nth(2).unwrap_or_default();
        if let Some(events) = self
            .registry
            .product(t.product_key)
            .and_then(|p| p.events.as_ref())
            && !events.contains_key(event)
        {
            return Err((
                enos::MODEL_INVALID,
                format!("the product's model has no event {event}"),
            ));
        }
        let values = params.get("events").cloned().unwrap_or_else(|| params.clone());
        self.twin.add_event(id, event, values, time);
        Ok(Value::Null)
    }

    pub(super) fn check_attributes(&self, pk: &str, attrs: &Map<String, Value>) -> Result<(), Refused> {
        let Some(model) = self.registry.product(pk).and_then(|p| p.attributes.as_ref()) else {
            return Ok(());
        };
        for (k, v) in attrs {
            let Some(spec) = model.get(k) else {
                return Err((
                    enos::MODEL_INVALID,
                    format!("the product's model has no attribute {k}"),
                ));
            };
            check_type(spec, k, "attribute", v)?;
        }
        Ok(())
    }

    /// A batch from a gateway: for itself and the sub-devices in its topology.
    fn batch(&self, sender: &Identity, params: &Value) -> Result<Value, Refused> {
        let mut first = None;
        for item in params.as_array().into_iter().flatten() {
            let pk = text_field(item, "productKey").unwrap_or_default();
            let dk = text_field(item, "deviceKey").unwrap_or_else(|| sender.device_key.clone());
            let dev = Identity::new(&pk, &dk);
            let result = if !self.twin.exists(&dev) {
                Err((enos::DEVICE_NOT_FOUND, format!("no device {pk}/{dk}")))
            } else if &dev != sender && self.twin.gateway_of(&dev).as_ref() != Some(sender) {
                Err((
                    enos::SUB_NOT_IN_TOPOLOGY,
                    format!(
                        "{pk}/{dk} is not {}/{} or in its topology",
                        sender.product_key, sender.device_key
                    ),
                ))
            } else {
                let time = item
                    .get("time")
                    .and_then(Value::as_u64)
                    .unwrap_or_else(crate::credentials::now_ms);
                self.twin.set_points(&dev, &points_in(item), time)
            };
            if let Err(e) = result {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(Value::Null), Err)
    }

    /// `thing.topo.add`: each sub-device signed as for `combine.login`.
    fn topo_add(&self, gw: &Identity, params: &Value) -> Result<Value, Refused> {
        let Some(items) = params.as_array() else {
            return Err((
                enos::BAD_FORMAT,
                "params must be a list of signed sub-devices".into(),
            ));
        };
        for item in items {
            let (code, sub, message) = self.subdevice_signed(item);
            let Some(sub) = sub else {
                return Err((code, message));
            };
            self.twin.topo_add(gw, &sub)?;
        }
        Ok(Value::Null)
    }

    /// `thing.device.register`: each device made with a fresh secret, answered as the SDKs'
    /// `DeviceRegisterResponse` reads it: `[{productKey, deviceKey, deviceSecret, assetId}]`.
    fn register(&self, params: &Value) -> Result<Value, Refused> {
        let Some(items) = params.as_array() else {
            return Err((
                enos::BAD_FORMAT,
                "params must be a list of devices to register".into(),
            ));
        };
        if items.len() > MAX_REGISTER {
            return Err((
                enos::PARAMETER_ERROR,
                format!("at most {MAX_REGISTER} devices per registration"),
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Some(pk) = text_field(item, "productKey") else {
                return Err((enos::BAD_FORMAT, "a device to register has no productKey".into()));
            };
            if self.registry.product(&pk).is_none() {
                return Err((enos::DEVICE_NOT_FOUND, format!("no product {pk}")));
            }
            let (Some(dk), Some(secret)) = (
                text_field(item, "deviceKey")
                    .filter(|d| !d.is_empty())
                    .or_else(|| random_hex(5).map(|h| format!("dev{h}"))),
                random_hex(16),
            ) else {
                return Err((
                    enos::INTERNAL_ERROR,
                    "no secret can be made: the system's random source failed".into(),
                ));
            };
            let attrs = item
                .get("deviceAttributes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let id = Identity::new(&pk, &dk);
            let asset = self.twin.register(&id, Secret::new(secret.clone()), attrs)?;
            out.push(json!({"productKey": pk, "deviceKey": dk, "deviceSecret": secret, "assetId": asset}));
        }
        Ok(Value::Array(out))
    }

    /// The product's thing model as `thing.tsltemplate.get` answers it: the maps the SDKs'
    /// `TslTemplateGetResponse` reads.
    fn tsl_template(&self, pk: &str) -> Result<Value, Refused> {
        let Some(p) = self.registry.product(pk) else {
            return Err((enos::DEVICE_NOT_FOUND, format!("no product {pk}")));
        };
        let element = |id: &str, spec: &Point| {
            json!({
                "identifier": id,
                "dataType": {"type": spec.kind.clone().unwrap_or_else(|| "any".into())},
                "description": spec.description,
                "unit": spec.unit,
            })
        };
        let map = |entries: Vec<(String, Point)>| -> Map<String, Value> {
            entries.iter().map(|(k, s)| (k.clone(), element(k, s))).collect()
        };
        let points = p
            .measurepoints
            .as_ref()
            .map(|m| map(m.entries()))
            .unwrap_or_default();
        let attributes = p
            .attributes
            .as_ref()
            .map(|a| map(a.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
            .unwrap_or_default();
        let events: Map<String, Value> = p
            .events
            .iter()
            .flatten()
            .map(|(k, e)| {
                let outputs = e.outputs.iter().map(|(o, s)| element(o, s)).collect::<Vec<_>>();
                (
                    k.clone(),
                    json!({"identifier": k, "type": e.kind.clone().unwrap_or_else(|| "INFO".into()), "description": e.description, "outputData": outputs}),
                )
            })
            .collect();
        let services: Map<String, Value> = p
            .services
            .iter()
            .flatten()
            .map(|(k, s)| {
                let inputs = s.inputs.iter().map(|(o, p)| element(o, p)).collect::<Vec<_>>();
                let outputs = s.outputs.iter().map(|(o, p)| element(o, p)).collect::<Vec<_>>();
                (
                    k.clone(),
                    json!({"identifier": k, "callType": s.call.clone().unwrap_or_else(|| "async".into()), "description": s.description, "inputData": inputs, "outputData": outputs}),
                )
            })
            .collect();
        Ok(json!({
            "modelId": pk,
            "tslMeasurepointMap": points,
            "tslAttributeMap": attributes,
            "tslEventMap": events,
            "tslServiceMap": services,
        }))
    }

    /// Message integration: params name devices of the channel's product; each is checked and
    /// stored, and gets an event of its own. The reply has the first failing code.
    fn integration(
        &self,
        protocol: Protocol,
        t: &Topic<'_>,
        topic: &str,
        method: &str,
        params: &Value,
    ) -> Result<Value, Refused> {
        let Some(items) = params.as_array() else {
            return Err((
                enos::BAD_FORMAT,
                "params must be a list of {deviceKey, ...}".into(),
            ));
        };
        let mut first = None;
        for item in items {
            let dk = text_field(item, "deviceKey").unwrap_or_default();
            let dev = Identity::new(t.product_key, &dk);
            let time = item
                .get("time")
                .and_then(Value::as_u64)
                .unwrap_or_else(crate::credentials::now_ms);
            let result = if !self.twin.exists(&dev) {
                Err((
                    enos::DEVICE_NOT_FOUND,
                    format!(
                        "no device {}/{dk}: message integration posts for registered devices only",
                        t.product_key
                    ),
                ))
            } else {
                match method {
                    "integration.measurepoint.post" => self
                        .check_points(t.product_key, item)
                        .and_then(|()| self.twin.set_points(&dev, &points_in(item), time)),
                    "integration.attribute.post" => match item.get("attributes").and_then(Value::as_object) {
                        Some(a) => self
                            .check_attributes(t.product_key, a)
                            .and_then(|()| self.twin.update_attributes(&dev, a)),
                        None => Err((enos::BAD_FORMAT, "an item has no attributes object".into())),
                    },
                    _ => match item.get("events").and_then(Value::as_object) {
                        Some(events) => {
                            for (event, values) in events {
                                self.twin.add_event(&dev, event, values.clone(), time);
                            }
                            Ok(())
                        }
                        None => Err((enos::BAD_FORMAT, "an item has no events object".into())),
                    },
                }
            };
            let code = result.as_ref().map_or_else(|(c, _)| *c, |()| enos::SUCCESS);
            self.twin.seen(&dev, code);
            let mut e = Event::new(EventKind::Request, protocol)
                .device(&dev)
                .topic(topic)
                .method(method)
                .code(code)
                .message("through message integration");
            if let Err((_, why)) = &result {
                e = e.message(format!("through message integration: {why}"));
            }
            self.events.emit(e);
            if let Err(e) = result {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(Value::Null), Err)
    }
}

/// A list of names in `params[key]` (attribute ids, tag keys); absent or empty: all.
fn names(params: &Value, key: &str) -> Result<Vec<String>, Refused> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    (
                        enos::BAD_FORMAT,
                        format!("params.{key} must be a list of strings"),
                    )
                })
            })
            .collect(),
        Some(_) => Err((
            enos::BAD_FORMAT,
            format!("params.{key} must be a list of strings"),
        )),
    }
}

/// Tags as the SDKs send them (`[{tagKey, tagValue}]`), or as `{"tags": {key: value}}`; EnOS
/// keeps tag values as strings.
fn tags(params: &Value) -> Result<Vec<(String, String)>, Refused> {
    let as_text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let list = match params {
        Value::Array(a) => a.as_slice(),
        Value::Object(o) => match o.get("tags") {
            Some(Value::Object(m)) => return Ok(m.iter().map(|(k, v)| (k.clone(), as_text(v))).collect()),
            Some(Value::Array(a)) => a.as_slice(),
            _ => {
                return Err((
                    enos::BAD_FORMAT,
                    "tags are [{tagKey, tagValue}] or {\"tags\": {...}}".into(),
                ));
            }
        },
        _ => return Err((enos::BAD_FORMAT, "tags are [{tagKey, tagValue}]".into())),
    };
    list.iter()
        .map(|t| match (text_field(t, "tagKey"), t.get("tagValue")) {
            (Some(k), Some(v)) => Ok((k, as_text(v))),
            _ => Err((enos::BAD_FORMAT, "a tag has no tagKey or tagValue".into())),
        })
        .collect()
}

/// `[{productKey, deviceKey}]` in params.
fn listed_devices(params: &Value) -> Result<Vec<(String, String)>, Refused> {
    let Some(items) = params.as_array() else {
        return Err((
            enos::BAD_FORMAT,
            "params must be a list of {productKey, deviceKey}".into(),
        ));
    };
    items
        .iter()
        .map(
            |i| match (text_field(i, "productKey"), text_field(i, "deviceKey")) {
                (Some(p), Some(d)) => Ok((p, d)),
                _ => Err((enos::BAD_FORMAT, "an item has no productKey or deviceKey".into())),
            },
        )
        .collect()
}

/// The measure points of a post (`params.measurepoints`), empty when it has none.
fn points_in(params: &Value) -> Map<String, Value> {
    params
        .get("measurepoints")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// A device as topology answers name it.
fn keys_json(id: &Identity) -> Value {
    json!({"productKey": id.product_key, "deviceKey": id.device_key})
}

/// A firmware as the SDKs' `Firmware` reads it.
pub(crate) fn firmware_json(f: &crate::registry::Firmware) -> Value {
    json!({
        "version": f.version,
        "signMethod": "md5",
        "sign": f.md5,
        "fileUrl": f.url,
        "fileSize": f.size,
    })
}
