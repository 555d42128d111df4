//! The catalogue of `device-test`: every case as data (its id, the feature of
//! `capabilities.toml` a device must claim for it, the protocol whose exchange it is made of,
//! what it checks, what it records, and the fix it suggests), and the choice of the cases a
//! run makes. What is offered over which protocol comes from `capabilities.toml`; what a case
//! does is [`Kind`], an enum the runner dispatches on.

use crate::answers::Answers;
use crate::capabilities::Capabilities;

/// The version of the catalogue: changes when a case is added or its criteria change, so a CI
/// system comparing reports knows whether two runs judged by the same rules.
pub const CATALOGUE_VERSION: &str = "1";

/// What a case does, for the runner (the id is data; control flow follows this enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    LoginSigned,
    LoginKeepalive,
    ReportModel,
    ReportTimestamps,
    MeasurepointSet,
    MeasurepointGet,
    Service,
    PubackRetry,
    ReconnectBackoff,
    ReconnectResume,
    OtaUpgrade,
    SubdeviceRelogin,
    TlsVerifyServer,
}

/// One case of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The stable id reports and `--case` use.
    pub id: &'static str,
    pub kind: Kind,
    /// The feature (a `[[features]]` id of `capabilities.toml`) the device must claim in its
    /// answers' `needs` for the case to run, and that the comparison table must offer over the
    /// device's protocol; `None`: every device is examined.
    pub feature: Option<&'static str>,
    /// The protocol (a `[[protocols]]` id) whose exchange the case is made of (PUBACK, CONNECT,
    /// PINGREQ); a device logged in over another is not examined by it.
    pub protocol: Option<&'static str>,
    /// Only with `--long` (it takes a keep-alive period).
    pub long: bool,
    /// What the case checks, in a sentence (`--list`, the docs).
    pub checks: &'static str,
    /// What it records as evidence.
    pub evidence: &'static str,
    /// What to change in the firmware when it fails.
    pub fix: &'static str,
}

