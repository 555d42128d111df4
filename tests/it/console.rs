//! `serve --console`: the web console. A real browser (headless Debian Chromium over WebDriver,
//! driven by `scripts/console_check.py` with Python selenium and the official EnOS Python SDK,
//! which `.ci/run` installs and names in ENOS_CONNECT_CONSOLE_PYTHON), and plain HTTP for the
//! rest: the token and Origin checks, the Host check, the page and its assets, the Server-Sent
//! Events framing and the bound on updates per device, a browser that never reads.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::peers::{Mqtt, REGISTRY, SECRETS, enos_login};

/// `enos-connect serve` with a console, every listener on port 0.
struct Serve {
    child: Child,
    listening: Value,
    stderr: std::sync::mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(registry: &str, console: &[&str]) -> Serve {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = dir.path().join("registry.toml");
        std::fs::write(&reg, registry).expect("write");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_enos-connect"))
            .env_clear()
            .args(["serve", "--registry"])
            .arg(&reg)
            .args(["--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0", "--coap", "off"])
            .args(console)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        let mut out = BufReader::new(stdout);
        out.read_line(&mut first).expect("the listening line");
        // Keep reading stdout so serve never waits on a full pipe.
        std::thread::spawn(move || for _ in out.lines().map_while(Result::ok) {});
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let listening: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
        Serve {
            child,
            listening,
            stderr: rx,
            _dir: dir,
        }
    }

    fn console(&self) -> SocketAddr {
        let url = self.listening["console"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", self.listening));
        url.trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("an address")
    }

    fn addr(&self, what: &str) -> SocketAddr {
        self.listening[what]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("an address")
    }

    /// The stderr lines so far (within a short wait for the first).
    fn stderr_now(&self) -> String {
        let mut lines = Vec::new();
        if let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            lines.push(l);
        }
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
        lines.join("\n")
    }
}

/// One HTTP/1.1 request on a fresh connection: the status, the headers and the body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connects");
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(body).expect("body");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = h.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, h.to_string(), b.to_string())
}

const SET: &[u8] = br#"{"method":"thing.service.measurepoint.set","params":{"temp":1}}"#;

#[test]
fn a_browser_sees_a_device_log_in_post_take_a_command_and_leave() {
    let Some(python) = crate::common::outside_peer(
        "ENOS_CONNECT_CONSOLE_PYTHON",
        ".ci/run installs Debian's chromium and chromium-driver, and selenium beside the official EnOS Python SDK",
    ) else {
        return;
    };
    let registry = format!("{REGISTRY}\n");
    let s = Serve::start(&registry, &["--console", "127.0.0.1:0"]);
    let console = s.listening["console"]
        .as_str()
        .expect("the console's address")
        .to_string();
    assert!(console.starts_with("http://127.0.0.1:"), "{console}");
    let mqtt_port = s.addr("mqtt").port().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/console_check.py");
    let out = std::process::Command::new(python)
        .args([script, &console, &mqtt_port, "pk1", "dk1", SECRETS[1]])
        .output()
        .expect("the browser check runs");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser check failed:\n{all}");
    for check in [
        "the device shows online within a second of its login",
        "a freshly opened device page draws the point's history",
        "the temp chart gains a point",
        "the measure point set from the page reaches the SDK's handler",
        "the page shows the device's reply",
        "the device turns offline when it disconnects",
    ] {
        assert!(all.contains(&format!("ok: {check}")), "{check}:\n{all}");
    }
    assert!(!all.contains(SECRETS[1]), "a secret leaked:\n{all}");
}

