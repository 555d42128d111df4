//! The rules engine through the library: the comparison table, every flow path and outcome,
//! combinations, unmet needs and missing answers.

use crate::common::{answers, caps};
use enos_connect::capabilities::Support;
use enos_connect::engine::{self, Decision, End, EngineError, Pending, Step};

/// The seed's comparison table, row by row: (feature, mqtt, coap, http).
const SEED_TABLE: [(&str, Support, Support, Support); 11] = {
    use Support::*;
    [
        ("static_auth", Supported, Supported, Supported),
        ("dynamic_auth", Supported, Supported, NotSupported),
        ("mutual_tls", Supported, NotApplicable, Partial),
        ("report_data", Supported, Supported, Supported),
        ("passthrough_up", Supported, Supported, NotApplicable),
        ("file_upload", NotSupported, NotSupported, Supported),
        ("batch_offline_points", Supported, NotSupported, NotSupported),
        ("downlink_commands", Supported, Supported, NotSupported),
        ("passthrough_down", Supported, Supported, NotSupported),
        ("subdevice_management", Supported, NotSupported, NotSupported),
        ("ota", Supported, NotSupported, NotSupported),
    ]
};

#[test]
fn every_row_of_the_comparison_table_matches_the_seed() {
    let caps = caps();
    assert_eq!(caps.features.len(), SEED_TABLE.len());
    for (id, mqtt, coap, http) in SEED_TABLE {
        let f = caps.feature(id).unwrap_or_else(|| panic!("feature {id} missing"));
        assert_eq!(f.support_for("mqtt"), mqtt, "{id} mqtt");
        assert_eq!(f.support_for("coap"), coap, "{id} coap");
        assert_eq!(f.support_for("http"), http, "{id} http");
        assert!(!f.title.is_empty(), "{id} has a title");
    }
    let http_cert = caps.feature("mutual_tls").and_then(|f| f.notes.get("http"));
    assert!(
        http_cert.is_some_and(|n| n.contains("one-way")),
        "partial HTTP has its note"
    );
    let sub = caps
        .feature("subdevice_management")
        .map(|f| f.note.clone())
        .unwrap_or_default();
    assert!(sub.contains("online/offline"), "the mistranslation is noted");
}

#[test]
fn protocols_carry_transport_security_and_versions() {
    let caps = caps();
    let p = |id: &str| caps.protocol(id).unwrap_or_else(|| panic!("{id}"));
    assert_eq!(p("mqtt").transport, "tcp");
    assert_eq!(p("http").transport, "tcp");
    assert_eq!(p("coap").transport, "udp");
    assert_eq!(p("coap").enos_versions, ["2"]);
    assert_eq!(p("mqtt").enos_versions, ["2", "3"]);
    assert!(p("coap").security.contains("pre-shared key"));
    assert!(p("mqtt").security.contains("TLS"));
}

/// For each single need, a TCP+UDP device on EnOS 2 gets a protocol that supports it.
#[test]
fn every_need_alone_is_covered_by_a_protocol_that_supports_it() {
    let caps = caps();
    for (id, ..) in SEED_TABLE {
        let a = answers(
            &caps,
            &["network=both", "enos_format=yes", "enos_version=2"],
            &[id],
        );
        let d = engine::decide(&caps, &a).expect("decides");
        assert!(d.unmet.is_empty(), "{id}: {d:?}");
        let f = caps.feature(id).expect("feature");
        assert!(
            d.protocols.iter().all(|p| f.support_for(p).covers()),
            "{id}: {:?}",
            d.protocols
        );
    }
}

/// One decision to check: the answers and needs in, what must come out. `check` holds what
/// a case asserts beyond the common columns.
struct Case {
    name: &'static str,
    answers: &'static [&'static str],
    needs: &'static [&'static str],
    recommendation: &'static str,
    protocols: &'static [&'static str],
    unmet: &'static [&'static str],
    check: fn(&Decision),
}

