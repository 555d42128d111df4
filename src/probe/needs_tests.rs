//! What each need sends, against the official SDKs' requests; that a need without values only
//! reads; the "not offered" sentence.

use super::*;
use crate::measurement::need::NEED_STAGES;

/// What the official SDKs send for each request a need makes: the method, and the params'
/// shape (an object's keys, or a list of objects' keys), from the Python SDK's request
/// classes (`MeasurepointPostRequest`, `EventPostRequest`, `AttributeUpdateRequest`,
/// `AttributeQueryRequest`, `MeasurepointPostBatchRequest`, `MeasurepointResumeRequest`,
/// `TopoGetRequest`, `DeviceRegisterRequest`, `OtaGetVersionRequest`,
/// `OtaVersionReportRequest`).
const SDK: &[(&str, &str, &[&str])] = &[
    (
        "thing/measurepoint/post",
        "thing.measurepoint.post",
        &["measurepoints", "time"],
    ),
    (
        "thing/event/alarm/post",
        "thing.event.alarm.post",
        &["events", "time"],
    ),
    (
        "thing/attribute/update",
        "thing.attribute.update",
        &["attributes"],
    ),
    ("thing/attribute/query", "thing.attribute.query", &["attributes"]),
    (
        "thing/measurepoint/post/batch",
        "thing.measurepoint.post.batch",
        &["[]", "deviceKey", "measurepoints", "productKey", "time"],
    ),
    (
        "thing/measurepoint/resume",
        "thing.measurepoint.resume",
        &["measurepoints", "time"],
    ),
    ("thing/topo/get", "thing.topo.get", &[]),
    (
        "thing/device/register",
        "thing.device.register",
        &["[]", "deviceKey", "productKey"],
    ),
    ("ota/device/getversion", "Ota.device.getversion", &[]),
    ("ota/device/inform", "ota.inform", &["version"]),
];

fn shape(params: &Value) -> Vec<String> {
    let sorted = |m: &Map<String, Value>| {
        let mut k: Vec<String> = m.keys().cloned().collect();
        k.sort();
        k
    };
    match params {
        Value::Object(m) => sorted(m),
        Value::Array(items) => {
            let mut keys = vec!["[]".to_string()];
            if let Some(Value::Object(m)) = items.first() {
                keys.extend(sorted(m));
            }
            keys
        }
        _ => vec!["?".into()],
    }
}

/// Every value given, so every step of every need is made.
fn everything() -> ProbeOptions {
    ProbeOptions {
        measurepoints: Some(std::sync::Arc::new(crate::probe::Points::new(
            serde_json::from_value(json!({"temp": 1})).expect("map"),
        ))),
        needs: NeedOptions {
            needs: Vec::new(),
            matrix: false,
            events: vec![("alarm".into(), json!({"level": 1}))],
            attributes: serde_json::from_value(json!({"color": "red"})).expect("map"),
            raw: Some(vec![1, 2]),
            file: None,
            file_point: Some("label".into()),
            await_command: Some(Duration::from_secs(1)),
            command_api: None,
            register: Some(("pk1".into(), "new1".into())),
            firmware_version: Some("2.0".into()),
        },
        ..ProbeOptions::default()
    }
}

