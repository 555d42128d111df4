//! `serve --data FILE`: state that survives a restart and a `kill -9`, the history of each
//! measure point (`GET /twin/devices/{pk}/{dk}/history/{point}`, JSON and CSV, `--retain`),
//! the record that appends, and the data files serve cannot use, each stopping it with its
//! exit code. Every test runs the real binary, restarted on the same file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{bin, creds};
use crate::peers::{Mqtt, enos_login};
use crate::serve::{http_get, http_post};

/// The registry of these tests: pk1 with a gateway, a sub-device in its topology, devices to
/// activate, and pk2, a product a test takes out of the registry.
const REGISTRY: &str = r#"
[[products]]
key = "pk1"
secret = "Product-Canary-7f3"

[[devices]]
product = "pk1"
key = "dk1"
secret = "Device-Canary-9a1"

[[devices]]
product = "pk1"
key = "gw2"
secret = "Device-Canary-9a1"

[[devices]]
product = "pk1"
key = "sub1"
secret = "Sub-Canary-4c2"
gateway = "pk1/dk1"

[[devices]]
product = "pk1"
key = "off1"
secret = "Device-Canary-9a1"
disabled = true

[[devices]]
product = "pk1"
key = "gone1"
secret = "Device-Canary-9a1"

[[devices]]
product = "pk1"
key = "fresh1"

[[products]]
key = "pk2"

[[devices]]
product = "pk2"
key = "d2"
secret = "Device-Canary-9a1"
"#;

/// `enos-connect serve` as a child process on port 0 everywhere, in `dir`.
struct Serve {
    child: Child,
    listening: Value,
    lines: std::sync::mpsc::Receiver<String>,
    err: Arc<Mutex<String>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `registry` written to `dir/registry.toml`, and the command line of a serve on it.
fn command(dir: &Path, registry: &str, args: &[&str]) -> std::process::Command {
    let reg = dir.join("registry.toml");
    std::fs::write(&reg, registry).expect("registry");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_enos-connect"));
    cmd.env_clear()
        .current_dir(dir)
        .args(["serve", "--registry"])
        .arg(&reg)
        .args([
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--coap",
            "127.0.0.1:0",
        ])
        .args(["--console", "off", "--connack-delay-ms", "0", "--quiet"])
        .args(args);
    cmd
}

impl Serve {
    fn start(dir: &Path, registry: &str, args: &[&str]) -> Serve {
        Self::spawn(command(dir, registry, args))
    }

    fn spawn(mut cmd: std::process::Command) -> Serve {
        let mut child = cmd
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
        let err = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let keep = err.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                text.push_str(&String::from_utf8_lossy(&chunk[..n]));
                if let Ok(mut e) = keep.lock() {
                    e.clone_from(&text);
                }
            }
        });
        let first = match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "serve did not start: {}",
                    err.lock().map(|e| e.clone()).unwrap_or_default()
                );
            }
        };
        let listening: Value = serde_json::from_str(&first).expect("the first line is JSON");
        assert_eq!(listening["event"], "listening", "{first}");
        Serve {
            child,
            listening,
            lines,
            err,
        }
    }

    fn addr(&self, what: &str) -> SocketAddr {
        self.listening[what]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{what}: {}", self.listening))
    }

    /// SIGTERM, then the exit code, the rest of stdout and stderr.
    fn stop(mut self) -> (i32, String, String) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.finish()
    }

    /// `kill -9`: no chance to write anything more.
    fn kill9(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// Wait for the exit (at most 20 s): the code, the rest of stdout and stderr.
    fn finish(&mut self) -> (i32, String, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break s;
            }
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(300)) {
            out.push(l);
        }
        let err = self.err.lock().map(|e| e.clone()).unwrap_or_default();
        (status.code().unwrap_or(-1), out.join("\n"), err)
    }
}

/// A device logged in over MQTT with securemode 2.
fn device(addr: SocketAddr, dk: &str, secret: &str) -> Mqtt {
    let (client_id, user, pass) = enos_login("pk1", dk, "static", secret);
    let (code, m) = Mqtt::connect(addr, &client_id, &user, &pass);
    assert_eq!(code, 0, "{dk} logs in");
    m
}

/// One request and its reply; panics when none comes.
fn request(m: &mut Mqtt, dk: &str, path: &str, method: &str, params: Value) -> Value {
    let body = json!({"id": "1", "version": "1.0", "method": method, "params": params});
    m.request(&format!("/sys/pk1/{dk}/{path}"), body.to_string().as_bytes())
}

/// One request and its reply, or `None` when the connection ends first (serve was killed).
fn try_request(m: &mut Mqtt, topic: &str, body: &Value) -> Option<Value> {
    m.publish(topic, body.to_string().as_bytes());
    let want = format!("{topic}_reply");
    loop {
        let (t, payload) = m.next_publish()?;
        if t == want {
            return serde_json::from_slice(&payload).ok();
        }
    }
}

/// The raw answer of a GET: status, body text and the Content-Type.
fn get_text(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connects");
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let head = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).expect("head");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let kind = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, body.to_string(), kind)
}

