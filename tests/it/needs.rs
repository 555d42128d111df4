//! `probe --need` and `probe --matrix` against `serve` in process: every need over every
//! protocol follows the comparison table, the matrix reproduces the shipped table, and each
//! need's failure paths (a refusal code, a silent endpoint, a reply to another id).

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{bin, caps, json_of, no_secret_in};
use crate::peers::{REGISTRY, SECRETS, enos, enos_script};
use crate::serve::{http_get, http_post};

const DEVICE: [&str; 4] = ["--product-key", "pk1", "--device-key", "dk1"];

/// `probe URL --need NEED ARGS -f json` as dk1: the exit code, the report, and the output
/// checked for the canary secrets.
fn need(url: &str, need: &str, args: &[&str]) -> (i32, Value) {
    let out = bin()
        .arg("probe")
        .arg(url)
        .args(DEVICE)
        .args(["--need", need, "-f", "json"])
        .args(if args.contains(&"--timeout") {
            &[][..]
        } else {
            &["--timeout", "5"][..]
        })
        .args(args)
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .output()
        .expect("runs");
    no_secret_in(&out, &SECRETS, need);
    let code = out.status.code().unwrap_or(-1);
    let v = if out.stdout.starts_with(b"{") {
        json_of(&out.stdout)
    } else {
        json!({"stderr": String::from_utf8_lossy(&out.stderr)})
    };
    (code, v)
}

/// The values a need's check is given in these tests (the registry's model: temp, on, label).
fn values(feature: &str) -> Vec<&'static str> {
    match feature {
        "report_data" => vec!["-m", "temp=21.5", "--event", "alarm", "--attribute", "color=red"],
        "batch_offline_points" => vec!["-m", "temp=21.5"],
        "file_upload" => vec!["--file-point", "label"],
        "passthrough_up" => vec!["--raw", "0a0b0c"],
        _ => vec![],
    }
}

#[test]
fn every_need_over_every_protocol_is_accepted_iff_the_table_offers_it() {
    let e = enos(REGISTRY);
    let caps = caps();
    let urls = [
        ("mqtt", format!("mqtt://{}", e.mqtt)),
        ("http", format!("http://{}", e.http)),
        ("coap", format!("coap://{}", e.coap)),
    ];
    for f in &caps.features {
        for (protocol, url) in &urls {
            let (code, v) = need(url, &f.id, &values(&f.id));
            let support = f.support_for(protocol);
            if matches!(f.id.as_str(), "dynamic_auth" | "mutual_tls") {
                // A static login cannot prove another login kind: said before any traffic.
                assert_eq!(code, 2, "{} over {protocol}: {v}", f.id);
                continue;
            }
            let n = &v["needs"][0];
            if support.offered() {
                assert_eq!(code, 0, "{} over {protocol}: {v:#}", f.id);
                assert_eq!(n["measured"], "supported", "{v:#}");
                assert_eq!(n["ok"], true);
                assert!(n["stages"].as_array().is_some_and(|s| !s.is_empty()), "{v:#}");
            } else {
                assert_eq!(code, 1, "{} over {protocol}: {v:#}", f.id);
                assert_eq!(n["measured"], "not_offered", "{v:#}");
                let message = n["message"].as_str().unwrap_or_default();
                assert!(
                    message.starts_with("not offered over ")
                        && message.contains(&format!("(comparison table: `{}`)", f.id)),
                    "{message}"
                );
                assert!(
                    message.ends_with("carries it") || message.ends_with("carry it"),
                    "{message}"
                );
                assert!(
                    n["stages"].as_array().is_some_and(|s| s.is_empty()),
                    "sent anyway: {v:#}"
                );
            }
            assert_eq!(n["need"], f.id.as_str());
            assert_eq!(n["protocol"], *protocol);
            assert_eq!(n["table"], support.as_str());
        }
    }
    // What was sent reached the twin: the measure point, the event, the attribute, the file.
    let (_, twin) = http_get(e.http, "/twin/devices/pk1/dk1");
    assert_eq!(twin["measurepoints"]["temp"]["value"], 21.5, "{twin:#}");
    assert_eq!(twin["attributes"]["color"], "red", "{twin:#}");
    assert!(
        twin["events"]
            .as_array()
            .is_some_and(|ev| ev.iter().any(|x| x["event"] == "alarm")),
        "{twin:#}"
    );
    assert_eq!(
        twin["measurepoints"]["label"]["value"], "local://enos-connect-probe.txt",
        "{twin:#}"
    );
}

