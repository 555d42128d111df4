//! `probe` at the EnOS level: the login accepted, a measure point posted, EnOS's reply code read,
//! over MQTT, HTTP and CoAP (plain and DTLS), against the library's EnOS endpoint running in
//! this process, and against scripted peers for the replies EnOS would not give.

use std::os::unix::fs::PermissionsExt;

use crate::common::{assert_failed, assert_ok, bin, no_secret_in, probe, stage_names, total_ms};
use crate::peers::{self, REGISTRY, SECRETS, enos, enos_script};

const DEVICE_SECRET: (&str, &str) = ("ENOS_DEVICE_SECRET", "Device-Canary-9a1");
const KEYS: [&str; 4] = ["--product-key", "pk1", "--device-key", "dk1"];

fn urls(e: &peers::Enos) -> [String; 4] {
    [
        format!("mqtt://{}", e.mqtt),
        format!("http://{}", e.http),
        format!("coap://{}", e.coap),
        format!("coaps://{}", e.coaps),
    ]
}

#[test]
fn a_measure_point_is_accepted_over_every_protocol() {
    let e = enos(REGISTRY);
    for url in urls(&e) {
        let (code, v, _) = probe(
            &[&[&url[..]][..], &KEYS, &["-m", "temp=21.5", "-m", "on=true"]].concat(),
            &[DEVICE_SECRET],
        );
        assert_ok(code, &v);
        assert_eq!(
            v["enos"],
            serde_json::json!({"code": 200, "message": "success"}),
            "{url}: {v:#}"
        );
        let stages = stage_names(&v);
        assert_eq!(
            stages.iter().rev().nth(1).map(String::as_str),
            Some("reply"),
            "{url}: {stages:?}"
        );
    }
    // What the endpoint saw: every post, with the right method, answered 200.
    let events = e.events();
    let posts = events
        .lines()
        .filter(|l| l.contains("\"method\":\"thing.measurepoint.post\"") && l.contains("\"code\":200"))
        .count();
    assert_eq!(posts, 4, "{events}");
}

#[test]
fn a_point_outside_the_model_is_refused_with_1204_over_every_protocol() {
    let e = enos(REGISTRY);
    for url in urls(&e) {
        let (code, v, _) = probe(
            &[&[&url[..]][..], &KEYS, &["-m", "humidity=40"]].concat(),
            &[DEVICE_SECRET],
        );
        assert_failed(code, &v, "enos", "reply", "code 1204 (model validation failed)");
        assert_eq!(v["enos"]["code"], 1204, "{url}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("the product's model has no measure point humidity")),
            "{url}: {v:#}"
        );
    }
}

#[test]
fn a_wrong_secret_is_an_auth_failure_over_every_protocol() {
    let e = enos(REGISTRY);
    for url in urls(&e) {
        let (code, v, _) = probe(
            &[&[&url[..]][..], &KEYS, &["-m", "temp=1", "--timeout", "5"]].concat(),
            &[("ENOS_DEVICE_SECRET", "not-the-secret")],
        );
        assert_eq!(v["error"]["kind"], "auth", "{url}: {v:#}");
        assert_eq!(code, 1, "{url}");
        assert!(v["enos"].is_null(), "no reply arrived: {v:#}");
    }
}

