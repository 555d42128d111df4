//! `probe` against real peers on loopback: an MQTT broker (plain, behind TLS, with EnOS logins), a
//! coap-lite CoAP server, an HTTP/1.1 server, and scripted misbehaving TCP peers. Each case
//! checks the outcome, the failing stage and kind, the exit code, and that it stayed bounded.

use std::io::{Read, Write};
use std::time::Duration;

use crate::common::{
    OkStdout, assert_failed, assert_ok, bin, json_of, no_secret_in, probe, stage_names, total_ms,
};
use crate::peers;
use enos_connect::capabilities::embedded;
use enos_connect::credentials::{self, CredentialRequest};
use enos_connect::secret::Secret;

#[test]
fn mqtt_connect_publish_and_roundtrip_against_a_broker() {
    let broker = peers::broker(&[]);
    let url = format!("mqtt://127.0.0.1:{}", broker.port());
    let (code, v, _) = probe(&[&url], &[]);
    assert_ok(code, &v);
    assert_eq!(stage_names(&v), ["resolve", "connect", "handshake", "total"]);
    assert_eq!(v["protocol"], "mqtt");
    assert_eq!(v["address"], broker.to_string());
    assert_eq!(v["details"]["connack"], 0);

    let (code, v, _) = probe(&[&url, "--publish", "probe/t", "--qos", "1"], &[]);
    assert_ok(code, &v);
    assert_eq!(
        stage_names(&v),
        ["resolve", "connect", "handshake", "roundtrip", "total"]
    );

    for qos in ["0", "1"] {
        let (code, v, _) = probe(
            &[
                &url,
                "--roundtrip",
                "probe/echo",
                "--qos",
                qos,
                "--payload",
                "ping",
            ],
            &[],
        );
        assert_ok(code, &v);
        assert!(stage_names(&v).contains(&"roundtrip".to_string()));
    }
}

#[test]
fn mqtt_enos_login_is_accepted_with_the_right_secret_and_refused_with_a_wrong_one() {
    let caps = embedded().expect("caps");
    let req = CredentialRequest {
        protocol: "mqtt".into(),
        product_key: "pk42".into(),
        device_key: "dk42".into(),
        mode: "static".into(),
        client_id: Some("probe-1".into()),
        timestamp: 1_700_000_000_000,
        lifetime: None,
    };
    let creds = credentials::compute(&caps, &req, &Secret::new("right-secret".into())).expect("creds");
    let password = creds.field("password").expect("password").to_string();
    let broker = peers::broker(&[("dk42&pk42", &password)]);
    let url = format!("mqtt://127.0.0.1:{}", broker.port());
    let args = [
        &url[..],
        "--product-key",
        "pk42",
        "--device-key",
        "dk42",
        "--client-id",
        "probe-1",
        "--timestamp",
        "1700000000000",
    ];
    let (code, v, _) = probe(&args, &[("ENOS_DEVICE_SECRET", "right-secret")]);
    assert_ok(code, &v);
    let (code, v, _) = probe(&args, &[("ENOS_DEVICE_SECRET", "wrong-secret")]);
    assert_eq!(v["error"]["stage"], "handshake", "{v:#}");
    assert!(
        matches!(v["error"]["kind"].as_str(), Some("auth") | Some("protocol")),
        "{v:#}"
    );
    assert_eq!(code, 1);
}

/// A peer that reads the CONNECT and answers CONNACK with `code`.
fn connack_peer(code: u8) -> std::net::SocketAddr {
    peers::tcp_peer(move |mut s| {
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
        let _ = s.write_all(&[0x20, 0x02, 0x00, code]);
        std::thread::sleep(Duration::from_millis(200));
    })
}

#[test]
fn every_connack_refusal_gets_its_own_plain_words() {
    let cases = [
        (1, "protocol", "does not speak MQTT 3.1.1"),
        (2, "auth", "client id"),
        (3, "protocol", "unavailable"),
        (4, "auth", "bad user name or password"),
        (5, "auth", "not authorised"),
    ];
    for (rc, kind, words) in cases {
        let peer = connack_peer(rc);
        let (code, v, _) = probe(&[&format!("mqtt://127.0.0.1:{}", peer.port())], &[]);
        assert_failed(code, &v, kind, "handshake", words);
        assert_eq!(v["details"]["connack"], rc);
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("return code {rc}")))
        );
    }
}

