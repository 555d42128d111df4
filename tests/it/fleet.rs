//! A fleet on one machine: `probe --fleet` against an in-process `serve` (devices held, every
//! post answered, the counts exact), `--max-connections` (CONNACK 3 past it, never silence, the
//! held devices still served) and a flood of silent connections that does not lock a device out.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{OkStdout, bin, json_of};
use crate::peers::{self, Mqtt, enos_login};

/// Twenty devices with secrets and five that activate dynamically (`fleet-1` to `fleet-5`).
fn registry() -> String {
    let mut r = String::from(
        "[[products]]\nkey = \"pkf\"\nsecret = \"Fleet-Product-Canary\"\nmeasurepoints = [\"temp\"]\n",
    );
    for i in 1..=20 {
        r.push_str(&format!(
            "[[devices]]\nproduct = \"pkf\"\nkey = \"m{i}\"\nsecret = \"Fleet-Device-Canary-{i}\"\n"
        ));
    }
    for i in 1..=5 {
        r.push_str(&format!("[[devices]]\nproduct = \"pkf\"\nkey = \"fleet-{i}\"\n"));
    }
    r
}

/// The address of an event's `peer` (`127.0.0.5:40000` gives `127.0.0.5`).
fn peer_ip(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).expect("an event is JSON");
    let peer = v["peer"].as_str().expect("a login event names its peer");
    peer.rsplit_once(':').map_or(peer, |(ip, _)| ip).to_string()
}

fn assert_counts_exact(v: &serde_json::Value, devices: u64) {
    let f = &v["fleet"];
    assert_eq!(f["devices"], devices, "{v:#}");
    assert_eq!(f["held"], devices, "{v:#}");
    assert_eq!(f["peak_connected"], devices, "{v:#}");
    assert_eq!(f["login_failed"], 0, "{v:#}");
    let offered = f["offered"].as_u64().expect("offered");
    // Posts at 0, 200, 400, 600 and 800 ms of a one-second hold; a busy machine may skip one.
    assert!(offered >= 4 * devices && offered <= 5 * devices, "{v:#}");
    assert_eq!(f["acked"], offered, "{v:#}");
    assert_eq!(f["answered"], offered, "{v:#}");
    assert_eq!(f["codes"]["enos:200"], offered, "{v:#}");
    assert_eq!(f["codes"]["connack:0"], devices, "{v:#}");
    assert_eq!(f["delivered"], 1.0, "{v:#}");
    assert_eq!(v["stages"]["reply"]["count"], offered, "{v:#}");
    assert_eq!(v["stages"]["handshake"]["count"], devices, "{v:#}");
    assert!(
        v["stages"]["reply"]["histogram"].is_string(),
        "merge needs the histograms: {v:#}"
    );
    assert_eq!(v["ok"], true, "{v:#}");
    let last = f["timeline"]
        .as_array()
        .and_then(|t| t.last())
        .expect("a timeline");
    assert_eq!(last["connected"], 0, "everyone left: {v:#}");
    assert_eq!(last["answered"], offered, "{v:#}");
}

