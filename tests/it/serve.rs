//! `serve`, the local EnOS endpoint: its command-line contract (first line, events, record,
//! SIGTERM, bind failures, registry errors) through the binary, and its protocol behaviour
//! packet by packet against the endpoint in this process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{OkStdout, bin, creds, json_of, no_secret_in};
use crate::peers::{self, Mqtt, REGISTRY, SECRETS, enos, enos_login};

/// `enos-connect serve` as a child process, every listener on port 0.
struct Serve {
    child: Child,
    listening: Value,
    lines: std::sync::mpsc::Receiver<String>,
    dir: tempfile::TempDir,
}

/// A test that fails before `stop` leaves no serve running behind it.
impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Serve {
    fn start(registry: &str, extra: &[&str]) -> Serve {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = dir.path().join("registry.toml");
        std::fs::write(&reg, registry).expect("write");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_enos-connect"))
            .env_clear()
            .args(["serve", "--registry"])
            .arg(&reg)
            .args([
                "--mqtt",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--coap",
                "127.0.0.1:0",
                "--coaps",
                "127.0.0.1:0",
                "--console",
                "127.0.0.1:0",
            ])
            .arg("--record")
            .arg(dir.path().join("record.jsonl"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the listening line");
        let listening: Value = serde_json::from_str(&first).expect("the first line is JSON");
        Serve {
            child,
            listening,
            lines,
            dir,
        }
    }

    fn addr(&self, what: &str) -> String {
        self.listening[what]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {}", self.listening))
            .to_string()
    }

    /// SIGTERM, then the exit code, the rest of stdout, stderr and the record.
    fn stop(mut self) -> (i32, String, String, String) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break s;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let mut out = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            out.push(l);
        }
        let record = std::fs::read_to_string(self.dir.path().join("record.jsonl")).unwrap_or_default();
        (status.code().unwrap_or(-1), out.join("\n"), err, record)
    }
}