#[test]
fn the_matrix_over_mqtt_http_and_coap_reproduces_the_shipped_table() {
    let e = enos(REGISTRY);
    let out = bin()
        .arg("probe")
        .arg("--matrix")
        .arg(format!("mqtt://{}", e.mqtt))
        .arg(format!("http://{}", e.http))
        .arg(format!("coap://{}", e.coap))
        .args(DEVICE)
        .args(["-m", "temp=21.5", "--file-point", "label", "-f", "json"])
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .output()
        .expect("runs");
    no_secret_in(&out, &SECRETS, "matrix");
    let v = json_of(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["mismatches"], 0, "{v:#}");
    let caps = caps();
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), caps.features.len());
    for (row, f) in rows.iter().zip(&caps.features) {
        assert_eq!(row["feature"], f.id.as_str());
        for (cell, protocol) in row["cells"]
            .as_array()
            .expect("cells")
            .iter()
            .zip(["mqtt", "http", "coap"])
        {
            let table = f.support_for(protocol);
            assert_eq!(cell["table"], table.as_str(), "{cell}");
            if cell["verdict"] == "untested" {
                // Only the login kinds this static login is not: dynamic and mutual TLS.
                assert!(matches!(f.id.as_str(), "dynamic_auth" | "mutual_tls"), "{cell}");
                continue;
            }
            let want = if table.offered() { "supported" } else { "refused" };
            assert_eq!(cell["measured"], want, "{} over {protocol}: {cell}", f.id);
            assert_eq!(cell["verdict"], "match");
        }
    }
    // The table output says the same, cell for cell, and names a mismatch when there is one.
    let out = bin()
        .arg("probe")
        .arg("--matrix")
        .arg(format!("http://{}", e.http))
        .args(DEVICE)
        .args(["-m", "temp=21.5", "--file-point", "label"])
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("not_supported: refused") && text.contains("every measured cell matches"),
        "{text}"
    );
}

#[test]
fn a_need_refused_by_a_code_fails_with_the_code() {
    let e = enos(REGISTRY);
    let (code, v) = need(
        &format!("mqtt://{}", e.mqtt),
        "report_data",
        &["-m", "humidity=40"],
    );
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["error"]["kind"], "enos", "{v:#}");
    assert_eq!(v["needs"][0]["code"], 1204, "{v:#}");
    assert_eq!(v["needs"][0]["measured"], "failed", "{v:#}");
    // Over HTTP the table's refusal (403 with an EnOS body) reads as code 1009 in a matrix.
    let (code, v) = need(&format!("http://{}", e.http), "ota", &["--matrix"]);
    assert_eq!(code, 0, "{v:#}");
    let ota = v["rows"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["feature"] == "ota"))
        .expect("ota row");
    assert_eq!(ota["cells"][0]["code"], 1009, "{ota}");
    assert_eq!(ota["cells"][0]["measured"], "refused", "{ota}");
}

