//! The official EnOS Python device SDK (enos-mqtt-sdk-python 0.1.1, paho-mqtt 1.6.1) against
//! `enos-connect serve`: every request class and command class the SDK has (posts, batches,
//! resumes, events, attributes, tags, topology, registration, the thing model, raw data, OTA,
//! sub-device logins, message integration, dynamic activation; measure point set and get,
//! service invocation, down_raw, OTA upgrade, sub-device enable, disable and delete), each
//! checked by what the SDK gets back and by reading serve's twin over HTTP. `.ci/run` installs the SDK in a virtual environment and sets
//! ENOS_CONNECT_SDK_PYTHON to its python; without it the test fails, unless
//! ENOS_CONNECT_ALLOW_SKIP=1 asks to skip it.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::peers::{REGISTRY, SECRETS};

/// Two firmware versions of pk1, for getversion and the upgrade command.
const FIRMWARES: &str = r#"
[[firmwares]]
product = "pk1"
version = "1.0"
url = "https://firmware.example/pk1/1.0.bin"
md5 = "0123456789abcdef0123456789abcdef"
size = 1024

[[firmwares]]
product = "pk1"
version = "2.0"
url = "https://firmware.example/pk1/2.0.bin"
md5 = "fedcba9876543210fedcba9876543210"
size = 2048
"#;

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
    std::fs::write(&reg, format!("{REGISTRY}\n{FIRMWARES}")).expect("write");
    let record = dir.path().join("record.jsonl");
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_enos-connect"))
        .args(["serve", "--registry"])
        .arg(&reg)
        .args([
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--coap",
            "off",
            "--console",
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
    let port = |what: &str| {
        first[what]
            .as_str()
            .and_then(|a| a.rsplit(':').next())
            .expect("a port")
            .to_string()
    };
    let (port, http_port) = (port("mqtt"), port("http"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sdk_check.py");
    let mut check = std::process::Command::new(python)
        .arg(script)
        .args([
            &port, &http_port, "pk1", "dk1", SECRETS[1], SECRETS[0], "fresh1", "pk1", "sub1", SECRETS[2],
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Ok(Some(s)) = check.try_wait() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = check.kill();
            panic!("the SDK check did not finish in 120 s");
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
        "ok: twin: measure point value and time read back",
        "ok: point outside the model code 1204",
        "ok: attribute query reads back",
        "ok: tag query after delete",
        "ok: event post code 200",
        "ok: twin: the resumed point keeps its time",
        "ok: topo get lists the registry's sub-device",
        "ok: sub-device login code 200",
        "ok: twin: the batch reached the sub-device",
        "ok: measure point resume batch code 200",
        "ok: sub-device login batch code 200",
        "ok: twin: the sub-device is offline after logout",
        "ok: device register returns productKey, deviceKey, deviceSecret, assetId",
        "ok: the registered device logs in as a sub-device",
        "ok: after topo delete the login gets 740",
        "ok: tsl template get lists the model's points",
        "ok: model up_raw gets a reply on up_raw_reply",
        "ok: ota inform (ota.inform) stored",
        "ok: ota progress (ota.progress) stored",
        "ok: ota getversion (Ota.device.getversion) lists the registry's firmwares",
        "ok: command measurepoint set answered",
        "ok: command measurepoint get answered with the values",
        "ok: command service invocation answered",
        "ok: command down_raw: the raw reply matched",
        "ok: command ota.device.upgrade carries the registry's firmware",
        "ok: a method EnOS does not send: 400 with the list",
        "ok: a disabled sub-device's login gets 723",
        "ok: command combine.enable: the sub-device logs in again",
        "ok: command combine.delete: the device is gone (705)",
        "ok: wrong secret refused",
        "ok: message integration login (securemode 4)",
        "ok: integration measure point post stored for the device named",
        "ok: integration event post stored",
        "ok: integration attribute post code 200",
        "ok: integration post for an unknown device refused",
        "ok: integration model up_raw gets a reply",
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
    // Message integration: an event for the device the payload named, not only the channel.
    assert!(
        events.contains(
            r#""event":"request","protocol":"mqtt","product_key":"pk1","device_key":"dk1","topic":"/sys/pk1/integration/measurepoint/post","method":"integration.measurepoint.post","code":200"#
        ),
        "{events}"
    );
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
