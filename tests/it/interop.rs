//! Interoperability with Debian's peers (mosquitto, libcoap's coap-server-openssl, Python's
//! HTTP server over TLS), started on loopback by `scripts/interop-peers.sh` in `.ci/run`.
//! Without the peers these tests fail, unless ENOS_CONNECT_ALLOW_SKIP=1 asks to skip them (CI
//! never does).

use crate::common::{assert_failed, assert_ok, probe, total_ms};

/// The address of a peer from its environment variable (None: skipped, as asked).
fn peer(var: &str) -> Option<String> {
    crate::common::outside_peer(
        var,
        "run .ci/run (or scripts/interop-peers.sh) for the interop peers",
    )
}

/// The report failed with one of `kinds` at `stage` (Debian's peers differ in how they refuse).
fn failed(code: i32, v: &serde_json::Value, kinds: &[&str], stage: &str) {
    let kind = v["error"]["kind"].as_str().unwrap_or_default();
    assert!(kinds.contains(&kind), "kind {kind} not in {kinds:?}: {v:#}");
    assert_failed(code, v, kind, stage, "");
}

#[test]
fn mosquitto_plain_connect_publish_and_roundtrip() {
    let Some(addr) = peer("ENOS_CONNECT_INTEROP_MQTT") else {
        return;
    };
    let url = format!("mqtt://{addr}");
    let (code, v, _) = probe(&[&url], &[]);
    assert_ok(code, &v);
    let (code, v, _) = probe(&[&url, "--publish", "interop/t", "--qos", "1"], &[]);
    assert_ok(code, &v);
    let (code, v, _) = probe(&[&url, "--roundtrip", "interop/echo"], &[]);
    assert_ok(code, &v);
    assert!(v["stages"].to_string().contains("roundtrip"));
}

#[test]
fn mosquitto_tls_with_the_private_ca() {
    let (Some(addr), Some(ca)) = (
        peer("ENOS_CONNECT_INTEROP_MQTTS"),
        peer("ENOS_CONNECT_INTEROP_CA"),
    ) else {
        return;
    };
    let url = format!("mqtts://{addr}");
    let (code, v, _) = probe(
        &[&url, "--ca", &ca, "--roundtrip", "interop/tls", "--qos", "1"],
        &[],
    );
    assert_ok(code, &v);
    assert!(v["stages"].to_string().contains("\"tls\""));
    let (code, v, _) = probe(&[&url], &[]);
    failed(code, &v, &["tls"], "tls");
}

#[test]
fn mosquitto_accepts_the_enos_login_with_the_right_secret_only() {
    let (Some(addr), Some(enos)) = (
        peer("ENOS_CONNECT_INTEROP_MQTT_AUTH"),
        peer("ENOS_CONNECT_INTEROP_ENOS"),
    ) else {
        return;
    };
    let parts: Vec<&str> = enos.split(' ').collect();
    let [pk, dk, cid, ts, secret] = parts[..] else {
        panic!("ENOS_CONNECT_INTEROP_ENOS: {enos}")
    };
    let url = format!("mqtt://{addr}");
    let args = [
        &url[..],
        "--product-key",
        pk,
        "--device-key",
        dk,
        "--client-id",
        cid,
        "--timestamp",
        ts,
    ];
    let (code, v, _) = probe(&args, &[("ENOS_DEVICE_SECRET", secret)]);
    assert_ok(code, &v);
    let (code, v, _) = probe(&args, &[("ENOS_DEVICE_SECRET", "not-the-secret")]);
    failed(code, &v, &["auth"], "handshake");
}

#[test]
fn libcoap_ping_and_get_plain_and_over_dtls_psk() {
    let (Some(plain), Some(secure), Some(psk)) = (
        peer("ENOS_CONNECT_INTEROP_COAP"),
        peer("ENOS_CONNECT_INTEROP_COAPS"),
        peer("ENOS_CONNECT_INTEROP_PSK"),
    ) else {
        return;
    };
    let (identity, key) = psk.split_once(' ').expect("identity and key");
    let (code, v, _) = probe(&[&format!("coap://{plain}")], &[]);
    assert_ok(code, &v);
    let (code, v, _) = probe(&[&format!("coap://{plain}/time")], &[]);
    assert_ok(code, &v);
    assert_eq!(v["details"]["code"], "2.05");
    let (code, v, _) = probe(
        &[&format!("coaps://{secure}"), "--psk-identity", identity],
        &[("ENOS_CONNECT_PSK", key)],
    );
    assert_ok(code, &v);
    let (code, v, _) = probe(
        &[&format!("coaps://{secure}/time"), "--psk-identity", identity],
        &[("ENOS_CONNECT_PSK", key)],
    );
    assert_ok(code, &v);
    let (code, v, _) = probe(
        &[
            &format!("coaps://{secure}/time"),
            "--psk-identity",
            identity,
            "--timeout",
            "2",
        ],
        &[("ENOS_CONNECT_PSK", "wrong-key")],
    );
    failed(code, &v, &["tls", "timeout"], "tls");
    assert!(total_ms(&v) < 3500.0, "a wrong PSK must not hang: {v:#}");
}

#[test]
fn http_and_https_with_the_private_ca() {
    let (Some(http), Some(https), Some(ca)) = (
        peer("ENOS_CONNECT_INTEROP_HTTP"),
        peer("ENOS_CONNECT_INTEROP_HTTPS"),
        peer("ENOS_CONNECT_INTEROP_CA"),
    ) else {
        return;
    };
    let (code, v, _) = probe(&[&format!("http://{http}/")], &[]);
    assert_ok(code, &v);
    assert_eq!(v["details"]["status"], 200);
    let (code, v, _) = probe(&[&format!("http://{http}/missing")], &[]);
    failed(code, &v, &["protocol"], "request");
    let (code, v, _) = probe(&[&format!("https://{https}/"), "--ca", &ca], &[]);
    assert_ok(code, &v);
    let (code, v, _) = probe(&[&format!("https://{https}/")], &[]);
    failed(code, &v, &["tls"], "tls");
}

#[test]
fn a_closed_port_is_refused_and_a_silent_udp_peer_times_out_on_time() {
    if peer("ENOS_CONNECT_INTEROP_MQTT").is_none() {
        return;
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let (code, v, _) = probe(&[&format!("mqtt://127.0.0.1:{closed}")], &[]);
    failed(code, &v, &["refused"], "connect");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let port = silent.local_addr().expect("addr").port();
    let (code, v, _) = probe(&[&format!("coap://127.0.0.1:{port}/x"), "--timeout", "2"], &[]);
    failed(code, &v, &["timeout"], "request");
    assert!(total_ms(&v) >= 2000.0 && total_ms(&v) < 3000.0, "{v:#}");
}