#[test]
fn a_browser_at_1280_px_reads_codes_per_kind_the_fleet_in_natural_order_and_why_a_command_cannot_reach_a_device()
 {
    // Issue 32, items 13 and 14 (scripts/console_page_check.py says what each check is).
    let Some(python) = crate::common::outside_peer(
        "ENOS_CONNECT_CONSOLE_PYTHON",
        ".ci/run installs Debian's chromium and chromium-driver, and selenium beside the official EnOS Python SDK",
    ) else {
        return;
    };
    let mut registry = format!(
        "{REGISTRY}\n[[devices]]\nproduct = \"pk1\"\nkey = \"web1\"\nsecret = \"{}\"\n",
        SECRETS[1]
    );
    for i in 1..=12 {
        registry.push_str(&format!("[[devices]]\nproduct = \"pk1\"\nkey = \"fleet-{i}\"\n"));
    }
    let s = Serve::start(&registry, &["--console", "127.0.0.1:0"]);
    let console = s.listening["console"].as_str().expect("the console").to_string();
    let (mqtt, http) = (s.addr("mqtt"), s.addr("http"));
    // web1: online through an HTTP session, after a connection over MQTT that closed.
    for url in [format!("http://{http}"), format!("mqtt://{mqtt}")] {
        crate::common::bin()
            .args([
                "probe",
                &url,
                "--product-key",
                "pk1",
                "--device-key",
                "web1",
                "-m",
                "temp=1",
            ])
            .env("ENOS_DEVICE_SECRET", SECRETS[1])
            .assert()
            .success();
    }
    // dk1: connected over MQTT, and a point its model lacks refused with 1204.
    let (cid, user, pass) = enos_login("pk1", "dk1", "static", SECRETS[1]);
    let (code, mut dk1) = Mqtt::connect(mqtt, &cid, &user, &pass);
    assert_eq!(code, 0);
    let reply = dk1.request(
        "/sys/pk1/dk1/thing/measurepoint/post",
        br#"{"id":"1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"humidity":1}}}"#,
    );
    assert_eq!(reply["code"], 1204, "{reply}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/console_page_check.py");
    let out = std::process::Command::new(python)
        .args([script, &console, "pk1", "dk1", "web1", "fresh1", "fleet"])
        .output()
        .expect("the browser check runs");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser check failed:\n{all}");
    for check in [
        "an MQTT login's CONNACK 0 is a success",
        "the fleet is in natural order",
        "no device key wraps in the fleet list",
        "the device page has one scroll, no scroll box inside it",
        "a device online through an HTTP session shows http",
        "the actions say a device online over HTTP cannot take a command",
    ] {
        assert!(all.contains(&format!("ok: {check}")), "{check}:\n{all}");
    }
    drop(dk1);
}