#[test]
fn misbehaving_tcp_peers_fail_in_the_right_stage_and_stay_bounded() {
    let silent = peers::tcp_peer(|s| {
        std::thread::sleep(Duration::from_secs(5));
        drop(s);
    });
    let (code, v, _) = probe(
        &[&format!("mqtt://127.0.0.1:{}", silent.port()), "--timeout", "1"],
        &[],
    );
    assert_failed(code, &v, "timeout", "handshake", "timeout");
    assert!(total_ms(&v) < 2500.0, "{v:#}");

    let closes = peers::tcp_peer(drop);
    let (code, v, _) = probe(&[&format!("mqtt://127.0.0.1:{}", closes.port())], &[]);
    assert_failed(code, &v, "protocol", "handshake", "closed the connection");

    let garbage = peers::tcp_peer(|mut s| {
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        std::thread::sleep(Duration::from_millis(200));
    });
    let (code, v, _) = probe(&[&format!("mqtt://127.0.0.1:{}", garbage.port())], &[]);
    assert_failed(code, &v, "protocol", "handshake", "not MQTT");

    let huge = peers::tcp_peer(|mut s| {
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
        // CONNACK type with a remaining length of about 268 MB.
        let _ = s.write_all(&[0x20, 0xff, 0xff, 0xff, 0x7f]);
        std::thread::sleep(Duration::from_millis(200));
    });
    let (code, v, _) = probe(&[&format!("mqtt://127.0.0.1:{}", huge.port())], &[]);
    assert_failed(code, &v, "protocol", "handshake", "not MQTT");

    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let (code, v, _) = probe(&[&format!("mqtt://127.0.0.1:{closed_port}")], &[]);
    assert_failed(code, &v, "refused", "connect", "refused");
    assert!(total_ms(&v) < 2000.0);
}