#[test]
fn every_documented_code_is_named_and_fails_with_kind_enos() {
    for (code, words) in [
        (1204, "model validation failed"),
        (1220, "payload format error"),
        (1251, "the payload is empty"),
        (1260, "the method and the topic are not consistent"),
        (1008, "message too large"),
        (1009, "no permission to publish on that topic"),
        (4242, "an EnOS code with no documented meaning"),
    ] {
        // A script may not capture; each code gets its own peer.
        let script: peers::Script = match code {
            1204 => |id| Some(format!(r#"{{"id":"{id}","code":1204,"message":"x"}}"#).into_bytes()),
            1220 => |id| Some(format!(r#"{{"id":"{id}","code":1220}}"#).into_bytes()),
            1251 => |id| Some(format!(r#"{{"id":"{id}","code":1251}}"#).into_bytes()),
            1260 => |id| Some(format!(r#"{{"id":"{id}","code":1260}}"#).into_bytes()),
            1008 => |id| Some(format!(r#"{{"id":"{id}","code":1008}}"#).into_bytes()),
            1009 => |id| Some(format!(r#"{{"id":"{id}","code":"1009"}}"#).into_bytes()),
            _ => |id| Some(format!(r#"{{"id":"{id}","code":4242}}"#).into_bytes()),
        };
        let peer = enos_script(script);
        let (exit, v, _) = probe(
            &[&[&format!("mqtt://{peer}")[..]][..], &KEYS, &["-m", "temp=1"]].concat(),
            &[DEVICE_SECRET],
        );
        assert_failed(exit, &v, "enos", "reply", &format!("code {code} ({words}"));
        assert_eq!(v["enos"]["code"], code, "{v:#}");
    }
}

#[test]
fn silence_another_id_and_a_non_json_reply() {
    // No reply at all: the reply stage ends at the timeout, exit 3.
    let silent = enos_script(|_| None);
    let args = |peer: std::net::SocketAddr| {
        [
            &[&format!("mqtt://{peer}")[..]][..],
            &KEYS,
            &["-m", "temp=1", "--timeout", "1"],
        ]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
    };
    let run = |peer| {
        let a = args(peer);
        probe(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            &[DEVICE_SECRET],
        )
    };
    let (code, v, _) = run(silent);
    assert_failed(code, &v, "timeout", "reply", "timeout");
    assert!((900.0..1800.0).contains(&total_ms(&v)), "{v:#}");
    assert!(v["enos"].is_null());
    // A reply to another request is ignored: still a timeout at the reply stage.
    let other = enos_script(|_| Some(br#"{"id":"not-ours","code":200}"#.to_vec()));
    let (code, v, _) = run(other);
    assert_failed(code, &v, "timeout", "reply", "timeout");
    assert!(v["enos"].is_null(), "another request's reply is not ours: {v:#}");
    // Not JSON: a protocol failure, at once.
    let garbage = enos_script(|_| Some(b"\x00\x01 not json".to_vec()));
    let (code, v, _) = run(garbage);
    assert_failed(code, &v, "protocol", "reply", "not JSON");
    assert!(total_ms(&v) < 900.0, "{v:#}");
}

#[test]
fn dynamic_activation_writes_the_secret_0600_and_logs_in_again_with_it() {
    let e = enos(REGISTRY);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("fresh1.secret");
    let url = format!("mqtt://{}", e.mqtt);
    let args = [
        &url[..],
        "--product-key",
        "pk1",
        "--device-key",
        "fresh1",
        "--secure-mode",
        "dynamic",
        "--activate-to",
        file.to_str().expect("utf-8"),
        "-m",
        "temp=3",
    ];
    let out = bin()
        .arg("probe")
        .args(args)
        .args(["-f", "json", "--verbose"])
        .env("ENOS_PRODUCT_SECRET", "Product-Canary-7f3")
        .output()
        .expect("runs");
    let secret = std::fs::read_to_string(&file).expect("the secret was written");
    let secret = secret.trim();
    assert!(secret.len() >= 16, "a fresh secret");
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "owner-only");
    let all = no_secret_in(&out, &[secret, "Product-Canary-7f3"], "activation");
    let v = crate::common::json_of(&out.stdout);
    assert_ok(out.status.code().unwrap_or(-1), &v);
    assert_eq!(
        stage_names(&v),
        [
            "resolve",
            "connect",
            "handshake",
            "activate",
            "relogin",
            "reply",
            "total"
        ],
        "{all}"
    );
    assert!(
        !e.events().contains(secret),
        "the endpoint's events hold no secret"
    );
    assert!(e.events().contains("\"event\":\"activated\""));
    // The file is never overwritten by accident...
    let (code, v, _) = {
        let out = bin()
            .arg("probe")
            .args(args)
            .env("ENOS_PRODUCT_SECRET", "Product-Canary-7f3")
            .output()
            .expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            (),
        )
    };
    assert_eq!(code, 2, "{v}");
    assert!(v.contains("the file exists") && v.contains("--force"), "{v}");
    // ...and once activated, the device logs in with the secret only (securemode 3 refused).
    let (code, v, _) = probe(
        &[
            &url,
            "--product-key",
            "pk1",
            "--device-key",
            "fresh1",
            "-m",
            "temp=4",
        ],
        &[("ENOS_DEVICE_SECRET", secret)],
    );
    assert_ok(code, &v);
    let again = dir.path().join("again.secret");
    let (code, v, _) = probe(
        &[
            &url,
            "--product-key",
            "pk1",
            "--device-key",
            "fresh1",
            "--secure-mode",
            "dynamic",
            "--activate-to",
            again.to_str().expect("utf-8"),
        ],
        &[("ENOS_PRODUCT_SECRET", "Product-Canary-7f3")],
    );
    assert_failed(code, &v, "auth", "handshake", "return code 5");
    assert!(!again.exists());
}

#[test]
fn sub_devices_log_in_through_the_gateway_and_post_on_their_own_topics() {
    let e = enos(REGISTRY);
    let url = format!("mqtt://{}", e.mqtt);
    let sub = |pk_dk: &str, secret: &str| {
        probe(
            &[&[&url[..]][..], &KEYS, &["--subdevice", pk_dk, "-m", "temp=5"]].concat(),
            &[DEVICE_SECRET, ("ENOS_SUBDEVICE_SECRET", secret)],
        )
    };
    let (code, v, _) = sub("pk1/sub1", "Sub-Canary-4c2");
    assert_ok(code, &v);
    assert_eq!(
        stage_names(&v),
        [
            "resolve",
            "connect",
            "handshake",
            "subdevice_login",
            "reply",
            "total"
        ]
    );
    assert!(
        e.events()
            .contains(r#""topic":"/sys/pk1/sub1/thing/measurepoint/post""#)
    );
    for (who, secret, code, words) in [
        ("pk1/sub1", "wrong", 742, "sign check failed"),
        (
            "pk1/stranger",
            "Sub-Canary-4c2",
            740,
            "not a sub-device of this gateway",
        ),
        ("pk1/nobody", "x", 705, "no such device"),
    ] {
        let (exit, v, _) = sub(who, secret);
        assert_failed(exit, &v, "enos", "subdevice_login", words);
        assert_eq!(v["enos"]["code"], code, "{who}: {v:#}");
    }
}

#[test]
fn credentials_subdevice_prints_the_signed_login_fields() {
    let out = bin()
        .args([
            "credentials",
            "subdevice",
            "--product-key",
            "spk",
            "--device-key",
            "sdk",
            "--timestamp",
            "1700000000000",
            "-f",
            "json",
        ])
        .env("ENOS_SUBDEVICE_SECRET", "Sub-Canary-4c2")
        .output()
        .expect("runs");
    let v = crate::common::json_of(&out.stdout);
    // The login's params as the gateway sends them: every value a string.
    let params = &v["params"];
    for key in [
        "productKey",
        "deviceKey",
        "clientId",
        "timestamp",
        "secureMode",
        "signMethod",
        "sign",
    ] {
        assert!(params[key].is_string(), "{key}: {v:#}");
    }
    assert_eq!(
        (
            params["secureMode"].as_str(),
            params["signMethod"].as_str(),
            params["timestamp"].as_str()
        ),
        (Some("2"), Some("sha256"), Some("1700000000000"))
    );
    // Beside them, the metadata every credentials object has, typed as everywhere else.
    assert_eq!(
        (v["timestamp"].as_u64(), v["secure_mode"].as_u64()),
        (Some(1_700_000_000_000), Some(2))
    );
    assert_eq!(v["sign"], params["sign"]);
    no_secret_in(&out, &SECRETS, "credentials subdevice");
}

#[test]
fn load_probes_post_and_count_enos_codes() {
    let e = enos(REGISTRY);
    let url = format!("mqtt://{}", e.mqtt);
    let run = |point: &str| {
        let out = bin()
            .args(["probe", &url])
            .args(KEYS)
            .args(["-m", point, "--count", "40", "--concurrency", "8", "-f", "json"])
            .env(DEVICE_SECRET.0, DEVICE_SECRET.1)
            .output()
            .expect("runs");
        (
            out.status.code().unwrap_or(-1),
            crate::common::json_of(&out.stdout),
        )
    };
    let (code, v) = run("temp=1");
    assert_eq!((code, v["succeeded"].as_u64()), (0, Some(40)), "{v:#}");
    assert_eq!(
        v["stages"]["reply"]["count"], 40,
        "the reply stage has percentiles: {v:#}"
    );
    let (code, v) = run("nope=1");
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["errors"]["enos:1204"], 40, "{v:#}");
}

#[test]
fn no_secret_reaches_any_output_on_any_path() {
    let e = enos(REGISTRY);
    let dir = tempfile::tempdir().expect("tempdir");
    for url in urls(&e) {
        for (secret, extra) in [
            ("Device-Canary-9a1", &["-m", "temp=1"][..]),
            ("Device-Canary-9a1", &["-m", "nope=1"][..]),
            ("wrong-but-secret", &["-m", "temp=1"][..]),
        ] {
            for format in ["json", "table"] {
                let out = bin()
                    .args(["probe", &url, "--timeout", "3", "--verbose", "-f", format])
                    .args(KEYS)
                    .args(extra)
                    .env("ENOS_DEVICE_SECRET", secret)
                    .env("ENOS_SUBDEVICE_SECRET", "Sub-Canary-4c2")
                    .env("ENOS_PRODUCT_SECRET", "Product-Canary-7f3")
                    .output()
                    .expect("runs");
                no_secret_in(
                    &out,
                    &[SECRETS[0], SECRETS[1], SECRETS[2], secret],
                    &format!("{url} {extra:?} {format}"),
                );
            }
        }
    }
    let url = format!("mqtt://{}", e.mqtt);
    let out = bin()
        .args([
            "probe",
            &url,
            "--verbose",
            "--product-key",
            "pk1",
            "--device-key",
            "fresh2",
            "--secure-mode",
            "dynamic",
        ])
        .arg("--activate-to")
        .arg(dir.path().join("s"))
        .args(["--subdevice", "pk1/sub1", "-m", "temp=1"])
        .env("ENOS_PRODUCT_SECRET", "Product-Canary-7f3")
        .env("ENOS_SUBDEVICE_SECRET", "Sub-Canary-4c2")
        .output()
        .expect("runs");
    let activated = std::fs::read_to_string(dir.path().join("s")).unwrap_or_default();
    no_secret_in(
        &out,
        &[SECRETS[0], SECRETS[1], SECRETS[2], activated.trim()],
        "activation and sub-device",
    );
    for secret in SECRETS
        .iter()
        .copied()
        .chain([activated.trim()])
        .filter(|s| !s.is_empty())
    {
        assert!(!e.events().contains(secret), "the endpoint logged a secret");
    }
}

/// The reply subscription leaves with the request; a broker that refuses it fails the probe
/// as `auth` at the reply stage at once, not by a timeout.
#[test]
fn a_refused_reply_subscription_is_an_auth_failure() {
    use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet, PubAck, SubAck, SubscribeReasonCode};
    use std::io::Read;
    let peer = peers::tcp_peer(|mut stream| {
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
        let mut buf = bytes::BytesMut::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Ok(packet) = Packet::read(&mut buf, 1 << 20) {
                match packet {
                    Packet::Connect(_) => peers::send_packet(
                        &mut stream,
                        Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)),
                    ),
                    Packet::Subscribe(s) => peers::send_packet(
                        &mut stream,
                        Packet::SubAck(SubAck::new(s.pkid, vec![SubscribeReasonCode::Failure])),
                    ),
                    Packet::Publish(p) => {
                        peers::send_packet(&mut stream, Packet::PubAck(PubAck::new(p.pkid)))
                    }
                    _ => {}
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    let url = format!("mqtt://{peer}");
    let (code, v, _) = probe(
        &[&[&url[..]][..], &KEYS, &["-m", "temp=1", "--timeout", "5"]].concat(),
        &[DEVICE_SECRET],
    );
    assert_failed(code, &v, "auth", "reply", "refused the subscription");
    assert!(total_ms(&v) < 2000.0, "at once, not by the timeout: {v:#}");
}
