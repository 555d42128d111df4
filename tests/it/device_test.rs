//! `device-test` judges devices correctly. Devices written in the test suite
//! ([`crate::test_device`], on rumqttc's codec) run through the whole catalogue in this process,
//! over `--mqtts` with a private CA, at the suite's test pace (shorter drops and waits, the
//! defaults untouched): a well-behaved device passes every case it claims, and each device
//! broken in one way fails exactly that case (or warns, for the faults the issue calls
//! warnings) and passes the others. Each run's JUnit XML is read back with a real XML parser
//! (quick-xml): one testcase per case, failures where the JSON has them. The binary's own
//! edges: `--list`, usage errors (exit 2), a device `--run` starts that exits early, one that
//! never logs in, and a run of the test device as a process with `--run`, its JUnit file parsed.
//! With the official Python SDK (`.ci/run`), `the_official_python_sdk_through_the_suite`.

use std::collections::BTreeMap;
use std::time::Duration;

use enos_connect::device_test::catalogue::{self, Claims};
use enos_connect::device_test::runner::{Session, Setup};
use enos_connect::device_test::{Report, Timings, Verdict, report};
use enos_connect::serve::{Identity, Options};

use crate::test_device::{Behaviour, Fault, Target, Tls};

const DEVICE_SECRET: &str = "Device-Canary-dt1";
const SUB_SECRET: &str = "Sub-Canary-dt2";

/// A gateway with a sub-device, a model with a point and two services, and a firmware.
const REGISTRY: &str = r#"
[[products]]
key = "pk1"
measurepoints = ["temp"]

[products.services.restart]
inputs.delay = { type = "int" }

[products.services.calibrate]

[[devices]]
product = "pk1"
key = "gw1"
secret = "Device-Canary-dt1"

[[devices]]
product = "pk1"
key = "sub1"
secret = "Sub-Canary-dt2"
gateway = "pk1/gw1"

[[firmwares]]
product = "pk1"
version = "2.0"
url = "https://firmware.example/pk1/2.0.bin"
md5 = "fedcba9876543210fedcba9876543210"
size = 2048
"#;

/// The suite's waits at the test devices' pace (they back off from 300 ms and resend after
/// 300 ms); the defaults are the issue's (a unit test pins them).
fn timings() -> Timings {
    Timings {
        wait: Duration::from_secs(10),
        reply_timeout: Duration::from_secs(1),
        ota_timeout: Duration::from_secs(5),
        puback_drop: Duration::from_secs(1),
        first_reconnect: Duration::from_millis(200),
        refusals: 3,
        reconnect_wait: Duration::from_secs(10),
        outage: Duration::from_secs(1),
        observe: Duration::from_secs(3),
        tls_settle: Duration::from_millis(500),
        connack_delay: Duration::from_millis(10),
        settle: Duration::from_millis(200),
    }
}

fn every_feature() -> Claims {
    Claims {
        needs: Some(
            [
                "downlink_commands",
                "batch_offline_points",
                "ota",
                "subdevice_management",
            ]
            .map(String::from)
            .to_vec(),
        ),
    }
}

/// One device through the whole catalogue, in its own runtime: the report.
fn examine(behaviour: Behaviour, tls: Tls) -> Report {
    examine_cases(behaviour, tls, &[], false)
}

/// [`examine`] with the cases `--case` would name (all when empty) and `--long`.
fn examine_cases(behaviour: Behaviour, tls: Tls, cases: &[&str], long: bool) -> Report {
    let cases: Vec<String> = cases.iter().map(|c| c.to_string()).collect();
    let pki = crate::peers::pki(&["localhost"], false);
    let caps = crate::common::caps();
    let registry = enos_connect::registry::Registry::parse(&enos_connect::source_text::SourceFile::new(
        "registry.toml",
        REGISTRY,
    ))
    .expect("the registry");
    let any = "127.0.0.1:0".parse().expect("addr");
    let setup = Setup {
        caps,
        registry,
        device: Identity::new("pk1", "gw1"),
        claims: every_feature(),
        cases: catalogue::select(&cases).expect("known cases"),
        long,
        timings: timings(),
        listen: Options {
            mqtt: Some(any),
            mqtts: Some((any, pki.server_config.clone())),
            http: None,
            https: None,
            coap: None,
            coaps: None,
            record: None,
            connack_delay: Duration::from_millis(10),
            log: false,
            console: None,
        },
        max_connections: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let session = Session::bind(setup).await.expect("binds");
        let env: BTreeMap<String, String> = session.device_env().into_iter().collect();
        let addr = env["ENOS_CONNECT_MQTTS_URL"]
            .trim_start_matches("mqtts://")
            .parse()
            .expect("the mqtts address");
        let tls = match tls {
            Tls::Verify(_) => Tls::Verify(pki.ca.clone()),
            other => other,
        };
        let target = Target {
            addr,
            tls: Some(tls),
            pk: "pk1".into(),
            dk: "gw1".into(),
            secret: DEVICE_SECRET.into(),
            subdevices: vec![("pk1".into(), "sub1".into(), SUB_SECRET.into())],
            version: "1.0".into(),
        };
        let device = tokio::spawn(crate::test_device::run(target, behaviour));
        let report = session.run(None, &mut |_| {}).await;
        device.abort();
        report
    })
}

