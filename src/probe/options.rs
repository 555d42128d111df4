//! What one probe does besides connecting: the login, TLS, the message, the measure points,
//! activation, a sub-device and the needs.

use std::time::Duration;

use super::{Login, SubDevice, coap, needs, tls};

#[derive(Clone)]
pub struct ProbeOptions {
    pub timeout: Duration,
    pub verbose: bool,
    pub login: Login,
    pub client_id: Option<String>,
    pub tls: tls::TlsOptions,
    pub publish: Option<String>,
    pub roundtrip: Option<String>,
    pub qos: u8,
    /// The message or body; each protocol has its own default when it is not given.
    pub payload: Option<Vec<u8>>,
    pub method: Option<String>,
    pub psk: Option<coap::Psk>,
    /// `--measurepoint ID=VALUE`: post these and read EnOS's reply.
    pub measurepoints: Option<std::sync::Arc<Points>>,
    /// Dynamic activation: where to write the device secret EnOS pushes, and whether an
    /// existing file may be replaced.
    pub activate_to: Option<std::path::PathBuf>,
    pub force: bool,
    pub subdevice: Option<SubDevice>,
    /// `--need` and `--matrix`: the exchanges of the features asked for, after the login.
    pub needs: needs::NeedOptions,
}

impl Default for ProbeOptions {
    /// A plain probe: no login, no message, ten seconds.
    fn default() -> Self {
        ProbeOptions {
            timeout: Duration::from_secs(10),
            verbose: false,
            login: Login::None,
            client_id: None,
            tls: tls::TlsOptions::default(),
            publish: None,
            roundtrip: None,
            qos: 1,
            payload: None,
            method: None,
            psk: None,
            measurepoints: None,
            activate_to: None,
            force: false,
            subdevice: None,
            needs: needs::NeedOptions::default(),
        }
    }
}

impl ProbeOptions {
    /// The options of probe `n` of a load run: an EnOS login with no client id of its own
    /// gets `{deviceKey}.{n}`, so that the probes of one device, each a connection of its own,
    /// do not take each other over (MQTT-3.1.4-2: a server closes the older connection with
    /// the same client id). The sign covers the client id, so each login is still valid.
    pub fn for_load(&self, n: u64) -> ProbeOptions {
        let mut o = self.clone();
        if let Login::Enos {
            device_key,
            client_id: client_id @ None,
            ..
        } = &mut o.login
        {
            *client_id = Some(format!("{device_key}.{n}"));
        }
        o
    }
}

/// A request on its way out: its id and method, for matching and reporting its reply, and its
/// JSON.
pub(crate) struct Outgoing {
    pub id: String,
    pub method: &'static str,
    pub payload: Vec<u8>,
}

/// The measure points `--measurepoint` posts, with their JSON written once: a load probe posts
/// the same points in every probe, and serializing the map each time was most of a post's
/// making.
#[derive(Debug)]
pub struct Points {
    map: serde_json::Map<String, serde_json::Value>,
    json: Vec<u8>,
}

impl Points {
    pub fn new(map: serde_json::Map<String, serde_json::Value>) -> Self {
        let json = serde_json::to_vec(&map).unwrap_or_default();
        Points { map, json }
    }

    pub fn map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.map
    }
}

/// The measure point post `--measurepoint` sends: a fresh string id, the points, and now.
pub(crate) fn measurepoint_request(points: &Points) -> Outgoing {
    let id = crate::enos::new_id();
    let payload = measurepoint_post(&id, crate::credentials::now_ms(), points);
    Outgoing {
        id,
        method: crate::enos::MEASUREPOINT_POST,
        payload,
    }
}

/// A measure point post's `params`, as serde writes them.
#[derive(serde::Serialize)]
struct PostParams<'a> {
    measurepoints: &'a serde_json::Map<String, serde_json::Value>,
    time: u64,
}

impl<'a> PostParams<'a> {
    fn new(points: &'a Points, time: u64) -> Self {
        PostParams {
            measurepoints: &points.map,
            time,
        }
    }
}

/// What [`crate::enos::request_bytes`] writes for this post (a test holds the two equal), from
/// the points' JSON written once.
fn measurepoint_post(id: &str, time: u64, points: &Points) -> Vec<u8> {
    let method = crate::enos::MEASUREPOINT_POST;
    let mut out = Vec::with_capacity(96 + id.len() + points.json.len());
    out.extend_from_slice(b"{\"id\":");
    let strings = serde_json::to_writer(&mut out, id).and_then(|()| {
        out.extend_from_slice(b",\"version\":\"1.0\",\"method\":");
        serde_json::to_writer(&mut out, method)
    });
    if strings.is_err() {
        // Writing to a vector does not fail; were it to, the general path still would not.
        return crate::enos::request_bytes(id, method, &PostParams::new(points, time));
    }
    out.extend_from_slice(b",\"params\":{\"measurepoints\":");
    out.extend_from_slice(&points.json);
    out.extend_from_slice(b",\"time\":");
    out.extend_from_slice(itoa::Buffer::new().format(time).as_bytes());
    out.extend_from_slice(b"}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_from_the_points_written_once_is_the_request_serde_writes() {
        let maps = [
            serde_json::json!({"temp": 21.5}),
            serde_json::json!({"b": 1, "a": "x\"y", "c": [1, {"d": null}], "é\n": true}),
            serde_json::json!({}),
        ];
        for (map, id) in maps.into_iter().zip(["1", "id with \"quotes\"", ""]) {
            let serde_json::Value::Object(map) = map else {
                panic!("an object");
            };
            let points = Points::new(map);
            let time = 1_733_500_000_123;
            let params = PostParams::new(&points, time);
            let want = crate::enos::request_bytes(id, crate::enos::MEASUREPOINT_POST, &params);
            let got = measurepoint_post(id, time, &points);
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
        }
    }
}