/// The catalogue, in the order reports list it.
#[rustfmt::skip]
pub const CASES: &[Case] = &[
    Case {
        id: "login.signed", kind: Kind::LoginSigned, feature: None, protocol: None, long: false,
        checks: "the device logs in with a correctly signed EnOS login (securemode 2 with its secret, or 3 and an activation) within --wait",
        evidence: "every login attempt before the first that succeeds: its CONNACK or HTTP/CoAP code, the securemode it asked for",
        fix: "sign the sorted clientId, deviceKey, productKey and timestamp followed by the secret with SHA-256 (hex), and send the same timestamp in the client id",
    },
    Case {
        id: "login.keepalive", kind: Kind::LoginKeepalive, feature: None, protocol: Some("mqtt"), long: true,
        checks: "its MQTT keep-alive is within what EnOS's SDKs allow (30 to 1,200 s), and a packet (PINGREQ or other traffic) comes within 1.5 times it",
        evidence: "the keep-alive of the CONNECT, and the times of the packets the device sent for 1.5 keep-alive periods",
        fix: "set a keep-alive between 30 and 1,200 s (the SDKs use 60) and send PINGREQ when nothing else went out for that long",
    },
    Case {
        id: "report.model", kind: Kind::ReportModel, feature: None, protocol: None, long: false,
        checks: "it posts at least one measure point while the suite runs, and every post is valid against the product's model (known points, their types)",
        evidence: "every measure point post (plain, batch, resume) with the code serve answered",
        fix: "post only the measure points of the product's model, each with a value of its type",
    },
    Case {
        id: "report.timestamps", kind: Kind::ReportTimestamps, feature: None, protocol: None, long: false,
        checks: "the `time` its posts carry is within 5 minutes of this machine's clock (warn otherwise: an unsynchronised device clock)",
        evidence: "the posts that carry a time, each with its difference from the clock when it arrived",
        fix: "synchronise the device's clock (NTP, or the time of a server it trusts) before stamping points",
    },
    Case {
        id: "command.measurepoint_set", kind: Kind::MeasurepointSet, feature: Some("downlink_commands"), protocol: None, long: false,
        checks: "the suite sets a measure point of the model (thing.service.measurepoint.set); the device replies with the command's id and code 200 within --reply-timeout",
        evidence: "the command with its id, and the device's reply (its id and code) or its absence",
        fix: "answer every command on its topic + `_reply` with the command's id (the same string) and code 200",
    },
    Case {
        id: "command.measurepoint_get", kind: Kind::MeasurepointGet, feature: Some("downlink_commands"), protocol: None, long: false,
        checks: "the suite asks for a measure point of the model (thing.service.measurepoint.get); the device replies with the command's id and code 200 within --reply-timeout",
        evidence: "the command with its id, and the device's reply (its id and code) or its absence",
        fix: "answer every command on its topic + `_reply` with the command's id (the same string) and code 200",
    },
    Case {
        id: "command.service", kind: Kind::Service, feature: Some("downlink_commands"), protocol: None, long: false,
        checks: "the suite invokes every service of the model (thing.service.{id}); the device replies to each with its id and code 200 within --reply-timeout",
        evidence: "each invocation with its id, and the device's reply (its id and code) or its absence",
        fix: "handle every service of the product's model and answer on the service's topic + `_reply` with the command's id and code 200",
    },
    Case {
        id: "mqtt.puback_retry", kind: Kind::PubackRetry, feature: None, protocol: Some("mqtt"), long: false,
        checks: "the suite withholds the PUBACK of one QoS 1 PUBLISH: pass if the device resends it with DUP and the same packet id while connected, warn if only after a reconnect (the suite drops the connection after 20 s), fail if never",
        evidence: "the PUBLISH whose PUBACK was withheld (packet id, topic), the device's PUBLISHes after it, the drop and the reconnect",
        fix: "keep every unacknowledged QoS 1 PUBLISH and resend it with the DUP flag and its packet id (after a timeout, and always after a reconnect)",
    },
    Case {
        id: "reconnect.backoff", kind: Kind::ReconnectBackoff, feature: None, protocol: Some("mqtt"), long: false,
        checks: "the suite drops the connection and refuses the next reconnects (CONNACK 3), 4 drops in all: the first reconnect comes at least 1 s later, the gaps grow, and they carry jitter (growing gaps without jitter: warn; at once, or a fixed short interval: fail)",
        evidence: "the drop, every CONNECT after it with its time, and the gaps between them",
        fix: "reconnect after at least 1 s, doubling the wait after each failure up to a cap, with a random part (jitter) so a fleet does not reconnect in step",
    },
    Case {
        id: "reconnect.resume", kind: Kind::ReconnectResume, feature: Some("batch_offline_points"), protocol: None, long: false,
        checks: "after an outage of at least 5 s (the connection dropped, reconnects refused), the points measured during it arrive with their original times (resume topics, or posts with `time`)",
        evidence: "the outage, and the posts after the reconnect with the times they carry",
        fix: "buffer the points measured while offline and send them after the reconnect with thing.measurepoint.resume (or .resume.batch), each with the time it was measured",
    },
    Case {
        id: "ota.upgrade", kind: Kind::OtaUpgrade, feature: Some("ota"), protocol: None, long: false,
        checks: "the suite pushes ota.device.upgrade with a firmware of the registry; the device answers, reports ota.progress steps rising to 100 (or a documented negative failure step), then the new version with ota.inform, within --ota-timeout",
        evidence: "the command and its reply, every ota.progress step and ota.inform after it",
        fix: "answer ota.device.upgrade, report ota.progress from 0 to 100 as the download and the upgrade go (or -1 to -5 when one fails), then the new version with ota.inform",
    },
    Case {
        id: "subdevice.relogin", kind: Kind::SubdeviceRelogin, feature: Some("subdevice_management"), protocol: None, long: false,
        checks: "a gateway with sub-devices in the registry: after a dropped connection it logs its sub-devices back in",
        evidence: "the sub-device logins before the drop, and those after the reconnect",
        fix: "after every reconnect, log in again (combine.login) every sub-device that was logged in",
    },
    Case {
        id: "tls.verify_server", kind: Kind::TlsVerifyServer, feature: None, protocol: Some("mqtt"), long: false,
        checks: "a device on --mqtts: for this case the suite presents a certificate from a CA the device does not trust; pass only if no CONNECT arrives over it",
        evidence: "the TLS connections served the untrusted certificate, and any CONNECT that came over one",
        fix: "verify the server's certificate chain (and name) against the CA EnOS's certificate comes from, and never send the login over a connection that fails it",
    },
];

/// The fix the catalogue suggests for a kind of case.
pub(crate) fn fix_of(kind: Kind) -> &'static str {
    CASES
        .iter()
        .find(|c| c.kind == kind)
        .map(|c| c.fix)
        .unwrap_or_default()
}

/// The case with this id.
pub(crate) fn case(id: &str) -> Option<&'static Case> {
    CASES.iter().find(|c| c.id == id)
}

/// Why a case is not run (its verdict is `skipped` with this reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The answers do not claim the case's feature.
    NotClaimed { feature: String },
    /// The comparison table does not offer the feature over the device's protocol.
    NotOffered { feature: String, protocol: String },
    /// The case is made of another protocol's exchange.
    OtherProtocol { protocol: String, device: String },
    /// `--long` only.
    Long,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotClaimed { feature } => {
                write!(f, "not claimed: the answers' needs do not list `{feature}`")
            }
            Skip::NotOffered { feature, protocol } => {
                write!(f, "not offered over {protocol} (comparison table: `{feature}`)")
            }
            Skip::OtherProtocol { protocol, device } => {
                write!(f, "an {protocol} case; the device logged in over {device}")
            }
            Skip::Long => f.write_str("takes a keep-alive period: run with --long"),
        }
    }
}

/// What the device claims: the features of its answers' needs, when an answers file was given.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    /// `None`: no answers file; the cases with a feature are then not claimed.
    pub needs: Option<Vec<String>>,
}