#[test]
fn a_console_off_loopback_refuses_commands_without_its_token() {
    // Generated: printed once on stderr (as Jupyter does), never on stdout.
    let s = Serve::start(REGISTRY, &["--console", "0.0.0.0:0"]);
    let err = s.stderr_now();
    let token = err
        .split("?token=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("a generated token on stderr: {err}"))
        .to_string();
    assert_eq!(token.len(), 32, "{token}");
    assert!(!s.listening.to_string().contains(&token), "stdout names no token");
    let port = s.console().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let path = "/twin/commands/pk1/dk1?timeout=1";
    let (status, _, body) = request(addr, "POST", path, &[], SET);
    assert_eq!(status, 403, "no token: {body}");
    assert!(body.contains("needs its token"), "{body}");
    let (status, _, body) = request(
        addr,
        "POST",
        path,
        &[("X-Console-Token", "0123456789abcdef0123456789abcdef")],
        SET,
    );
    assert_eq!(status, 403, "a wrong token: {body}");
    let (status, _, body) = request(addr, "POST", path, &[("X-Console-Token", &token)], SET);
    assert_eq!(
        status, 404,
        "the token lets the command through to the twin (no device connected): {body}"
    );
    // The page's own files need no token; the data does.
    let (status, _, body) = request(addr, "GET", "/", &[], b"");
    assert_eq!(status, 200);
    assert!(body.contains("enos-connect"));
    for path in [
        "/twin/devices",
        "/console/api/meta",
        "/console/api/log",
        "/console/api/stream",
    ] {
        assert_eq!(
            request(addr, "GET", path, &[], b"").0,
            403,
            "{path} without the token"
        );
    }
    assert_eq!(
        request(addr, "GET", "/twin/devices", &[("X-Console-Token", &token)], b"").0,
        200
    );
    assert_eq!(
        request(addr, "GET", &format!("/console/api/meta?token={token}"), &[], b"").0,
        200
    );
    drop(s);

    // Given: used, and never printed.
    let chosen = "Console-Token-Canary-5e1";
    let s = Serve::start(REGISTRY, &["--console", "0.0.0.0:0", "--console-token", chosen]);
    let err = s.stderr_now();
    assert!(err.contains("console at http://0.0.0.0:"), "{err}");
    assert!(
        !err.contains(chosen) && !s.listening.to_string().contains(chosen),
        "{err}"
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", s.console().port()).parse().expect("addr");
    assert_eq!(request(addr, "POST", path, &[], SET).0, 403);
    assert_eq!(
        request(addr, "POST", path, &[("X-Console-Token", chosen)], SET).0,
        404
    );
}

#[test]
fn the_console_checks_host_and_origin_and_serves_its_page_and_the_twin() {
    let s = Serve::start(REGISTRY, &["--console", "127.0.0.1:0"]);
    let err = s.stderr_now();
    assert!(err.contains("serve: console at http://127.0.0.1:"), "{err}");
    let addr = s.console();
    for (path, kind) in [
        ("/", "text/html"),
        ("/console.js", "text/javascript"),
        ("/device.js", "text/javascript"),
        ("/console.css", "text/css"),
        ("/twin/devices", "application/json"),
        ("/twin/devices/pk1/dk1", "application/json"),
        ("/console/api/meta", "application/json"),
        ("/console/api/log", "application/json"),
    ] {
        let (status, head, body) = request(addr, "GET", path, &[], b"");
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-type: {kind}")),
            "{path}: {head}"
        );
        // Nothing from elsewhere: the page works without internet.
        assert!(
            !body.contains("https://") && !body.contains("http://cdn"),
            "{path} fetches from elsewhere"
        );
        for secret in SECRETS {
            assert!(!body.contains(secret), "{path} shows a secret");
        }
    }
    // The twin stays on the HTTP listener too.
    assert_eq!(
        request(s.addr("http"), "GET", "/twin/devices", &[("Host", "t")], b"").0,
        200
    );
    // DNS rebinding: a page of another name that resolves to 127.0.0.1 gets nothing.
    let (status, _, _) = request(
        addr,
        "GET",
        "/twin/devices",
        &[("Host", &format!("evil.example:{}", addr.port()))],
        b"",
    );
    assert_eq!(status, 421);
    // Another site's page cannot send a command; the console's own can (and curl, without Origin).
    let path = "/twin/commands/pk1/dk1?timeout=1";
    let (status, _, body) = request(addr, "POST", path, &[("Origin", "http://evil.example")], SET);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Origin"), "{body}");
    let own = format!("http://{addr}");
    assert_eq!(
        request(addr, "POST", path, &[("Origin", &own)], SET).0,
        404,
        "not connected"
    );
    assert_eq!(request(addr, "POST", path, &[], SET).0, 404, "not connected");
    let (status, _, _) = request(addr, "DELETE", "/twin/devices", &[], b"");
    assert_eq!(status, 405);
}

/// Reads one SSE stream until a second after `done`: its response head, the events, each
/// (name, data), and how long it read.
fn read_sse(mut s: TcpStream, done: Arc<AtomicBool>) -> (String, Vec<(String, String)>, Duration) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let start = Instant::now();
    let mut end = None;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if end.is_none() && done.load(Ordering::SeqCst) {
            end = Some(Instant::now() + Duration::from_secs(1));
        }
        if end.is_some_and(|e| Instant::now() > e) || start.elapsed() > Duration::from_secs(60) {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // The body is chunked (HTTP/1.1): strip the chunk-size lines.
    let mut plain = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            plain.push_str(&after[..after.len().min(n)]);
            break;
        }
        plain.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    let mut events = Vec::new();
    for block in plain.split("\n\n") {
        let mut name = None;
        let mut data = String::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = Some(n.to_string());
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
        if let Some(n) = name {
            events.push((n, data));
        }
    }
    (head.to_string(), events, start.elapsed())
}

