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

/// The values a need's check is given in these tests (the registry's model: temp, on, label);
/// a downlink's command is asked of serve's command API where the protocol carries one.
fn values(feature: &str, protocol: &str, api: &str) -> Vec<String> {
    let v: Vec<&str> = match feature {
        "report_data" => vec!["-m", "temp=21.5", "--event", "alarm", "--attribute", "color=red"],
        "batch_offline_points" => vec!["-m", "temp=21.5"],
        "file_upload" => vec!["--file-point", "label"],
        "passthrough_up" => vec!["--raw", "0a0b0c"],
        "downlink_commands" | "passthrough_down" if protocol != "http" => vec!["--command-api", api],
        _ => vec![],
    };
    v.into_iter().map(str::to_string).collect()
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
            let api = format!("http://{}/twin/commands", e.http);
            let values = values(&f.id, protocol, &api);
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            let (code, v) = need(url, &f.id, &values);
            let support = f.support_for(protocol);
            if matches!(f.id.as_str(), "dynamic_auth" | "mutual_tls") && support.offered() {
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
                    message.starts_with(&format!(
                        "comparison table: `{}` is {} over ",
                        f.id,
                        support.as_str()
                    )),
                    "{message}"
                );
                assert_eq!(n["error"]["stage"], "check", "{v:#}");
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

/// `probe --matrix` over serve's plain MQTT, HTTP and CoAP as dk1, with `extra` flags: the
/// exit code and the JSON report.
fn matrix_json(e: &crate::peers::Enos, extra: &[&str]) -> (i32, Value) {
    let out = bin()
        .arg("probe")
        .arg("--matrix")
        .arg(format!("mqtt://{}", e.mqtt))
        .arg(format!("http://{}", e.http))
        .arg(format!("coap://{}", e.coap))
        .args(DEVICE)
        .args(["-m", "temp=21.5", "--file-point", "label", "-f", "json"])
        .args(extra)
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .output()
        .expect("runs");
    no_secret_in(&out, &SECRETS, "matrix");
    (out.status.code().unwrap_or(-1), json_of(&out.stdout))
}

/// Each cell's (feature, protocol, measured, verdict).
fn cells(v: &Value) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for row in v["rows"].as_array().expect("rows") {
        for cell in row["cells"].as_array().expect("cells") {
            out.push((
                row["feature"].as_str().unwrap_or_default().to_string(),
                cell["protocol"].as_str().unwrap_or_default().to_string(),
                cell["measured"].as_str().unwrap_or_default().to_string(),
                cell["verdict"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

#[test]
fn the_matrix_over_mqtt_http_and_coap_reproduces_the_shipped_table() {
    let e = enos(REGISTRY);
    let api = format!("http://{}/twin/commands", e.http);
    let (code, v) = matrix_json(&e, &["--command-api", &api]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["mismatches"], 0, "{v:#}");
    let caps = caps();
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(caps.features.len()));
    // Nothing can carry a file over MQTT or CoAP, or a command over HTTP: no exchange, and not
    // counted as measured.
    let not_carried = [
        ("file_upload", "mqtt"),
        ("file_upload", "coap"),
        ("downlink_commands", "http"),
        ("passthrough_down", "http"),
    ];
    for (feature, protocol, measured, verdict) in cells(&v) {
        let f = caps.feature(&feature).expect("feature");
        let table = f.support_for(&protocol);
        if verdict == "untested" {
            // Only the login kinds this static login is not: dynamic and mutual TLS.
            assert!(
                matches!(feature.as_str(), "dynamic_auth" | "mutual_tls"),
                "{feature}/{protocol}"
            );
            continue;
        }
        if not_carried.contains(&(feature.as_str(), protocol.as_str())) {
            assert_eq!(
                (measured.as_str(), verdict.as_str()),
                ("not_carried", "not_carried"),
                "{feature}/{protocol}"
            );
            continue;
        }
        let want = if table.offered() { "supported" } else { "refused" };
        assert_eq!(measured, want, "{feature} over {protocol}");
        assert_eq!(verdict, "match");
    }
    assert_eq!(v["not_carried"], 4, "{v:#}");
    assert_eq!(v["untested"], 6, "{v:#}");
    assert_eq!(v["measured"], 33 - 4 - 6, "{v:#}");
    // The commands really went out: serve's events show each downlink answered, over MQTT and
    // over CoAP (announced in option 2100).
    let events = e.events();
    for needle in [
        r#""event":"reply","protocol":"mqtt","product_key":"pk1","device_key":"dk1","topic":"/sys/pk1/dk1/thing/service/measurepoint/set_reply""#,
        r#""event":"reply","protocol":"mqtt","product_key":"pk1","device_key":"dk1","topic":"/sys/pk1/dk1/thing/model/down_raw_reply""#,
        r#""topic":"/sys/pk1/dk1/thing/model/down_raw","method":"thing.model.down_raw","message":"announced in CoAP option 2100""#,
    ] {
        assert!(events.contains(needle), "{needle} not in {events}");
    }
    // The table output says the same, cell for cell.
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
        text.contains("not_supported: refused")
            && text.contains("not_supported: no exchange over HTTP")
            && text.contains("every one as capabilities.toml says")
            && text.contains("2 not carried"),
        "{text}"
    );
}

#[test]
fn without_a_command_the_downlink_cells_are_untested_not_supported() {
    // A granted SUBACK (MQTT) or an answered request (CoAP) proves no downlink: only a command
    // that arrives and is answered does. Without --command-api or --await-command none comes.
    let e = enos(REGISTRY);
    let (code, v) = matrix_json(&e, &[]);
    assert_eq!(code, 0, "{v:#}");
    for (feature, protocol, measured, verdict) in cells(&v) {
        if matches!(feature.as_str(), "downlink_commands" | "passthrough_down") && protocol != "http" {
            assert_eq!(
                (measured.as_str(), verdict.as_str()),
                ("untested", "untested"),
                "{feature}/{protocol}"
            );
        }
    }
    assert_eq!(v["untested"], 10, "{v:#}");
    // A command API that refuses (no such path) fails the cell with its answer, at once.
    let (code, v) = matrix_json(&e, &["--command-api", &format!("http://{}/nowhere", e.http)]);
    assert_eq!(code, 1, "{v:#}");
    let row = v["rows"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["feature"] == "downlink_commands"))
        .expect("row");
    let message = row["cells"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the command API at") && message.contains("404"),
        "{row}"
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
        // CoAP has no subscription: the command stage is the whole exchange.
        assert_eq!(stage_names(&v["needs"][0]), ["command"], "{scheme}");
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
            "--await-command is for a command to the device, and HTTP carries no downlink",
        ));
}

/// A CoAP endpoint that announces the command in option 2100 on the answer to the login, and
/// on no later answer, as `serve` does when the command arrives while the login is answered.
/// The number of `_reply` posts it got is counted in `replied`.
fn coap_announcing_on_the_login(
    replied: std::sync::Arc<std::sync::atomic::AtomicU32>,
) -> std::net::SocketAddr {
    use coap_lite::{CoapOption, MessageClass, MessageType, Packet, ResponseType};
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let addr = sock.local_addr().expect("addr");
    let command = "/topic/sys/pk1/dk1/thing/service/measurepoint/set";
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Ok(req) = Packet::from_bytes(&buf[..n]) else {
                continue;
            };
            let path: Vec<String> = req
                .get_option(CoapOption::UriPath)
                .map(|s| {
                    s.iter()
                        .map(|x| String::from_utf8_lossy(x).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let mut reply = Packet::new();
            reply.header.set_version(1);
            reply.header.message_id = req.header.message_id;
            reply.header.set_type(MessageType::Acknowledgement);
            reply.set_token(req.get_token().to_vec());
            let (code, payload) = match path.first().map(String::as_str) {
                Some("auth") => {
                    reply.add_option(CoapOption::Unknown(2100), command.as_bytes().to_vec());
                    (
                        ResponseType::Created,
                        json!({"code": 200, "message": "", "data": {"lifetime": 3600}}),
                    )
                }
                _ if path.last().is_some_and(|l| l == "set") => (
                    ResponseType::Content,
                    json!({"id": "7", "version": "1.0", "method": "thing.service.measurepoint.set", "params": {"temp": 30}}),
                ),
                _ if path.last().is_some_and(|l| l == "set_reply") => {
                    replied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    (ResponseType::Changed, json!({}))
                }
                _ => (
                    ResponseType::Changed,
                    json!({"id": "1", "code": 200, "data": {}, "message": ""}),
                ),
            };
            reply.header.code = MessageClass::Response(code);
            reply.payload = payload.to_string().into_bytes();
            if let Ok(bytes) = reply.to_bytes() {
                let _ = sock.send_to(&bytes, from);
            }
        }
    });
    addr
}

#[test]
fn over_coap_a_command_announced_on_the_logins_answer_is_not_lost() {
    // Issue 32: the probe read option 2100 only on the answers to its own polls, so a command
    // announced on the login's answer (before the probe waits for commands) was never fetched:
    // `over_coap_a_command_announced_in_option_2100_is_fetched_and_answered_200` failed about
    // once in six runs.
    let replied = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let addr = coap_announcing_on_the_login(replied.clone());
    let out = bin()
        .args(["probe", &format!("coap://{addr}")])
        .args(DEVICE)
        .args([
            "--need",
            "downlink_commands",
            "--await-command",
            "3",
            "-f",
            "json",
        ])
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .output()
        .expect("runs");
    let v = json_of(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["needs"][0]["measured"], "supported", "{v:#}");
    assert_eq!(
        replied.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the command was answered"
    );
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
                "http://127.0.0.1:1",
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
            "HTTP carries no downlink",
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
fn the_plans_smoke_test_for_a_downlink_need_is_a_probe_that_can_run() {
    // A downlink need is proven only by a command: the printed command waits for one, and is
    // not refused as a usage error before any traffic.
    let out = bin()
        .args(["plan", "-a", "network=tcp,enos_format=yes,enos_version=3"])
        .args(["--need", "downlink_commands", "-f", "json", "--host", "127.0.0.1"])
        .args(["--product-key", "pk1", "--device-key", "dk1", "-m", "temp=1"])
        .output()
        .expect("runs");
    let v = json_of(&out.stdout);
    let probe = v["protocols"][0]["probe"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(probe.contains("--await-command"), "{probe}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a closed port");
    let mut args: Vec<String> = probe.split_whitespace().skip(2).map(str::to_string).collect();
    args[0] = format!("mqtt://{closed}");
    let out = bin()
        .arg("probe")
        .args(&args)
        .args(["--timeout", "2"])
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{probe}: {err}");
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
    use enos_connect::probe::needs::{NeedContext, NeedOptions, Step, steps};
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
        measurepoints: Some(std::sync::Arc::new(enos_connect::probe::Points::new(
            serde_json::from_value(json!({"temp": 1})).expect("map"),
        ))),
        needs: NeedOptions {
            events: vec![("alarm".into(), json!({"level": 1}))],
            attributes: serde_json::from_value(json!({"color": "red"})).expect("map"),
            register: Some(("pk1".into(), "new1".into())),
            firmware_version: Some("2.0".into()),
            ..NeedOptions::default()
        },
        ..Default::default()
    };
    let ctx = NeedContext {
        protocol: "mqtt",
        mode: Some("static"),
        device: ("pk1", "dk1"),
        ..NeedContext::default()
    };
    let mut compared = 0;
    for (o, f) in [opts, enos_connect::probe::ProbeOptions::default()]
        .iter()
        .flat_map(|o| caps.features.iter().map(move |f| (o, f)))
    {
        for step in steps(&caps, &f.id, o, &ctx).unwrap_or_default() {
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

#[test]
fn need_lines_say_each_thing_once_and_the_login_reply_stays_the_logins() {
    let e = enos(REGISTRY);
    let out = bin()
        .arg("probe")
        .arg(format!("coap://{}", e.coap))
        .args(DEVICE)
        .args(["--need", "report_data,ota"])
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    // No line says the same words twice over ("not offered not offered over CoAP").
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(4) {
            assert!(
                !(pair[0] == pair[2] && pair[1] == pair[3]),
                "`{line}` repeats `{} {}`",
                pair[0],
                pair[1]
            );
        }
    }
    // The failure names a stage the docs list for a need.
    let error = text
        .lines()
        .find(|l| l.trim_start().starts_with("error ("))
        .expect("an error line");
    let stage = error
        .split(" at ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .expect("a stage");
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/probing.md")).expect("docs");
    let section = docs
        .split("## Proving the features a device needs")
        .nth(1)
        .expect("the needs section");
    assert!(
        section.contains(&format!("names the stage `{stage}`"))
            || enos_connect::measurement::need::NEED_STAGES.contains(&stage),
        "{error}: `{stage}` is not a documented stage of a need"
    );
    assert_ne!(stage, "request", "{error}");
    // The login's reply (CoAP's payload=) comes with the probe's own lines, before the needs.
    let payload = text.find("payload=").expect("the login's payload");
    let needs = text.find("report_data").expect("the need");
    assert!(payload < needs, "the login's payload reads as a need's:\n{text}");
}

#[test]
fn the_matrix_says_which_half_of_a_cell_is_the_tables() {
    let e = enos(REGISTRY);
    let out = bin()
        .args(["probe", "--matrix"])
        .arg(format!("http://{}", e.http))
        .args(DEVICE)
        .env("ENOS_DEVICE_SECRET", "Device-Canary-9a1")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let legend = text.split('┌').next().unwrap_or_default().replace('\n', " ");
    assert!(
        legend.contains("each cell is capabilities.toml's value, then what the endpoint did"),
        "{text}"
    );
}