fn twin(addr: SocketAddr, pk: &str, dk: &str) -> Value {
    let (status, v) = http_get(addr, &format!("/twin/devices/{pk}/{dk}"));
    assert_eq!(status, 200, "{pk}/{dk}: {v}");
    v
}

/// Every value of a point's history, `(time, value)`, through the HTTP listener.
fn history(addr: SocketAddr, dk: &str, point: &str) -> Vec<(i64, Value)> {
    let (status, v) = http_get(
        addr,
        &format!("/twin/devices/pk1/{dk}/history/{point}?limit=1000000"),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["point"], point);
    v["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|x| (x["time"].as_i64().expect("time"), x["value"].clone()))
        .collect()
}

/// A lifecycle command through the HTTP listener (the device need not be connected: the
/// twin changes, and the answer is 404 saying so).
fn command_for(addr: SocketAddr, dk: &str, method: &str) {
    let (status, v) = http_post(
        addr,
        &format!("/twin/commands/pk1/{dk}?timeout=1"),
        json!({"method": method, "params": {}}).to_string().as_bytes(),
    );
    assert!(status == 200 || status == 404, "{method} {dk}: {status} {v}");
}

/// An HTTP post, or `None` once serve is gone (the helper panics when it cannot connect, or
/// the answer is cut: a kill under load ends the posts as a refusal would).
fn try_http_post(addr: SocketAddr, path: &str, body: &[u8]) -> Option<(u16, Value)> {
    std::panic::catch_unwind(|| http_post(addr, path, body)).ok()
}

/// Dynamic activation by hand: a securemode-3 login, the pushed secret, and the device's
/// `_reply`, acknowledged by serve's PUBACK; the secret, or `None` when serve went away.
fn activate(addr: SocketAddr, dk: &str) -> Option<String> {
    use rumqttc::mqttbytes::v4::Packet;
    let (client_id, user, pass) = enos_login("pk1", dk, "dynamic", "Product-Canary-7f3");
    // The helper panics when serve is gone: that ends the activations, as a refusal would.
    let (code, mut m) = std::panic::catch_unwind(|| Mqtt::connect(addr, &client_id, &user, &pass)).ok()?;
    if code != 0 {
        return None;
    }
    let (topic, payload) = m.next_publish()?;
    let push: Value = serde_json::from_slice(&payload).ok()?;
    let secret = push["params"]["deviceSecret"].as_str()?.to_string();
    let reply = json!({"id": push["id"], "code": 200, "data": {}});
    m.publish(&format!("{topic}_reply"), reply.to_string().as_bytes());
    loop {
        match m.next()? {
            Packet::PubAck(_) => return Some(secret),
            _ => continue,
        }
    }
}

/// Restarted on the same file, serve shows each kind of state it had, one assertion each;
/// what was online is offline.
#[test]
fn a_restart_keeps_each_kind_of_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("serve.db");
    let data_arg = data.to_str().expect("path");
    let s = Serve::start(dir.path(), REGISTRY, &["--data", data_arg]);
    let (mqtt, http) = (s.addr("mqtt"), s.addr("http"));
    let mut gw = device(mqtt, "dk1", "Device-Canary-9a1");
    let registered = request(
        &mut gw,
        "dk1",
        "thing/device/register",
        "thing.device.register",
        json!([{"productKey": "pk1", "deviceKey": "reg1", "deviceAttributes": {"site": "lab"}}]),
    );
    let reg_secret = registered["data"][0]["deviceSecret"]
        .as_str()
        .expect("a secret")
        .to_string();
    let act_secret = activate(mqtt, "fresh1").expect("activated");
    let r = request(
        &mut gw,
        "dk1",
        "thing/topo/delete",
        "thing.topo.delete",
        json!([{"productKey": "pk1", "deviceKey": "sub1"}]),
    );
    assert_eq!(r["code"], 200, "{r}");
    command_for(http, "off1", "thing.enable");
    command_for(http, "gw2", "thing.disable");
    command_for(http, "gone1", "thing.delete");
    for (path, method, params) in [
        (
            "thing/attribute/update",
            "thing.attribute.update",
            json!({"attributes": {"color": "red"}}),
        ),
        (
            "thing/tag/update",
            "thing.tag.update",
            json!([{"tagKey": "room", "tagValue": "4.01"}]),
        ),
        ("ota/device/inform", "ota.inform", json!({"version": "1.2.0"})),
        (
            "ota/device/progress",
            "ota.progress",
            json!({"step": 40, "desc": "downloading"}),
        ),
        (
            "thing/event/alarm/post",
            "thing.event.alarm.post",
            json!({"events": {"level": 3}}),
        ),
        (
            "thing/measurepoint/post",
            "thing.measurepoint.post",
            json!({"measurepoints": {"temp": 20.5}, "time": 1_000}),
        ),
        (
            "thing/measurepoint/post",
            "thing.measurepoint.post",
            json!({"measurepoints": {"temp": 21.5}, "time": 2_000}),
        ),
    ] {
        let r = request(&mut gw, "dk1", path, method, params);
        assert_eq!(r["code"], 200, "{method}: {r}");
    }
    assert_eq!(twin(http, "pk1", "dk1")["status"], "online");
    let (code, _, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    drop(gw);

    let s = Serve::start(dir.path(), REGISTRY, &["--data", data_arg]);
    let (mqtt, http) = (s.addr("mqtt"), s.addr("http"));
    let dk1 = twin(http, "pk1", "dk1");
    let reg1 = twin(http, "pk1", "reg1");
    assert_eq!(
        (&reg1["origin"], &reg1["attributes"]["site"]),
        (&json!("register"), &json!("lab")),
        "registration"
    );
    let (code, _) = {
        let (c, u, p) = enos_login("pk1", "reg1", "static", &reg_secret);
        Mqtt::connect(mqtt, &c, &u, &p)
    };
    assert_eq!(code, 0, "the registered device's secret logs in");
    let (code, _) = {
        let (c, u, p) = enos_login("pk1", "fresh1", "static", &act_secret);
        Mqtt::connect(mqtt, &c, &u, &p)
    };
    assert_eq!(code, 0, "the activated device's secret logs in");
    assert_eq!(twin(http, "pk1", "sub1")["gateway"], Value::Null, "topology");
    assert_eq!(twin(http, "pk1", "off1")["enabled"], true, "enabled by a command");
    assert_eq!(
        twin(http, "pk1", "gw2")["enabled"],
        false,
        "disabled by a command"
    );
    assert_eq!(
        http_get(http, "/twin/devices/pk1/gone1").0,
        404,
        "deleted by a command"
    );
    assert_eq!(dk1["attributes"], json!({"color": "red"}), "attributes");
    assert_eq!(dk1["tags"], json!({"room": "4.01"}), "tags");
    assert_eq!(dk1["firmware"]["version"], "1.2.0", "firmware");
    assert_eq!(
        (&dk1["ota"]["step"], &dk1["ota"]["desc"]),
        (&json!(40), &json!("downloading")),
        "OTA"
    );
    assert_eq!(
        dk1["measurepoints"]["temp"],
        json!({"value": 21.5, "time": 2000}),
        "last value"
    );
    assert_eq!(
        (&dk1["events"][0]["event"], &dk1["events"][0]["values"]),
        (&json!("alarm"), &json!({"level": 3})),
        "events"
    );
    assert_eq!(
        history(http, "dk1", "temp"),
        vec![(1000, json!(20.5)), (2000, json!(21.5))],
        "history"
    );
    assert_eq!(
        (&dk1["status"], &dk1["protocol"], dk1["messages"].as_u64()),
        (&json!("offline"), &json!("mqtt"), Some(9)),
        "seen before, offline now"
    );
    let (code, _, err) = s.stop();
    assert_eq!(code, 0, "{err}");
}

/// The registry of the `kill -9` test: REGISTRY, devices that post (`post0`...) and devices
/// to activate (`act0`...).
fn registry_with_fresh(n: usize) -> String {
    let mut r = REGISTRY.to_string();
    for i in 0..POSTERS {
        r.push_str(&format!(
            "\n[[devices]]\nproduct = \"pk1\"\nkey = \"post{i}\"\nsecret = \"Device-Canary-9a1\"\n"
        ));
    }
    for i in 0..n {
        r.push_str(&format!("\n[[devices]]\nproduct = \"pk1\"\nkey = \"act{i}\"\n"));
    }
    r
}

/// Devices posting at once in the `kill -9` test: half over MQTT, half over HTTP, so many
/// posts are in flight when serve dies.
const POSTERS: usize = 8;

/// What a client saw acknowledged before serve died.
#[derive(Default)]
struct Acked {
    /// `(device, time, value)` of every post answered 200 (an MQTT `_reply`, HTTP 200).
    posts: Vec<(String, i64, i64)>,
    /// Values a CoAP probe posted and saw answered 2.04.
    coap: Vec<i64>,
    activations: Vec<(String, String)>,
    registrations: Vec<(String, String)>,
}

/// Rounds of load and `kill -9` in the `kill -9` test (each one a chance to catch a reply
/// that left before its commit).
const ROUNDS: i64 = 6;
/// Devices to activate in each round.
const ACTIVATIONS: i64 = 300;

/// `kill -9` in the middle of a load of posts (MQTT, HTTP, CoAP), activations and
/// registrations, six times over on the same file: after each restart, every post that was
/// answered is in the history, every activated secret logs in, every registered device is
/// there with its secret.
#[test]
fn kill_9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("serve.db");
    let data_arg = data.to_str().expect("path").to_string();
    let registry = registry_with_fresh(usize::try_from(ROUNDS * ACTIVATIONS).expect("count"));
    let mut acked = Acked::default();
    for round in 0..ROUNDS {
        // Each commit held back 5 ms: a reply that left before its commit would be lost to
        // the kill (shown once, with replies let out before their commit: posts lost).
        let mut cmd = command(dir.path(), &registry, &["--data", &data_arg]);
        cmd.env("ENOS_CONNECT_TEST_COMMIT_DELAY_MS", "5");
        let got = load_until_killed(Serve::spawn(cmd), round);
        eprintln!(
            "round {round}: killed after {} posts, {} CoAP posts, {} activations, {} registrations acknowledged",
            got.posts.len(),
            got.coap.len(),
            got.activations.len(),
            got.registrations.len()
        );
        acked.posts.extend(got.posts);
        acked.coap.extend(got.coap);
        acked.activations.extend(got.activations);
        acked.registrations.extend(got.registrations);
        let s = Serve::start(dir.path(), &registry, &["--data", &data_arg]);
        nothing_acknowledged_is_lost(&s, &acked, round);
        let (code, _, err) = s.stop();
        assert_eq!(code, 0, "{err}");
    }
}