fn open_sse(addr: SocketAddr, query: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connects");
    let head = format!(
        "GET /console/api/stream{query} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("head");
    s
}

#[test]
fn the_event_stream_is_server_sent_events_coalesced_per_device_and_a_browser_that_never_reads_holds_nothing_up()
 {
    let s = Serve::start(REGISTRY, &["--console", "127.0.0.1:0", "--quiet"]);
    let addr = s.console();
    // A browser that never reads: its stream must not slow the devices down.
    let _stuck = open_sse(addr, "");
    let fleet = open_sse(addr, "");
    let one = open_sse(addr, "?device=pk1/dk1");
    let (client_id, user, pass) = enos_login("pk1", "dk1", "static", SECRETS[1]);
    let (code, mut m) = Mqtt::connect(s.addr("mqtt"), &client_id, &user, &pass);
    assert_eq!(code, 0);
    let posts = 2000;
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let (d1, d2) = (done.clone(), done.clone());
    let reader = std::thread::spawn(move || read_sse(fleet, d1));
    let reader_one = std::thread::spawn(move || read_sse(one, d2));
    for i in 0..posts {
        let body = format!(
            r#"{{"id":"{i}","method":"thing.measurepoint.post","params":{{"measurepoints":{{"temp":{i}}}}}}}"#
        );
        let r = m.request("/sys/pk1/dk1/thing/measurepoint/post", body.as_bytes());
        assert_eq!(r["code"], 200, "{r}");
    }
    let took = start.elapsed();
    done.store(true, Ordering::SeqCst);
    assert!(took < Duration::from_secs(30), "{posts} posts took {took:?}");
    let (head, events, read_for) = reader.join().expect("reader");
    let (_, events_one, _) = reader_one.join().expect("reader");
    let lower = head.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{head}");
    assert!(lower.contains("content-type: text/event-stream"), "{head}");
    assert!(lower.contains("cache-control: no-cache"), "{head}");
    let mut views = 0;
    let mut lines = 0;
    let mut dropped = 0;
    for (name, data) in &events {
        let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{name}: {e}: {data}"));
        match name.as_str() {
            "device" => {
                assert_eq!(v["device_key"], "dk1", "{v}");
                views += 1;
            }
            "log" => {
                let n = v.as_array().expect("a list of lines").len();
                assert!(n <= 100, "at most LOG_PER_TICK lines per tick: {n}");
                assert!(v[0]["at"].is_u64() && v[0]["event"]["event"].is_string(), "{v}");
                lines += n;
            }
            "dropped" => dropped += v["events"].as_u64().expect("a count"),
            "resync" => {}
            other => panic!("unknown event {other}"),
        }
    }
    // 4 ticks a second: at most 4 views of the device a second (and a tick either side),
    // whatever the rate of posts.
    let bound = (read_for.as_secs_f64() * 4.0).ceil() as usize + 2;
    assert!(
        (1..=bound).contains(&views),
        "{views} views of dk1 in {read_for:?} (at most {bound}); {posts} posts took {took:?}"
    );
    assert!(
        lines > 0 && dropped > 0,
        "lines {lines}, dropped {dropped}: each tick sends at most 100"
    );
    // The device's own stream: views of dk1 only, the last one with the last value.
    let last = events_one
        .iter()
        .rev()
        .find(|(n, _)| n == "device")
        .map(|(_, d)| serde_json::from_str::<Value>(d).expect("json"))
        .expect("a view of dk1");
    assert_eq!(last["measurepoints"]["temp"]["value"], posts - 1, "{last}");
    let twin = request(addr, "GET", "/twin/devices/pk1/dk1", &[], b"").2;
    assert!(twin.contains(&format!("\"value\":{}", posts - 1)), "{twin}");
}