#[test]
fn mqtts_checks_the_server_certificate() {
    let broker = peers::broker(&[]);
    let good = peers::pki(&["localhost"], false);
    let front = peers::tls_front(good.server_config.clone(), broker);
    let url = format!("mqtts://localhost:{}", front.port());
    let ca = good.ca.to_str().expect("utf-8");

    let (code, v, _) = probe(&[&url, "--ca", ca, "--roundtrip"], &[]);
    assert_ok(code, &v);
    assert_eq!(
        stage_names(&v),
        ["resolve", "connect", "tls", "handshake", "roundtrip", "total"]
    );

    let (code, v, _) = probe(&[&url], &[]);
    assert_failed(code, &v, "tls", "tls", "not signed by a trusted CA");

    let (code, v, _) = probe(&[&url, "--insecure"], &[]);
    assert_ok(code, &v);

    let other = peers::pki(&["example.com"], false);
    let front = peers::tls_front(other.server_config.clone(), broker);
    let (code, v, _) = probe(
        &[
            &format!("mqtts://localhost:{}", front.port()),
            "--ca",
            other.ca.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_failed(code, &v, "tls", "tls", "does not match the host name");

    let old = peers::pki(&["localhost"], true);
    let front = peers::tls_front(old.server_config.clone(), broker);
    let (code, v, _) = probe(
        &[
            &format!("mqtts://localhost:{}", front.port()),
            "--ca",
            old.ca.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_failed(code, &v, "tls", "tls", "expired");
}

#[test]
fn coap_ping_get_not_found_and_silence() {
    let server = peers::coap_server(false);
    let base = format!("coap://127.0.0.1:{}", server.port());
    let (code, v, _) = probe(&[&base], &[]);
    assert_ok(code, &v);
    assert_eq!(v["details"]["reply"], "reset (pong)");
    assert_eq!(stage_names(&v), ["resolve", "connect", "request", "total"]);

    let (code, v, _) = probe(&[&format!("{base}/time")], &[]);
    assert_ok(code, &v);
    assert_eq!(v["details"]["code"], "2.05");
    assert_eq!(v["details"]["payload"], "Nov 25 09:00:00");

    let (code, v, _) = probe(&[&format!("{base}/nope")], &[]);
    assert_failed(code, &v, "protocol", "request", "4.04");

    let silent = peers::coap_server(true);
    let (code, v, _) = probe(
        &[
            &format!("coap://127.0.0.1:{}/time", silent.port()),
            "--timeout",
            "3",
        ],
        &[],
    );
    assert_failed(code, &v, "timeout", "request", "timeout");
    assert!(total_ms(&v) >= 3000.0 && total_ms(&v) < 4500.0, "{v:#}");
    assert!(
        v["details"]["attempts"].as_u64().is_some_and(|n| n >= 2),
        "retransmitted: {v:#}"
    );

    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("port")
        .port();
    let (code, v, _) = probe(&[&format!("coap://127.0.0.1:{closed}")], &[]);
    assert_failed(code, &v, "refused", "request", "unreachable");
}

#[test]
fn http_statuses_redirects_and_enos_auth() {
    let caps = embedded().expect("caps");
    let req = CredentialRequest {
        protocol: "http".into(),
        product_key: "pk7".into(),
        device_key: "dk7".into(),
        mode: "static".into(),
        client_id: None,
        timestamp: 0,
        lifetime: None,
    };
    let creds = credentials::compute(&caps, &req, &Secret::new("s3".into())).expect("creds");
    let body = creds.request.expect("request").body;
    let server = peers::http_server(move |method, path, got| match (method, path) {
        ("GET", "/ok") => ("200 OK".into(), vec![], b"fine".to_vec()),
        ("GET", "/moved") => (
            "301 Moved Permanently".into(),
            vec![("Location".into(), "/ok".into())],
            vec![],
        ),
        ("GET", "/secret") => ("401 Unauthorized".into(), vec![], vec![]),
        ("POST", "/auth/pk7/dk7") if got == body.as_bytes() => (
            "200 OK".into(),
            vec![],
            br#"{"code":0,"data":{"sessionId":"abcdef0123456789"}}"#.to_vec(),
        ),
        ("POST", "/auth/pk7/dk7") => (
            "200 OK".into(),
            vec![],
            br#"{"code":401,"msg":"sign check failed"}"#.to_vec(),
        ),
        _ => ("404 Not Found".into(), vec![], vec![]),
    });
    let base = format!("http://127.0.0.1:{}", server.port());
    let (code, v, _) = probe(&[&format!("{base}/ok")], &[]);
    assert_ok(code, &v);
    assert_eq!(v["details"]["status"], 200);
    assert_eq!(stage_names(&v), ["resolve", "connect", "request", "total"]);
    let (code, v, _) = probe(&[&format!("{base}/missing")], &[]);
    assert_failed(code, &v, "protocol", "request", "404 Not Found");
    let (code, v, _) = probe(&[&format!("{base}/moved")], &[]);
    assert_failed(code, &v, "protocol", "request", "redirected to /ok");
    let (code, v, _) = probe(&[&format!("{base}/secret")], &[]);
    assert_failed(code, &v, "auth", "request", "401");

    let keys = ["--product-key", "pk7", "--device-key", "dk7"];
    let (code, v, _) = probe(
        &[&[&base[..]][..], &keys].concat(),
        &[("ENOS_DEVICE_SECRET", "s3")],
    );
    assert_ok(code, &v);
    assert!(
        v["details"]["session"]
            .as_str()
            .is_some_and(|s| s.starts_with("abcdef…") && !s.contains("0123456789")),
        "{v:#}"
    );
    let (code, v, _) = probe(
        &[&[&base[..]][..], &keys].concat(),
        &[("ENOS_DEVICE_SECRET", "nope")],
    );
    assert_failed(code, &v, "auth", "handshake", "sign check failed");
}

#[test]
fn https_with_a_private_ca() {
    let server = peers::http_server(|_, _, _| ("200 OK".into(), vec![], b"hello".to_vec()));
    let pki = peers::pki(&["localhost"], false);
    let front = peers::tls_front(pki.server_config.clone(), server);
    let url = format!("https://localhost:{}/", front.port());
    let (code, v, _) = probe(&[&url, "--ca", pki.ca.to_str().expect("utf-8")], &[]);
    assert_ok(code, &v);
    assert_eq!(stage_names(&v), ["resolve", "connect", "tls", "request", "total"]);
    let (code, v, _) = probe(&[&url], &[]);
    assert_failed(code, &v, "tls", "tls", "not signed by a trusted CA");
}

#[test]
fn the_secret_never_appears_in_probe_output() {
    const CANARY: &str = "Probe-Canary-7c1d";
    let silent = peers::tcp_peer(|s| {
        std::thread::sleep(Duration::from_secs(3));
        drop(s);
    });
    let refuser = connack_peer(5);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    for url in [
        format!("mqtt://127.0.0.1:{}", refuser.port()),
        format!("mqtt://127.0.0.1:{}", silent.port()),
        format!("mqtt://127.0.0.1:{closed}"),
        format!("http://127.0.0.1:{closed}"),
    ] {
        for format in ["json", "table"] {
            for extra in [
                &["--verbose"][..],
                &["--username", "u"][..],
                &["--product-key", "p", "--device-key", "d"][..],
            ] {
                let out = bin()
                    .args(["probe", &url, "--timeout", "1", "-f", format])
                    .args(extra)
                    .env("ENOS_DEVICE_SECRET", CANARY)
                    .env("ENOS_CONNECT_PASSWORD", CANARY)
                    .output()
                    .expect("runs");
                no_secret_in(&out, &[CANARY], &format!("{url} {format} {extra:?}"));
            }
        }
    }
}

#[test]
fn probe_usage_errors_exit_2() {
    for args in [
        &["probe", "ftp://x"][..],
        &["probe", "mqtt://"],
        &["probe", "mqtt://h:99999"],
        &["probe", "mqtt://user:pw@h"],
        &["probe", "mqtt://h", "--timeout", "0"],
        &["probe", "coaps://h", "--psk-identity", "id"],
        &["probe", "mqtts://h", "--ca", "/nonexistent/ca.pem"],
        &["probe", "--plan", "-a", "network=none"],
        &[
            "probe",
            "--plan",
            "-a",
            "network=tcp",
            "-a",
            "enos_format=yes",
            "-a",
            "enos_version=3",
        ],
        &["probe"],
    ] {
        let out = bin().args(args).output().expect("runs");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

#[test]
fn coaps_dtls_psk_with_the_right_key_and_a_wrong_one() {
    let server = peers::dtls_coap_server("device-7", b"0123456789abcdef");
    let url = format!("coaps://127.0.0.1:{}/time", server.port());
    let (code, v, _) = probe(
        &[&url, "--psk-identity", "device-7"],
        &[("ENOS_CONNECT_PSK", "0123456789abcdef")],
    );
    assert_ok(code, &v);
    assert_eq!(stage_names(&v), ["resolve", "connect", "tls", "request", "total"]);
    assert_eq!(v["details"]["payload"], "secure time");
    let (code, v, _) = probe(
        &[&url, "--psk-identity", "device-7"],
        &[("ENOS_CONNECT_PSK", "hex:30313233343536373839616263646566")],
    );
    assert_ok(code, &v);

    let (code, v, _) = probe(
        &[&url, "--psk-identity", "device-7", "--timeout", "2"],
        &[("ENOS_CONNECT_PSK", "wrong-key-000000")],
    );
    assert!(
        matches!(v["error"]["kind"].as_str(), Some("tls") | Some("timeout")),
        "{v:#}"
    );
    assert_eq!(v["error"]["stage"], "tls", "{v:#}");
    assert!(code == 1 || code == 3);
    assert!(total_ms(&v) < 3500.0, "{v:#}");
}

#[test]
fn coaps_with_enos_keys_derives_the_identity_and_key_from_the_secret() {
    use sha2::{Digest, Sha256};
    let key: &'static [u8] = Box::leak(Sha256::digest(b"dev-secret")[8..24].to_vec().into_boxed_slice());
    let server = peers::dtls_coap_server("pk9,dk9,2,3600", key);
    let url = format!("coaps://127.0.0.1:{}/time", server.port());
    let (code, v, _) = probe(
        &[&url, "--product-key", "pk9", "--device-key", "dk9"],
        &[("ENOS_DEVICE_SECRET", "dev-secret")],
    );
    assert_ok(code, &v);
    assert_eq!(v["details"]["psk_identity"], "pk9,dk9,2,3600");
}

#[test]
fn probe_plan_probes_the_smoke_test_url_of_every_protocol() {
    let out = bin()
        .args([
            "probe",
            "--plan",
            "-a",
            "network=tcp",
            "-a",
            "enos_format=yes",
            "-a",
            "enos_version=2",
        ])
        .args([
            "-n",
            "ota,file_upload",
            "--host",
            "127.0.0.1",
            "--timeout",
            "2",
            "-f",
            "json",
        ])
        .output()
        .expect("runs");
    let v = json_of(&out.stdout);
    let targets: Vec<&str> = v["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .filter_map(|p| p["target"].as_str())
        .collect();
    assert_eq!(targets, ["mqtts://127.0.0.1:18883", "https://127.0.0.1:443"]);
    // Nothing listens on those ports here, so the plan's probes fail and the exit code says so.
    assert_eq!(v["ok"], false);
    assert_ne!(out.status.code(), Some(0));
}

/// A CoAP peer that first sends a malformed datagram, then an ACK with the wrong message id,
/// then one with the right id but the wrong token, and only then the real answer.
fn noisy_coap_peer() -> std::net::SocketAddr {
    use coap_lite::{MessageClass, MessageType, Packet, ResponseType};
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let addr = sock.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Ok(req) = Packet::from_bytes(&buf[..n]) else {
                continue;
            };
            let answer = |mid: u16, token: Vec<u8>| {
                let mut p = Packet::new();
                p.header.set_version(1);
                p.header.set_type(MessageType::Acknowledgement);
                p.header.message_id = mid;
                p.set_token(token);
                p.header.code = MessageClass::Response(ResponseType::Content);
                p.payload = b"real".to_vec();
                p.to_bytes().unwrap_or_default()
            };
            let _ = sock.send_to(&[0xff, 0x00, 0x13], from);
            let _ = sock.send_to(
                &answer(req.header.message_id.wrapping_add(1), req.get_token().to_vec()),
                from,
            );
            let _ = sock.send_to(&answer(req.header.message_id, vec![9, 9, 9, 9]), from);
            let _ = sock.send_to(&answer(req.header.message_id, req.get_token().to_vec()), from);
        }
    });
    addr
}

#[test]
fn coap_ignores_malformed_datagrams_and_answers_to_other_requests() {
    let peer = noisy_coap_peer();
    let out = bin()
        .args([
            "probe",
            &format!("coap://127.0.0.1:{}/x", peer.port()),
            "--verbose",
            "-f",
            "json",
        ])
        .output()
        .expect("runs");
    let v = json_of(&out.stdout);
    assert_ok(out.status.code().unwrap_or(-1), &v);
    assert_eq!(v["details"]["payload"], "real");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("ignored a malformed datagram"), "{log}");
    assert!(
        log.contains("waiting for") && log.contains("another token"),
        "{log}"
    );
}

#[test]
fn half_packets_and_slow_bodies_end_at_the_timeout() {
    let half = peers::tcp_peer(|mut s| {
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
        let _ = s.write_all(&[0x20, 0x02]);
        std::thread::sleep(Duration::from_secs(4));
    });
    let (code, v, _) = probe(
        &[&format!("mqtt://127.0.0.1:{}", half.port()), "--timeout", "1"],
        &[],
    );
    assert_failed(code, &v, "timeout", "handshake", "timeout");
    assert!(total_ms(&v) < 2500.0, "{v:#}");

    let slow = peers::tcp_peer(|mut s| {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nstart");
        std::thread::sleep(Duration::from_secs(4));
    });
    let (code, v, _) = probe(
        &[&format!("http://127.0.0.1:{}/", slow.port()), "--timeout", "1"],
        &[],
    );
    assert_failed(code, &v, "timeout", "request", "timeout");
    assert!(total_ms(&v) < 2500.0, "{v:#}");
}

#[test]
fn two_way_tls_needs_the_client_certificate_and_accepts_it() {
    let broker = peers::broker(&[]);
    let pki = peers::pki(&["localhost"], false);
    let front = peers::tls_front(pki.mutual_config.clone(), broker);
    let url = format!("mqtts://localhost:{}", front.port());
    let ca = pki.ca.to_str().expect("utf-8");
    let (code, v, _) = probe(&[&url, "--ca", ca], &[]);
    assert_eq!(v["error"]["kind"], "tls", "{v:#}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("client certificate")),
        "{v:#}"
    );
    assert_eq!(code, 1);
    let (code, v, _) = probe(
        &[
            &url,
            "--ca",
            ca,
            "--cert",
            pki.client_cert.to_str().expect("utf-8"),
            "--key",
            pki.client_key.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_ok(code, &v);
}

#[test]
fn http_peers_that_lie_about_the_protocol_or_the_size_fail_cleanly() {
    let cases: [(&'static [u8], &str); 3] = [
        (
            b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
            "began \"SSH-2.0-OpenSSH_9.2....\"",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
            "more than a probe reads",
        ),
        (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
            "503 Service Unavailable",
        ),
    ];
    for (reply, words) in cases {
        let peer = peers::tcp_peer(move |mut s| {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(reply);
            std::thread::sleep(Duration::from_millis(300));
        });
        let (code, v, _) = probe(
            &[&format!("http://127.0.0.1:{}/", peer.port()), "--timeout", "2"],
            &[],
        );
        assert_failed(code, &v, "protocol", "request", words);
        assert!(total_ms(&v) < 2000.0, "{v:#}");
    }
}

#[test]
fn a_coap_reset_to_a_request_is_a_protocol_failure() {
    use coap_lite::{MessageType, Packet};
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let port = sock.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Ok(req) = Packet::from_bytes(&buf[..n]) else {
                continue;
            };
            let mut rst = Packet::new();
            rst.header.set_version(1);
            rst.header.set_type(MessageType::Reset);
            rst.header.message_id = req.header.message_id;
            let _ = sock.send_to(&rst.to_bytes().unwrap_or_default(), from);
        }
    });
    let (code, v, _) = probe(&[&format!("coap://127.0.0.1:{port}/time")], &[]);
    assert_failed(code, &v, "protocol", "request", "reset");
}

#[test]
fn the_secret_never_appears_when_tls_fails() {
    const CANARY: &str = "Tls-Canary-4242";
    let broker = peers::broker(&[]);
    let pki = peers::pki(&["localhost"], false);
    let front = peers::tls_front(pki.server_config.clone(), broker);
    for format in ["json", "table"] {
        let out = bin()
            .args([
                "probe",
                &format!("mqtts://localhost:{}", front.port()),
                "-f",
                format,
                "--verbose",
            ])
            .args(["--product-key", "p", "--device-key", "d"])
            .env("ENOS_DEVICE_SECRET", CANARY)
            .output()
            .expect("runs");
        let all = no_secret_in(&out, &[CANARY], format);
        assert!(all.contains("not signed by a trusted CA"), "{all}");
    }
}

#[test]
fn hostile_http_peers_get_a_clear_failure_never_a_panic() {
    let huge_chunk: Vec<u8> = [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffff\r\n"[..],
        &vec![b'x'; 2 << 20],
    ]
    .concat();
    let endless_line: Vec<u8> = [&b"HTTP/1.1 200 OK\r\nX-Long: "[..], &vec![b'a'; 1 << 20]].concat();
    let many_headers: Vec<u8> = [
        &b"HTTP/1.1 200 OK\r\n"[..],
        &b"X-H: v\r\n".repeat(100_000),
        b"\r\n",
    ]
    .concat();
    // Deterministic noise: a linear congruential sequence, not text.
    let noise: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(1_103_515_245).wrapping_add(12_345) >> 16) as u8)
        .collect();
    let chunked =
        |rest: &str| format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{rest}").into_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "chunk size overflow",
            chunked("5\r\nhello\r\n1ffffffffffffffff\r\n"),
            "chunk size",
        ),
        ("first chunk huge", huge_chunk, "larger than"),
        (
            "non-hex chunk size",
            chunked("zz\r\nhello\r\n0\r\n\r\n"),
            "chunk size",
        ),
        (
            "negative chunk size",
            chunked("-5\r\nhello\r\n0\r\n\r\n"),
            "chunk size",
        ),
        (
            "negative Content-Length",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n".to_vec(),
            "not a valid HTTP response",
        ),
        (
            "duplicated Content-Length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(),
            "not a valid HTTP response",
        ),
        (
            "20-digit status code",
            b"HTTP/1.1 20000000000000000000 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
            "not a valid HTTP response",
        ),
        (
            "header line without colon",
            b"HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 0\r\n\r\n".to_vec(),
            "not a valid HTTP response",
        ),
        ("endless header line", endless_line, "not a valid HTTP response"),
        ("100,000 headers", many_headers, "not a valid HTTP response"),
        ("binary noise", noise, "not a valid HTTP response"),
    ];
    for (name, reply, words) in cases {
        let reply = std::sync::Arc::new(reply);
        let peer = peers::tcp_peer(move |mut s| {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(&reply);
            // Hold the connection: the probe must decide from the bytes, not from a close.
            std::thread::sleep(Duration::from_secs(4));
        });
        let (code, v, _) = probe(
            &[&format!("http://127.0.0.1:{}/", peer.port()), "--timeout", "3"],
            &[],
        );
        assert_eq!(v["error"]["kind"], "protocol", "{name}: {v:#}");
        assert_eq!(v["error"]["stage"], "request", "{name}: {v:#}");
        assert_eq!(code, 1, "{name}: {v:#}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{name}: `{words}` not in `{message}`");
        // Decided from the bytes, well before the 3 s timeout.
        assert!(total_ms(&v) < 2000.0, "{name}: {v:#}");
    }
}

