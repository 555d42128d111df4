//! The rules engine through the library: the comparison table, every flow path and outcome,
//! combinations, unmet needs and missing answers.

mod common;

use common::{answers, caps};
use enos_connect::capabilities::Support;
use enos_connect::engine::{self, EngineError, Pending, Step};

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

#[test]
fn tcp_device_on_enos2_needing_ota_gets_mqtt() {
    let caps = caps();
    let a = answers(
        &caps,
        &["network=tcp", "enos_format=yes", "enos_version=2"],
        &["ota"],
    );
    let d = engine::decide(&caps, &a).expect("decides");
    assert_eq!(d.recommendation, "mqtt");
    assert_eq!(d.protocols, ["mqtt"]);
    assert!(d.unmet.is_empty());
}

#[test]
fn file_upload_without_long_connection_gets_http() {
    let caps = caps();
    let a = answers(
        &caps,
        &[
            "network=tcp",
            "enos_format=yes",
            "enos_version=3",
            "long_connection=no",
        ],
        &["file_upload"],
    );
    let d = engine::decide(&caps, &a).expect("decides");
    assert_eq!(d.recommendation, "http");
    assert_eq!(d.protocols, ["http"]);
}

#[test]
fn ota_and_file_upload_need_mqtt_and_http_together() {
    let caps = caps();
    let a = answers(
        &caps,
        &["network=tcp", "enos_format=yes", "enos_version=2"],
        &["ota", "file_upload"],
    );
    let d = engine::decide(&caps, &a).expect("decides");
    assert_eq!(d.protocols, ["mqtt", "http"]);
    assert!(d.combination);
    assert!(d.unmet.is_empty());
    let carrier = |need: &str| {
        d.carriers
            .iter()
            .find(|c| c.need == need)
            .map(|c| c.protocol.clone())
    };
    assert_eq!(carrier("ota").as_deref(), Some("mqtt"));
    assert_eq!(carrier("file_upload").as_deref(), Some("http"));
}

#[test]
fn no_long_connection_makes_http_the_primary_of_a_combination() {
    let caps = caps();
    let a = answers(
        &caps,
        &[
            "network=tcp",
            "enos_format=yes",
            "enos_version=3",
            "long_connection=no",
        ],
        &["ota", "file_upload"],
    );
    let d = engine::decide(&caps, &a).expect("decides");
    assert_eq!(d.recommendation, "http");
    assert_eq!(d.protocols, ["http", "mqtt"]);
}

#[test]
fn no_enos_format_and_another_cloud_gets_message_integration() {
    let caps = caps();
    let a = answers(
        &caps,
        &["network=tcp", "enos_format=no", "third_party_cloud=yes"],
        &[],
    );
    let d = engine::decide(&caps, &a).expect("decides");
    assert_eq!(d.recommendation, "message_integration");
    assert!(d.protocols.is_empty());
    let nodes: Vec<&str> = d.trace.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(
        nodes,
        ["network", "enos_format", "third_party", "message_integration"]
    );
}

#[test]
fn no_network_and_no_other_cloud_gets_edge_gateway() {
    let caps = caps();
    let a = answers(&caps, &["network=none"], &[]);
    let d = engine::decide(&caps, &a).expect("third_party_cloud defaults to no");
    assert_eq!(d.recommendation, "edge_gateway");
    let used = d
        .answers
        .iter()
        .find(|u| u.question == "third_party_cloud")
        .expect("used");
    assert!(used.by_default);
    // enos_format is never needed on this path, so it is not asked for.
    assert!(d.trace.iter().all(|s| s.node != "enos_format"));
}

#[test]
fn no_network_but_another_cloud_gets_message_integration() {
    let caps = caps();
    let a = answers(
        &caps,
        &["network=none", "third_party_cloud=yes"],
        &["ota", "report_data"],
    );
    let d = engine::decide(&caps, &a).expect("decides");
    assert_eq!(d.recommendation, "message_integration");
    assert_eq!(d.unmet, ["ota"], "integration is one-way: no OTA");
}

#[test]
fn constrained_udp_device_on_enos2_gets_coap() {
    let caps = caps();
    let a = answers(
        &caps,
        &[
            "network=udp",
            "enos_format=yes",
            "enos_version=2",
            "constrained=yes",
        ],
        &["report_data"],
    );
    let d = engine::decide(&caps, &a).expect("decides");
    assert_eq!(d.recommendation, "coap");
    assert_eq!(d.protocols, ["coap"]);
}

