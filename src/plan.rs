//! Connection plans: a decision turned into what the device must be configured with, per
//! protocol (endpoint, ports, security, authentication, login fields, topics, the probe command)
//! or, for integration and gateway outcomes, the steps to take on the platform. Pure: no I/O.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::capabilities::{Capabilities, Support};
use crate::credentials::fill;
use crate::engine::Decision;

/// The EnOS deployment the device connects to (env and domain, or one host for a private
/// deployment) and the device's keys; anything left out stays a `{placeholder}`.
#[derive(Debug, Clone, Default)]
pub struct Deployment {
    pub env: Option<String>,
    pub domain: String,
    pub host: Option<String>,
    pub product_key: Option<String>,
    pub device_key: Option<String>,
    /// The measure points the smoke-test command posts, as `ID=VALUE`; a placeholder when none.
    pub measurepoints: Vec<String>,
}

pub const DEFAULT_DOMAIN: &str = "envisioniot.com";

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub recommendation: String,
    pub outcome: String,
    pub title: String,
    pub protocols: Vec<ProtocolPlan>,
    /// Platform steps for outcomes that are not a direct protocol.
    pub steps: Vec<String>,
    pub unmet: Vec<String>,
    pub hints: Vec<String>,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProtocolPlan {
    pub protocol: String,
    pub title: String,
    pub carries: Vec<String>,
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_note: Option<String>,
    pub transport: String,
    pub ports: Vec<PlanPort>,
    pub security: String,
    pub auth: Vec<PlanAuth>,
    pub login: Vec<LoginField>,
    pub topics: Vec<PlanTopics>,
    pub probe: String,
    pub credentials: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanPort {
    pub port: u16,
    pub scheme: String,
    pub security: String,
    pub label: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanAuth {
    pub mode: String,
    pub title: String,
    pub recommended: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoginField {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanTopics {
    pub need: String,
    pub title: String,
    pub topics: Vec<String>,
}

impl Deployment {
    fn vars(&self) -> BTreeMap<&'static str, String> {
        let mut vars = BTreeMap::new();
        vars.insert("domain", self.domain.clone());
        if let Some(e) = &self.env {
            vars.insert("env", e.clone());
        }
        if let Some(pk) = &self.product_key {
            vars.insert("pk", pk.clone());
        }
        if let Some(dk) = &self.device_key {
            vars.insert("dk", dk.clone());
        }
        vars
    }
}

pub fn plan(caps: &Capabilities, decision: &Decision, deployment: &Deployment) -> Plan {
    let vars = deployment.vars();
    let title = caps
        .protocol(&decision.recommendation)
        .map(|p| p.title.clone())
        .or_else(|| caps.outcome(&decision.recommendation).map(|o| o.title.clone()))
        .unwrap_or_else(|| decision.recommendation.clone());
    let protocols = decision
        .protocols
        .iter()
        .filter_map(|id| protocol_plan(caps, decision, deployment, &vars, id))
        .collect();
    let steps = caps
        .outcome(&decision.outcome)
        .map(|o| {
            let mut steps = vec![o.summary.clone()];
            steps.extend(o.steps.iter().map(|s| fill(s, &vars)));
            steps
        })
        .unwrap_or_default();
    Plan {
        recommendation: decision.recommendation.clone(),
        outcome: decision.outcome.clone(),
        title,
        protocols,
        steps,
        unmet: decision.unmet.clone(),
        hints: decision.hints.clone(),
        reasons: decision.reasons.clone(),
    }
}

/// One protocol's part of the plan, or `None` for an id the capabilities do not know.
fn protocol_plan(
    caps: &Capabilities,
    decision: &Decision,
    deployment: &Deployment,
    vars: &BTreeMap<&'static str, String>,
    id: &str,
) -> Option<ProtocolPlan> {
    let proto = caps.protocol(id)?;
    let host = match &deployment.host {
        Some(h) => h.clone(),
        None => fill(&proto.host, vars),
    };
    let ports: Vec<PlanPort> = proto
        .ports
        .iter()
        .map(|p| PlanPort {
            port: p.port,
            scheme: p.scheme.clone(),
            security: p.security.clone(),
            label: fill(&p.label, vars),
            url: format!("{}://{host}:{}", p.scheme, p.port),
        })
        .collect();
    let carries: Vec<String> = decision
        .carriers
        .iter()
        .filter(|c| c.protocol == id)
        .map(|c| c.need.clone())
        .collect();
    let recipe = caps.credentials.get(id);
    let keys = format!(
        "--product-key {} --device-key {}",
        vars.get("pk").map_or("{pk}", String::as_str),
        vars.get("dk").map_or("{dk}", String::as_str)
    );
    Some(ProtocolPlan {
        protocol: id.to_string(),
        title: proto.title.clone(),
        auth: auth_modes(caps, decision, id, vars),
        login: recipe.map(|r| login_fields(caps, r, vars)).unwrap_or_default(),
        topics: topics(caps, &carries, id, vars),
        probe: smoke_test(caps, proto, &host, &keys, deployment, &carries),
        credentials: match recipe {
            Some(_) => format!("enos-connect credentials {id} {keys}"),
            None => String::new(),
        },
        carries,
        host,
        host_note: proto.host_note.clone(),
        transport: proto.transport.clone(),
        ports,
        security: proto.security.clone(),
    })
}

/// The login fields a recipe builds, in words: each field's template filled in, the PSK key
/// and the sign as recipes, the auth request, the note on the client id.
fn login_fields(
    caps: &Capabilities,
    r: &crate::capabilities::CredentialRecipe,
    vars: &BTreeMap<&'static str, String>,
) -> Vec<LoginField> {
    let field = |name: &str, value: String| LoginField {
        name: name.to_string(),
        value,
    };
    let mut lvars = vars.clone();
    // How the fields are built: the secure mode shows every value the recipe allows.
    let modes: Vec<String> = r
        .modes
        .iter()
        .filter_map(|m| caps.secure_modes.get(m).map(|sm| sm.value.to_string()))
        .collect();
    lvars.insert("secure_mode", format!("{{{}}}", modes.join("|")));
    let secret = if r.modes.iter().any(|m| m == "dynamic") {
        "the device secret (the product secret when activating dynamically)"
    } else {
        "the device secret"
    };
    let mut login: Vec<LoginField> = r
        .fields
        .iter()
        .map(|(name, t)| field(name, fill(t, &lvars)))
        .collect();
    if let Some(psk) = &r.psk_key {
        login.push(field(
            &psk.field,
            format!(
                "hex of bytes {} to {} of SHA-256({secret})",
                psk.digest_from,
                psk.digest_from.saturating_add(psk.len).saturating_sub(1)
            ),
        ));
    }
    login.push(field(
        &r.sign.field,
        format!(
            "uppercase hex SHA-256 of \"{}\" followed by {secret}",
            fill(&r.sign.content, &lvars)
        ),
    ));
    if let Some(req) = &r.request {
        login.push(field(
            "auth request",
            format!("{} {} {}", req.method, fill(&req.path, &lvars), req.body),
        ));
    }
    if let Some(note) = &r.client_id_note {
        login.push(field("note", note.clone()));
    }
    login
}

/// The topics of each need a protocol carries, filled in.
fn topics(
    caps: &Capabilities,
    carries: &[String],
    id: &str,
    vars: &BTreeMap<&'static str, String>,
) -> Vec<PlanTopics> {
    carries
        .iter()
        .filter_map(|need| {
            let f = caps.feature(need)?;
            Some(PlanTopics {
                need: need.clone(),
                title: f.title.clone(),
                topics: f
                    .topics
                    .get(id)
                    .map(|ts| ts.iter().map(|t| fill(t, vars)).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The probe command that smoke-tests a protocol up to EnOS: a measure point posted and
/// EnOS's reply code read, on the secure port when there is one (the one a production device
/// should use), with `--need` for what the protocol carries.
fn smoke_test(
    caps: &Capabilities,
    proto: &crate::capabilities::Protocol,
    host: &str,
    keys: &str,
    deployment: &Deployment,
    carries: &[String],
) -> String {
    let port = proto
        .ports
        .iter()
        .find(|p| p.security != "none")
        .or(proto.ports.first());
    let points = if deployment.measurepoints.is_empty() {
        " --measurepoint {pointId}={value}".to_string()
    } else {
        deployment
            .measurepoints
            .iter()
            .map(|m| format!(" --measurepoint {m}"))
            .collect()
    };
    let needs = need_flags(carries) + downlink_flag(caps, carries);
    match port {
        Some(p) => format!(
            "enos-connect probe {}://{host}:{} {keys}{points}{needs}",
            p.scheme, p.port
        ),
        None => format!("enos-connect probe {}://{host} {keys}{points}{needs}", proto.id),
    }
}

/// `--need` with the needs a protocol carries, so its smoke test proves them, and the values
/// those checks cannot run without (placeholders, as `{pointId}` is).
fn need_flags(carries: &[String]) -> String {
    if carries.is_empty() {
        return String::new();
    }
    let mut out = format!(" --need {}", carries.join(","));
    for need in carries {
        out.push_str(match need.as_str() {
            "dynamic_auth" => " --secure-mode dynamic",
            "mutual_tls" => " --cert {device.pem} --key {device.key}",
            "file_upload" => " --file-point {filePointId}",
            _ => "",
        });
    }
    out
}

/// A need proven by a command from EnOS (a `downlink` step in `[exchanges]`) waits for one:
/// the smoke test gives the operator half a minute to send it from the console.
fn downlink_flag(caps: &Capabilities, carries: &[String]) -> &'static str {
    let downlink = carries.iter().any(|n| {
        caps.exchange(n).is_some_and(|e| {
            e.steps
                .iter()
                .any(|s| s.kind == crate::capabilities::StepKind::Downlink)
        })
    });
    if downlink { " --await-command 30" } else { "" }
}

fn auth_modes(
    caps: &Capabilities,
    decision: &Decision,
    id: &str,
    vars: &BTreeMap<&str, String>,
) -> Vec<PlanAuth> {
    let available: Vec<_> = caps
        .auth_modes
        .iter()
        .filter_map(|m| {
            let f = caps.feature(&m.feature)?;
            match f.support_for(id) {
                Support::Supported => Some((m, None)),
                Support::Partial => Some((m, f.notes.get(id).cloned())),
                _ => None,
            }
        })
        .collect();
    // The mode a need asks for is the recommended one; otherwise the first available.
    let wanted = available
        .iter()
        .position(|(m, note)| note.is_none() && decision.needs.contains(&m.feature))
        .unwrap_or(0);
    available
        .into_iter()
        .enumerate()
        .map(|(i, (m, note))| {
            let sm = m.secure_mode.as_ref().and_then(|s| caps.secure_modes.get(s));
            let steps = match (m.secure_mode.as_deref(), caps.credentials.get(id)) {
                (Some("dynamic"), Some(r)) => r.dynamic_steps.iter().map(|s| fill(s, vars)).collect(),
                _ => Vec::new(),
            };
            PlanAuth {
                mode: m.id.clone(),
                title: m.title.clone(),
                recommended: i == wanted,
                secret_env: sm.map(|s| s.env.clone()),
                note,
                steps,
            }
        })
        .collect()
}