const fn case(
    name: &'static str,
    answers: &'static [&'static str],
    needs: &'static [&'static str],
    recommendation: &'static str,
    protocols: &'static [&'static str],
    unmet: &'static [&'static str],
) -> Case {
    Case {
        name,
        answers,
        needs,
        recommendation,
        protocols,
        unmet,
        check: |_| {},
    }
}

const TCP2: [&str; 3] = ["network=tcp", "enos_format=yes", "enos_version=2"];
const TCP3_SHORT: [&str; 4] = [
    "network=tcp",
    "enos_format=yes",
    "enos_version=3",
    "long_connection=no",
];

const CASES: &[Case] = &[
    case(
        "tcp device on EnOS 2 needing OTA gets MQTT",
        &TCP2,
        &["ota"],
        "mqtt",
        &["mqtt"],
        &[],
    ),
    case(
        "file upload without a long connection gets HTTP",
        &TCP3_SHORT,
        &["file_upload"],
        "http",
        &["http"],
        &[],
    ),
    Case {
        check: |d| {
            assert!(d.combination);
            let carrier = |need: &str| {
                d.carriers
                    .iter()
                    .find(|c| c.need == need)
                    .map(|c| c.protocol.as_str())
            };
            assert_eq!(carrier("ota"), Some("mqtt"));
            assert_eq!(carrier("file_upload"), Some("http"));
        },
        ..case(
            "OTA and file upload need MQTT and HTTP together",
            &TCP2,
            &["ota", "file_upload"],
            "mqtt",
            &["mqtt", "http"],
            &[],
        )
    },
    case(
        "no long connection makes HTTP the primary of a combination",
        &TCP3_SHORT,
        &["ota", "file_upload"],
        "http",
        &["http", "mqtt"],
        &[],
    ),
    Case {
        check: |d| {
            let nodes: Vec<&str> = d.trace.iter().map(|s| s.node.as_str()).collect();
            assert_eq!(
                nodes,
                ["network", "enos_format", "third_party", "message_integration"]
            );
        },
        ..case(
            "no EnOS format and another cloud gets message integration",
            &["network=tcp", "enos_format=no", "third_party_cloud=yes"],
            &[],
            "message_integration",
            &[],
            &[],
        )
    },
    Case {
        check: |d| {
            let used = d
                .answers
                .iter()
                .find(|u| u.question == "third_party_cloud")
                .expect("used");
            assert!(used.by_default, "third_party_cloud defaults to no");
            // enos_format is never needed on this path, so it is not asked for.
            assert!(d.trace.iter().all(|s| s.node != "enos_format"));
        },
        ..case(
            "no network and no other cloud gets an edge gateway",
            &["network=none"],
            &[],
            "edge_gateway",
            &[],
            &[],
        )
    },
    // Integration is one-way: no OTA.
    case(
        "no network but another cloud gets message integration",
        &["network=none", "third_party_cloud=yes"],
        &["ota", "report_data"],
        "message_integration",
        &[],
        &["ota"],
    ),
    case(
        "a constrained UDP device on EnOS 2 gets CoAP",
        &[
            "network=udp",
            "enos_format=yes",
            "enos_version=2",
            "constrained=yes",
        ],
        &["report_data"],
        "coap",
        &["coap"],
        &[],
    ),
    Case {
        check: |d| {
            assert!(
                d.hints.iter().any(|h| h.contains("CoAP") && h.contains("EnOS 2")),
                "{:?}",
                d.hints
            );
            assert_eq!(d.trace.last().map(|s| s.node.as_str()), Some("no_protocol"));
        },
        ..case(
            "a UDP-only device on EnOS 3 gets no CoAP",
            &["network=udp", "enos_format=yes", "enos_version=3"],
            &["report_data"],
            "none",
            &[],
            &["report_data"],
        )
    },
    case(
        "preference: constrained first",
        &[
            "network=both",
            "enos_format=yes",
            "enos_version=2",
            "constrained=yes",
        ],
        &["report_data"],
        "coap",
        &["coap"],
        &[],
    ),
    case(
        "preference: constrained before no long connection",
        &[
            "network=both",
            "enos_format=yes",
            "enos_version=2",
            "constrained=yes",
            "long_connection=no",
        ],
        &["report_data"],
        "coap",
        &["coap"],
        &[],
    ),
    case(
        "preference: no long connection, then HTTP",
        &[
            "network=both",
            "enos_format=yes",
            "enos_version=2",
            "long_connection=no",
        ],
        &["report_data"],
        "http",
        &["http"],
        &[],
    ),
    case(
        "preference: otherwise MQTT",
        &["network=both", "enos_format=yes", "enos_version=2"],
        &["report_data"],
        "mqtt",
        &["mqtt"],
        &[],
    ),
    case(
        "a constrained TCP device cannot get CoAP",
        &[
            "network=tcp",
            "enos_format=yes",
            "enos_version=2",
            "constrained=yes",
        ],
        &[],
        "mqtt",
        &["mqtt"],
        &[],
    ),
    Case {
        check: |d| {
            let hint = d.hints.join("\n");
            assert!(
                hint.contains("MQTT") && hint.contains("tcp") && hint.contains("gateway"),
                "{hint}"
            );
        },
        ..case(
            "an unmet need names what would change the answer",
            &["network=udp", "enos_format=yes", "enos_version=2"],
            &["ota", "report_data"],
            "coap",
            &["coap"],
            &["ota"],
        )
    },
    // Only MQTT does two-way certificates; HTTP's one-way support does not count.
    case(
        "partial support does not meet a need",
        &TCP3_SHORT,
        &["mutual_tls"],
        "mqtt",
        &["mqtt"],
        &[],
    ),
    Case {
        check: |d| assert!(d.reasons.iter().any(|r| r.contains("one-way")), "{:?}", d.reasons),
        ..case(
            "partial support is explained",
            &["network=tcp", "enos_format=yes", "enos_version=3"],
            &["mutual_tls", "file_upload"],
            "mqtt",
            &["mqtt", "http"],
            &[],
        )
    },
];