/// Posts over MQTT and HTTP (a time each), CoAP probes (a value each), activations and
/// registrations against `s` until each has gone on a while, then `kill -9`: what the clients
/// saw acknowledged.
fn load_until_killed(s: Serve, round: i64) -> Acked {
    let (mqtt, http, coap) = (s.addr("mqtt"), s.addr("http"), s.addr("coap"));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let base = 1_000_000 + round * 1_000_000;
    let mut load = Vec::new();
    for n in 0..POSTERS {
        let a = acked.clone();
        let dk = format!("post{n}");
        load.push(std::thread::spawn(move || {
            let body = |i: i64| {
                json!({"id": i.to_string(), "version": "1.0", "method": "thing.measurepoint.post",
                       "params": {"measurepoints": {"temp": i}, "time": base + i}})
            };
            let topic = format!("/sys/pk1/{dk}/thing/measurepoint/post");
            let keep = |i: i64| a.lock().expect("lock").posts.push((dk.clone(), base + i, i));
            if n % 2 == 0 {
                let mut m = device(mqtt, &dk, "Device-Canary-9a1");
                for i in 0..i64::MAX {
                    match try_request(&mut m, &topic, &body(i)) {
                        Some(r) if r["code"] == 200 => keep(i),
                        _ => return,
                    }
                }
            }
            let c = creds("http", "pk1", &dk, "static", "Device-Canary-9a1");
            let auth = c.request.expect("auth request");
            let Some((_, v)) = try_http_post(http, &auth.path, auth.body.as_bytes()) else {
                return;
            };
            let Some(sid) = v["data"]["sessionId"].as_str().map(str::to_string) else {
                return;
            };
            let path = format!("/topic{topic}?sessionId={sid}");
            for i in 0..i64::MAX {
                match try_http_post(http, &path, body(i).to_string().as_bytes()) {
                    Some((200, r)) if r["code"] == 200 => keep(i),
                    _ => return,
                }
            }
        }));
    }
    // CoAP posts: a probe each, a value each.
    let a = acked.clone();
    load.push(std::thread::spawn(move || {
        for i in base..i64::MAX {
            let out = bin()
                .args([
                    "probe",
                    &format!("coap://{coap}"),
                    "--product-key",
                    "pk1",
                    "--device-key",
                    "gw2",
                ])
                .args(["-m", &format!("temp={i}"), "--timeout", "2", "-f", "json"])
                .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
                .output()
                .expect("runs");
            match serde_json::from_slice::<Value>(&out.stdout) {
                Ok(v) if v["ok"] == true => a.lock().expect("lock").coap.push(i),
                _ => return,
            }
        }
    }));
    // Activations.
    let a = acked.clone();
    load.push(std::thread::spawn(move || {
        for i in round * ACTIVATIONS..(round + 1) * ACTIVATIONS {
            let dk = format!("act{i}");
            match activate(mqtt, &dk) {
                Some(secret) => a.lock().expect("lock").activations.push((dk, secret)),
                None => return,
            }
        }
    }));
    // Registrations, by a gateway of its own.
    let a = acked.clone();
    load.push(std::thread::spawn(move || {
        let mut m = device(mqtt, "gw2", "Device-Canary-9a1");
        for i in 0..i64::MAX {
            let dk = format!("reg{round}-{i}");
            let body = json!({"id": i.to_string(), "version": "1.0", "method": "thing.device.register",
                              "params": [{"productKey": "pk1", "deviceKey": dk}]});
            match try_request(&mut m, "/sys/pk1/gw2/thing/device/register", &body) {
                Some(r) if r["code"] == 200 => {
                    let secret = r["data"][0]["deviceSecret"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    a.lock().expect("lock").registrations.push((dk, secret));
                }
                _ => return,
            }
        }
    }));
    // Under load for a while, then killed without warning.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = acked.lock().expect("lock");
        if a.posts.len() >= 1000
            && a.activations.len() >= 20
            && a.registrations.len() >= 100
            && a.coap.len() >= 5
        {
            break;
        }
        assert!(Instant::now() < deadline, "the load did not get going");
        drop(a);
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill9();
    for t in load {
        t.join().expect("a load thread");
    }
    std::mem::take(&mut *acked.lock().expect("lock"))
}

/// Every post, CoAP post, activation and registration in `acked` survived: through `s`,
/// restarted on the same file.
fn nothing_acknowledged_is_lost(s: &Serve, acked: &Acked, round: i64) {
    let (mqtt, http) = (s.addr("mqtt"), s.addr("http"));
    let mut kept: BTreeMap<String, BTreeSet<(i64, i64)>> = BTreeMap::new();
    for dk in (0..POSTERS).map(|n| format!("post{n}")) {
        let values = history(http, &dk, "temp");
        kept.insert(
            dk,
            values
                .into_iter()
                .map(|(t, v)| (t, v.as_i64().unwrap_or(-1)))
                .collect(),
        );
    }
    let lost: Vec<_> = acked
        .posts
        .iter()
        .filter(|(dk, t, v)| !kept[dk].contains(&(*t, *v)))
        .collect();
    assert!(
        lost.is_empty(),
        "round {round}: {} of {} answered posts are lost: {lost:?}",
        lost.len(),
        acked.posts.len()
    );
    let coap: BTreeSet<i64> = history(http, "gw2", "temp")
        .into_iter()
        .filter_map(|(_, v)| v.as_i64())
        .collect();
    let lost: Vec<_> = acked.coap.iter().filter(|v| !coap.contains(v)).collect();
    assert!(
        lost.is_empty(),
        "round {round}: CoAP posts answered 2.04 and lost: {lost:?}"
    );
    for (dk, secret) in &acked.activations {
        let (c, u, p) = enos_login("pk1", dk, "static", secret);
        let (code, _) = Mqtt::connect(mqtt, &c, &u, &p);
        assert_eq!(
            code, 0,
            "round {round}: {dk}: its activated secret no longer logs in"
        );
    }
    for (dk, secret) in &acked.registrations {
        let registered = twin(http, "pk1", dk);
        assert_eq!(registered["origin"], "register", "round {round}: {dk} is gone");
        let _ = secret;
    }
    for (dk, secret) in acked.registrations.iter().rev().take(20) {
        let (c, u, p) = enos_login("pk1", dk, "static", secret);
        assert_eq!(
            Mqtt::connect(mqtt, &c, &u, &p).0,
            0,
            "round {round}: {dk}: its secret logs in"
        );
    }
}

/// Posts with times out of order and a repeated time, then the history read every way: in
/// time order, the same time keeping the last value, `from`/`to`/`limit` (the newest within
/// the range), CSV, and the refusals. The same with `--data` and in memory.
#[test]
fn the_history_endpoint_answers_in_time_order_as_json_or_csv() {
    for with_data in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("serve.db");
        let args: Vec<&str> = if with_data {
            vec!["--data", data.to_str().expect("path")]
        } else {
            vec![]
        };
        let s = Serve::start(dir.path(), REGISTRY, &args);
        let (mqtt, http) = (s.addr("mqtt"), s.addr("http"));
        let mut m = device(mqtt, "dk1", "Device-Canary-9a1");
        for (time, value) in [
            (3_000, json!(3)),
            (1_000, json!(1)),
            (2_000, json!(2)),
            (2_000, json!(2.5)),
        ] {
            let r = request(
                &mut m,
                "dk1",
                "thing/measurepoint/post",
                "thing.measurepoint.post",
                json!({"measurepoints": {"temp": value, "label": "on"}, "time": time}),
            );
            assert_eq!(r["code"], 200, "{r}");
        }
        let base = "/twin/devices/pk1/dk1/history";
        let (status, all) = http_get(http, &format!("{base}/temp"));
        assert_eq!(status, 200);
        assert_eq!(
            all,
            json!({"point": "temp", "values": [{"time": 1000, "value": 1}, {"time": 2000, "value": 2.5}, {"time": 3000, "value": 3}]}),
            "with_data {with_data}"
        );
        let (_, some) = http_get(http, &format!("{base}/temp?from=1500&to=3000&limit=1"));
        assert_eq!(
            some["values"],
            json!([{"time": 3000, "value": 3}]),
            "the newest of the range"
        );
        let (_, some) = http_get(http, &format!("{base}/temp?from=1000&to=2999"));
        assert_eq!(some["values"].as_array().map(Vec::len), Some(2));
        let (status, csv, kind) = get_text(http, &format!("{base}/temp?format=csv"));
        assert_eq!((status, kind.as_str()), (200, "text/csv; charset=utf-8"));
        assert_eq!(csv, "time,value\n1000,1\n2000,2.5\n3000,3\n");
        let (_, csv, _) = get_text(http, &format!("{base}/label?format=csv&limit=1"));
        assert_eq!(csv, "time,value\n3000,on\n", "text as itself");
        let (_, none) = http_get(http, &format!("{base}/humidity"));
        assert_eq!(none, json!({"point": "humidity", "values": []}));
        assert_eq!(http_get(http, "/twin/devices/pk1/nobody/history/temp").0, 404);
        for bad in ["limit=0", "from=soon", "format=xml", "from=5&to=1"] {
            let (status, v) = http_get(http, &format!("{base}/temp?{bad}"));
            assert_eq!(status, 400, "{bad}: {v}");
        }
        drop(m);
        let (code, _, err) = s.stop();
        assert_eq!(code, 0, "{err}");
    }
}

