//! The [`Policy`] of a run: what serve shows a harness (a CONNECT with its keep-alive and
//! securemode, every packet, each PUBLISH with its packet id and DUP flag, each answered request
//! with its payload) goes into the [`Journal`], as entries the judges read; and what the runner
//! armed is done (lose a PUBLISH, refuse CONNECTs, present an untrusted certificate). Only the
//! device under test (and its sub-devices' requests) is journaled and provoked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::ConnectReturnCode;
use serde_json::Value;

use super::evidence::{Journal, What};
use crate::enos;
use crate::serve::{Admit, Answered, Connecting, Fate, Identity, Inbound, Policy, Received};

/// The [`Policy`] of a run: it journals what serve's events do not carry and does what the
/// runner armed (lose a PUBLISH, refuse CONNECTs, present an untrusted certificate).
pub struct Harness(pub Arc<Journal>);

/// The device a CONNECT's user name (`dk&pk`) names.
fn named_by(user_name: &str) -> Option<Identity> {
    let (dk, pk) = user_name.split_once('&')?;
    Some(Identity::new(pk, dk))
}

impl Policy for Harness {
    fn publish(&self, p: &Inbound<'_>) -> Fate {
        let j = &self.0;
        if *p.device != j.device {
            return Fate::Answer;
        }
        let request = !p.topic.ends_with("_reply");
        let mut lose = false;
        j.arm(|a| {
            if a.lose_next && request && p.qos == QoS::AtLeastOnce && !p.dup {
                a.lose_next = false;
                lose = true;
            }
        });
        let reply: Option<Value> = (!request)
            .then(|| serde_json::from_slice(p.payload).ok())
            .flatten();
        j.record(What::Publish {
            topic: p.topic.to_string(),
            qos: p.qos as u8,
            pkid: p.pkid,
            dup: p.dup,
            lost: lose,
            reply_id: reply.as_ref().and_then(enos::reply_id),
            reply_code: reply
                .and_then(|r| serde_json::from_value::<enos::Reply>(r).ok())
                .map(|r| r.code),
        });
        if lose { Fate::Lose } else { Fate::Answer }
    }

    fn mqtts_config(&self, peer: SocketAddr) -> Option<Arc<rustls::ServerConfig>> {
        let j = &self.0;
        let mut config = None;
        j.arm(|a| {
            if let Some(c) = &a.untrusted {
                a.untrusted_peers.insert(peer);
                config = Some(c.clone());
            }
        });
        if config.is_some() {
            j.record(What::UntrustedTls {
                peer: peer.to_string(),
            });
        }
        config
    }

    fn connect(&self, c: &Connecting<'_>) -> Admit {
        let j = &self.0;
        if named_by(c.user_name).as_ref() != Some(&j.device) {
            return Admit::Check;
        }
        let (mut refuse, mut untrusted) = (false, false);
        j.arm(|a| {
            untrusted = a.untrusted_peers.contains(&c.peer);
            if a.refuse_count > 0 {
                a.refuse_count -= 1;
                refuse = true;
            } else if a.refuse_until.is_some_and(|t| Instant::now() < t) {
                refuse = true;
            }
        });
        j.record(What::Connect {
            protocol: c.protocol,
            peer: c.peer.to_string(),
            keep_alive: c.keep_alive,
            clean_session: c.clean_session,
            secure_mode: enos::MqttLogin::parse(c.client_id, c.user_name)
                .ok()
                .map(|l| l.secure_mode),
            refused_by_suite: refuse,
            untrusted_certificate: untrusted,
        });
        if refuse {
            Admit::Refuse(ConnectReturnCode::ServiceUnavailable)
        } else {
            Admit::Check
        }
    }

    fn received(&self, device: &Identity, packet: Received) {
        let kind = match packet {
            // Journaled with its packet id and flags by `publish`.
            Received::Publish => return,
            Received::PingReq => "pingreq",
            Received::Subscribe => "subscribe",
            Received::Unsubscribe => "unsubscribe",
            Received::Acknowledgement => "acknowledgement",
            Received::Other => "other",
        };
        if *device == self.0.device {
            self.0.record(What::Packet { kind });
        }
    }

    fn answered(&self, a: &Answered<'_>) {
        let j = &self.0;
        let topic_ours = enos::owns(a.topic, &j.device.product_key, &j.device.device_key);
        if !j.ours(a.device) && !topic_ours {
            return;
        }
        let params = serde_json::from_slice::<Value>(a.payload)
            .ok()
            .and_then(|v| v.get("params").cloned())
            .unwrap_or(Value::Null);
        j.record(What::Request {
            device: (*a.device != j.device)
                .then(|| format!("{}/{}", a.device.product_key, a.device.device_key)),
            topic: a.topic.to_string(),
            method: a.method.to_string(),
            code: a.code,
            times: times_in(&params),
            step: number(params.get("step")),
            version: crate::serve::text_field(&params, "version"),
        });
    }
}

/// The most point times read from one request.
const MAX_TIMES: usize = 100;

/// The `time` of each point set of a post's params: the params' own, or each item's (batch).
fn times_in(params: &Value) -> Vec<i64> {
    match params {
        Value::Object(_) => number(params.get("time")).into_iter().collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| number(i.get("time")))
            .take(MAX_TIMES)
            .collect(),
        _ => Vec::new(),
    }
}

/// A number the SDKs send as a number or as text.
fn number(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| s.trim().parse::<f64>().ok().map(|f| f as i64)),
        _ => None,
    }
}

/// A server configuration with a self-signed certificate for the names a device may use for
/// the listener: no CA the device trusts signed it.
pub(crate) fn untrusted_config(
    listener: Option<std::net::SocketAddr>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Some(a) = listener
        && !a.ip().is_unspecified()
    {
        names.push(a.ip().to_string());
    }
    names.dedup();
    let made = rcgen_dtls::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    let cert = CertificateDer::from(made.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_from_a_post_and_from_each_item_of_a_batch() {
        let post = serde_json::json!({"measurepoints": {"t": 1}, "time": 1_700_000_000_123_i64});
        assert_eq!(times_in(&post), [1_700_000_000_123]);
        let batch = serde_json::json!([{"time": "1700000000000"}, {"measurepoints": {}}, {"time": 1.7e12}]);
        assert_eq!(times_in(&batch), [1_700_000_000_000, 1_700_000_000_000]);
        assert!(times_in(&serde_json::json!({"measurepoints": {}})).is_empty());
    }
}
