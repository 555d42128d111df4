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
    pub measurepoints: Option<std::sync::Arc<serde_json::Map<String, serde_json::Value>>>,
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

/// The measure point post `--measurepoint` sends: a fresh string id, the points, and now.
pub(crate) fn measurepoint_request(points: &serde_json::Map<String, serde_json::Value>) -> Outgoing {
    #[derive(serde::Serialize)]
    struct Params<'a> {
        measurepoints: &'a serde_json::Map<String, serde_json::Value>,
        time: u64,
    }
    let id = crate::enos::new_id();
    let params = Params {
        measurepoints: points,
        time: crate::credentials::now_ms(),
    };
    let payload = crate::enos::request_bytes(&id, crate::enos::MEASUREPOINT_POST, &params);
    Outgoing {
        id,
        method: crate::enos::MEASUREPOINT_POST,
        payload,
    }
}
