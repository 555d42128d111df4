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
    let pki = crate::peers::pki(&["localhost"], false);
    let caps = crate::common::caps();
    let registry = enos_connect::registry::Registry::parse(&enos_connect::source::SourceFile::new(
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
        cases: catalogue::select(&[]).expect("all"),
        long: false,
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
                first_backoff: Duration::from_millis(400),
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