/// `--retain` bounds each point: a count keeps the newest values; a duration lets older
/// values go (the newest stays); a restart with a smaller retention prunes the file at once.
#[test]
fn retention_bounds_each_point_in_memory_and_in_the_file() {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    let post_all = |mqtt: SocketAddr, times: &[i64]| {
        let mut m = device(mqtt, "dk1", "Device-Canary-9a1");
        for (i, t) in times.iter().enumerate() {
            let r = request(
                &mut m,
                "dk1",
                "thing/measurepoint/post",
                "thing.measurepoint.post",
                json!({"measurepoints": {"temp": i}, "time": t}),
            );
            assert_eq!(r["code"], 200, "{r}");
        }
    };
    for with_data in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("serve.db");
        let mut args: Vec<&str> = vec!["--retain", "5"];
        if with_data {
            args.extend(["--data", data.to_str().expect("path")]);
        }
        let s = Serve::start(dir.path(), REGISTRY, &args);
        let times: Vec<i64> = (0..20).map(|i| now - 20_000 + i * 1000).collect();
        post_all(s.addr("mqtt"), &times);
        let kept: Vec<i64> = history(s.addr("http"), "dk1", "temp")
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(
            kept,
            times[15..].to_vec(),
            "--retain 5 keeps the newest 5 (with_data {with_data})"
        );
        s.stop();

        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("serve.db");
        let mut args: Vec<&str> = vec!["--retain", "1h"];
        if with_data {
            args.extend(["--data", data.to_str().expect("path")]);
        }
        let s = Serve::start(dir.path(), REGISTRY, &args);
        let hour = 3_600_000;
        post_all(s.addr("mqtt"), &[now - 3 * hour, now - 2 * hour, now - 1000]);
        let kept: Vec<i64> = history(s.addr("http"), "dk1", "temp")
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(
            kept,
            vec![now - 1000],
            "--retain 1h lets older values go (with_data {with_data})"
        );
        post_all(s.addr("mqtt"), &[now - 5 * hour]);
        let kept: Vec<i64> = history(s.addr("http"), "dk1", "temp")
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(
            kept,
            vec![now - 1000],
            "a resumed value older than the retention goes too"
        );
        s.stop();
    }
    // A file written with a large retention, restarted with a small one.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("serve.db");
    let data_arg = data.to_str().expect("path");
    let s = Serve::start(dir.path(), REGISTRY, &["--data", data_arg]);
    let times: Vec<i64> = (0..10).map(|i| now - 10_000 + i * 1000).collect();
    post_all(s.addr("mqtt"), &times);
    s.stop();
    let s = Serve::start(dir.path(), REGISTRY, &["--data", data_arg, "--retain", "3"]);
    let kept: Vec<i64> = history(s.addr("http"), "dk1", "temp")
        .iter()
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(kept, times[7..].to_vec(), "pruned at start to the new retention");
    assert_eq!(
        twin(s.addr("http"), "pk1", "dk1")["measurepoints"]["temp"]["value"],
        9,
        "the last value stays"
    );
    s.stop();
    // The file itself holds no more than the retention keeps, not only the answers.
    let rows: i64 = rusqlite::Connection::open(&data)
        .and_then(|c| c.query_row("SELECT count(*) FROM history", [], |r| r.get(0)))
        .expect("the file reads");
    assert_eq!(rows, 3, "the file is pruned");
}

