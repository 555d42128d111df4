#![no_main]
//! What a device sends serve: an MQTT byte stream (rumqttc's codec as serve reads it), an MQTT
//! login (client id and user name), a topic and payload for a request (and a command, and the
//! twin they leave), and a CoAP datagram.
//! Input: the first byte picks the path, the rest is the device's bytes.
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use enos_connect::enos::MqttLogin;
use enos_connect::registry::Registry;
use enos_connect::serve::{Endpoint, Protocol, coap};
use enos_connect::source_text::SourceFile;
use libfuzzer_sys::fuzz_target;

const REGISTRY: &str = r#"
[[products]]
key = "pk1"
secret = "ps"
measurepoints = ["temp"]
[[devices]]
product = "pk1"
key = "dk1"
secret = "ds"
[[devices]]
product = "pk1"
key = "sub1"
secret = "ss"
gateway = "pk1/dk1"
"#;

fn endpoint() -> &'static (Endpoint, Arc<Mutex<Vec<String>>>) {
    static EP: OnceLock<(Endpoint, Arc<Mutex<Vec<String>>>)> = OnceLock::new();
    EP.get_or_init(|| {
        let caps = enos_connect::capabilities::embedded().expect("caps");
        let registry = Registry::parse(&SourceFile::new("r.toml", REGISTRY)).expect("registry");
        Endpoint::in_memory(caps, registry, Duration::ZERO)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let (ep, events) = endpoint();
    match pick % 4 {
        0 => {
            let mut buf = bytes::BytesMut::from(rest);
            while let Ok(_p) = rumqttc::mqttbytes::v4::Packet::read(&mut buf, 1 << 20) {}
        }
        1 => {
            let text = String::from_utf8_lossy(rest);
            let (client_id, user) = text.split_once('\n').unwrap_or((&text, ""));
            let _ = MqttLogin::parse(client_id, user);
            let (user, password) = user.split_once('\n').unwrap_or((user, ""));
            let _ = ep.mqtt_login(client_id, user, password);
        }
        2 => {
            let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let topic = String::from_utf8_lossy(&rest[..split]);
            let payload = rest.get(split + 1..).unwrap_or_default();
            let _ = ep.answer(Protocol::Mqtt, &topic, payload);
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) {
                let gw = enos_connect::serve::Identity::new("pk1", "dk1");
                let _ = ep.subdevice_login(&gw, &v);
                // A test's command about a device (what POST /twin/commands takes).
                let _ = ep.prepare_command(&gw, &v);
            }
            // The twin as GET /twin/devices shows it, after whatever the input did.
            let _ = serde_json::to_vec(&ep.twin.views());
        }
        _ => {
            let peer = "127.0.0.1:5683".parse().expect("addr");
            let _ = coap::datagram(ep, peer, rest, None);
        }
    }
    if let Ok(mut e) = events.lock() {
        e.clear();
    }
});
