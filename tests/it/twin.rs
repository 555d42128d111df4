//! serve's device twin, the commands a test sends through it, and the table of
//! `capabilities.toml` deciding, per protocol, which requests serve accepts.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{caps, creds};
use crate::peers::{Mqtt, REGISTRY, enos, enos_login};
use crate::serve::{http_get, http_post, http_session, logged_in};

fn request(m: &mut Mqtt, topic: &str, method: &str, params: Value) -> Value {
    let body = json!({"id": "r1", "version": "1.0", "method": method, "params": params});
    m.request(topic, body.to_string().as_bytes())
}

fn twin(addr: std::net::SocketAddr, dk: &str) -> Value {
    let (status, v) = http_get(addr, &format!("/twin/devices/pk1/{dk}"));
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn the_twin_holds_what_devices_sent_and_get_twin_devices_shows_it() {
    let e = enos(REGISTRY);
    let before = twin(e.http, "dk1");
    assert_eq!(before["status"], "never");
    let mut m = logged_in(&e);
    let sys = "/sys/pk1/dk1";
    let r = request(
        &mut m,
        &format!("{sys}/thing/measurepoint/post"),
        "thing.measurepoint.post",
        json!({"measurepoints": {"temp": 21.5}, "time": 1_700_000_000_000u64}),
    );
    assert_eq!(r["code"], 200, "{r}");
    request(
        &mut m,
        &format!("{sys}/thing/attribute/update"),
        "thing.attribute.update",
        json!({"attributes": {"color": "red", "size": 3}}),
    );
    let q = request(
        &mut m,
        &format!("{sys}/thing/attribute/query"),
        "thing.attribute.query",
        json!({"attributes": ["color"]}),
    );
    assert_eq!(q["data"], json!({"color": "red"}), "{q}");
    request(
        &mut m,
        &format!("{sys}/thing/tag/update"),
        "thing.tag.update",
        json!([{"tagKey": "site", "tagValue": "north"}]),
    );
    let q = request(
        &mut m,
        &format!("{sys}/thing/tag/query"),
        "thing.tag.query",
        json!({}),
    );
    assert_eq!(q["data"], json!({"site": "north"}), "{q}");
    let q = request(
        &mut m,
        &format!("{sys}/thing/topo/get"),
        "thing.topo.get",
        json!({}),
    );
    assert_eq!(
        q["data"],
        json!([{"productKey": "pk1", "deviceKey": "sub1"}]),
        "seeded from gateway =: {q}"
    );
    let reg = request(
        &mut m,
        &format!("{sys}/thing/device/register"),
        "thing.device.register",
        json!([{"productKey": "pk1", "deviceKey": "new1"}]),
    );
    let made = &reg["data"][0];
    assert_eq!(
        (&made["productKey"], &made["deviceKey"]),
        (&json!("pk1"), &json!("new1")),
        "{reg}"
    );
    assert!(
        made["deviceSecret"].as_str().is_some_and(|s| s.len() == 32),
        "{reg}"
    );
    assert!(made["assetId"].is_string(), "{reg}");
    let again = request(
        &mut m,
        &format!("{sys}/thing/device/register"),
        "thing.device.register",
        json!([{"productKey": "pk1", "deviceKey": "new1"}]),
    );
    assert_ne!(again["code"], 200, "a device is registered once: {again}");
    let r = request(
        &mut m,
        &format!("{sys}/ota/device/inform"),
        "ota.inform",
        json!({"version": "3.1"}),
    );
    assert_eq!(r["code"], 200, "the SDKs' ota.inform: {r}");
    let r = request(
        &mut m,
        &format!("{sys}/ota/device/progress"),
        "ota.device.progress",
        json!({"step": 50, "desc": "half"}),
    );
    assert_eq!(r["code"], 200, "the documented ota.device.progress: {r}");
    let r = request(
        &mut m,
        &format!("{sys}/ota/device/getversion"),
        "Ota.device.getversion",
        json!({}),
    );
    assert_eq!(
        (&r["code"], &r["data"]),
        (&json!(200), &json!([])),
        "no firmwares listed: {r}"
    );
    let r = request(
        &mut m,
        &format!("{sys}/thing/tsltemplate/get"),
        "thing.tsltemplate.get",
        json!({}),
    );
    assert!(r["data"]["tslMeasurepointMap"]["temp"].is_object(), "{r}");
    request(
        &mut m,
        &format!("{sys}/thing/event/overheat/post"),
        "thing.event.overheat.post",
        json!({"events": {"level": 2}}),
    );
    for (topic, method, params) in [
        (
            "thing/log/post",
            "thing.log.post",
            json!({"logs": {"level": "info"}, "time": 1}),
        ),
        (
            "network/status/report",
            "network.status.report",
            json!({"rssi": -60.5, "networkType": "4G"}),
        ),
        (
            "connection/state/post",
            "connection.state.post",
            json!({"isFull": false, "nodes": []}),
        ),
    ] {
        let r = request(&mut m, &format!("{sys}/{topic}"), method, params);
        assert_eq!(r["code"], 200, "{topic}: {r}");
    }
    let t = twin(e.http, "dk1");
    assert_eq!(t["network"]["rssi"], -60.5);
    assert_eq!(t["status"], "online");
    assert_eq!(t["protocol"], "mqtt");
    assert_eq!(
        t["measurepoints"]["temp"],
        json!({"value": 21.5, "time": 1_700_000_000_000u64})
    );
    assert_eq!(t["attributes"], json!({"color": "red", "size": 3}));
    assert_eq!(t["tags"], json!({"site": "north"}));
    assert_eq!(t["firmware"]["version"], "3.1");
    assert_eq!(t["ota"]["step"], 50);
    assert_eq!(t["events"][0]["event"], "overheat");
    assert_eq!(
        t["sub_devices"],
        json!([{"product_key": "pk1", "device_key": "sub1"}])
    );
    assert!(t["messages"].as_u64().is_some_and(|n| n >= 10), "{t}");
    assert_eq!(t["errors"], 1, "the second registration: {t}");
    assert!(t["last_seen"].as_u64().is_some() && t["online_since"].as_u64().is_some());
    // Every documented field is there, on every device.
    let (status, all) = http_get(e.http, "/twin/devices");
    assert_eq!(status, 200);
    let devices = all["devices"].as_array().expect("devices");
    assert!(
        devices
            .iter()
            .any(|d| d["device_key"] == "new1" && d["origin"] == "register")
    );
    for d in devices {
        for field in [
            "product_key",
            "device_key",
            "asset_id",
            "origin",
            "status",
            "protocol",
            "via",
            "online_since",
            "last_seen",
            "messages",
            "errors",
            "enabled",
            "gateway",
            "sub_devices",
            "measurepoints",
            "attributes",
            "tags",
            "firmware",
            "ota",
            "events",
        ] {
            assert!(d.get(field).is_some(), "{field} in {d}");
        }
        let text = d.to_string();
        assert!(!text.contains("Canary"), "no secret in the twin: {text}");
    }
    assert_eq!(twin(e.http, "fresh2")["status"], "never");
    assert_eq!(twin(e.http, "off1")["enabled"], false);
    assert_eq!(http_get(e.http, "/twin/devices/pk1/nobody").0, 404);
    drop(m);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while twin(e.http, "dk1")["status"] != "offline" {
        assert!(
            std::time::Instant::now() < deadline,
            "offline after the connection closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sub-device login against the live topology: topo.delete takes a device out, topo.add (signed)
/// puts one in, and a disable command makes its login 723.
#[test]
fn sub_device_logins_follow_the_live_topology_and_the_enabled_state() {
    let e = enos(REGISTRY);
    let mut m = logged_in(&e);
    let login = |m: &mut Mqtt, dk: &str, secret: &str| {
        let c = creds("subdevice", "pk1", dk, "static", secret);
        let mut params = serde_json::Map::new();
        for (k, v) in &c.fields {
            params.insert(k.clone(), json!(v));
        }
        request(
            m,
            "/ext/session/pk1/dk1/combine/login",
            "combine.login",
            Value::Object(params),
        )["code"]
            .clone()
    };
    assert_eq!(login(&mut m, "sub1", "Sub-Canary-4c2"), 200);
    assert_eq!(
        login(&mut m, "stranger", "Sub-Canary-4c2"),
        740,
        "not in the topology"
    );
    let signed = creds("subdevice", "pk1", "stranger", "static", "Sub-Canary-4c2");
    let mut item = serde_json::Map::new();
    for (k, v) in &signed.fields {
        item.insert(k.clone(), json!(v));
    }
    let r = request(
        &mut m,
        "/sys/pk1/dk1/thing/topo/add",
        "thing.topo.add",
        json!([item]),
    );
    assert_eq!(r["code"], 200, "{r}");
    assert_eq!(
        login(&mut m, "stranger", "Sub-Canary-4c2"),
        200,
        "added to the topology"
    );
    let r = request(
        &mut m,
        "/sys/pk1/dk1/thing/topo/delete",
        "thing.topo.delete",
        json!([{"productKey": "pk1", "deviceKey": "stranger"}]),
    );
    assert_eq!(r["code"], 200, "{r}");
    assert_eq!(
        login(&mut m, "stranger", "Sub-Canary-4c2"),
        740,
        "taken out again"
    );
    assert_eq!(
        login(&mut m, "off1", "Device-Canary-9a1"),
        723,
        "a disabled device, before the topology"
    );
    assert_eq!(login(&mut m, "nobody", "Device-Canary-9a1"), 705);
}

/// Commands go to the connection that reaches the device; lifecycle commands change the twin.
#[test]
fn commands_change_the_twin_and_methods_outside_enos_get_400_with_the_list() {
    let e = enos(REGISTRY);
    let mut m = logged_in(&e);
    let (status, v) = http_post(e.http, "/twin/commands/pk1/dk1", br#"{"method":"thing.reboot"}"#);
    assert_eq!(status, 400, "{v}");
    for listed in [
        "thing.service.measurepoint.set",
        "thing.model.down_raw",
        "ota.device.upgrade",
        "combine.disable",
    ] {
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains(listed)),
            "{listed} in {v}"
        );
    }
    let (status, v) = http_post(
        e.http,
        "/twin/commands/pk1/dk1",
        br#"{"method":"ota.device.upgrade","params":{"version":"9"}}"#,
    );
    assert_eq!(status, 400, "no such firmware: {v}");
    // down_raw: raw bytes out, the raw reply (no id) matched back to the command.
    let http = e.http;
    let asked = std::thread::spawn(move || {
        http_post(
            http,
            "/twin/commands/pk1/dk1?timeout=5",
            br#"{"method":"thing.model.down_raw","payload":"\u0001ping"}"#,
        )
    });
    let (topic, body) = m.next_publish().expect("the raw command");
    assert_eq!(
        (topic.as_str(), body.as_slice()),
        ("/sys/pk1/dk1/thing/model/down_raw", &b"\x01ping"[..])
    );
    m.publish("/sys/pk1/dk1/thing/model/down_raw_reply", b"\x02pong");
    let (status, v) = asked.join().expect("joined");
    assert_eq!((status, &v["payload_base64"]), (200, &json!("AnBvbmc=")), "{v}");
    // combine.disable for sub1 goes to its gateway's session topic and disables it at once,
    // logging it out of the gateway's session.
    let c = creds("subdevice", "pk1", "sub1", "static", "Sub-Canary-4c2");
    let mut params = serde_json::Map::new();
    for (k, v) in &c.fields {
        params.insert(k.clone(), json!(v));
    }
    let r = request(
        &mut m,
        "/ext/session/pk1/dk1/combine/login",
        "combine.login",
        Value::Object(params.clone()),
    );
    assert_eq!(r["code"], 200, "{r}");
    assert_eq!(twin(e.http, "sub1")["status"], "online");
    let http = e.http;
    let asked = std::thread::spawn(move || {
        http_post(
            http,
            "/twin/commands/pk1/sub1?timeout=5",
            br#"{"method":"combine.disable"}"#,
        )
    });
    let (topic, body) = m.next_publish().expect("the lifecycle command");
    assert_eq!(topic, "/ext/session/pk1/dk1/combine/disable");
    let cmd: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(cmd["params"], json!({"productKey": "pk1", "deviceKey": "sub1"}));
    let reply = json!({"id": cmd["id"], "code": 200, "data": null});
    m.publish(&format!("{topic}_reply"), reply.to_string().as_bytes());
    let (status, v) = asked.join().expect("joined");
    assert_eq!(status, 200, "{v}");
    let t = twin(e.http, "sub1");
    assert_eq!(
        (&t["enabled"], &t["status"]),
        (&json!(false), &json!("offline")),
        "{t}"
    );
    let r = request(
        &mut m,
        "/ext/session/pk1/dk1/combine/login",
        "combine.login",
        Value::Object(params),
    );
    assert_eq!(r["code"], 723, "{r}");
}

/// What one request on `topic` over `protocol` got: whether the table refused it, and the
/// message of the refusal.
fn over(e: &crate::peers::Enos, protocol: &str, topic: &str, body: &[u8], session: &str) -> (bool, String) {
    match protocol {
        "mqtt" => {
            let (client_id, user, pass) = enos_login("pk1", "dk1", "static", "Device-Canary-9a1");
            let (code, mut m) = Mqtt::connect(e.mqtt, &client_id, &user, &pass);
            assert_eq!(code, 0);
            m.publish(topic, body);
            let want = format!("{topic}_reply");
            let reply = loop {
                let (t, b) = m.next_publish().unwrap_or_else(|| panic!("a reply on {want}"));
                if t == want {
                    break b;
                }
            };
            let v: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
            let message = v["message"].as_str().unwrap_or_default().to_string();
            (message.contains("capabilities.toml"), message)
        }
        "http" => {
            let (status, v) = http_post(e.http, &format!("/topic{topic}?sessionId={session}"), body);
            assert_ne!(status, 404, "{topic}: {v}");
            let message = v["message"].as_str().unwrap_or_default().to_string();
            if status == 403 {
                assert_eq!(v["code"], 1009, "an EnOS error body: {v}");
            }
            (status == 403, message)
        }
        _ => {
            use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
            sock.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            sock.connect(e.coap).expect("connect");
            let send = |mid: u16, path: &str, payload: &[u8]| {
                let mut p = Packet::new();
                p.header.set_version(1);
                p.header.set_type(MessageType::Confirmable);
                p.header.code = MessageClass::Request(RequestType::Post);
                p.header.message_id = mid;
                p.set_token(vec![9, mid as u8]);
                for seg in path.split('/').filter(|s| !s.is_empty()) {
                    p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
                }
                p.payload = payload.to_vec();
                sock.send(&p.to_bytes().expect("encodes")).expect("send");
                let mut buf = [0u8; 8192];
                let n = sock.recv(&mut buf).expect("an answer");
                Packet::from_bytes(&buf[..n]).expect("coap")
            };
            let c = creds("coap", "pk1", "dk1", "static", "Device-Canary-9a1");
            let auth = c.request.expect("auth");
            // Message ids never repeat across calls: a new socket may get the port of an
            // earlier one, and serve answers a repeated (port, id) from its cache, as CoAP
            // deduplication asks (RFC 7252 4.5), which had this test read an old answer.
            static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
            let mid = || NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let a = send(mid(), &auth.path, auth.body.as_bytes());
            assert_eq!(a.header.code, MessageClass::Response(ResponseType::Changed));
            let answer = send(mid(), &format!("topic{topic}"), body);
            let v: Value = serde_json::from_slice(&answer.payload).unwrap_or(Value::Null);
            let message = v["message"].as_str().unwrap_or_default().to_string();
            let refused = answer.header.code == MessageClass::Response(ResponseType::MethodNotAllowed);
            assert!(
                matches!(answer.header.code, MessageClass::Response(ResponseType::Changed)) || refused,
                "{topic}: {:?} {v}",
                answer.header.code
            );
            (refused, message)
        }
    }
}

/// Every feature of the table with topic patterns, over every protocol: a request on each of
/// its topics is accepted when the table says the protocol supports the feature, and refused
/// (naming the feature and the protocol) when it does not.
#[test]
fn every_feature_is_accepted_over_a_protocol_iff_the_table_supports_it() {
    let caps = caps();
    let e = enos(REGISTRY);
    let session = http_session(&e);
    let mut cases = 0;
    for f in caps.features.iter().filter(|f| !f.patterns.is_empty()) {
        for protocol in ["mqtt", "http", "coap"] {
            let offered = f.support_for(protocol).offered();
            for pattern in &f.patterns {
                let topic = pattern
                    .replace("{pk}", "pk1")
                    .replace("{dk}", "dk1")
                    .replace("{eventId}", "e1");
                let split = enos_connect::enos::split(&topic).expect("an EnOS topic");
                let up = enos_connect::enos::upstream(&split)
                    .unwrap_or_else(|| panic!("{topic} of feature {} is an upstream topic of enos.rs", f.id));
                let body =
                    json!({"id": "t1", "version": "1.0", "method": up.method(), "params": {}}).to_string();
                let (refused, message) = over(&e, protocol, &topic, body.as_bytes(), &session);
                assert_eq!(
                    refused,
                    !offered,
                    "feature {} over {protocol} on {topic}: table says {:?}; got {message}",
                    f.id,
                    f.support_for(protocol)
                );
                if refused {
                    assert!(
                        message.contains(&f.id) && message.contains(protocol),
                        "the refusal names feature and protocol: {message}"
                    );
                }
                cases += 1;
            }
        }
    }
    assert!(cases >= 60, "{cases} cases");
    // The rows without patterns are not messages on a topic: logins (static, dynamic, mutual
    // TLS), HTTP multipart files, and downlink (which serve sends over MQTT only). A new row
    // that is about topics must get patterns, and then this test covers it.
    let without: Vec<&str> = caps
        .features
        .iter()
        .filter(|f| f.patterns.is_empty())
        .map(|f| f.id.as_str())
        .collect();
    assert_eq!(
        without,
        [
            "static_auth",
            "dynamic_auth",
            "mutual_tls",
            "file_upload",
            "downlink_commands",
            "passthrough_down"
        ]
    );
    let events = e.events();
    assert!(
        events.contains(r#""event":"refused","protocol":"http""#),
        "{events}"
    );
    assert!(
        events.contains(r#""event":"refused","protocol":"coap""#),
        "{events}"
    );
}