/// `--record FILE` appends: a second run keeps the first run's lines, and each run starts
/// with its `listening` line.
#[test]
fn the_record_appends_and_each_run_starts_with_its_listening_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let record = dir.path().join("events.jsonl");
    let record_arg = record.to_str().expect("path");
    for run in 0..2 {
        let s = Serve::start(dir.path(), REGISTRY, &["--record", record_arg]);
        let mut m = device(s.addr("mqtt"), "dk1", "Device-Canary-9a1");
        let r = request(
            &mut m,
            "dk1",
            "thing/measurepoint/post",
            "thing.measurepoint.post",
            json!({"measurepoints": {"temp": run}}),
        );
        assert_eq!(r["code"], 200);
        drop(m);
        let (code, _, _) = s.stop();
        assert_eq!(code, 0);
    }
    let text = std::fs::read_to_string(&record).expect("the record");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains(r#""event":"listening""#), "{text}");
    let runs: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(r#""event":"listening""#))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(runs.len(), 2, "a listening line per run:\n{text}");
    let requests = |from: usize, to: usize| {
        lines[from..to]
            .iter()
            .filter(|l| l.contains(r#""event":"request""#))
            .count()
    };
    assert_eq!(
        (requests(0, runs[1]), requests(runs[1], lines.len())),
        (1, 1),
        "each run's request after its own listening line:\n{text}"
    );
}

/// serve with a data file it cannot use: the exit code, and stderr naming the file and what
/// to do; never a panic, never a fresh start.
fn refused(dir: &Path, data: &Path, code: i32, words: &[&str]) -> String {
    let out = exits(command(dir, REGISTRY, &["--data", data.to_str().expect("path")]));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "{}: {err}", data.display());
    assert!(
        out.stdout.is_empty(),
        "nothing listened: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains(&data.display().to_string()),
        "the file is named: {err}"
    );
    for w in words {
        assert!(err.contains(w), "`{w}` in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// The output of a serve that must stop by itself at start; one still running after 20 s
/// is killed and fails the test (it started on a file it should have refused).
fn exits(mut cmd: std::process::Command) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "serve started instead of refusing the file:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// A file with state in it, written by serve and stopped cleanly (its log folded in).
fn written(dir: &Path, values: i64) -> PathBuf {
    let data = dir.join("serve.db");
    let s = Serve::start(dir, REGISTRY, &["--data", data.to_str().expect("path")]);
    let mut m = device(s.addr("mqtt"), "dk1", "Device-Canary-9a1");
    let mut i = 0;
    while i < values {
        // A batch of up to 500 values, a time each.
        let items: Vec<Value> = (i..values.min(i + 500))
            .map(|n| json!({"productKey": "pk1", "deviceKey": "dk1", "time": 1_000 + n, "measurepoints": {"temp": n}}))
            .collect();
        i += 500;
        let r = request(
            &mut m,
            "dk1",
            "thing/measurepoint/post/batch",
            "thing.measurepoint.post.batch",
            Value::Array(items),
        );
        assert_eq!(r["code"], 200, "{r}");
    }
    drop(m);
    assert_eq!(s.stop().0, 0);
    assert!(
        !dir.join("serve.db-wal").exists(),
        "the log is folded in at a clean stop"
    );
    data
}

#[test]
fn a_data_file_that_is_not_a_database_or_of_another_program_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "meeting notes, not a database\n".repeat(200)).expect("write");
    refused(
        dir.path(),
        &text,
        2,
        &["not serve's database", "give --data a new path"],
    );
    assert_eq!(
        std::fs::read_to_string(&text).expect("read"),
        "meeting notes, not a database\n".repeat(200),
        "left as it was"
    );
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .and_then(|c| c.execute_batch("CREATE TABLE invoices (n INTEGER)"))
        .expect("another program's database");
    refused(dir.path(), &other, 2, &["another program"]);
    refused(dir.path(), dir.path(), 2, &["a folder"]);
}

#[test]
fn a_data_file_from_a_newer_schema_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = written(dir.path(), 1);
    let c = rusqlite::Connection::open(&data).expect("open");
    let v: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    c.pragma_update(None, "user_version", v + 1).expect("newer");
    drop(c);
    refused(
        dir.path(),
        &data,
        2,
        &[
            &format!("schema version {} is newer than this enos-connect", v + 1),
            "or a newer one",
        ],
    );
}

/// A file cut short, or a page of it torn, in the middle of a write: serve refuses it at start
/// (SQLite's check, and what serve reads at start, find the damage). A log cut in the middle of a write is not damage: the
/// transactions committed before it are all there.
#[test]
fn a_data_file_truncated_in_the_middle_of_a_write_exits_2_and_a_torn_log_keeps_what_was_committed() {
    // A page of the history torn in the middle of its write (its second half zeros).
    let dir = tempfile::tempdir().expect("tempdir");
    let data = written(dir.path(), 3_000);
    let pages = std::fs::metadata(&data).expect("meta").len() / 4096;
    let mut bytes = std::fs::read(&data).expect("read");
    let torn = usize::try_from((pages / 2 + 2) * 4096).expect("offset");
    bytes[torn + 2048..torn + 4096].fill(0);
    std::fs::write(&data, bytes).expect("write");
    refused(dir.path(), &data, 2, &["damaged", "restore"]);
    // Cut in its last page, and cut in half.
    for cut in [2_000, 0] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = written(dir.path(), 3_000);
        let len = std::fs::metadata(&data).expect("meta").len();
        let f = std::fs::OpenOptions::new().write(true).open(&data).expect("open");
        f.set_len(if cut > 0 { len - cut } else { len / 2 + 100 })
            .expect("truncate");
        drop(f);
        refused(dir.path(), &data, 2, &["damaged", "restore"]);
    }

    // The log: serve killed, then the log's last frame cut in half.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("serve.db");
    let data_arg = data.to_str().expect("path");
    let s = Serve::start(dir.path(), REGISTRY, &["--data", data_arg]);
    let mut m = device(s.addr("mqtt"), "dk1", "Device-Canary-9a1");
    for i in 0..50 {
        let r = request(
            &mut m,
            "dk1",
            "thing/measurepoint/post",
            "thing.measurepoint.post",
            json!({"measurepoints": {"temp": i}, "time": 1_000 + i}),
        );
        assert_eq!(r["code"], 200);
    }
    drop(m);
    s.kill9();
    let wal = dir.path().join("serve.db-wal");
    let len = std::fs::metadata(&wal).expect("a log after kill -9").len();
    let f = std::fs::OpenOptions::new().write(true).open(&wal).expect("open");
    f.set_len(len - 2000).expect("tear the last frame");
    drop(f);
    let s = Serve::start(dir.path(), REGISTRY, &["--data", data_arg]);
    let kept = history(s.addr("http"), "dk1", "temp");
    assert!(
        kept.len() >= 40 && kept.iter().enumerate().all(|(i, (t, _))| *t == 1_000 + i as i64),
        "every transaction before the torn one: {kept:?}"
    );
    s.stop();
}

#[test]
fn a_data_file_in_use_by_another_serve_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("serve.db");
    let s = Serve::start(dir.path(), REGISTRY, &["--data", data.to_str().expect("path")]);
    let other = tempfile::tempdir().expect("tempdir");
    refused(other.path(), &data, 2, &["another serve is using"]);
    s.stop();
}

