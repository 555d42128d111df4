//! `plan` for every outcome (each protocol, a combination, message integration, edge gateway,
//! none) in every format, with the keys filled in and left as placeholders.

use crate::common::{OkStdout, bin, json_of, strings};
use predicates::prelude::*;

const MQTT: &[&str] = &[
    "-a",
    "network=tcp",
    "-a",
    "enos_format=yes",
    "-a",
    "enos_version=2",
    "-n",
    "ota",
];
const HTTP: &[&str] = &[
    "-a",
    "network=tcp",
    "-a",
    "enos_format=yes",
    "-a",
    "enos_version=3",
    "-a",
    "long_connection=no",
    "-n",
    "file_upload",
];
const COAP: &[&str] = &[
    "-a",
    "network=udp",
    "-a",
    "enos_format=yes",
    "-a",
    "enos_version=2",
    "-a",
    "constrained=yes",
    "-n",
    "report_data",
];
const BOTH: &[&str] = &[
    "-a",
    "network=tcp",
    "-a",
    "enos_format=yes",
    "-a",
    "enos_version=2",
    "-n",
    "ota,file_upload",
];
const INTEGRATION: &[&str] = &[
    "-a",
    "network=tcp",
    "-a",
    "enos_format=no",
    "-a",
    "third_party_cloud=yes",
];
const GATEWAY: &[&str] = &["-a", "network=none"];
const NONE: &[&str] = &[
    "-a",
    "network=udp",
    "-a",
    "enos_format=yes",
    "-a",
    "enos_version=3",
];
const KEYS: &[&str] = &["--env", "eu2", "--product-key", "PK9", "--device-key", "DK9"];

fn plan_json(args: &[&str], extra: &[&str]) -> serde_json::Value {
    let out = bin()
        .arg("plan")
        .args(args)
        .args(extra)
        .args(["-f", "json"])
        .ok_stdout();
    json_of(&out)
}

fn plan_text(args: &[&str], extra: &[&str], format: &str) -> String {
    let out = bin()
        .arg("plan")
        .args(args)
        .args(extra)
        .args(["-f", format])
        .ok_stdout();
    String::from_utf8_lossy(&out).into_owned()
}

fn protocol<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["protocols"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["protocol"] == id))
        .unwrap_or_else(|| panic!("no {id} in {v}"))
}

fn ports(p: &serde_json::Value) -> Vec<u64> {
    p["ports"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["port"].as_u64()).collect())
        .unwrap_or_default()
}

#[test]
fn mqtt_plan_with_keys_filled_in() {
    let v = plan_json(MQTT, KEYS);
    assert_eq!(v["recommendation"], "mqtt");
    let p = protocol(&v, "mqtt");
    assert_eq!(p["host"], "mqtt-eu2.envisioniot.com");
    assert_eq!(ports(p), [11883, 18883]);
    let topics = strings(&p["topics"][0]["topics"]);
    assert!(
        topics.contains(&"/sys/PK9/DK9/ota/device/upgrade".to_string()),
        "{topics:?}"
    );
    let login: Vec<String> = p["login"]
        .as_array()
        .expect("login")
        .iter()
        .map(|f| f["value"].to_string())
        .collect();
    assert!(login.iter().any(|l| l.contains("DK9&PK9")), "{login:?}");
    assert_eq!(
        p["probe"],
        "enos-connect probe mqtts://mqtt-eu2.envisioniot.com:18883 --product-key PK9 --device-key DK9 --measurepoint {pointId}={value} --need ota",
        "the smoke test goes up to EnOS: a measure point and its reply code, and the needs MQTT carries"
    );
    let modes: Vec<&str> = p["auth"]
        .as_array()
        .expect("auth")
        .iter()
        .filter_map(|a| a["mode"].as_str())
        .collect();
    assert_eq!(modes, ["static", "dynamic", "certificate"]);
    assert_eq!(p["auth"][0]["recommended"], true);
}

