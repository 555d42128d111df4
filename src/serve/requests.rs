//! The answer to one upstream message, whatever the protocol: the topic looked up in
//! [`enos::UPSTREAM`] (which methods are accepted on it) and in the table of
//! `capabilities.toml` (whether the feature is offered on this protocol), EnOS's checks in the
//! order EnOS documents them; then [`super::apply`] does what the request asks.

use serde_json::Value;

use super::policy::Answered;
use super::twin::Refused;
use super::{Endpoint, Event, EventKind, Identity, MAX_MESSAGE, Protocol};
use crate::enos::{self, Reply, Root, Topic, Upstream};
use crate::registry::Point;

/// What an upstream message gets.
#[derive(Debug)]
pub enum Answer {
    /// The JSON reply for `<topic>_reply`.
    Reply(Reply),
    /// Raw bytes for `<topic>_reply` (`model/up_raw`).
    Raw(Vec<u8>),
    /// The capabilities table marks the topic's feature not supported on this protocol: a
    /// refusal (HTTP 4xx, CoAP 4.05), never a 200.
    NotOffered(Reply),
    /// Not an upstream topic of the EnOS device protocol.
    NotEnos,
}

impl Endpoint {
    /// Answer one upstream message on `topic`, whose sender the caller already checked may
    /// use it.
    pub fn answer(&self, protocol: Protocol, topic: &str, payload: &[u8]) -> Answer {
        self.answer_noted(protocol, topic, payload, None)
    }

    /// [`Endpoint::answer`], with a note for the request's event (what came with it).
    pub fn answer_noted(
        &self,
        protocol: Protocol,
        topic: &str,
        payload: &[u8],
        note: Option<&str>,
    ) -> Answer {
        let Some(t) = enos::split(topic) else {
            return Answer::NotEnos;
        };
        let Some(kind) = enos::upstream(&t) else {
            return Answer::NotEnos;
        };
        let id = Identity::new(t.product_key, t.device_key);
        if let Err(why) = self.offered(protocol, topic) {
            return self.not_offered(protocol, &id, topic, kind.method(), payload, why);
        }
        let (method, accepted) = match kind {
            Upstream::Raw(method) => return self.raw(protocol, &t, &id, topic, &method, payload),
            Upstream::Request { method, accepted } => (method, accepted),
        };
        let (request_id, code, message, data) = if method.starts_with("combine.") && !protocol.is_mqtt() {
            // Sub-devices log in through a gateway's MQTT connection only.
            (
                request_id(payload),
                enos::NO_PERMISSION,
                "sub-devices log in through a gateway's MQTT connection".to_string(),
                Value::Null,
            )
        } else {
            match self.check(&method, &accepted, t.product_key, payload) {
                Err((rid, code, message)) => (rid, code, message, Value::Null),
                Ok((rid, params)) => match self.apply(protocol, &t, &id, topic, &method, &params) {
                    Ok(data) => (Some(rid), enos::SUCCESS, String::new(), data),
                    Err((code, message)) => (Some(rid), code, message, Value::Null),
                },
            }
        };
        if t.root != Root::Integration {
            self.twin.seen(&id, code);
        }
        self.policy.answered(&Answered {
            protocol,
            device: &id,
            topic,
            method: &method,
            payload,
            code,
        });
        let words: Vec<&str> = [message.as_str(), note.unwrap_or_default()]
            .into_iter()
            .filter(|w| !w.is_empty())
            .collect();
        let mut e = Event::new(EventKind::Request, protocol)
            .device(&id)
            .topic(topic)
            .method(&method)
            .code(code);
        if !words.is_empty() {
            e = e.message(words.join("; "));
        }
        self.events.emit(e);
        let reply = Reply::new(request_id.unwrap_or_default(), code, data);
        Answer::Reply(if message.is_empty() {
            reply
        } else {
            reply.with_message(message)
        })
    }

    /// A message for a feature the table does not offer over `protocol`: refused, naming it.
    fn not_offered(
        &self,
        protocol: Protocol,
        id: &Identity,
        topic: &str,
        method: &str,
        payload: &[u8],
        why: String,
    ) -> Answer {
        self.events.emit(
            Event::new(EventKind::Refused, protocol)
                .device(id)
                .topic(topic)
                .method(method)
                .code(enos::NO_PERMISSION)
                .message(why.clone()),
        );
        self.twin.seen(id, enos::NO_PERMISSION);
        self.policy.answered(&Answered {
            protocol,
            device: id,
            topic,
            method,
            payload,
            code: enos::NO_PERMISSION,
        });
        Answer::NotOffered(
            Reply::new(
                request_id(payload).unwrap_or_default(),
                enos::NO_PERMISSION,
                Value::Null,
            )
            .with_message(why),
        )
    }

    /// Raw bytes for the product's parsing script: counted, recorded, and answered with raw
    /// bytes (serve has no parsing script; it answers with the JSON reply EnOS's script would
    /// make of a success, so a device sees that its bytes arrived).
    fn raw(
        &self,
        protocol: Protocol,
        t: &Topic<'_>,
        id: &Identity,
        topic: &str,
        method: &str,
        payload: &[u8],
    ) -> Answer {
        let code = if payload.is_empty() {
            enos::EMPTY
        } else if payload.len() > MAX_MESSAGE {
            enos::TOO_LARGE
        } else {
            enos::SUCCESS
        };
        if t.root != Root::Integration {
            self.twin.seen(id, code);
        }
        self.events.emit(
            Event::new(EventKind::Request, protocol)
                .device(id)
                .topic(topic)
                .method(method)
                .code(code)
                .message(format!("{} raw bytes", payload.len())),
        );
        Answer::Raw(Reply::new("", code, Value::Null).to_bytes())
    }