#[test]
fn every_request_a_need_sends_is_what_the_sdk_sends() {
    let caps = crate::capabilities::embedded().expect("caps");
    let ctx = NeedContext {
        protocol: "mqtt",
        mode: Some("static"),
        tls_cert: true,
        cert_requested: Some(true),
        device: ("pk1", "dk1"),
    };
    let mut seen = Vec::new();
    // With every value given (every step is made), and with none (the reads).
    for (opts, f) in [everything(), ProbeOptions::default()]
        .iter()
        .flat_map(|o| caps.features.iter().map(move |f| (o, f)))
    {
        // Over HTTP for the file upload, which only HTTP carries.
        let ctx = NeedContext {
            protocol: if f.id == "file_upload" { "http" } else { "mqtt" },
            ..ctx
        };
        let Ok(steps) = steps(&caps, &f.id, opts, &ctx) else {
            assert!(
                opts.needs.file_point.is_none(),
                "{}: no steps with every value",
                f.id
            );
            continue;
        };
        assert!(!steps.is_empty(), "{}", f.id);
        for s in steps {
            if let Step::Request { stage, .. } | Step::Raw { stage, .. } | Step::Downlink { stage, .. } = &s {
                assert!(NEED_STAGES.contains(stage), "{stage} is not in NEED_STAGES");
            }
            let (topic, request) = match s {
                Step::Request { topic, request, .. } | Step::Upload { topic, request, .. } => {
                    (topic, request)
                }
                Step::Raw { topic, .. } => {
                    assert_eq!(topic, "/sys/pk1/dk1/thing/model/up_raw");
                    continue;
                }
                Step::Downlink { topics, .. } => {
                    for t in topics {
                        assert!(t.starts_with("/sys/pk1/dk1/thing/"), "{t}");
                    }
                    continue;
                }
                Step::Login(r) => {
                    assert!(r.is_ok() || f.id == "dynamic_auth", "{}: {r:?}", f.id);
                    continue;
                }
                Step::OneWay(why) => panic!("{}: one-way with the certificate asked for: {why}", f.id),
            };
            let tail = topic
                .strip_prefix("/sys/pk1/dk1/")
                .expect("the device's own topic");
            let (_, method, keys) = SDK
                .iter()
                .find(|(t, ..)| *t == tail)
                .unwrap_or_else(|| panic!("{}: no SDK row for {tail}", f.id));
            assert_eq!(request.method, *method, "{tail}");
            assert_eq!(
                shape(&request.params),
                keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                "{tail}"
            );
            // The topic belongs to the feature serve looks it up under (file uploads ride
            // on report_data's measure point post).
            let owner = caps.feature_for_topic(&topic).map(|x| x.id.as_str());
            let want = if f.id == "file_upload" {
                "report_data"
            } else {
                f.id.as_str()
            };
            assert_eq!(owner, Some(want), "{topic}");
            seen.push(tail.to_string());
        }
    }
    for (tail, ..) in SDK {
        assert!(seen.iter().any(|s| s == tail), "no need sends {tail}");
    }
}

#[test]
fn without_values_a_need_only_reads() {
    let caps = crate::capabilities::embedded().expect("caps");
    let opts = ProbeOptions::default();
    let ctx = NeedContext {
        protocol: "mqtt",
        mode: Some("static"),
        device: ("pk1", "dk1"),
        ..NeedContext::default()
    };
    for f in &caps.features {
        let Ok(steps) = steps(&caps, &f.id, &opts, &ctx) else {
            // batch and file upload write by nature, and a downlink needs a command: they need
            // the value named (or MQTT cannot carry them at all).
            assert!(
                matches!(
                    f.id.as_str(),
                    "batch_offline_points" | "file_upload" | "downlink_commands" | "passthrough_down"
                ),
                "{}",
                f.id
            );
            continue;
        };
        for s in steps {
            match s {
                Step::Request { stage, request, .. } => {
                    assert_eq!(stage, "query", "{} sends {} unasked", f.id, request.method)
                }
                // up_raw's default bytes go to the product's parsing script, nowhere else.
                Step::Raw { .. } | Step::Login(_) => {}
                other => panic!("{} sends {other:?} unasked", f.id),
            }
        }
    }
}

#[test]
fn not_offered_names_the_protocols_that_carry_it() {
    let caps = crate::capabilities::embedded().expect("caps");
    assert_eq!(
        not_offered(&caps, "ota", "coap"),
        "comparison table: `ota` is not_supported over CoAP; MQTT carries it"
    );
    assert_eq!(
        not_offered(&caps, "file_upload", "mqtt"),
        "comparison table: `file_upload` is not_supported over MQTT; HTTP carries it"
    );
    assert_eq!(
        not_carried(&caps, crate::capabilities::StepKind::Downlink, "http"),
        "HTTP carries no downlink (a command from EnOS to the device) (capabilities.toml, exchanges.carried_by.downlink); MQTT and CoAP do"
    );
}

