//! The official EnOS Python device SDK (enos-mqtt-sdk-python 0.1.1, paho-mqtt 1.6.1) against
//! `enos-connect serve`: a static login, a post (200) and one outside the model (1204), a
//! wrong secret refused, dynamic activation and a login with the pushed secret, and a
//! sub-device through a gateway. `.ci/run` installs the SDK in a virtual environment and sets
//! ENOS_CONNECT_SDK_PYTHON to its python; without it the test prints a loud SKIPPED, and with
//! ENOS_CONNECT_REQUIRE_PEERS=1 it fails instead.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::peers::{REGISTRY, SECRETS};

fn python() -> Option<String> {
    crate::common::outside_peer(
        "ENOS_CONNECT_SDK_PYTHON",
        ".ci/run installs the official EnOS Python SDK",
    )
}

#[test]
fn the_official_python_sdk_logs_in_posts_activates_and_logs_a_sub_device_in() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = dir.path().join("registry.toml");
    std::fs::write(&reg, REGISTRY).expect("write");
    let record = dir.path().join("record.jsonl");
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_enos-connect"))
        .args(["serve", "--registry"])
        .arg(&reg)
        .args([
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "off",
            "--coap",
            "off",
            "--record",
        ])
        .arg(&record)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut lines = BufReader::new(serve.stdout.take().expect("stdout")).lines();
    let first: serde_json::Value =
        serde_json::from_str(&lines.next().and_then(Result::ok).expect("the listening line")).expect("json");
    let port = first["mqtt"]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .expect("a port")
        .to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sdk_check.py");
    let mut check = std::process::Command::new(python)
        .arg(script)
        .args([
            &port, "pk1", "dk1", SECRETS[1], SECRETS[0], "fresh1", "pk1", "sub1", SECRETS[2],
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Ok(Some(s)) = check.try_wait() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = check.kill();
            panic!("the SDK check did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    let _ = check.stdout.take().map(|mut s| s.read_to_string(&mut out));
    let _ = check.stderr.take().map(|mut s| s.read_to_string(&mut err));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
    let events = std::fs::read_to_string(&record).unwrap_or_default();
    assert!(
        status.success() && out.contains("all checks passed"),
        "{out}\n{err}\nserve saw:\n{events}"
    );
    for line in [
        "ok: measure point post code 200",
        "ok: point outside the model code 1204",
        "ok: sub-device login code 200",
        "ok: wrong secret refused",
        "ok: activated",
        "ok: logged in with the pushed secret and posted",
    ] {
        assert!(out.contains(line), "`{line}` in {out}");
    }
    // What serve saw: the SDK's own login (hmacsha256, lower-case hex, a float timestamp).
    assert!(
        events.contains(
            r#""event":"login_refused","protocol":"mqtt","product_key":"pk1","device_key":"dk1","code":4"#
        ),
        "{events}"
    );
    assert!(events.contains(r#""event":"activated""#), "{events}");
    assert!(
        events.contains(
            r#""event":"subdevice_login","protocol":"mqtt","product_key":"pk1","device_key":"sub1""#
        ),
        "{events}"
    );
    for secret in SECRETS {
        assert!(
            !events.contains(secret) && !out.contains(secret),
            "a secret in the output"
        );
    }
}