impl Claims {
    pub fn from_answers(answers: Option<&Answers>) -> Self {
        Claims {
            needs: answers.map(|a| a.needs.clone().unwrap_or_default()),
        }
    }

    pub fn claims(&self, feature: &str) -> bool {
        self.needs
            .as_ref()
            .is_some_and(|n| n.iter().any(|f| f == feature))
    }
}

/// Whether `case` runs for a device logged in over `protocol` (a protocol id of
/// `capabilities.toml`), with these claims: `None`, or why it is skipped. What the table offers
/// comes from `caps`.
pub(crate) fn skip(
    caps: &Capabilities,
    case: &Case,
    claims: &Claims,
    protocol: &str,
    long: bool,
) -> Option<Skip> {
    if case.long && !long {
        return Some(Skip::Long);
    }
    if let Some(p) = case.protocol
        && p != protocol
    {
        return Some(Skip::OtherProtocol {
            protocol: caps.protocol_title(p).to_string(),
            device: caps.protocol_title(protocol).to_string(),
        });
    }
    let feature = case.feature?;
    if !claims.claims(feature) {
        return Some(Skip::NotClaimed {
            feature: feature.to_string(),
        });
    }
    let offered = caps
        .feature(feature)
        .is_some_and(|f| f.support_for(protocol).offered());
    (!offered).then(|| Skip::NotOffered {
        feature: feature.to_string(),
        protocol: caps.protocol_title(protocol).to_string(),
    })
}

/// The cases `--case` names (all when empty), in the catalogue's order; an unknown id is the
/// error, with the nearest known one.
pub fn select(ids: &[String]) -> Result<Vec<&'static Case>, String> {
    if ids.is_empty() {
        return Ok(CASES.iter().collect());
    }
    for id in ids {
        if case(id).is_none() {
            let hint = crate::source_text::nearest(id, CASES.iter().map(|c| c.id))
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            return Err(format!(
                "`{id}` is not a case of the catalogue{hint}; `device-test --list` lists them"
            ));
        }
    }
    Ok(CASES.iter().filter(|c| ids.iter().any(|i| i == c.id)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_and_protocol_a_case_names_is_in_the_capabilities() {
        let caps = crate::capabilities::embedded().expect("caps");
        for c in CASES {
            if let Some(f) = c.feature {
                assert!(caps.feature(f).is_some(), "{}: feature {f}", c.id);
            }
            if let Some(p) = c.protocol {
                assert!(caps.protocol(p).is_some(), "{}: protocol {p}", c.id);
            }
        }
        let mut ids: Vec<_> = CASES.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CASES.len(), "ids are unique");
    }

    #[test]
    fn a_case_is_skipped_unclaimed_not_offered_or_over_another_protocol() {
        let caps = crate::capabilities::embedded().expect("caps");
        let claims = Claims {
            needs: Some(vec!["ota".into(), "downlink_commands".into()]),
        };
        let ota = case("ota.upgrade").expect("case");
        assert_eq!(skip(&caps, ota, &claims, "mqtt", false), None);
        assert_eq!(
            skip(&caps, ota, &claims, "coap", false)
                .map(|s| s.to_string())
                .as_deref(),
            Some("not offered over CoAP (comparison table: `ota`)")
        );
        let set = case("command.measurepoint_set").expect("case");
        assert_eq!(
            skip(&caps, set, &claims, "coap", false),
            None,
            "downlink over CoAP"
        );
        assert!(matches!(
            skip(&caps, set, &claims, "http", false),
            Some(Skip::NotOffered { .. })
        ));
        let resume = case("reconnect.resume").expect("case");
        assert_eq!(
            skip(&caps, resume, &claims, "mqtt", false),
            Some(Skip::NotClaimed {
                feature: "batch_offline_points".into()
            })
        );
        assert_eq!(
            skip(&caps, resume, &Claims::default(), "mqtt", false)
                .map(|s| s.to_string())
                .as_deref(),
            Some("not claimed: the answers' needs do not list `batch_offline_points`")
        );
        let backoff = case("reconnect.backoff").expect("case");
        assert!(matches!(
            skip(&caps, backoff, &claims, "http", false),
            Some(Skip::OtherProtocol { .. })
        ));
        let keepalive = case("login.keepalive").expect("case");
        assert_eq!(skip(&caps, keepalive, &claims, "mqtt", false), Some(Skip::Long));
        assert_eq!(skip(&caps, keepalive, &claims, "mqtt", true), None);
    }

    #[test]
    fn an_unknown_case_id_is_refused_with_the_nearest() {
        let e = select(&["ota.upgrad".into()]).expect_err("unknown");
        assert!(e.contains("did you mean `ota.upgrade`?"), "{e}");
        let some = select(&["ota.upgrade".into(), "login.signed".into()]).expect("known");
        assert_eq!(
            some.iter().map(|c| c.id).collect::<Vec<_>>(),
            ["login.signed", "ota.upgrade"],
            "in the catalogue's order"
        );
    }
}