#[test]
fn a_silent_endpoint_times_out_inside_the_deadline() {
    // Logs in, acknowledges everything, answers nothing.
    let addr = enos_script(|_| None);
    let start = Instant::now();
    let (code, v) = need(
        &format!("mqtt://{addr}"),
        "ota,subdevice_management",
        &["--timeout", "1"],
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(code, 3, "{v:#}");
    assert_eq!(v["error"]["kind"], "timeout", "{v:#}");
    assert_eq!(v["error"]["stage"], "query", "{v:#}");
    // The connection's state is unknown after a timeout: the next need is not run on it.
    let next = v["needs"][1]["message"].as_str().unwrap_or_default();
    assert!(next.starts_with("not run: need `ota` failed"), "{v:#}");
}

#[test]
fn a_reply_to_another_id_is_not_taken_for_the_need() {
    let addr = enos_script(|_| Some(br#"{"id":"someone-else","code":200,"data":[],"message":""}"#.to_vec()));
    let (code, v) = need(
        &format!("mqtt://{addr}"),
        "subdevice_management",
        &["--timeout", "1"],
    );
    assert_eq!(code, 3, "{v:#}");
    assert!(v["needs"][0]["code"].is_null(), "{v:#}");
}

/// `probe URL --need downlink_commands --await-command 8 -f json` for pk1/dk1, running.
fn await_command(url: &str) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("enos-connect"))
        .arg("probe")
        .arg(url)
        .args(DEVICE)
        .args([
            "--need",
            "downlink_commands",
            "--await-command",
            "8",
            "-f",
            "json",
        ])
        .env_clear()
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns")
}

/// The names of a need's stages, in order.
fn stage_names(need: &Value) -> Vec<&str> {
    need["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect()
}

#[test]
fn downlink_waits_for_a_command_from_serve_and_answers_it_200() {
    let e = enos(REGISTRY);
    let child = await_command(&format!("mqtt://{}", e.mqtt));
    let until = Instant::now() + Duration::from_secs(8);
    let mut answer = (0, Value::Null);
    while Instant::now() < until {
        // The subscriptions are made once the device is online; a command before them is lost.
        std::thread::sleep(Duration::from_millis(200));
        answer = http_post(
            e.http,
            "/twin/commands/pk1/dk1?timeout=3",
            br#"{"method":"thing.service.measurepoint.set","params":{"temp":30}}"#,
        );
        if answer.0 == 200 {
            break;
        }
    }
    let out = child.wait_with_output().expect("ends");
    no_secret_in(&out, &SECRETS, "await-command");
    let v = json_of(&out.stdout);
    assert_eq!(answer.0, 200, "{:?} / {v:#}", answer.1);
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["needs"][0]["measured"], "supported", "{v:#}");
    assert_eq!(stage_names(&v["needs"][0]), ["subscribe", "command"]);
}

#[test]
fn over_coap_a_command_announced_in_option_2100_is_fetched_and_answered_200() {
    for scheme in ["coaps", "coap"] {
        let e = enos(REGISTRY);
        let addr = if scheme == "coaps" { e.coaps } else { e.coap };
        let child = await_command(&format!("{scheme}://{addr}"));
        // Once the device has logged in, a command waits for its next request.
        let login = format!(r#""event":"login","protocol":"{scheme}""#);
        let until = Instant::now() + Duration::from_secs(8);
        while !e.events().contains(&login) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let answer = http_post(
            e.http,
            "/twin/commands/pk1/dk1?timeout=5",
            br#"{"method":"thing.service.measurepoint.set","params":{"temp":30}}"#,
        );
        let out = child.wait_with_output().expect("ends");
        no_secret_in(&out, &SECRETS, "await-command over CoAP");
        let v = json_of(&out.stdout);
        assert_eq!(answer.0, 200, "{scheme}: {:?} / {v:#}", answer.1);
        assert_eq!(
            answer.1["code"], 200,
            "{scheme}: the device's reply: {:?}",
            answer.1
        );
        assert_eq!(out.status.code(), Some(0), "{scheme}: {v:#}");
        assert_eq!(v["needs"][0]["measured"], "supported", "{v:#}");
        assert_eq!(stage_names(&v["needs"][0]), ["subscribe", "command"], "{scheme}");
        let events = e.events();
        assert!(
            events.contains(r#""topic":"/sys/pk1/dk1/thing/service/measurepoint/set","method":"thing.service.measurepoint.set","message":"announced in CoAP option 2100""#),
            "{scheme}: {events}"
        );
    }
    // HTTP has no downlink at all: a usage error, before any traffic.
    bin()
        .args([
            "probe",
            "http://127.0.0.1:1",
            "--product-key",
            "pk1",
            "--device-key",
            "dk1",
        ])
        .args(["--need", "downlink_commands", "--await-command", "1"])
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "--await-command waits for a command over MQTT or CoAP",
        ));
}

#[test]
fn needs_are_checked_before_any_traffic() {
    // No login, an unknown feature, a write without its value: usage errors, exit 2.
    for (args, words) in [
        (vec!["mqtt://127.0.0.1:1", "--need", "ota"], "EnOS login"),
        (
            vec![
                "mqtt://127.0.0.1:1",
                "--need",
                "otaa",
                "--product-key",
                "pk1",
                "--device-key",
                "dk1",
            ],
            "not a feature",
        ),
        (
            vec![
                "mqtt://127.0.0.1:1",
                "--need",
                "batch_offline_points",
                "--product-key",
                "pk1",
                "--device-key",
                "dk1",
            ],
            "--measurepoint",
        ),
        (
            vec![
                "mqtt://127.0.0.1:1",
                "--need",
                "file_upload",
                "--product-key",
                "pk1",
                "--device-key",
                "dk1",
            ],
            "--file-point",
        ),
        (
            vec![
                "mqtt://127.0.0.1:1",
                "--need",
                "ota",
                "--await-command",
                "0",
                "--product-key",
                "pk1",
                "--device-key",
                "dk1",
            ],
            "0.1",
        ),
        (
            vec![
                "http://127.0.0.1:1",
                "--need",
                "downlink_commands",
                "--await-command",
                "1",
                "--product-key",
                "pk1",
                "--device-key",
                "dk1",
            ],
            "over MQTT or CoAP",
        ),
    ] {
        let out = bin()
            .arg("probe")
            .args(&args)
            .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: `{words}` not in {err}");
    }
}

#[test]
fn a_load_probe_counts_each_need() {
    let e = enos(REGISTRY);
    let out = bin()
        .arg("probe")
        .arg(format!("mqtt://{}", e.mqtt))
        .args(DEVICE)
        .args(["--need", "ota,subdevice_management", "--count", "6", "-f", "json"])
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .output()
        .expect("runs");
    no_secret_in(&out, &SECRETS, "load");
    let v = json_of(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["needs"]["ota"], json!({"succeeded": 6, "failed": 0}), "{v:#}");
    assert_eq!(v["needs"]["subdevice_management"]["succeeded"], 6, "{v:#}");
}

#[test]
fn plan_prints_a_probe_per_protocol_that_proves_the_needs_it_carries() {
    let out = bin()
        .args([
            "plan",
            "-a",
            "network=tcp,enos_format=yes,enos_version=3",
            "--need",
            "ota,file_upload",
            "-f",
            "json",
        ])
        .args([
            "--host",
            "127.0.0.1",
            "--product-key",
            "pk1",
            "--device-key",
            "dk1",
            "-m",
            "temp=1",
        ])
        .output()
        .expect("runs");
    let v = json_of(&out.stdout);
    let protocols = v["protocols"].as_array().cloned().unwrap_or_default();
    assert!(protocols.len() >= 2, "{v:#}");
    for p in &protocols {
        let probe = p["probe"].as_str().unwrap_or_default();
        let carries: Vec<&str> = p["carries"]
            .as_array()
            .expect("carries")
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        assert!(
            probe.contains(&format!("--need {}", carries.join(","))),
            "{probe}"
        );
        if carries.contains(&"file_upload") {
            assert!(probe.contains("--file-point"), "{probe}");
        }
    }
}

#[test]
fn a_table_cell_the_endpoint_contradicts_is_a_mismatch_and_exit_1() {
    let e = enos(REGISTRY);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("capabilities.toml");
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/capabilities.toml")).expect("reads");
    // This table claims OTA over HTTP; serve (the shipped table) refuses it.
    let claimed = shipped.replace(
        r#"support = { mqtt = "supported", coap = "not_supported", http = "not_supported" }
topics.mqtt = ["/sys/{pk}/{dk}/ota/device/inform""#,
        r#"support = { mqtt = "supported", coap = "not_supported", http = "supported" }
topics.mqtt = ["/sys/{pk}/{dk}/ota/device/inform""#,
    );
    assert_ne!(claimed, shipped, "the ota row moved: update this test");
    std::fs::write(&file, claimed).expect("writes");
    let out = bin()
        .arg("--capabilities")
        .arg(&file)
        .args(["probe", "--matrix"])
        .arg(format!("http://{}", e.http))
        .args(DEVICE)
        .args(["-f", "markdown"])
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("| `ota` | supported: MISMATCH (refused) |"),
        "{text}"
    );
    assert!(text.contains("1 MISMATCH(es)"), "{text}");
}

#[test]
fn every_request_need_fails_on_a_silent_endpoint_and_on_a_reply_to_another_id() {
    let silent = enos_script(|_| None);
    let other = enos_script(|_| Some(br#"{"id":"another","code":200,"data":null,"message":""}"#.to_vec()));
    for (feature, args) in [
        ("report_data", vec!["-m", "temp=1"]),
        ("passthrough_up", vec![]),
        ("batch_offline_points", vec!["-m", "temp=1"]),
        ("subdevice_management", vec![]),
        ("ota", vec![]),
    ] {
        for addr in [silent, other] {
            let mut a = args.clone();
            a.extend(["--timeout", "0.5"]);
            let (code, v) = need(&format!("mqtt://{addr}"), feature, &a);
            let n = &v["needs"][0];
            if feature == "passthrough_up" && addr == other {
                // A raw reply carries no id to match: any reply on up_raw_reply answers it.
                assert_eq!(code, 0, "{v:#}");
                continue;
            }
            assert_eq!(code, 3, "{feature}: {v:#}");
            assert_eq!(n["measured"], "failed", "{feature}: {v:#}");
            assert_eq!(n["error"]["kind"], "timeout", "{feature}: {v:#}");
        }
    }
}

#[test]
fn a_refusal_code_fails_the_need_over_http_and_coap_too() {
    let e = enos(REGISTRY);
    for url in [format!("http://{}", e.http), format!("coap://{}", e.coap)] {
        let (code, v) = need(&url, "report_data", &["-m", "humidity=40"]);
        assert_eq!(code, 1, "{v:#}");
        assert_eq!(v["needs"][0]["code"], 1204, "{v:#}");
        assert_eq!(v["error"]["kind"], "enos", "{v:#}");
    }
}

#[test]
fn await_command_without_a_command_times_out_at_its_stage() {
    let e = enos(REGISTRY);
    let start = Instant::now();
    let (code, v) = need(
        &format!("mqtt://{}", e.mqtt),
        "downlink_commands",
        &["--await-command", "0.5", "--timeout", "5"],
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(code, 3, "{v:#}");
    let n = &v["needs"][0];
    assert_eq!(n["error"]["stage"], "command", "{v:#}");
    assert_eq!(n["error"]["kind"], "timeout", "{v:#}");
}

/// What the official Python SDK's request classes send: one JSON line per class, the topic
/// (its format filled for pk1/dk1), the method and the params.
const SDK_REQUESTS: &str = r#"
import json
from enos.message.upstream.tsl.MeasurepointPostRequest import MeasurepointPostRequest as MP
from enos.message.upstream.tsl.EventPostRequest import EventPostRequest as EV
from enos.message.upstream.tsl.AttributeUpdateRequest import AttributeUpdateRequest as AU
from enos.message.upstream.tsl.AttributeQueryRequest import AttributeQueryRequest as AQ
from enos.message.upstream.tsl.MeasurepointPostBatchRequest import MeasurepointPostBatchRequest as MB
from enos.message.upstream.resume.MeasurepointResumeRequest import MeasurepointResumeRequest as MR
from enos.message.upstream.topo.TopoGetRequest import TopoGetRequest as TG
from enos.message.upstream.register.DeviceRegisterRequest import DeviceRegisterRequest as DR
from enos.message.upstream.ota.OtaGetVersionRequest import OtaGetVersionRequest as GV
from enos.message.upstream.ota.OtaVersionReportRequest import OtaVersionReportRequest as VR
batch = MB.builder()
batch.add_request(MP.builder().set_product_key("pk1").set_device_key("dk1").add_measurepoint("temp", 1).build())
for r in [
    MP.builder().add_measurepoint("temp", 1).build(),
    EV.builder().set_event_identifier("alarm").add_value("level", 1).build(),
    AU.builder().add_attribute("color", "red").build(),
    AQ.builder().add_attribute("color").build(),
    batch.build(),
    MR.builder().add_measure_point("temp", 1).build(),
    TG.builder().build(),
    DR.builder().add_register_information("pk1", "new1", None, None, None).build(),
    GV.builder().build(),
    VR.builder().set_version("2.0").build(),
]:
    fmt = r.get_format_topic()
    print(json.dumps({"topic": fmt.format(*["pk1", "dk1", "alarm"][: fmt.count("{}")]), "method": r.get_method(), "params": r.get_params()}, default=str))
"#;

#[test]
fn each_request_a_need_sends_has_the_topic_method_and_params_of_the_official_sdk() {
    use enos_connect::probe::needs::{LoginKind, NeedOptions, Step, steps};
    let Some(python) = crate::common::outside_peer(
        "ENOS_CONNECT_SDK_PYTHON",
        ".ci/run installs the official EnOS Python SDK",
    ) else {
        return;
    };
    let out = std::process::Command::new(python)
        .args(["-c", SDK_REQUESTS])
        .output()
        .expect("runs python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sdk: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let keys = |v: &Value| -> Vec<String> {
        let obj = match v {
            Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        let mut k: Vec<String> = obj
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k.insert(
            0,
            if v.is_array() {
                "list".into()
            } else {
                "object".into()
            },
        );
        k
    };
    let caps = caps();
    let opts = enos_connect::probe::ProbeOptions {
        measurepoints: Some(serde_json::from_value(json!({"temp": 1})).expect("map")),
        needs: NeedOptions {
            events: vec![("alarm".into(), json!({"level": 1}))],
            attributes: serde_json::from_value(json!({"color": "red"})).expect("map"),
            register: Some(("pk1".into(), "new1".into())),
            firmware_version: Some("2.0".into()),
            ..NeedOptions::default()
        },
        ..Default::default()
    };
    let login = LoginKind {
        mode: Some("static"),
        client_cert: false,
        secure: false,
        cert_requested: None,
    };
    let mut compared = 0;
    for (o, f) in [opts, enos_connect::probe::ProbeOptions::default()]
        .iter()
        .flat_map(|o| caps.features.iter().map(move |f| (o, f)))
    {
        for step in steps(&caps, &f.id, o, login, ("pk1", "dk1")).unwrap_or_default() {
            let Step::Request { topic, request, .. } = step else {
                continue;
            };
            let s = sdk
                .iter()
                .find(|s| s["topic"] == topic.as_str())
                .unwrap_or_else(|| panic!("no SDK request class sends on {topic}"));
            let sdk_method = s["method"].as_str().unwrap_or_default();
            // Python SDK 0.1.1 sends `thing.event.%s.post{id}` for events; EnOS documents
            // `thing.event.{id}.post`, which the probe sends; serve accepts both.
            if sdk_method.starts_with("thing.event.%s.post") {
                assert_eq!(request.method, "thing.event.alarm.post");
            } else {
                assert_eq!(request.method, sdk_method, "{topic}");
            }
            assert_eq!(
                keys(&request.params),
                keys(&s["params"]),
                "{topic}: {} vs {}",
                request.params,
                s["params"]
            );
            compared += 1;
        }
    }
    assert!(
        compared >= sdk.len(),
        "compared {compared} requests with {} SDK classes",
        sdk.len()
    );
}

#[test]
fn needs_run_over_dtls_as_over_plain_coap() {
    let e = enos(REGISTRY);
    let (code, v) = need(
        &format!("coaps://{}", e.coaps),
        "report_data,passthrough_up,ota",
        &["-m", "temp=3"],
    );
    assert_eq!(code, 1, "{v:#}");
    let measured: Vec<&str> = v["needs"]
        .as_array()
        .expect("needs")
        .iter()
        .filter_map(|n| n["measured"].as_str())
        .collect();
    assert_eq!(measured, ["supported", "supported", "not_offered"], "{v:#}");
}