#[test]
fn decisions_for_every_flow_path_and_outcome() {
    let caps = caps();
    for c in CASES {
        let a = answers(&caps, c.answers, c.needs);
        let d = engine::decide(&caps, &a).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(d.recommendation, c.recommendation, "{}", c.name);
        assert_eq!(d.protocols, c.protocols, "{}", c.name);
        assert_eq!(d.unmet, c.unmet, "{}", c.name);
        (c.check)(&d);
    }
}

#[test]
fn the_walk_records_the_path_and_the_protocols_each_node_leaves_open() {
    let caps = caps();
    let a = answers(
        &caps,
        &["network=udp", "enos_format=yes", "enos_version=3"],
        &["report_data"],
    );
    let walked = engine::walk(&caps, &a, true).expect("walks");
    assert_eq!(walked.end, End::Outcome("none".into()));
    let path: Vec<(&str, &str, Vec<String>)> = walked
        .visits
        .iter()
        .map(|v| (v.node.id.as_str(), v.branch.as_str(), v.open.clone()))
        .collect();
    let open = |ps: &[&str]| ps.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    assert_eq!(
        path,
        [
            ("network", "udp", open(&["mqtt", "coap", "http"])),
            ("enos_format", "yes", open(&["mqtt", "coap", "http"])),
            ("by_transport", "some", open(&["coap"])),
            ("by_version", "none", open(&[])),
            ("no_protocol", "none", open(&[])),
        ]
    );
    assert_eq!(
        walked.visits[2].step,
        Step::Filtered {
            dropped: vec!["mqtt".into(), "http".into()]
        }
    );
}