#[test]
fn an_http_chunk_of_the_largest_size_waits_for_its_bytes_until_the_timeout() {
    // 16 hex digits fit in 64 bits: a valid size, whose bytes never come. The probe reads what
    // arrives within its bound and stops at the timeout.
    let peer = peers::tcp_peer(|mut s| {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nffffffffffffffff\r\nabc",
        );
        std::thread::sleep(Duration::from_secs(4));
    });
    let (code, v, _) = probe(
        &[&format!("http://127.0.0.1:{}/", peer.port()), "--timeout", "1"],
        &[],
    );
    assert_failed(code, &v, "timeout", "request", "timeout");
    assert!((900.0..1500.0).contains(&total_ms(&v)), "{v:#}");
}

#[test]
fn hostile_coap_replies_are_ignored_until_the_timeout() {
    use coap_lite::Packet;
    // Each reply echoes the request's message id (and token where it has room for one), then
    // breaks the format in one way. RFC 7252 says to drop such a message, so the probe waits on
    // and times out; it must neither panic nor take it for an answer.
    type Craft = fn(u16, &[u8]) -> Vec<u8>;
    let cases: [(&str, Craft); 6] = [
        ("option delta 15", |mid, token| {
            let mut b = vec![0x60 | token.len() as u8, 0x45];
            b.extend_from_slice(&mid.to_be_bytes());
            b.extend_from_slice(token);
            b.extend_from_slice(&[0xF1, b'a']);
            b
        }),
        ("option length overflow", |mid, token| {
            let mut b = vec![0x60 | token.len() as u8, 0x45];
            b.extend_from_slice(&mid.to_be_bytes());
            b.extend_from_slice(token);
            b.extend_from_slice(&[0x1E, 0xFF, 0xFF, b'a']);
            b
        }),
        ("truncated extended delta", |mid, token| {
            let mut b = vec![0x60 | token.len() as u8, 0x45];
            b.extend_from_slice(&mid.to_be_bytes());
            b.extend_from_slice(token);
            b.push(0xD0);
            b
        }),
        ("payload marker with no payload", |mid, token| {
            let mut b = vec![0x60 | token.len() as u8, 0x45];
            b.extend_from_slice(&mid.to_be_bytes());
            b.extend_from_slice(token);
            b.push(0xFF);
            b
        }),
        ("token length 9", |mid, token| {
            let mut b = vec![0x69, 0x45];
            b.extend_from_slice(&mid.to_be_bytes());
            b.extend_from_slice(token);
            b.extend_from_slice(&[0; 9][..9usize.saturating_sub(token.len())]);
            b
        }),
        ("one-byte datagram", |_, _| vec![0x60]),
    ];
    for (name, craft) in cases {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let port = sock.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let Ok(req) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                let reply = craft(req.header.message_id, req.get_token());
                let _ = sock.send_to(&reply, from);
            }
        });
        let (code, v, _) = probe(&[&format!("coap://127.0.0.1:{port}/time"), "--timeout", "1"], &[]);
        assert_eq!(v["error"]["kind"], "timeout", "{name}: {v:#}");
        assert_eq!(v["error"]["stage"], "request", "{name}: {v:#}");
        assert_eq!(code, 3, "{name}: {v:#}");
        let total = total_ms(&v);
        assert!((900.0..1500.0).contains(&total), "{name}: {v:#}");
    }
}