#[test]
fn mutual_tls_is_proven_only_when_the_server_asked_for_the_certificate() {
    let caps = crate::capabilities::embedded().expect("caps");
    let opts = ProbeOptions::default();
    let kind = |cert_requested| NeedContext {
        protocol: "mqtt",
        mode: Some("static"),
        tls_cert: true,
        cert_requested,
        device: ("pk1", "dk1"),
    };
    let step = |ctx: NeedContext<'_>| steps(&caps, "mutual_tls", &opts, &ctx).expect("steps");
    assert!(matches!(step(kind(Some(true))).as_slice(), [Step::Login(Ok(_))]));
    assert!(matches!(step(kind(Some(false))).as_slice(), [Step::OneWay(_)]));
    let plain = NeedContext {
        tls_cert: false,
        ..kind(None)
    };
    assert!(matches!(step(plain).as_slice(), [Step::Login(Err(_))]));
}

#[test]
fn a_downlink_is_proven_only_by_a_command_caused_or_awaited() {
    let caps = crate::capabilities::embedded().expect("caps");
    let ctx = |protocol| NeedContext {
        protocol,
        mode: Some("static"),
        device: ("pk1", "dk1"),
        ..NeedContext::default()
    };
    let mut opts = ProbeOptions::default();
    // No way to cause a command: untested, nothing sent (a granted SUBACK proves no downlink).
    for need in ["downlink_commands", "passthrough_down"] {
        let Err(NotRun::Untested(why)) = steps(&caps, need, &opts, &ctx("mqtt")) else {
            panic!("{need} without a command is not untested");
        };
        assert!(
            why.contains("--command-api") && why.contains("--await-command"),
            "{why}"
        );
    }
    // HTTP carries no downlink, whatever was given: not carried.
    opts.needs.await_command = Some(Duration::from_secs(1));
    assert_eq!(
        steps(&caps, "downlink_commands", &opts, &ctx("http")),
        Err(NotRun::NotCarried(crate::capabilities::StepKind::Downlink))
    );
    // With the endpoint's command API: the command asked for, raw bytes as base64.
    opts.needs.command_api = Some(super::super::CommandApi::parse(&caps, "http://127.0.0.1:1").expect("url"));
    let Ok(s) = steps(&caps, "passthrough_down", &opts, &ctx("coap")) else {
        panic!("no steps");
    };
    let [
        Step::Downlink {
            topics,
            raw,
            command: Some(body),
            ..
        },
    ] = s.as_slice()
    else {
        panic!("{s:?}");
    };
    assert_eq!(topics, &["/sys/pk1/dk1/thing/model/down_raw"]);
    assert!(*raw);
    assert_eq!(body["method"], "thing.model.down_raw");
    assert_eq!(body["payload_base64"], "AQIDBA==");
    let Ok(s) = steps(&caps, "downlink_commands", &opts, &ctx("mqtt")) else {
        panic!("no steps");
    };
    let [
        Step::Downlink {
            topics,
            command: Some(body),
            ..
        },
    ] = s.as_slice()
    else {
        panic!("{s:?}");
    };
    assert_eq!(
        topics,
        &[
            "/sys/pk1/dk1/thing/service/measurepoint/set",
            "/sys/pk1/dk1/thing/service/+"
        ]
    );
    assert_eq!(body["method"], "thing.service.measurepoint.set");
    // A file over MQTT: no multipart path, not carried (not "untested" for a missing value).
    assert_eq!(
        steps(&caps, "file_upload", &ProbeOptions::default(), &ctx("mqtt")),
        Err(NotRun::NotCarried(crate::capabilities::StepKind::Multipart))
    );
}