#[test]
fn a_fleet_holds_its_devices_and_every_post_is_answered() {
    let serve = peers::enos(&registry());
    let url = format!("mqtt://{}", serve.mqtt);
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("devices.csv");
    let mut rows = String::from("product,key,secret\n");
    for i in 1..=20 {
        rows.push_str(&format!("pkf,m{i},Fleet-Device-Canary-{i}\n"));
    }
    std::fs::write(&csv, rows).expect("csv");
    let out = bin()
        .args(["probe", &url, "--fleet", "--devices"])
        .arg(&csv)
        .args([
            "-m",
            "temp=21.5",
            "--every",
            "200ms",
            "--hold",
            "1s",
            "-f",
            "json",
        ])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("Canary"), "a secret was printed: {text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_counts_exact(&json_of(&out.stdout), 20);
    let events = serve.events();
    let logins: Vec<&str> = events
        .lines()
        .filter(|l| l.contains("\"event\":\"login\""))
        .collect();
    assert_eq!(logins.len(), 20, "one login per device");
    // Against a loopback server the devices connect from 16 addresses of 127.0.0.0/8, so the
    // kernel's search for a free local port stays short at fleet sizes.
    let sources: std::collections::BTreeSet<String> = logins.iter().map(|l| peer_ip(l)).collect();
    assert_eq!(sources.len(), 16, "{sources:?}");

    // Generated devices under one product activate with their login (securemode 3).
    let v = json_of(
        &bin()
            .args(["probe", &url, "--fleet", "--devices", "5", "--product-key", "pkf"])
            .args([
                "-m",
                "temp=1",
                "--every",
                "200ms",
                "--hold",
                "1s",
                "--rate",
                "50",
                "--source",
                "127.0.0.9",
                "-f",
                "json",
            ])
            .env("ENOS_PRODUCT_SECRET", "Fleet-Product-Canary")
            .ok_stdout(),
    );
    assert_counts_exact(&v, 5);
    assert_eq!(v["fleet"]["codes"]["activated"], 5, "{v:#}");
    // `--source` names the local addresses.
    let activated: Vec<String> = serve
        .events()
        .lines()
        .filter(|l| l.contains("\"event\":\"login\"") && l.contains("fleet-"))
        .map(peer_ip)
        .collect();
    assert_eq!(activated.len(), 5);
    assert!(activated.iter().all(|ip| ip == "127.0.0.9"), "{activated:?}");

    // The fleet's report is a load report: merge joins two of them.
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    std::fs::write(&a, v.to_string()).expect("a");
    std::fs::write(&b, v.to_string()).expect("b");
    let m = json_of(
        &bin()
            .arg("merge")
            .arg(&a)
            .arg(&b)
            .args(["-f", "json"])
            .ok_stdout(),
    );
    assert_eq!(m["count"], 10, "{m:#}");
    assert_eq!(
        m["stages"]["reply"]["count"],
        v["stages"]["reply"]["count"].as_u64().map(|n| n * 2).expect("n")
    );
    // ... and their fleet sections: counts, codes and the timeline second by second.
    let twice = |key: &str| v["fleet"][key].as_u64().map(|n| n * 2).expect("a count");
    for key in ["devices", "held", "offered", "acked", "answered"] {
        assert_eq!(m["fleet"][key], twice(key), "{key}: {m:#}");
    }
    assert_eq!(m["fleet"]["codes"]["activated"], 10, "{m:#}");
    assert_eq!(m["fleet"]["delivered"], 1.0, "{m:#}");
    let peak = v["fleet"]["timeline"]
        .as_array()
        .and_then(|t| t.iter().filter_map(|t| t["connected"].as_u64()).max())
        .expect("a timeline");
    assert_eq!(m["fleet"]["peak_connected"], (peak * 2).max(5), "{m:#}");
    let last = m["fleet"]["timeline"]
        .as_array()
        .and_then(|t| t.last())
        .expect("a timeline");
    assert_eq!(last["answered"], twice("answered"), "{m:#}");
    let table = String::from_utf8_lossy(&bin().arg("merge").arg(&a).arg(&b).ok_stdout()).to_string();
    assert!(table.contains("fleet: 10 devices"), "{table}");

    // A fleet's report and a load's do not merge: the fleet's counts would be half the story.
    let load = dir.path().join("load.json");
    let mut plain = v.clone();
    plain.as_object_mut().expect("an object").remove("fleet");
    std::fs::write(&load, plain.to_string()).expect("load");
    bin()
        .arg("merge")
        .arg(&a)
        .arg(&load)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("merge fleets with fleets"));
}

/// `probe --fleet` against `serve` with `extra` flags: the exit code, stdout, stderr and how long
/// it took.
fn fleet_run(url: &str, devices: &std::path::Path, extra: &[&str]) -> (i32, String, String, Duration) {
    let started = Instant::now();
    let out = bin()
        .args(["probe", url, "--fleet", "--devices"])
        .arg(devices)
        .args(extra)
        .timeout(Duration::from_secs(60))
        .output()
        .expect("runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(
        !stdout.contains("Canary") && !stderr.contains("Canary"),
        "a secret was printed: {stdout}{stderr}"
    );
    (out.status.code().unwrap_or(-1), stdout, stderr, started.elapsed())
}

/// A CSV of devices `m1` to `m{n}` of [`registry`], with `secret(i)` as each one's secret.
fn devices_csv(dir: &std::path::Path, n: u32, secret: impl Fn(u32) -> String) -> std::path::PathBuf {
    let csv = dir.join("devices.csv");
    let mut rows = String::from("product,key,secret\n");
    for i in 1..=n {
        rows.push_str(&format!("pkf,m{i},{}\n", secret(i)));
    }
    std::fs::write(&csv, rows).expect("csv");
    csv
}