/// `probe -h` as headings, each with the long flags under it.
fn help_sections() -> Vec<(String, Vec<String>)> {
    let help = String::from_utf8_lossy(&bin().args(["probe", "-h"]).ok_stdout()).into_owned();
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            sections.push((line.trim_end_matches(':').to_string(), Vec::new()));
        } else if let (Some(last), Some(flag)) = (
            sections.last_mut(),
            line.split_whitespace()
                .find(|w| w.starts_with("--"))
                .filter(|_| line.trim_start().starts_with('-')),
        ) {
            last.1.push(flag.trim_end_matches(',').to_string());
        }
    }
    sections
}

#[test]
fn probe_help_groups_its_options_under_a_heading_per_mode() {
    let sections = help_sections();
    let under = |flag: &str| -> String {
        sections
            .iter()
            .find(|(_, flags)| flags.iter().any(|f| f == flag))
            .map(|(h, _)| h.clone())
            .unwrap_or_else(|| panic!("{flag} is under no heading: {sections:?}"))
    };
    for (flag, heading) in [
        ("--publish", "Single probe"),
        ("--subdevice", "Single probe"),
        ("--need", "--need"),
        ("--event", "--need"),
        ("--command-api", "--need"),
        ("--matrix", "--matrix"),
        ("--activate", "--matrix"),
        ("--count", "Load"),
        ("--concurrency", "Load"),
        ("--fleet", "Fleet"),
        ("--hold", "Fleet"),
        ("--plan", "Plan"),
        ("--ca", "TLS"),
        ("--insecure", "TLS"),
        ("--format", "Output"),
        ("--verbose", "Output"),
        ("--product-key", "Target and login"),
    ] {
        assert!(
            under(flag).starts_with(heading),
            "{flag} is under `{}`",
            under(flag)
        );
    }
    for (heading, flags) in &sections {
        assert!(flags.len() <= 12, "{} options under `{heading}`", flags.len());
    }
}