    /// Whether the feature `topic` belongs to is offered on `protocol`, by the table of
    /// `capabilities.toml`: `Err` names the feature and the protocol.
    pub fn offered(&self, protocol: Protocol, topic: &str) -> Result<(), String> {
        let protocol = protocol.table_name();
        let Some(f) = self.caps.feature_for_topic(topic) else {
            return Ok(());
        };
        match f.support.get(protocol) {
            Some(s) if s.offered() => Ok(()),
            Some(s) => Err(format!(
                "feature `{}` ({}) is {} over {protocol} (capabilities.toml)",
                f.id,
                f.title,
                s.words()
            )),
            None => Ok(()),
        }
    }

    /// EnOS's checks in order: the payload, its size, JSON, the id, the method, the params.
    /// `Ok` holds the id and the params.
    fn check(
        &self,
        method: &str,
        accepted: &[String],
        pk: &str,
        payload: &[u8],
    ) -> Result<(String, Value), (Option<String>, i64, String)> {
        if payload.is_empty() {
            return Err((None, enos::EMPTY, String::new()));
        }
        if payload.len() > MAX_MESSAGE {
            return Err((
                None,
                enos::TOO_LARGE,
                format!("{} bytes, more than {MAX_MESSAGE}", payload.len()),
            ));
        }
        let Ok(v) = serde_json::from_slice::<Value>(payload) else {
            return Err((None, enos::BAD_FORMAT, "the payload is not JSON".into()));
        };
        let id = enos::reply_id(&v);
        let Some(sent) = v.get("method").and_then(Value::as_str) else {
            return Err((id, enos::BAD_FORMAT, "the request has no method".into()));
        };
        let Some(id) = id else {
            return Err((None, enos::BAD_FORMAT, "the request has no id".into()));
        };
        if !accepted.iter().any(|a| a == sent) {
            return Err((
                Some(id),
                enos::METHOD_MISMATCH,
                format!("method `{sent}` on a topic for `{}`", accepted.join("` or `")),
            ));
        }
        let params = v.get("params").cloned().unwrap_or(Value::Null);
        let checked = match method {
            "thing.measurepoint.post" | "thing.measurepoint.resume" => self.check_points(pk, &params),
            "thing.measurepoint.post.batch" | "thing.measurepoint.resume.batch" => self.check_batch(&params),
            _ if params.is_object() || params.is_array() => Ok(()),
            _ => Err((enos::BAD_FORMAT, "params must be an object".into())),
        };
        match checked {
            Ok(()) => Ok((id, params)),
            Err((code, message)) => Err((Some(id), code, message)),
        }
    }

    pub(super) fn check_points(&self, pk: &str, params: &Value) -> Result<(), Refused> {
        let Some(points) = params.get("measurepoints").and_then(Value::as_object) else {
            return Err((enos::BAD_FORMAT, "params.measurepoints must be an object".into()));
        };
        if let Some(t) = params.get("time")
            && !t.is_u64()
            && !t.is_i64()
        {
            return Err((
                enos::BAD_FORMAT,
                "params.time must be milliseconds since the epoch".into(),
            ));
        }
        let Some(model) = self.registry.product(pk).and_then(|p| p.measurepoints.as_ref()) else {
            return Ok(());
        };
        for (k, v) in points {
            let Some(spec) = model.get(k) else {
                return Err((
                    enos::MODEL_INVALID,
                    format!("the product's model has no measure point {k}"),
                ));
            };
            // A value with a quality is `{"value": v, "quality": q}`.
            let value = v.get("value").filter(|_| v.is_object()).unwrap_or(v);
            check_type(&spec, k, "measure point", value)?;
        }
        Ok(())
    }

    /// A batch answers with its first failing code, as EnOS documents.
    fn check_batch(&self, params: &Value) -> Result<(), Refused> {
        let Some(items) = params.as_array() else {
            return Err((
                enos::BAD_FORMAT,
                "params must be a list of {productKey, deviceKey, measurepoints}".into(),
            ));
        };
        for item in items {
            let Some(pk) = item.get("productKey").and_then(Value::as_str) else {
                return Err((enos::BAD_FORMAT, "a batch item has no productKey".into()));
            };
            self.check_points(pk, item)?;
        }
        Ok(())
    }
}

pub(super) fn check_type(spec: &Point, id: &str, what: &str, v: &Value) -> Result<(), Refused> {
    if spec.accepts(v) {
        Ok(())
    } else {
        Err((
            enos::MODEL_INVALID,
            format!(
                "{what} {id} is of type {} in the product's model, not {v}",
                spec.kind.as_deref().unwrap_or("any")
            ),
        ))
    }
}

/// The id of a request, if its payload is JSON with one.
fn request_id(payload: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(payload)
        .ok()
        .as_ref()
        .and_then(enos::reply_id)
}