#[test]
fn the_explanation_gives_reasons_in_flow_order_and_hints_from_the_walk() {
    let caps = caps();
    let a = answers(&caps, &TCP2, &["ota", "file_upload"]);
    let walked = engine::walk(&caps, &a, true).expect("walks");
    let d = engine::explain(&caps, &a, &walked, "direct");
    assert_eq!(
        d.reasons,
        [
            "Supports TCP/UDP communication? TCP only (network=tcp)",
            "Firmware can speak the EnOS protocol format? Yes (enos_format=yes)",
            "CoAP runs over udp, which a device with network=tcp cannot use",
            "Needed: Firmware OTA update; Report file-type data",
            "No single protocol covers every need: use MQTT and HTTP together",
            "MQTT suits a device that keeps a long connection",
            "MQTT carries ota",
            "HTTP carries file_upload",
        ]
    );
    assert!(d.hints.is_empty());
}

#[test]
fn missing_answers_list_every_id_the_flow_could_need() {
    let caps = caps();
    let a = answers(&caps, &[], &[]);
    match engine::decide(&caps, &a) {
        Err(EngineError::Missing(ids)) => assert_eq!(ids, ["network", "enos_format", "enos_version"]),
        other => panic!("expected missing answers, got {other:?}"),
    }
    // Once the device heads to integration, the EnOS version is no longer needed.
    let a = answers(&caps, &["enos_format=no"], &[]);
    match engine::decide(&caps, &a) {
        Err(EngineError::Missing(ids)) => assert_eq!(ids, ["network"]),
        other => panic!("expected missing answers, got {other:?}"),
    }
}

#[test]
fn walking_without_defaults_asks_only_what_can_change_the_outcome() {
    let caps = caps();
    let mut a = answers(&caps, &[], &[]);
    let ask = |a: &enos_connect::answers::Answers| match engine::walk(&caps, a, false).expect("walks").end {
        End::Pending(p) => Some(p),
        End::Outcome(_) => None,
    };
    assert_eq!(ask(&a), Some(Pending::Question("network".into())));
    a.set(&caps, "network", "tcp", "t").expect("ok");
    assert_eq!(ask(&a), Some(Pending::Question("enos_format".into())));
    a.set(&caps, "enos_format", "yes", "t").expect("ok");
    assert_eq!(ask(&a), Some(Pending::Question("enos_version".into())));
    a.set(&caps, "enos_version", "3", "t").expect("ok");
    assert_eq!(ask(&a), Some(Pending::Needs));
    a.add_needs(&caps, ["ota"], "t").expect("ok");
    // Only MQTT covers OTA: neither `constrained` nor `long_connection` can change that, but
    // each can make a caveat of it (OTA over MQTT without a long connection, MQTT on a
    // constrained device), so both are asked, in the caveats' order.
    assert_eq!(ask(&a), Some(Pending::Question("long_connection".into())));
    a.set(&caps, "long_connection", "yes", "t").expect("ok");
    assert_eq!(ask(&a), Some(Pending::Question("constrained".into())));
    a.set(&caps, "constrained", "no", "t").expect("ok");
    assert_eq!(ask(&a), None);
    // The needs are asked on every path, before an outcome that is not a direct connection.
    let mut a = answers(&caps, &["network=none", "third_party_cloud=yes"], &[]);
    a.needs = None;
    assert_eq!(ask(&a), Some(Pending::Needs));
    a.add_needs(&caps, ["ota"], "t").expect("ok");
    assert_eq!(ask(&a), None);
}

#[test]
fn decisions_are_deterministic() {
    let caps = caps();
    let a = answers(
        &caps,
        &["network=both", "enos_format=yes", "enos_version=2"],
        &["ota", "file_upload"],
    );
    let first = engine::decide(&caps, &a).expect("decides");
    for _ in 0..20 {
        assert_eq!(engine::decide(&caps, &a).expect("decides"), first);
    }
}