#[test]
fn serve_names_its_listeners_first_logs_json_events_and_stops_cleanly_on_sigterm() {
    let s = Serve::start(REGISTRY, &[]);
    assert_eq!(s.listening["event"], "listening");
    for what in ["mqtt", "http", "coap", "coaps"] {
        assert!(
            s.addr(what).parse::<SocketAddr>().is_ok(),
            "{what}: {}",
            s.listening
        );
    }
    let mqtt = s.addr("mqtt");
    let out = bin()
        .args([
            "probe",
            &format!("mqtt://{mqtt}"),
            "--product-key",
            "pk1",
            "--device-key",
            "dk1",
            "-m",
            "temp=2",
        ])
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .output()
        .expect("probe");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let (code, out, err, record) = s.stop();
    assert_eq!(code, 0, "SIGTERM ends serve with exit 0: {err}");
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for k in ["login", "request", "reply", "disconnect"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let post = events
        .iter()
        .find(|e| e["event"] == "request")
        .expect("a request event");
    assert_eq!(
        (
            &post["protocol"],
            &post["product_key"],
            &post["device_key"],
            &post["method"],
            &post["code"]
        ),
        (
            &json!("mqtt"),
            &json!("pk1"),
            &json!("dk1"),
            &json!("thing.measurepoint.post"),
            &json!(200)
        )
    );
    let record: Vec<&str> = record.lines().collect();
    assert!(
        record.first().is_some_and(|l| l.contains("\"listening\"")),
        "the record starts with the listeners"
    );
    assert_eq!(
        &record[1..],
        out.lines().collect::<Vec<_>>(),
        "the record holds the same lines"
    );
    assert!(
        err.contains("serve: mqtt login pk1/dk1"),
        "a log for people on stderr: {err}"
    );
    for secret in SECRETS {
        assert!(!out.contains(secret) && !err.contains(secret) && !record.join("\n").contains(secret));
    }
}

#[test]
fn a_listener_that_cannot_bind_exits_2_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = dir.path().join("r.toml");
    std::fs::write(&reg, REGISTRY).expect("write");
    let out = bin()
        .args(["serve", "--registry"])
        .arg(&reg)
        .args([
            "--mqtt",
            &addr,
            "--http",
            "off",
            "--coap",
            "off",
            "--console",
            "off",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr} (mqtt)")), "{err}");
    bin()
        .args(["serve", "--registry"])
        .arg(&reg)
        .args(["--mqtt", "somewhere"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("is not IP:PORT"));
}

#[test]
fn registry_problems_are_reported_at_once_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = dir.path().join("bad.toml");
    std::fs::write(
        &reg,
        "[[products]]\nkey = \"pk1\"\nsecret = \"Registry-Canary\"\n\n[[devices]]\nproduct = \"pkx\"\nkey = \"d\"\n\n[[devices]]\nproduct = \"pk1\"\nkey = \"e\"\ngateway = \"nope\"\n",
    )
    .expect("write");
    let out = bin()
        .args(["serve", "--registry"])
        .arg(&reg)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = no_secret_in(&out, &["Registry-Canary"], "registry errors");
    for expected in [
        "bad.toml:6:1: device `d` names product `pkx`",
        "bad.toml:12:1: gateway `nope` is not `productKey/deviceKey`",
        "schema registry",
    ] {
        assert!(err.contains(expected), "`{expected}` in {err}");
    }
    // The schema accepts the registry the tests use.
    let schema = json_of(&bin().args(["schema", "registry"]).ok_stdout());
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let value: Value = toml::from_str(REGISTRY).expect("toml");
    assert!(validator.is_valid(&value));
    let broken: Value = toml::from_str("[[devices]]\nproduct = 1\n").expect("toml");
    assert!(!validator.is_valid(&broken));
}

#[test]
fn mqtt_logins_are_refused_with_a_connack_code_never_a_silent_close() {
    let e = enos(REGISTRY);
    let cases = [
        (enos_login("pk1", "dk1", "static", "wrong"), 4, "a bad signature"),
        (enos_login("pk1", "ghost", "static", "x"), 5, "an unknown device"),
        (
            enos_login("pk1", "off1", "static", "Device-Canary-9a1"),
            5,
            "a disabled device",
        ),
        (
            enos_login("pk1", "dk1", "dynamic", "Product-Canary-7f3"),
            5,
            "securemode 3 for a device with a secret",
        ),
        (
            enos_login("pk2", "d2", "dynamic", "x"),
            5,
            "securemode 3 for a product without a product secret",
        ),
        (
            enos_login("pk2", "d2", "static", "x"),
            5,
            "securemode 2 before activation",
        ),
        (
            ("no-enos-fields".into(), "dk1&pk1".into(), "x".into()),
            2,
            "a client id without the EnOS fields",
        ),
    ];
    for ((client_id, user, pass), code, why) in cases {
        let (got, _) = Mqtt::connect(e.mqtt, &client_id, &user, &pass);
        assert_eq!(got, code, "{why}");
    }
    let (client_id, user, pass) = enos_login("pk1", "dk1", "static", "Device-Canary-9a1");
    // Hex in either case is the same sign, as the SDKs differ.
    let (got, _) = Mqtt::connect(e.mqtt, &client_id, &user, &pass.to_lowercase());
    assert_eq!(got, 0);
    // The Python SDK's float timestamp and `hmacsha256` method name.
    let caps = enos_connect::capabilities::embedded().expect("caps");
    let ts = "1795641004085.025";
    let vars = std::collections::BTreeMap::from([
        ("client_id", "dk1".to_string()),
        ("dk", "dk1".to_string()),
        ("pk", "pk1".to_string()),
        ("timestamp", ts.to_string()),
    ]);
    let sign = enos_connect::credentials::expected_sign(
        &caps,
        "mqtt",
        &vars,
        &enos_connect::secret::Secret::new("Device-Canary-9a1".into()),
    )
    .expect("sign");
    let (got, _) = Mqtt::connect(
        e.mqtt,
        &format!("dk1|securemode=2,signmethod=hmacsha256,timestamp={ts}|"),
        "dk1&pk1",
        &sign.to_lowercase(),
    );
    assert_eq!(got, 0, "the Python SDK's login");
    let events = e.events();
    assert!(events.contains("\"event\":\"login_refused\""));
    for secret in SECRETS {
        assert!(!events.contains(secret));
    }
}

pub fn logged_in(e: &peers::Enos) -> Mqtt {
    let (client_id, user, pass) = enos_login("pk1", "dk1", "static", "Device-Canary-9a1");
    let (code, m) = Mqtt::connect(e.mqtt, &client_id, &user, &pass);
    assert_eq!(code, 0);
    m
}

#[test]
fn a_device_uses_only_its_own_topics() {
    let e = enos(REGISTRY);
    let mut m = logged_in(&e);
    assert!(m.subscribe("/sys/pk1/dk1/thing/service/#"));
    assert!(m.subscribe("/ext/session/pk1/dk1/combine/login_reply"));
    assert!(
        !m.subscribe("/sys/pk1/sub1/thing/measurepoint/post_reply"),
        "a sub-device not logged in"
    );
    assert!(!m.subscribe("/sys/+/+/thing/measurepoint/post_reply"));
    assert!(!m.subscribe("#"));
    m.publish(
        "/sys/pk1/other/thing/measurepoint/post",
        br#"{"id":"1","method":"thing.measurepoint.post","params":{"measurepoints":{"temp":1}}}"#,
    );
    // The next thing on the wire is the reply to our own request, not one for the other's.
    let reply = m.request(
        "/sys/pk1/dk1/thing/measurepoint/post",
        br#"{"id":"2","method":"thing.measurepoint.post","params":{"measurepoints":{"temp":1}}}"#,
    );
    assert_eq!(reply["id"], "2");
    let events = e.events();
    assert!(events.contains(r#""event":"denied","protocol":"mqtt","product_key":"pk1","device_key":"dk1","topic":"/sys/pk1/other/thing/measurepoint/post""#), "{events}");
}

#[test]
fn requests_are_checked_as_enos_documents_and_replies_keep_the_id_string() {
    let e = enos(REGISTRY);
    let mut m = logged_in(&e);
    let post = "/sys/pk1/dk1/thing/measurepoint/post";
    let big = format!(
        r#"{{"id":"7","method":"thing.measurepoint.post","params":{{"measurepoints":{{"label":"{}"}}}}}}"#,
        "x".repeat(70_000)
    );
    let cases: Vec<(&str, Vec<u8>, i64)> = vec![
        (post, br#"{"id":"abc-1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"temp":1.5,"on":true}}}"#.to_vec(), 200),
        (post, Vec::new(), 1251),
        (post, b"temp=1".to_vec(), 1220),
        (post, br#"{"id":"3","method":"thing.measurepoint.post","params":{"measurepoints":[1]}}"#.to_vec(), 1220),
        (post, br#"{"id":"4","method":"thing.event.x.post","params":{}}"#.to_vec(), 1260),
        (post, br#"{"id":"5","method":"thing.measurepoint.post","params":{"measurepoints":{"humidity":3}}}"#.to_vec(), 1204),
        (post, big.into_bytes(), 1008),
        (
            "/sys/pk1/dk1/thing/measurepoint/post/batch",
            br#"{"id":"6","method":"thing.measurepoint.post.batch","params":[{"productKey":"pk1","deviceKey":"dk1","measurepoints":{"temp":1}},{"productKey":"pk1","deviceKey":"dk1","measurepoints":{"nope":1}}]}"#.to_vec(),
            1204,
        ),
        ("/sys/pk1/dk1/thing/event/overheat/post", br#"{"id":"8","method":"thing.event.overheat.post","params":{"value":{}}}"#.to_vec(), 200),
        ("/sys/pk1/dk1/ota/device/inform", br#"{"id":"9","method":"ota.device.inform","params":{"version":"1.0"}}"#.to_vec(), 200),
    ];
    for (topic, payload, code) in cases {
        let reply = m.request(topic, &payload);
        assert_eq!(
            reply["code"],
            code,
            "{topic} {}: {reply}",
            String::from_utf8_lossy(&payload[..payload.len().min(80)])
        );
        if code == 200 {
            assert!(reply["id"].is_string(), "the id stays a string: {reply}");
        }
    }
}

#[test]
fn a_test_sends_a_command_and_gets_the_device_reply() {
    let e = enos(REGISTRY);
    let mut m = logged_in(&e);
    let http = e.http;
    let asked = std::thread::spawn(move || {
        http_post(
            http,
            "/twin/commands/pk1/dk1?timeout=5",
            br#"{"method":"thing.service.measurepoint.set","params":{"temp":30}}"#,
        )
    });
    // The device never subscribed: EnOS pushes commands all the same.
    let (topic, body) = m.next_publish().expect("the command arrives");
    assert_eq!(topic, "/sys/pk1/dk1/thing/service/measurepoint/set");
    let cmd: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(cmd["params"]["temp"], 30);
    let reply = json!({"id": cmd["id"], "code": "200", "data": null, "message": "ok"});
    m.publish(&format!("{topic}_reply"), reply.to_string().as_bytes());
    let (status, answer) = asked.join().expect("the test's request");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], cmd["id"]);
    assert_eq!(answer["message"], "ok");
    let (status, _) = http_post(
        e.http,
        "/twin/commands/pk1/nobody",
        br#"{"method":"thing.service.x"}"#,
    );
    assert_eq!(status, 404, "a device that is not connected");
    assert!(e.events().contains(r#""event":"command""#));
}

/// A small HTTP/1.1 POST on a fresh connection: the status and the JSON body.
pub fn http_post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, Value) {
    http_post_typed(addr, path, "application/json", body)
}

/// A GET on a fresh connection: the status and the JSON body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, Value) {
    http_request(addr, "GET", path, "application/json", b"")
}

fn http_post_typed(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    http_request(addr, "POST", path, content_type, body)
}

fn http_request(addr: SocketAddr, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).expect("connects");
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(body).expect("body");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

pub fn http_session(e: &peers::Enos) -> String {
    let c = creds("http", "pk1", "dk1", "static", "Device-Canary-9a1");
    let auth = c.request.expect("auth request");
    let (status, v) = http_post(e.http, &auth.path, auth.body.as_bytes());
    assert_eq!((status, &v["code"]), (200, &json!(200)), "{v}");
    v["data"]["sessionId"].as_str().expect("a session").to_string()
}

#[test]
fn http_sessions_topics_and_files() {
    let e = enos(REGISTRY);
    let (_, v) = http_post(
        e.http,
        "/auth/pk1/dk1",
        br#"{"signMethod":"sha256","lifetime":300000,"sign":"00"}"#,
    );
    assert_eq!(v["code"], 401, "{v}");
    let (_, v) = http_post(
        e.http,
        "/auth/pk1/ghost",
        br#"{"signMethod":"sha256","lifetime":300000,"sign":"00"}"#,
    );
    assert_eq!(v["code"], 402, "{v}");
    let post = br#"{"id":"h1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"temp":2}}}"#;
    let (_, v) = http_post(e.http, "/topic/sys/pk1/dk1/thing/measurepoint/post", post);
    assert_eq!(v["code"], 1009, "no session: {v}");
    let session = http_session(&e);
    let (_, v) = http_post(
        e.http,
        &format!("/topic/sys/pk1/dk1/thing/measurepoint/post?sessionId={session}"),
        post,
    );
    assert_eq!((&v["code"], &v["id"]), (&json!(200), &json!("h1")), "{v}");
    let (_, v) = http_post(
        e.http,
        &format!("/topic/sys/pk1/sub1/thing/measurepoint/post?sessionId={session}"),
        post,
    );
    assert_eq!(v["code"], 1009, "another device's topic: {v}");
    // A file-type measure point: the message and the file, its MD5 checked.
    let file = b"%PNG fake picture bytes";
    let md5 = {
        use base64::Engine;
        use md5::Digest;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(file))
    };
    let multipart = |md5: &str| {
        let mut b = Vec::new();
        b.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"enos-message\"\r\nContent-Type: application/json\r\n\r\n");
        b.extend_from_slice(br#"{"id":"f1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"label":"local://pic.png"}}}"#);
        b.extend_from_slice(format!("\r\n--XyZ\r\nContent-Disposition: form-data; name=\"enos-file\"; filename=\"pic.png\"\r\nContent-MD5: {md5}\r\n\r\n").as_bytes());
        b.extend_from_slice(file);
        b.extend_from_slice(b"\r\n--XyZ--\r\n");
        b
    };
    let path = format!("/multipart/sys/pk1/dk1/thing/measurepoint/post?sessionId={session}");
    let (status, v) = http_post_typed(
        e.http,
        &path,
        "multipart/form-data; boundary=XyZ",
        &multipart(&md5),
    );
    assert_eq!(
        (status, &v["code"], &v["id"]),
        (200, &json!(200), &json!("f1")),
        "{v}"
    );
    let (_, v) = http_post_typed(
        e.http,
        &path,
        "multipart/form-data; boundary=XyZ",
        &multipart("AAAAAAAAAAAAAAAAAAAAAA=="),
    );
    assert_eq!(v["code"], 1220, "a wrong Content-MD5: {v}");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("pic.png")),
        "{v}"
    );
    assert!(e.events().contains("1 file(s)"));
}

#[test]
fn coap_answers_once_per_message_and_wants_authentication() {
    use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
    let e = enos(REGISTRY);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock.connect(e.coap).expect("connect");
    let request = |mid: u16, path: &str, body: &[u8]| {
        let mut p = Packet::new();
        p.header.set_version(1);
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Post);
        p.header.message_id = mid;
        p.set_token(vec![1, 2, 3, mid as u8]);
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        p.payload = body.to_vec();
        p.to_bytes().expect("encodes")
    };
    let exchange = |bytes: &[u8]| {
        sock.send(bytes).expect("send");
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("an answer");
        buf[..n].to_vec()
    };
    let post = br#"{"id":"c1","method":"thing.measurepoint.post","params":{"measurepoints":{"temp":1}}}"#;
    let answer = Packet::from_bytes(&exchange(&request(
        1,
        "topic/sys/pk1/dk1/thing/measurepoint/post",
        post,
    )))
    .expect("coap");
    assert_eq!(
        answer.header.code,
        MessageClass::Response(coap_lite::ResponseType::Unauthorized)
    );
    let c = creds("coap", "pk1", "dk1", "static", "Device-Canary-9a1");
    let auth = c.request.expect("auth");
    let answer = Packet::from_bytes(&exchange(&request(2, &auth.path, auth.body.as_bytes()))).expect("coap");
    assert_eq!(
        answer.header.code,
        MessageClass::Response(coap_lite::ResponseType::Changed)
    );
    let bytes = request(3, "topic/sys/pk1/dk1/thing/measurepoint/post", post);
    let first = exchange(&bytes);
    let again = exchange(&bytes);
    assert_eq!(first, again, "a retransmission gets the same answer");
    let answer = Packet::from_bytes(&first).expect("coap");
    let reply: Value = serde_json::from_slice(&answer.payload).expect("json");
    assert_eq!((&reply["code"], &reply["id"]), (&json!(200), &json!("c1")));
    let posts = e
        .events()
        .lines()
        .filter(|l| l.contains("\"method\":\"thing.measurepoint.post\""))
        .count();
    assert_eq!(posts, 1, "answered once: {}", e.events());
}

#[test]
fn serve_holds_a_load_probe_of_2000_posts() {
    let s = Serve::start(REGISTRY, &["--quiet"]);
    let out = bin()
        .timeout(Duration::from_secs(120))
        .args([
            "probe",
            &format!("mqtt://{}", s.addr("mqtt")),
            "--product-key",
            "pk1",
            "--device-key",
            "dk1",
        ])
        .args([
            "-m",
            "temp=1",
            "--count",
            "2000",
            "--concurrency",
            "50",
            "-f",
            "json",
        ])
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .output()
        .expect("runs");
    let v = json_of(&out.stdout);
    assert_eq!(
        (v["succeeded"].as_u64(), v["failed"].as_u64()),
        (Some(2000), Some(0)),
        "{v:#}"
    );
    let (code, ..) = s.stop();
    assert_eq!(code, 0);
}

#[test]
fn mqtt_over_tls_with_the_certificate_given() {
    let pki = peers::pki(&["localhost"], false);
    let s = Serve::start(
        REGISTRY,
        &[
            "--mqtts",
            "127.0.0.1:0",
            "--tls-cert",
            pki.server_cert.to_str().expect("utf-8"),
            "--tls-key",
            pki.server_key.to_str().expect("utf-8"),
        ],
    );
    let port = s.addr("mqtts").rsplit(':').next().expect("port").to_string();
    let out = bin()
        .args([
            "probe",
            &format!("mqtts://localhost:{port}"),
            "--ca",
            pki.ca.to_str().expect("utf-8"),
        ])
        .args([
            "--product-key",
            "pk1",
            "--device-key",
            "dk1",
            "-m",
            "temp=3",
            "-f",
            "json",
        ])
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .output()
        .expect("probe");
    let v = json_of(&out.stdout);
    crate::common::assert_ok(out.status.code().unwrap_or(-1), &v);
    assert_eq!(
        crate::common::stage_names(&v),
        ["resolve", "connect", "tls", "handshake", "reply", "total"]
    );
    let (code, events, ..) = s.stop();
    assert_eq!(code, 0);
    assert!(
        events.contains(r#""event":"login","protocol":"mqtts""#),
        "{events}"
    );
    // A certificate file that is not one is an input error, before anything listens.
    bin()
        .args([
            "serve",
            "--registry",
            "/dev/null",
            "--mqtts",
            "127.0.0.1:0",
            "--tls-cert",
            "/dev/null",
            "--tls-key",
            "/dev/null",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--tls-cert /dev/null"));
}

#[test]
fn https_serves_the_device_api_over_one_way_tls_whatever_client_ca_says() {
    use predicates::prelude::PredicateBooleanExt;
    let pki = peers::pki(&["localhost"], false);
    let pem = |p: &std::path::Path| p.to_str().expect("utf-8").to_string();
    let (cert, key, ca) = (pem(&pki.server_cert), pem(&pki.server_key), pem(&pki.ca));
    // --client-ca makes --mqtts two-way; --https stays one-way, as EnOS's HTTP broker.
    let s = Serve::start(
        REGISTRY,
        &[
            "--mqtts",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--client-ca",
            &ca,
        ],
    );
    let keys: Vec<&String> = s.listening.as_object().expect("an object").keys().collect();
    assert_eq!(
        keys,
        [
            "event", "mqtt", "mqtts", "http", "https", "coap", "coaps", "console"
        ],
        "the first line names https: {}",
        s.listening
    );
    let port = s.addr("https").rsplit(':').next().expect("port").to_string();
    let url = format!("https://localhost:{port}");
    let probe = |extra: &[&str]| {
        let out = bin()
            .args(["probe", &url, "--ca", &ca])
            .args(["--product-key", "pk1", "--device-key", "dk1", "-m", "temp=3"])
            .args(extra)
            .args(["-f", "json", "--timeout", "5"])
            .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
            .output()
            .expect("probe");
        (out.status.code().unwrap_or(-1), json_of(&out.stdout))
    };
    let (code, v) = probe(&[]);
    crate::common::assert_ok(code, &v);
    assert_eq!(v["enos"]["code"], 200, "{v:#}");
    assert!(
        crate::common::stage_names(&v).contains(&"tls".to_string()),
        "{v:#}"
    );
    // With a client certificate: nobody asked for it, so mutual_tls is measured one-way.
    let (code, v) = probe(&[
        "--cert",
        &pem(&pki.client_cert),
        "--key",
        &pem(&pki.client_key),
        "--need",
        "mutual_tls,report_data",
    ]);
    assert_eq!(code, 1, "one-way is not the mutual TLS asked for: {v:#}");
    assert_eq!(
        v["details"]["client_certificate"], "not requested by the server (one-way TLS)",
        "{v:#}"
    );
    assert_eq!(v["needs"][0]["measured"], "partial", "{v:#}");
    assert_eq!(
        v["needs"][1]["measured"], "supported",
        "the next need still ran: {v:#}"
    );
    let (code, events, ..) = s.stop();
    assert_eq!(code, 0);
    assert!(
        events.contains(r#""event":"request","protocol":"https""#),
        "{events}"
    );
    // The certificate flags need a TLS listener: --mqtts or --https.
    bin()
        .args([
            "serve",
            "--registry",
            "/dev/null",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--mqtts").or(predicates::str::contains("--https")));
    // And --https needs them.
    bin()
        .args(["serve", "--registry", "/dev/null", "--https", "127.0.0.1:0"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--tls-cert"));
}

/// `kill -9` serve: every request that got its reply is in the record already. Once with one
/// client (a reply, then the kill at once, five times), once in the middle of a load run (every
/// probe that got 200 has its request event).
#[test]
fn kill_9_loses_no_answered_request_from_the_record() {
    let kill9 = |s: &mut Serve| {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &s.child.id().to_string()])
            .status();
        let _ = s.child.wait();
        std::fs::read_to_string(s.dir.path().join("record.jsonl")).unwrap_or_default()
    };
    for round in 0..5 {
        let mut s = Serve::start(REGISTRY, &["--quiet"]);
        let addr: SocketAddr = s.addr("mqtt").parse().expect("addr");
        let (client_id, user, pass) = enos_login("pk1", "dk1", "static", "Device-Canary-9a1");
        let (code, mut m) = Mqtt::connect(addr, &client_id, &user, &pass);
        assert_eq!(code, 0);
        let id = format!("k9-{round}");
        let body = json!({"id": id, "method": "thing.measurepoint.post", "params": {"measurepoints": {"temp": round}}});
        let reply = m.request(
            "/sys/pk1/dk1/thing/measurepoint/post",
            body.to_string().as_bytes(),
        );
        assert_eq!(reply["code"], 200);
        let record = kill9(&mut s);
        assert!(
            record.contains(r#""event":"request""#) && record.contains(r#""code":200"#),
            "round {round}: the answered request is in the record:\n{record}"
        );
    }
    // In the middle of a load run.
    let mut s = Serve::start(REGISTRY, &["--quiet"]);
    let target = format!("mqtt://{}", s.addr("mqtt"));
    let record_path = s.dir.path().join("record.jsonl");
    let probe = std::thread::spawn(move || {
        bin()
            .timeout(Duration::from_secs(120))
            .args(["probe", &target, "--product-key", "pk1", "--device-key", "dk1"])
            .args([
                "-m",
                "temp=1",
                "--count",
                "100000",
                "--concurrency",
                "40",
                "--timeout",
                "3",
                "-f",
                "json",
            ])
            .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
            .output()
            .expect("runs")
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = std::fs::read_to_string(&record_path)
            .unwrap_or_default()
            .lines()
            .count();
        if lines >= 1500 {
            break;
        }
        assert!(Instant::now() < deadline, "the load run did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let record = kill9(&mut s);
    let out = probe.join().expect("the probe");
    let v = json_of(&out.stdout);
    let answered = v["succeeded"].as_u64().expect("succeeded");
    let recorded = record
        .lines()
        .filter(|l| l.contains(r#""event":"request""#) && l.contains(r#""code":200"#))
        .count() as u64;
    assert!(
        answered > 0 && v["failed"].as_u64() > Some(0),
        "killed mid-run: {v}"
    );
    assert!(
        recorded >= answered,
        "{answered} posts got 200, only {recorded} are in the record"
    );
}