/// A data file serve may not write (its folder read-only, and the file): exit 74 at start.
/// As root, permissions do not bind, so the serve runs as `nobody` (setpriv).
#[test]
fn a_data_file_that_cannot_be_written_exits_74() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = written(dir.path(), 1);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let reg = dir.path().join("registry.toml");
    let mut argv: Vec<String> = Vec::new();
    if root {
        argv.extend(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
            ]
            .map(String::from),
        );
    }
    argv.extend(
        [
            env!("CARGO_BIN_EXE_enos-connect"),
            "serve",
            "--registry",
            reg.to_str().expect("path"),
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "off",
            "--coap",
            "off",
            "--console",
            "off",
            "--data",
            data.to_str().expect("path"),
        ]
        .map(String::from),
    );
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear();
    let out = exits(cmd);
    let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{err}");
    assert!(
        err.contains(&data.display().to_string()) && err.contains("permissions"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// A disk that fills: at start (a write fails: exit 74 before anything listens), and while
/// serving (the write of a batch fails: serve stops with 74, the posts waiting on it get no
/// answer, and every post answered before is in the file after a restart). The process's
/// file-size limit (`ulimit -f`) makes the writes fail as a full disk does.
#[test]
fn a_full_disk_stops_serve_with_74_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = written(dir.path(), 1);
    let limited = |blocks: u32| {
        let reg = dir.path().join("registry.toml");
        let mut cmd = std::process::Command::new("bash");
        cmd.env_clear().arg("-c").arg(format!(
            "trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" serve --registry \"$1\" --mqtt 127.0.0.1:0 \
             --http 127.0.0.1:0 --coap off --console off --connack-delay-ms 0 --quiet --data \"$2\""
        ));
        cmd.arg(env!("CARGO_BIN_EXE_enos-connect")).arg(&reg).arg(&data);
        cmd
    };
    let out = exits(limited(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{err}");
    assert!(err.contains(&data.display().to_string()), "{err}");

    // 160 KiB for files: the log grows with each commit until a write fails.
    let mut s = Serve::spawn(limited(320));
    let mut m = device(s.addr("mqtt"), "dk1", "Device-Canary-9a1");
    let mut answered = Vec::new();
    for i in 0..100_000 {
        let body = json!({"id": i.to_string(), "version": "1.0", "method": "thing.measurepoint.post",
                          "params": {"measurepoints": {"temp": i, "label": "x".repeat(2000)}, "time": 5_000 + i}});
        match try_request(&mut m, "/sys/pk1/dk1/thing/measurepoint/post", &body) {
            Some(r) if r["code"] == 200 => answered.push(5_000 + i),
            _ => break,
        }
    }
    let (code, _, err) = s.finish();
    assert_eq!(code, 74, "{err}");
    assert!(
        err.contains("cannot write") && err.contains(&data.display().to_string()),
        "{err}"
    );
    assert!(
        !answered.is_empty(),
        "some posts were answered before the disk filled"
    );
    let s = Serve::start(dir.path(), REGISTRY, &["--data", data.to_str().expect("path")]);
    let kept: BTreeSet<i64> = history(s.addr("http"), "dk1", "temp")
        .iter()
        .map(|(t, _)| *t)
        .collect();
    let lost: Vec<&i64> = answered.iter().filter(|t| !kept.contains(t)).collect();
    assert!(lost.is_empty(), "answered, then lost: {lost:?}");
    s.stop();
}

/// A device in the file whose product left the registry: reported at start (an event and
/// stderr), kept in the file, and served again once the registry lists its product again.
#[test]
fn a_device_whose_product_left_the_registry_is_reported_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("serve.db");
    let data_arg = data.to_str().expect("path");
    let s = Serve::start(dir.path(), REGISTRY, &["--data", data_arg]);
    let mut gw = device(s.addr("mqtt"), "dk1", "Device-Canary-9a1");
    let r = request(
        &mut gw,
        "dk1",
        "thing/device/register",
        "thing.device.register",
        json!([{"productKey": "pk2", "deviceKey": "new2"}]),
    );
    assert_eq!(r["code"], 200, "{r}");
    drop(gw);
    s.stop();
    let without_pk2 = REGISTRY
        .split("[[products]]\nkey = \"pk2\"")
        .next()
        .expect("pk1's part");
    let s = Serve::start(dir.path(), without_pk2, &["--data", data_arg]);
    assert_eq!(
        http_get(s.addr("http"), "/twin/devices/pk2/new2").0,
        404,
        "not served"
    );
    let (code, out, err) = s.stop();
    assert_eq!(code, 0);
    let event = out
        .lines()
        .find(|l| l.contains(r#""event":"data_conflict""#))
        .unwrap_or_else(|| panic!("a data_conflict event: {out}"));
    let event: Value = serde_json::from_str(event).expect("JSON");
    assert_eq!(
        (&event["product_key"], &event["device_key"]),
        (&json!("pk2"), &json!("new2"))
    );
    assert!(err.contains("product pk2") && err.contains("new2"), "{err}");
    let s = Serve::start(dir.path(), REGISTRY, &["--data", data_arg]);
    assert_eq!(
        twin(s.addr("http"), "pk2", "new2")["origin"],
        "register",
        "served again"
    );
    s.stop();
}