#[test]
fn placeholders_stay_when_keys_and_env_are_not_given() {
    let v = plan_json(MQTT, &[]);
    let p = protocol(&v, "mqtt");
    assert_eq!(p["host"], "mqtt-{env}.envisioniot.com");
    let topics = strings(&p["topics"][0]["topics"]);
    assert!(
        topics.contains(&"/sys/{pk}/{dk}/ota/device/inform".to_string()),
        "{topics:?}"
    );
    assert!(
        p["probe"]
            .as_str()
            .is_some_and(|s| s.contains("--product-key {pk} --device-key {dk}"))
    );
}

#[test]
fn domain_and_host_override_the_endpoint() {
    let v = plan_json(MQTT, &["--env", "cn5", "--domain", "enos-iot.com"]);
    assert_eq!(protocol(&v, "mqtt")["host"], "mqtt-cn5.enos-iot.com");
    let v = plan_json(BOTH, &["--host", "iot.example.internal"]);
    assert_eq!(protocol(&v, "mqtt")["host"], "iot.example.internal");
    assert_eq!(protocol(&v, "http")["host"], "iot.example.internal");
    bin()
        .args(["plan", "--host", "h", "--env", "eu2"])
        .args(MQTT)
        .assert()
        .code(2);
}

#[test]
fn http_plan_has_its_ports_auth_and_file_upload_path() {
    let v = plan_json(HTTP, KEYS);
    assert_eq!(v["recommendation"], "http");
    let p = protocol(&v, "http");
    assert_eq!(p["host"], "iot-http-eu2.envisioniot.com");
    assert_eq!(ports(p), [443, 8080]);
    let modes: Vec<&str> = p["auth"]
        .as_array()
        .expect("auth")
        .iter()
        .filter_map(|a| a["mode"].as_str())
        .collect();
    assert!(
        !modes.contains(&"dynamic"),
        "HTTP has no dynamic activation: {modes:?}"
    );
    assert!(
        p["topics"][0]["topics"][0]
            .as_str()
            .is_some_and(|t| t.contains("/multipart/sys/PK9/DK9/"))
    );
    assert!(
        p["probe"]
            .as_str()
            .is_some_and(|s| s.starts_with("enos-connect probe https://iot-http-eu2.envisioniot.com:443"))
    );
}

#[test]
fn coap_plan_uses_dtls_and_the_psk_identity() {
    let v = plan_json(COAP, KEYS);
    let p = protocol(&v, "coap");
    assert_eq!(ports(p), [5683, 5684]);
    assert!(
        p["host_note"]
            .as_str()
            .is_some_and(|n| n.contains("Environment Information"))
    );
    let login = p["login"].to_string();
    assert!(login.contains("PK9,DK9,{2|3},{lifetime}"), "{login}");
    assert!(
        p["probe"]
            .as_str()
            .is_some_and(|s| s.contains("coaps://coap-eu2.envisioniot.com:5684"))
    );
}

#[test]
fn combination_plan_lists_both_protocols_and_what_each_carries() {
    let v = plan_json(BOTH, KEYS);
    let ids: Vec<&str> = v["protocols"]
        .as_array()
        .expect("protocols")
        .iter()
        .filter_map(|p| p["protocol"].as_str())
        .collect();
    assert_eq!(ids, ["mqtt", "http"]);
    assert_eq!(strings(&protocol(&v, "mqtt")["carries"]), ["ota"]);
    assert_eq!(strings(&protocol(&v, "http")["carries"]), ["file_upload"]);
}

#[test]
fn dynamic_auth_need_recommends_dynamic_activation_with_its_steps() {
    let v = plan_json(
        &[
            "-a",
            "network=tcp",
            "-a",
            "enos_format=yes",
            "-a",
            "enos_version=3",
            "-n",
            "dynamic_auth",
        ],
        KEYS,
    );
    let auth = &protocol(&v, "mqtt")["auth"];
    let dynamic = auth
        .as_array()
        .and_then(|a| a.iter().find(|m| m["mode"] == "dynamic"))
        .expect("dynamic");
    assert_eq!(dynamic["recommended"], true);
    assert_eq!(dynamic["secret_env"], "ENOS_PRODUCT_SECRET");
    assert!(
        dynamic["steps"]
            .to_string()
            .contains("/ext/session/PK9/DK9/thing/activate/info")
    );
}