#[test]
fn udp_only_device_on_enos3_gets_no_coap() {
    let caps = caps();
    let a = answers(
        &caps,
        &["network=udp", "enos_format=yes", "enos_version=3"],
        &["report_data"],
    );
    let d = engine::decide(&caps, &a).expect("decides");
    assert_eq!(d.recommendation, "none");
    assert!(!d.protocols.contains(&"coap".to_string()));
    assert_eq!(d.unmet, ["report_data"]);
    assert!(
        d.hints.iter().any(|h| h.contains("CoAP") && h.contains("EnOS 2")),
        "{:?}",
        d.hints
    );
    assert_eq!(d.trace.last().map(|s| s.node.as_str()), Some("no_protocol"));
}

#[test]
fn preference_follows_constrained_then_long_connection_then_mqtt() {
    let caps = caps();
    let base = ["network=both", "enos_format=yes", "enos_version=2"];
    let rec = |extra: &[&str]| {
        let mut pairs = base.to_vec();
        pairs.extend_from_slice(extra);
        engine::decide(&caps, &answers(&caps, &pairs, &["report_data"]))
            .expect("decides")
            .recommendation
    };
    assert_eq!(rec(&["constrained=yes"]), "coap");
    assert_eq!(rec(&["constrained=yes", "long_connection=no"]), "coap");
    assert_eq!(rec(&["long_connection=no"]), "http");
    assert_eq!(rec(&[]), "mqtt");
}

#[test]
fn constrained_tcp_device_cannot_get_coap() {
    let caps = caps();
    let a = answers(
        &caps,
        &[
            "network=tcp",
            "enos_format=yes",
            "enos_version=2",
            "constrained=yes",
        ],
        &[],
    );
    let d = engine::decide(&caps, &a).expect("decides");
    assert_eq!(d.recommendation, "mqtt");
}

#[test]
fn an_unmet_need_names_what_would_change_the_answer() {
    let caps = caps();
    let a = answers(
        &caps,
        &["network=udp", "enos_format=yes", "enos_version=2"],
        &["ota", "report_data"],
    );
    let d = engine::decide(&caps, &a).expect("decides");
    assert_eq!(d.recommendation, "coap");
    assert_eq!(d.unmet, ["ota"]);
    let hint = d.hints.join("\n");
    assert!(
        hint.contains("MQTT") && hint.contains("tcp") && hint.contains("gateway"),
        "{hint}"
    );
}

#[test]
fn partial_support_does_not_meet_a_need_and_is_explained() {
    let caps = caps();
    let a = answers(
        &caps,
        &[
            "network=tcp",
            "enos_format=yes",
            "enos_version=3",
            "long_connection=no",
        ],
        &["mutual_tls"],
    );
    let d = engine::decide(&caps, &a).expect("decides");
    assert_eq!(d.recommendation, "mqtt", "only MQTT does two-way certificates");
    let a = answers(
        &caps,
        &["network=tcp", "enos_format=yes", "enos_version=3"],
        &["mutual_tls", "file_upload"],
    );
    let d = engine::decide(&caps, &a).expect("decides");
    assert_eq!(d.protocols.len(), 2);
    assert!(d.reasons.iter().any(|r| r.contains("one-way")), "{:?}", d.reasons);
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
    let ask = |a: &enos_connect::answers::Answers| match engine::walk(&caps, a, false).expect("walks") {
        Step::Ask(p) => Some(p),
        Step::Decided(_) => None,
    };
    assert_eq!(ask(&a), Some(Pending::Question("network".into())));
    a.set(&caps, "network", "tcp", "t").expect("ok");
    assert_eq!(ask(&a), Some(Pending::Question("enos_format".into())));
    a.set(&caps, "enos_format", "yes", "t").expect("ok");
    assert_eq!(ask(&a), Some(Pending::Question("enos_version".into())));
    a.set(&caps, "enos_version", "3", "t").expect("ok");
    assert_eq!(ask(&a), Some(Pending::Needs));
    a.add_needs(&caps, ["ota"], "t").expect("ok");
    // Only MQTT covers OTA: neither `constrained` nor `long_connection` can change that.
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