#[test]
fn a_fleet_without_measure_points_holds_until_its_hold_ends_and_delivers_n_a() {
    // Issue 32, items 1 and 2: nothing to post, so the fleet only holds its connections: it
    // ends at --hold (it waited for the 10 s timeout on top), and 0 acknowledged of 0 offered is
    // no delivery ratio (it said 1.0000).
    let serve = peers::enos(&registry());
    let url = format!("mqtt://{}", serve.mqtt);
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = devices_csv(dir.path(), 2, |i| format!("Fleet-Device-Canary-{i}"));
    let (code, out, err, took) = fleet_run(&url, &csv, &["--hold", "1s", "-f", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}: it waited past --hold 1s"
    );
    let v = json_of(out.as_bytes());
    assert_eq!(v["fleet"]["held"], 2, "{v:#}");
    assert_eq!(v["fleet"]["offered"], 0, "{v:#}");
    assert!(v["fleet"]["delivered"].is_null(), "0 of 0 is no ratio: {v:#}");
    let (_, table, _, _) = fleet_run(&url, &csv, &["--hold", "0s"]);
    assert!(table.contains("(n/a delivered)"), "{table}");
    assert!(!table.contains("1.0000 delivered"), "{table}");
}

#[test]
fn a_fleet_whose_logins_all_fail_says_n_a_delivered_and_its_header_counts_devices_and_posts() {
    // Issue 32, items 2 and 3.
    let serve = peers::enos(&registry());
    let url = format!("mqtt://{}", serve.mqtt);
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = devices_csv(dir.path(), 2, |i| format!("Wrong-Canary-{i}"));
    let (code, out, err, _) = fleet_run(&url, &wrong, &["-m", "temp=1", "--hold", "0s", "-f", "json"]);
    assert_eq!(code, 1, "{out}{err}");
    let v = json_of(out.as_bytes());
    assert_eq!(v["fleet"]["login_failed"], 2, "{v:#}");
    assert!(v["fleet"]["delivered"].is_null(), "{v:#}");
    let (_, table, _, _) = fleet_run(&url, &wrong, &["-m", "temp=1", "--hold", "0s"]);
    assert!(table.contains("0 offered, 0 acked (n/a delivered)"), "{table}");
    // The header of a fleet that posted: devices, and posts per second, not probes.
    let good = devices_csv(dir.path(), 2, |i| format!("Fleet-Device-Canary-{i}"));
    let (code, table, err, _) = fleet_run(&url, &good, &["-m", "temp=1", "--every", "250ms", "--hold", "1s"]);
    assert_eq!(code, 0, "{table}{err}");
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("ok: 2 devices on mqtt ") && header.contains("posts/s"),
        "{header}"
    );
    assert!(
        !header.contains("probes/s") && !header.contains("concurrency"),
        "{header}"
    );
}

/// Send SIGINT to a running process, as Ctrl-C does.
fn interrupt(child: &std::process::Child) {
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success());
}

/// Run `args` until `after`, send SIGINT, and return the exit code, stdout and stderr.
fn interrupted(args: &[&str], env: &[(&str, &str)], after: Duration) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_enos-connect"));
    cmd.env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    std::thread::sleep(after);
    interrupt(&child);
    let started = Instant::now();
    let out = child.wait_with_output().expect("ends");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?} to stop after SIGINT",
        started.elapsed()
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn ctrl_c_during_a_load_or_a_fleet_prints_what_ran_marked_interrupted_and_exits_130() {
    // Issue 32, item 4: SIGINT threw away what was measured.
    let serve = peers::enos(&registry());
    let url = format!("mqtt://{}", serve.mqtt);
    let secret = [("ENOS_DEVICE_SECRET", "Fleet-Device-Canary-1")];
    let load = [
        "probe",
        &url,
        "--product-key",
        "pkf",
        "--device-key",
        "m1",
        "-m",
        "temp=1",
        "--count",
        "10000000",
        "--concurrency",
        "2",
    ];
    let (code, out, err) = interrupted(
        &[&load[..], &["-f", "json"]].concat(),
        &secret,
        Duration::from_millis(1500),
    );
    assert_eq!(code, Some(130), "{out}{err}");
    let v = json_of(out.as_bytes());
    assert_eq!(v["interrupted"], true, "{v:#}");
    assert_eq!(v["ok"], false, "{v:#}");
    let ran = v["count"].as_u64().expect("count");
    assert!(ran > 0 && ran < 10_000_000, "{v:#}");
    assert_eq!(
        v["succeeded"]
            .as_u64()
            .map(|s| s + v["failed"].as_u64().unwrap_or(0)),
        Some(ran),
        "{v:#}"
    );
    assert_eq!(v["stages"]["reply"]["count"], v["succeeded"], "{v:#}");
    let (code, table, err) = interrupted(&load, &secret, Duration::from_millis(1500));
    assert_eq!(code, Some(130), "{table}{err}");
    assert!(table.starts_with("INTERRUPTED: "), "{table}");
    assert!(table.contains("│ reply"), "{table}");

    let dir = tempfile::tempdir().expect("tempdir");
    let csv = devices_csv(dir.path(), 3, |i| format!("Fleet-Device-Canary-{i}"));
    let csv = csv.display().to_string();
    let fleet = [
        "probe",
        &url,
        "--fleet",
        "--devices",
        &csv,
        "-m",
        "temp=1",
        "--every",
        "100ms",
        "--hold",
        "1h",
    ];
    let (code, out, err) = interrupted(
        &[&fleet[..], &["-f", "json"]].concat(),
        &[],
        Duration::from_millis(2500),
    );
    assert_eq!(code, Some(130), "{out}{err}");
    let v = json_of(out.as_bytes());
    assert_eq!(v["interrupted"], true, "{v:#}");
    assert_eq!(v["fleet"]["devices"], 3, "{v:#}");
    let offered = v["fleet"]["offered"].as_u64().expect("offered");
    assert!(offered >= 6, "a second of posts from 3 devices: {v:#}");
    assert!(
        v["fleet"]["timeline"].as_array().is_some_and(|t| !t.is_empty()),
        "{v:#}"
    );
}