#[test]
fn integration_gateway_and_none_plans_give_platform_steps() {
    for (args, rec, needle) in [
        (
            INTEGRATION,
            "message_integration",
            "iot-http-integration-eu2.envisioniot.com",
        ),
        (GATEWAY, "edge_gateway", "mqtt-eu2.envisioniot.com"),
        (NONE, "none", "EnOS Edge gateway"),
    ] {
        let v = plan_json(args, KEYS);
        assert_eq!(v["recommendation"], rec);
        assert!(v["protocols"].as_array().is_some_and(Vec::is_empty));
        let steps = strings(&v["steps"]).join("\n");
        assert!(steps.contains(needle), "{rec}: {steps}");
    }
}

#[test]
fn every_outcome_renders_in_every_format() {
    for args in [MQTT, HTTP, COAP, BOTH, INTEGRATION, GATEWAY, NONE] {
        for extra in [KEYS, &[][..]] {
            let table = plan_text(args, extra, "table");
            assert!(table.starts_with("Plan: "), "{table}");
            let md = plan_text(args, extra, "markdown");
            assert!(md.starts_with("## Connection plan: "), "{md}");
            let v = plan_json(args, extra);
            assert!(v["recommendation"].is_string());
            for p in v["protocols"].as_array().into_iter().flatten() {
                let id = p["protocol"].as_str().unwrap_or_default();
                let title = p["title"].as_str().unwrap_or_default();
                assert!(
                    table.contains(title) && md.contains(&format!("### {title}")),
                    "{id}"
                );
                assert!(
                    table.contains("Smoke test") && md.contains("enos-connect probe"),
                    "{id}"
                );
            }
            if !v["steps"].as_array().is_some_and(Vec::is_empty) {
                assert!(table.contains("Steps on the platform") && md.contains("### Steps on the platform"));
            }
        }
    }
}

#[test]
fn plan_without_answers_fails_fast_off_a_terminal() {
    bin()
        .args(["plan", "--env", "eu2"])
        .write_stdin("")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "missing answers for: network, enos_format, enos_version",
        ));
}

/// Issue 32 item 17: the plan titled by all its protocols; the smoke test on lines of its own
/// (copyable: joined, it is the command of the JSON plan); every line within 100 columns when
/// piped; numbered steps indented under their text when they wrap.
#[test]
fn the_plan_reads_at_the_width_and_its_commands_can_be_copied() {
    let args = [
        "-a",
        "network=tcp",
        "-a",
        "enos_format=yes",
        "-a",
        "enos_version=2",
        "-n",
        "ota,file_upload",
    ];
    let text = plan_text(&args, &["--env", "eu2"], "table");
    assert!(text.starts_with("Plan: MQTT + HTTP (mqtt, http)\n"), "{text}");
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "over 100 columns: `{line}`");
        assert!(
            !(line.starts_with('│') && line.contains("enos-connect probe")),
            "the smoke test is outside the table: `{line}`"
        );
    }
    let json = plan_json(&args, &["--env", "eu2"]);
    let mut probes = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == "Smoke test:" {
            let mut command = String::new();
            for l in lines.by_ref() {
                let (part, more) = match l.strip_suffix(" \\") {
                    Some(p) => (p, true),
                    None => (l, false),
                };
                if !command.is_empty() {
                    command.push(' ');
                }
                command.push_str(part.trim());
                if !more {
                    break;
                }
            }
            probes.push(command);
        }
    }
    let expected: Vec<&str> = json["protocols"]
        .as_array()
        .expect("protocols")
        .iter()
        .filter_map(|p| p["probe"].as_str())
        .collect();
    assert_eq!(probes, expected, "{text}");
    assert!(
        text.contains(" \\\n    --"),
        "a long command is broken between arguments: {text}"
    );
    // The dynamic activation steps: numbered, and a wrapped step indented under its text.
    let steps: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.ends_with("step by step:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(steps.first().is_some_and(|l| l.starts_with("  1. ")), "{text}");
    assert!(
        steps
            .iter()
            .any(|l| l.starts_with("     ") && !l.trim_start().starts_with(char::is_numeric)),
        "{steps:?}"
    );
    // Markdown is titled the same way.
    let md = plan_text(&args, &[], "markdown");
    assert!(
        md.starts_with("## Connection plan: MQTT + HTTP (`mqtt`, `http`)\n"),
        "{md}"
    );
}