/// An HTTP device: it authenticates, then posts a point with its time every 100 ms, until told
/// to stop (at most 300 posts).
fn http_device(addr: std::net::SocketAddr, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    let c = crate::common::creds("http", "pk1", "gw1", "static", DEVICE_SECRET);
    let auth = c.request.expect("an auth request");
    let (_, v) = crate::serve::http_post(addr, &auth.path, auth.body.as_bytes());
    let session = v["data"]["sessionId"].as_str().unwrap_or_default().to_string();
    for n in 0..300 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let body = format!(
            r#"{{"id":"{n}","version":"1.0","method":"thing.measurepoint.post","params":{{"measurepoints":{{"temp":{n}}},"time":{now}}}}}"#
        );
        let path = format!("/topic/sys/pk1/gw1/thing/measurepoint/post?sessionId={session}");
        crate::serve::http_post(addr, &path, body.as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A device over HTTP gets the cases that apply to it; the others are skipped, saying why: an
/// MQTT exchange, or a feature the comparison table does not offer over HTTP.
#[test]
fn an_http_device_gets_the_cases_that_apply_to_it() {
    let registry = enos_connect::registry::Registry::parse(&enos_connect::source_text::SourceFile::new(
        "registry.toml",
        REGISTRY,
    ))
    .expect("the registry");
    let any = "127.0.0.1:0".parse().expect("addr");
    let setup = Setup {
        caps: crate::common::caps(),
        registry,
        device: Identity::new("pk1", "gw1"),
        claims: every_feature(),
        cases: catalogue::select(&[]).expect("all"),
        long: false,
        timings: timings(),
        listen: Options {
            mqtt: None,
            mqtts: None,
            http: Some(any),
            https: None,
            coap: None,
            coaps: None,
            record: None,
            connack_delay: Duration::ZERO,
            log: false,
            console: None,
        },
        max_connections: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = runtime.block_on(async {
        let session = Session::bind(setup).await.expect("binds");
        let env: BTreeMap<String, String> = session.device_env().into_iter().collect();
        let addr = env["ENOS_CONNECT_HTTP_URL"]
            .trim_start_matches("http://")
            .parse()
            .expect("the http address");
        let device = std::thread::spawn({
            let stop = stop.clone();
            move || http_device(addr, stop)
        });
        let r = session.run(None, &mut |_| {}).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = device.join();
        r
    });
    assert_eq!(r.protocol.as_deref(), Some("http"));
    let mut problems = Vec::new();
    for c in &r.cases {
        let (want, words) = match c.id {
            "login.signed" | "report.model" | "report.timestamps" => (Verdict::Pass, ""),
            "login.keepalive" => (Verdict::Skipped, "--long"),
            "mqtt.puback_retry" | "reconnect.backoff" | "tls.verify_server" => {
                (Verdict::Skipped, "an MQTT case; the device logged in over HTTP")
            }
            _ => (Verdict::Skipped, "not offered over HTTP (comparison table: `"),
        };
        if c.verdict != want || !c.message.contains(words) {
            problems.push(format!("{} is {}: {}", c.id, c.verdict, c.message));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn verdicts(r: &Report) -> BTreeMap<&'static str, Verdict> {
    r.cases.iter().map(|c| (c.id, c.verdict)).collect()
}

/// A JUnit report read back with quick-xml: each testcase's name and what it holds (`failure`,
/// `error`, `skipped`, or `pass`).
pub fn junit_cases(xml: &str) -> Vec<(String, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut cases: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testcase" => {
                let name = e
                    .try_get_attribute("name")
                    .expect("attribute")
                    .map(|a| {
                        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .expect("text")
                            .to_string()
                    })
                    .expect("a testcase has a name");
                cases.push((name, "pass".into()));
                inside = true;
            }
            Event::Start(e) | Event::Empty(e)
                if inside && matches!(e.name().as_ref(), b"failure" | b"error" | b"skipped") =>
            {
                if let Some(last) = cases.last_mut() {
                    last.1 = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                }
            }
            Event::End(e) if e.name().as_ref() == b"testcase" => inside = false,
            Event::Eof => break,
            _ => {}
        }
    }
    cases
}

/// The JUnit file of a report has one testcase per case, each marked as its verdict says.
pub fn junit_matches(r: &Report, xml: &str) {
    let cases = junit_cases(xml);
    let expected: Vec<(String, String)> = r
        .cases
        .iter()
        .map(|c| {
            let mark = match c.verdict {
                Verdict::Pass | Verdict::Warn => "pass",
                Verdict::Fail => "failure",
                Verdict::Error => "error",
                Verdict::Skipped => "skipped",
            };
            (c.id.to_string(), mark.to_string())
        })
        .collect();
    assert_eq!(
        cases, expected,
        "the JUnit testcases and the report's cases:\n{xml}"
    );
}

/// Every secret stays out of every format of the report.
fn no_secret(r: &Report) {
    let all = [
        report::render(r, enos_connect::render::Format::Table, Default::default()),
        report::render(r, enos_connect::render::Format::Json, Default::default()),
        report::render(r, enos_connect::render::Format::Markdown, Default::default()),
        report::junit::report(r).expect("junit"),
    ]
    .join("\n");
    for s in [DEVICE_SECRET, SUB_SECRET] {
        assert!(!all.contains(s), "a secret in the report");
    }
}

/// What a device is expected to get: the cases that do not pass, with a word of their message.
struct Expect {
    name: &'static str,
    behaviour: Behaviour,
    tls: Tls,
    not_pass: &'static [(&'static str, Verdict, &'static str)],
}

#[test]
fn a_well_behaved_device_passes_and_each_broken_one_fails_exactly_its_case() {
    let good = Behaviour::well_behaved;
    let verify = || Tls::Verify(Default::default());
    let expectations = vec![
        Expect {
            name: "well-behaved",
            behaviour: good(),
            tls: verify(),
            not_pass: &[],
        },
        Expect {
            name: "never replies to commands",
            behaviour: good().with(Fault::NeverReplies),
            tls: verify(),
            not_pass: &[
                ("command.measurepoint_set", Verdict::Fail, "no reply within"),
                ("command.measurepoint_get", Verdict::Fail, "no reply within"),
                ("command.service", Verdict::Fail, "no reply within"),
                ("ota.upgrade", Verdict::Fail, "no reply within"),
            ],
        },
        Expect {
            name: "replies with another id",
            behaviour: good().with(Fault::RepliesWithAnotherId),
            tls: verify(),
            not_pass: &[
                ("command.measurepoint_set", Verdict::Fail, "with another id"),
                ("command.measurepoint_get", Verdict::Fail, "with another id"),
                ("command.service", Verdict::Fail, "with another id"),
                ("ota.upgrade", Verdict::Fail, "with another id"),
            ],
        },
        Expect {
            name: "reconnects at once",
            behaviour: good().with(Fault::ReconnectsAtOnce),
            tls: verify(),
            not_pass: &[("reconnect.backoff", Verdict::Fail, "the first reconnect")],
        },
        Expect {
            name: "posts outside the model",
            behaviour: good().with(Fault::PostsOutsideTheModel),
            tls: verify(),
            not_pass: &[("report.model", Verdict::Fail, "1204")],
        },
        Expect {
            name: "never resends an unacknowledged QoS 1 publish",
            behaviour: good().with(Fault::NeverResends),
            tls: verify(),
            not_pass: &[("mqtt.puback_retry", Verdict::Fail, "never sent again")],
        },
        Expect {
            name: "skips OTA progress",
            behaviour: good().with(Fault::SkipsOtaProgress),
            tls: verify(),
            not_pass: &[("ota.upgrade", Verdict::Fail, "without any ota.progress step")],
        },
        Expect {
            name: "trusts any certificate",
            behaviour: good().with(Fault::TrustsAnyCertificate),
            tls: Tls::AnyCertificate,
            not_pass: &[("tls.verify_server", Verdict::Fail, "no trusted CA signed")],
        },
        Expect {
            name: "resends only after a reconnect",
            behaviour: good().with(Fault::ResendsOnlyAfterReconnect),
            tls: verify(),
            not_pass: &[("mqtt.puback_retry", Verdict::Warn, "only after a reconnect")],
        },
        Expect {
            name: "backs off without jitter",
            behaviour: Behaviour {
                // Gaps of 0.6 to 4.8 s: scheduling noise on a loaded machine stays well inside the
                // 10 % within which gaps count as a fixed rule.
                first_backoff: Duration::from_millis(600),
                ..good().with(Fault::NoJitter)
            },
            tls: verify(),
            not_pass: &[("reconnect.backoff", Verdict::Warn, "without jitter")],
        },
    ];
    // Each device in a thread of its own, side by side: the suite's wall time is one run's.
    let runs: Vec<_> = expectations
        .into_iter()
        .map(|e| {
            let (behaviour, tls) = (e.behaviour.clone(), e.tls.clone());
            (e, std::thread::spawn(move || examine(behaviour, tls)))
        })
        .collect();
    let mut problems = Vec::new();
    for (e, run) in runs {
        let r = run.join().expect("no panic");
        no_secret(&r);
        let xml = report::junit::report(&r).expect("junit");
        junit_matches(&r, &xml);
        assert_eq!(r.cases.len(), catalogue::CASES.len(), "{}", e.name);
        for c in &r.cases {
            let want = e
                .not_pass
                .iter()
                .find(|(id, _, _)| *id == c.id)
                .map_or((Verdict::Pass, ""), |(_, v, w)| (*v, *w));
            // login.keepalive takes --long.
            let want = if c.id == "login.keepalive" {
                (Verdict::Skipped, "--long")
            } else {
                want
            };
            if c.verdict != want.0 || !c.message.contains(want.1) {
                problems.push(format!(
                    "{}: {} is {} (expected {}, with `{}`): {}",
                    e.name, c.id, c.verdict, want.0, want.1, c.message
                ));
            }
        }
        let all_verdicts = verdicts(&r);
        println!("{}: {all_verdicts:?} in {:.1} s", e.name, r.seconds.as_secs_f64());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `--long`: a keep-alive EnOS's SDKs do not allow fails `login.keepalive` at once (a keep-alive
/// in range is watched for 1.5 periods, which the judge's unit tests cover).
#[test]
fn a_keep_alive_out_of_range_fails_login_keepalive() {
    for (keep_alive, words) in [(5, "a keep-alive of 5 s"), (0, "a keep-alive of 0 (none)")] {
        let behaviour = Behaviour {
            keep_alive,
            ..Behaviour::well_behaved()
        };
        let r = examine_cases(
            behaviour,
            Tls::Verify(Default::default()),
            &["login.signed", "login.keepalive"],
            true,
        );
        let v = verdicts(&r);
        assert_eq!(v["login.signed"], Verdict::Pass);
        assert_eq!(v["login.keepalive"], Verdict::Fail, "{keep_alive}");
        assert!(r.cases[1].message.contains(words), "{}", r.cases[1].message);
    }
}

#[test]
fn the_timings_default_to_the_issue_s() {
    let t = Timings::default();
    assert_eq!(t.wait, Duration::from_secs(60));
    assert_eq!(t.reply_timeout, Duration::from_secs(5));
    assert_eq!(t.ota_timeout, Duration::from_secs(60));
    assert_eq!(t.puback_drop, Duration::from_secs(20));
    assert_eq!(t.first_reconnect, Duration::from_secs(1));
    assert!(t.refusals >= 2, "the connection is dropped at least 3 times");
    assert_eq!(t.outage, Duration::from_secs(5));
}

// --- the binary ---------------------------------------------------------------------------------

use crate::common::bin;

/// The registry above in a folder, with an answers file claiming every feature.
fn files() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = dir.path().join("registry.toml");
    std::fs::write(&registry, REGISTRY).expect("write");
    let answers = dir.path().join("answers.toml");
    std::fs::write(
        &answers,
        "needs = [\"downlink_commands\", \"batch_offline_points\", \"ota\", \"subdevice_management\"]\n",
    )
    .expect("write");
    (dir, registry, answers)
}

/// `device-test` on port 0, MQTT only.
fn device_test_of(registry: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = bin();
    cmd.arg("device-test")
        .arg("--registry")
        .arg(registry)
        .args(["--mqtt", "127.0.0.1:0", "--http", "off", "--coap", "off"])
        .args(["--console", "off"]);
    cmd
}

/// [`device_test_of`] the device pk1/gw1.
fn device_test(registry: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = device_test_of(registry);
    cmd.args(["--device", "pk1/gw1"]);
    cmd
}

#[test]
fn list_prints_the_catalogue_with_its_version() {
    let out = bin().args(["device-test", "--list"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for c in catalogue::CASES {
        assert!(text.contains(c.id), "{} missing:\n{text}", c.id);
    }
    let out = bin()
        .args(["device-test", "--list", "-f", "json"])
        .assert()
        .success();
    let v = crate::common::json_of(&out.get_output().stdout);
    assert_eq!(v["catalogue_version"], catalogue::CATALOGUE_VERSION);
    assert_eq!(v["cases"].as_array().map(Vec::len), Some(catalogue::CASES.len()));
    assert_eq!(v["cases"][4]["feature"], "downlink_commands");
}

#[test]
fn usage_errors_exit_2_and_say_what_to_do() {
    let (_dir, registry, _) = files();
    for (args, words) in [
        (
            vec!["--device", "pk1/gw1", "--case", "ota.upgrad"],
            "did you mean `ota.upgrade`?",
        ),
        (vec!["--device", "pk1/none"], "the registry has no such device"),
        (vec!["--device", "gw1"], "not `PRODUCT_KEY/DEVICE_KEY`"),
        (vec!["--device", "pk1/gw1", "--wait", "soon"], "is not a duration"),
        (vec!["--device", "pk1/gw1", "--wait", "2h"], "at most 1h"),
    ] {
        let out = device_test_of(&registry).args(&args).output().expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
    }
    let out = bin()
        .args(["device-test", "--device", "pk1/gw1"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "--registry is required");
    let out = bin()
        .args([
            "device-test",
            "--device",
            "pk1/gw1",
            "--mqtt",
            "off",
            "--http",
            "off",
            "--coap",
            "off",
        ])
        .arg("--registry")
        .arg(&registry)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("every listener is off"));
}

#[test]
fn a_device_that_exits_early_turns_the_cases_still_to_run_into_errors_with_its_status() {
    let (_dir, registry, answers) = files();
    let started = std::time::Instant::now();
    let out = device_test(&registry)
        .arg("--answers")
        .arg(&answers)
        .args(["--run", "sleep 0.2; exit 3", "-f", "json"])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "it did not wait for --wait"
    );
    let v = crate::common::json_of(&out.stdout);
    assert_eq!(v["device_exit"], "exit status 3");
    for c in v["cases"].as_array().expect("cases") {
        if c["id"] == "login.keepalive" {
            assert_eq!(c["verdict"], "skipped");
            continue;
        }
        assert_eq!(c["verdict"], "error", "{c}");
        assert!(
            c["message"]
                .as_str()
                .unwrap_or_default()
                .contains("(exit status 3)"),
            "{c}"
        );
    }
}

#[test]
fn a_device_that_never_logs_in_fails_login_signed_and_leaves_the_rest_unjudged() {
    let (_dir, registry, _) = files();
    let out = device_test(&registry)
        .args(["--wait", "500ms", "-f", "json"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let v = crate::common::json_of(&out.stdout);
    let verdict = |id: &str| {
        v["cases"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["id"] == id))
            .map(|c| c["verdict"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(verdict("login.signed").as_deref(), Some("fail"));
    assert_eq!(verdict("report.model").as_deref(), Some("error"));
    assert_eq!(
        verdict("ota.upgrade").as_deref(),
        Some("skipped"),
        "not claimed: no --answers"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("{\"event\":\"listening\",\"mqtt\":\"127.0.0.1:"),
        "{stderr}"
    );
}

/// The test device as a process, as `--run` starts it: this test binary running
/// `test_device::device_process`.
fn test_device_command() -> String {
    let exe = std::env::current_exe().expect("the test binary");
    format!(
        "'{}' --exact test_device::device_process --ignored --nocapture",
        exe.display()
    )
}

#[test]
fn run_starts_the_device_with_the_listeners_in_its_environment_and_stops_it() {
    let (dir, registry, answers) = files();
    let (junit, log) = (dir.path().join("junit.xml"), dir.path().join("device.log"));
    let out = device_test(&registry)
        .arg("--answers")
        .arg(&answers)
        .args([
            "--case",
            "login.signed,report.model,report.timestamps,command.measurepoint_set",
        ])
        .args(["--run", &test_device_command(), "-f", "json"])
        .arg("--junit")
        .arg(&junit)
        .arg("--device-log")
        .arg(&log)
        .env("ENOS_DEVICE_SECRET", DEVICE_SECRET)
        .timeout(Duration::from_secs(60))
        .output()
        .expect("runs");
    let all = crate::common::no_secret_in(&out, &[DEVICE_SECRET, SUB_SECRET], "device-test --run");
    assert_eq!(out.status.code(), Some(0), "{all}");
    let v = crate::common::json_of(&out.stdout);
    let ids: Vec<&str> = v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| c["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        ids,
        [
            "login.signed",
            "report.model",
            "report.timestamps",
            "command.measurepoint_set"
        ],
        "the cases --case chose, in the catalogue's order"
    );
    assert!(
        v["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .all(|c| c["verdict"] == "pass"),
        "{v:#}"
    );
    assert_eq!(v["device_log"], log.display().to_string());
    assert!(v["device_exit"].is_null(), "it ran until it was stopped: {v:#}");
    let logged = std::fs::read_to_string(&log).expect("the device log");
    assert!(
        logged.contains("test device pk1/gw1 connecting to mqtt://127.0.0.1:"),
        "{logged}"
    );
    let xml = std::fs::read_to_string(&junit).expect("the JUnit file");
    let cases = junit_cases(&xml);
    assert_eq!(cases.len(), 4, "{xml}");
    assert!(cases.iter().all(|(_, mark)| mark == "pass"), "{xml}");
}

// --- the official Python SDK --------------------------------------------------------------------

/// What the official Python SDK (enos-mqtt-sdk-python 0.1.1 on paho-mqtt 1.6.1), driven by
/// `scripts/sdk_device.py`, gets from each case, and why (docs/device-test.md says it too).
const SDK_VERDICTS: [(&str, Verdict); 13] = [
    ("login.signed", Verdict::Pass),
    // --long only.
    ("login.keepalive", Verdict::Skipped),
    ("report.model", Verdict::Pass),
    ("report.timestamps", Verdict::Pass),
    ("command.measurepoint_set", Verdict::Pass),
    ("command.measurepoint_get", Verdict::Pass),
    ("command.service", Verdict::Pass),
    // paho resends an unacknowledged PUBLISH only after a reconnect.
    ("mqtt.puback_retry", Verdict::Warn),
    // paho doubles its reconnect wait from 1 s (the SDK's Profile: 1 to 60 s), without jitter.
    ("reconnect.backoff", Verdict::Warn),
    ("reconnect.resume", Verdict::Pass),
    ("ota.upgrade", Verdict::Pass),
    ("subdevice.relogin", Verdict::Pass),
    ("tls.verify_server", Verdict::Pass),
];

/// The markers of the SDK's verdicts in docs/device-test.md, which this test writes with
/// `ENOS_CONNECT_WRITE_DOCS=1` and otherwise checks.
const DOCS_BEGIN: &str = "<!-- sdk-verdicts:begin";
const DOCS_END: &str = "<!-- sdk-verdicts:end -->";

#[test]
fn the_official_python_sdk_through_the_suite() {
    let Some(python) = crate::common::outside_peer(
        "ENOS_CONNECT_SDK_PYTHON",
        ".ci/run installs the official EnOS Python SDK",
    ) else {
        return;
    };
    let (dir, registry, answers) = files();
    let pki = crate::peers::pki(&["localhost"], false);
    let (junit, log) = (dir.path().join("junit.xml"), dir.path().join("device.log"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sdk_device.py");
    let out = bin()
        .arg("device-test")
        .arg("--registry")
        .arg(&registry)
        .arg("--answers")
        .arg(&answers)
        .args(["--device", "pk1/gw1", "--mqtt", "off", "--mqtts", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(&pki.server_cert)
        .arg("--tls-key")
        .arg(&pki.server_key)
        .args(["--http", "off", "--coap", "off", "--console", "off", "-f", "json"])
        .args(["--run", &format!("'{python}' '{script}'")])
        .arg("--device-log")
        .arg(&log)
        .arg("--junit")
        .arg(&junit)
        .env("ENOS_DEVICE_SECRET", DEVICE_SECRET)
        .env("ENOS_SUBDEVICE_SECRET", SUB_SECRET)
        .env("ENOS_TEST_SUBDEVICE", "pk1/sub1")
        .env("ENOS_CONNECT_CA", &pki.ca)
        .timeout(Duration::from_secs(240))
        .output()
        .expect("runs");
    let all = crate::common::no_secret_in(&out, &[DEVICE_SECRET, SUB_SECRET], "the SDK's run");
    let device_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !device_log.contains(DEVICE_SECRET) && !device_log.contains(SUB_SECRET),
        "a secret in the device's log"
    );
    let v = crate::common::json_of(&out.stdout);
    let got: Vec<(String, String)> = v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().into(),
                c["verdict"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = SDK_VERDICTS
        .iter()
        .map(|(id, v)| (id.to_string(), v.to_string()))
        .collect();
    assert_eq!(got, want, "{v:#}\n{all}\nthe device's log:\n{device_log}");
    assert_eq!(out.status.code(), Some(0), "warnings do not fail a run");
    let seconds = v["seconds"].as_f64().unwrap_or(f64::MAX);
    assert!(
        seconds < 180.0,
        "the whole default catalogue within 3 minutes: {seconds} s"
    );
    // The JUnit file, read back: one testcase per case, marked as the JSON says.
    let xml = std::fs::read_to_string(&junit).expect("the JUnit file");
    let marks: Vec<(String, String)> = SDK_VERDICTS
        .iter()
        .map(|(id, v)| {
            let mark = if *v == Verdict::Skipped { "skipped" } else { "pass" };
            (id.to_string(), mark.to_string())
        })
        .collect();
    assert_eq!(junit_cases(&xml), marks, "{xml}");
    sdk_verdicts_in_the_docs(&v);
}

/// docs/device-test.md's table of the SDK's verdicts: written from this run with
/// `ENOS_CONNECT_WRITE_DOCS=1`, else its verdicts must be this run's.
fn sdk_verdicts_in_the_docs(v: &serde_json::Value) {
    let page = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/device-test.md");
    let text = std::fs::read_to_string(page).expect("docs/device-test.md");
    let (Some(begin), Some(end)) = (text.find(DOCS_BEGIN), text.find(DOCS_END)) else {
        panic!("docs/device-test.md has no {DOCS_BEGIN} ... {DOCS_END} block");
    };
    let cases = v["cases"].as_array().expect("cases");
    if std::env::var("ENOS_CONNECT_WRITE_DOCS").as_deref() == Ok("1") {
        let mut block = format!(
            "{DOCS_BEGIN} (written by tests/it/device_test.rs with ENOS_CONNECT_WRITE_DOCS=1) -->\n\
             A run of the whole default catalogue took {:.1} s (enos-mqtt-sdk-python 0.1.1, paho-mqtt 1.6.1, \
             over `--mqtts`):\n\n| case | verdict | what the suite saw |\n|---|---|---|\n",
            v["seconds"].as_f64().unwrap_or_default()
        );
        for c in cases {
            block.push_str(&format!(
                "| `{}` | {} | {} |\n",
                c["id"].as_str().unwrap_or_default(),
                c["verdict"].as_str().unwrap_or_default(),
                c["seen"].as_str().unwrap_or_default().replace('|', "\\|")
            ));
        }
        let rewritten = format!("{}{block}{}", &text[..begin], &text[end..]);
        std::fs::write(page, rewritten).expect("docs/device-test.md written");
        return;
    }
    let rows: Vec<(String, String)> = text[begin..end]
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            match cells.as_slice() {
                ["", id, verdict, ..] if id.starts_with('`') => {
                    Some((id.trim_matches('`').to_string(), verdict.to_string()))
                }
                _ => None,
            }
        })
        .collect();
    let live: Vec<(String, String)> = cases
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().into(),
                c["verdict"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert_eq!(
        rows, live,
        "docs/device-test.md's SDK verdicts are not this run's: ENOS_CONNECT_WRITE_DOCS=1 rewrites them"
    );
}