#[test]
fn a_fleet_run_again_logs_in_with_the_secrets_its_first_run_activated() {
    // Issue 32, item 5: the second run of `--devices N` failed every login, because the
    // secrets the first run's activation gave were kept nowhere.
    let serve = peers::enos(&registry());
    let url = format!("mqtt://{}", serve.mqtt);
    let dir = tempfile::tempdir().expect("tempdir");
    let keep = dir.path().join("secrets");
    let keep_s = keep.display().to_string();
    let run = |extra: &[&str]| {
        let out = bin()
            .args(["probe", &url, "--fleet", "--devices", "3", "--product-key", "pkf"])
            .args(["-m", "temp=1", "--every", "200ms", "--hold", "0.5s", "-f", "json"])
            .args(extra)
            .env("ENOS_PRODUCT_SECRET", "Fleet-Product-Canary")
            .output()
            .expect("runs");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains("Canary"), "a secret was printed: {all}");
        (out.status.code(), json_of(&out.stdout), all)
    };
    let (code, v, all) = run(&["--activate-to", &keep_s]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(v["fleet"]["codes"]["activated"], 3, "{v:#}");
    for i in 1..=3 {
        use std::os::unix::fs::PermissionsExt;
        let file = keep.join("pkf").join(format!("fleet-{i}.secret"));
        let meta = std::fs::metadata(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", file.display());
        let secret = std::fs::read_to_string(&file).expect("reads");
        assert!(secret.trim().len() >= 8, "{}", file.display());
    }
    // Again with the same folder: every device logs in with the secret kept for it.
    let (code, v, all) = run(&["--activate-to", &keep_s]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(v["fleet"]["held"], 3, "{v:#}");
    assert_eq!(v["fleet"]["codes"]["connack:0"], 3, "{v:#}");
    assert!(v["fleet"]["codes"].get("activated").is_none(), "{v:#}");
    // Without it, the logins fail, and the error says where the secrets would have been.
    let (code, v, all) = run(&[]);
    assert_eq!(code, Some(1), "{all}");
    assert_eq!(v["fleet"]["login_failed"], 3, "{v:#}");
    let example = v["examples"]
        .as_object()
        .and_then(|e| e.values().next())
        .and_then(|e| e.as_str())
        .unwrap_or_default();
    assert!(example.contains("--activate-to DIR"), "{v:#}");
}

#[test]
fn fleet_flags_are_checked_before_any_traffic() {
    for (args, words) in [
        (vec!["--every", "1ms"], "10ms"),
        (vec!["--hold", "25h"], "24h"),
        (vec!["--every", "soon"], "not a duration"),
        (vec!["--devices", "0"], "1 to 1000000"),
    ] {
        let mut all = vec!["probe", "mqtt://127.0.0.1:9", "--fleet"];
        if !args.contains(&"--devices") {
            all.extend(["--devices", "3"]);
        }
        all.extend(args.iter().copied());
        bin()
            .args(&all)
            .assert()
            .code(2)
            .stderr(predicates::str::contains(words));
    }
    bin()
        .args([
            "probe",
            "http://127.0.0.1:9",
            "--fleet",
            "--devices",
            "3",
            "--product-key",
            "p",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--count N"));
}

fn login(addr: std::net::SocketAddr, i: u32) -> (u8, Mqtt) {
    let (cid, user, pass) = enos_login(
        "pkf",
        &format!("m{i}"),
        "static",
        &format!("Fleet-Device-Canary-{i}"),
    );
    Mqtt::connect(addr, &cid, &user, &pass)
}

#[test]
fn past_max_connections_a_device_gets_connack_3_and_the_held_ones_keep_working() {
    let serve = peers::enos_with(&registry(), Some(3));
    let mut held: Vec<Mqtt> = (1..=3)
        .map(|i| {
            let (code, m) = login(serve.mqtt, i);
            assert_eq!(code, 0, "device {i}");
            m
        })
        .collect();
    let (code, _) = login(serve.mqtt, 4);
    assert_eq!(code, 3, "server unavailable past --max-connections");
    let events = serve.events();
    assert!(
        events.contains("\"code\":3") && events.contains("--max-connections"),
        "an event says why: {events}"
    );
    let reply = held[0].request(
        "/sys/pkf/m1/thing/measurepoint/post",
        br#"{"id":"7","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"temp":1}}}"#,
    );
    assert_eq!(reply["code"], 200, "{reply}");
    drop(held.pop());
    // The slot comes back once the server sees the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, _) = login(serve.mqtt, 5);
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_flood_of_silent_connections_does_not_lock_a_device_out() {
    // 64 logins at most, so at most 16 connections wait for their CONNECT.
    let serve = peers::enos_with(&registry(), Some(64));
    let silent: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(serve.mqtt).expect("connects"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let (code, _device) = login(serve.mqtt, 1);
    assert_eq!(code, 0);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the login took {:?}",
        started.elapsed()
    );
    // Every silent one is closed: the oldest to make room, the rest after the shortened wait.
    for mut s in silent {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut b = [0u8; 8];
        match s.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("a silent connection was not closed: {other:?}"),
        }
    }
    assert!(serve.events().contains("closed before its CONNECT"));
}

/// One HTTP/1.1 request on a kept-alive connection, and the whole response (head and body).
fn http_get(s: &mut TcpStream, path: &str) -> String {
    use std::io::Write;
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: serve\r\n\r\n").expect("writes");
    read_response(s)
}

/// A response read to the end of its `Content-Length` body.
fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
        match s.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&got).to_string(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no whole response: {e}: {}", String::from_utf8_lossy(&got)),
        }
    }
}

#[test]
fn past_max_connections_http_answers_503_at_once_and_the_open_ones_keep_working() {
    let pki = peers::pki(&["localhost"], false);
    let serve = peers::enos_tls(
        &registry(),
        pki.server_config.clone(),
        pki.server_config.clone(),
        Some(2),
    );
    let mut open: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(serve.http).expect("connects");
            let r = http_get(&mut s, "/twin/devices");
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            s
        })
        .collect();
    // The third gets its answer without asking: no wait in the accept queue.
    let started = Instant::now();
    let mut third = TcpStream::connect(serve.http).expect("connects");
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let r = read_response(&mut third);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let (head, body) = r.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 503 Service Unavailable"), "{r}");
    assert!(head.contains("Retry-After: 1"), "{r}");
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(
        (v["code"].as_u64(), v["max_connections"].as_u64()),
        (Some(503), Some(2)),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--max-connections"),
        "{v}"
    );
    let mut rest = [0u8; 16];
    assert!(matches!(third.read(&mut rest), Ok(0)), "then closed");
    // HTTPS shares the bound: its device gets the 503 over TLS, and the probe says so.
    let https = format!("https://localhost:{}", serve.https.expect("https").port());
    let out = bin()
        .args(["probe", &https, "--ca", pki.ca.to_str().expect("utf-8")])
        .args(["--product-key", "pkf", "--device-key", "m1", "-m", "temp=1"])
        .args(["-f", "json", "--timeout", "5"])
        .env("ENOS_DEVICE_SECRET", "Fleet-Device-Canary-1")
        .output()
        .expect("runs");
    let v = json_of(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert!(v.to_string().contains("503"), "{v:#}");
    let events = serve.events();
    let refused: Vec<&str> = events
        .lines()
        .filter(|l| l.contains(r#""event":"connection_refused""#))
        .collect();
    assert_eq!(refused.len(), 2, "one event per refused connection: {events}");
    assert!(
        refused[0].contains(r#""protocol":"http""#) && refused[0].contains("\"code\":503"),
        "{events}"
    );
    assert!(refused[1].contains(r#""protocol":"https""#), "{events}");
    assert!(refused[0].contains("--max-connections"), "{events}");
    // The open connections keep working, and a slot comes back once one closes.
    let r = http_get(&mut open[0], "/twin/devices/pkf/m1");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(serve.http).expect("connects");
        let r = http_get(&mut s, "/twin/devices");
        if r.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back: {r}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