#[test]
fn the_probe_modes_exclude_each_other_before_any_traffic() {
    for modes in [
        ["--fleet", "--matrix"],
        ["--matrix", "--count=2"],
        ["--count=2", "--fleet"],
    ] {
        bin()
            .args([
                "probe",
                "mqtt://127.0.0.1:1",
                "--devices",
                "2",
                "--product-key",
                "pk1",
            ])
            .args(modes)
            .assert()
            .code(2)
            .stderr(predicates::str::contains("cannot be used with"));
    }
}

#[test]
fn the_man_page_synopsis_shows_what_each_option_takes() {
    let page = String::from_utf8_lossy(&bin().args(["man", "probe"]).ok_stdout()).into_owned();
    let synopsis = page
        .split(".SH SYNOPSIS\n")
        .nth(1)
        .and_then(|s| s.lines().next())
        .expect("a SYNOPSIS");
    for want in [
        r"[\fB\-\-timeout\fR \fISECONDS\fR]",
        r"[\fB\-m\fR|\fB\-\-measurepoint\fR \fIID=VALUE\fR]",
        r"[\fB\-\-roundtrip\fR [\fITOPIC\fR]]",
        r"[\fB\-\-matrix\fR]",
        r"[\fIMORE_URLS\fR...]",
    ] {
        assert!(synopsis.contains(want), "`{want}` not in {synopsis}");
    }
}
