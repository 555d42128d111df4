//! The checks of `[exchanges]` (a child of `exchange.rs`, called from `validate.rs` through
//! `problems`): each step's fields for its kind, its topic against its feature's patterns, its
//! placeholders against the values it depends on, the protocols named, and that no feature the
//! table supports over a protocol has a step that protocol cannot carry.

use std::collections::BTreeSet;

use super::{ALWAYS, Given, LoginKind, Step, StepKind, pattern_ends_with, placeholders};
use crate::capabilities::{Capabilities, Feature};
use crate::source_text::{PathSeg, Problem};

/// Every problem of `[exchanges]`, with its path.
pub(in crate::capabilities) fn problems(caps: &Capabilities) -> Vec<Problem> {
    let mut out = Vec::new();
    carriers(caps, &mut out);
    let mut seen = BTreeSet::new();
    for (i, e) in caps.exchanges.features.iter().enumerate() {
        let at = |more: &[PathSeg]| {
            let mut p: Vec<PathSeg> = vec!["exchanges".into(), "features".into(), i.into()];
            p.extend_from_slice(more);
            p
        };
        let Some(feature) = caps.feature(&e.feature) else {
            out.push(problem(
                at(&["feature".into()]),
                format!("exchanges.features[{i}] proves unknown feature `{}`", e.feature),
            ));
            continue;
        };
        if !seen.insert(e.feature.as_str()) {
            let message = format!("feature `{}` has two exchanges", e.feature);
            out.push(problem(at(&["feature".into()]), message));
        }
        if e.steps.is_empty() {
            let message = format!("the exchange of `{}` has no steps", e.feature);
            out.push(problem(at(&["steps".into()]), message));
        }
        for (j, step) in e.steps.iter().enumerate() {
            let step_problems = step_problems(caps, feature, step)
                .into_iter()
                .chain(carried_where_supported(caps, feature, step).map(|m| ("kind", m)));
            for (field, message) in step_problems {
                out.push(problem(at(&["steps".into(), j.into(), field.into()]), message));
            }
        }
    }
    activation(caps, &mut out);
    out
}

fn problem(path: Vec<PathSeg>, message: String) -> Problem {
    Problem { path, message }
}

/// `[exchanges.carried_by]` names known protocols.
fn carriers(caps: &Capabilities, out: &mut Vec<Problem>) {
    let known: Vec<&str> = caps.protocols.iter().map(|p| p.id.as_str()).collect();
    let c = &caps.exchanges.carried_by;
    for (kind, list) in [
        ("request", &c.request),
        ("raw", &c.raw),
        ("multipart", &c.multipart),
        ("downlink", &c.downlink),
    ] {
        for (j, protocol) in list.iter().enumerate() {
            if caps.protocol(protocol).is_none() {
                out.push(problem(
                    vec!["exchanges".into(), "carried_by".into(), kind.into(), j.into()],
                    format!(
                        "exchanges.carried_by.{kind} names unknown protocol `{protocol}` (known: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
}

/// A feature the table supports over a protocol that cannot carry one of its steps could never
/// be measured as supported: the table and the exchange disagree.
fn carried_where_supported<'a>(
    caps: &'a Capabilities,
    feature: &'a Feature,
    step: &'a Step,
) -> impl Iterator<Item = String> + 'a {
    let carriers = caps.exchanges.carried_by.of(step.kind);
    caps.protocols
        .iter()
        .filter(move |p| feature.support_for(&p.id).offered())
        .filter(move |p| carriers.is_some_and(|c| !c.contains(&p.id)))
        .map(move |p| {
            format!(
                "feature `{}` is {} over {} by the table, but its {} step cannot go over {} (exchanges.carried_by.{})",
                feature.id,
                feature.support_for(&p.id).as_str(),
                p.id,
                step.kind.as_str(),
                p.id,
                step.kind.as_str()
            )
        })
}

/// `activate_over` names the security of a port of the recipe's protocol.
fn activation(caps: &Capabilities, out: &mut Vec<Problem>) {
    for (name, recipe) in &caps.credentials {
        let protocol = recipe.protocol.as_deref().unwrap_or(name);
        for (j, security) in recipe.activate_over.iter().flatten().enumerate() {
            let offered = caps
                .protocol(protocol)
                .is_some_and(|p| p.ports.iter().any(|x| &x.security == security));
            if !offered {
                out.push(problem(
                    vec![
                        "credentials".into(),
                        name.into(),
                        "activate_over".into(),
                        j.into(),
                    ],
                    format!(
                        "credentials.{name}.activate_over names `{security}`, the security of no port of {protocol}"
                    ),
                ));
            }
        }
    }
}

type Found = Vec<(&'static str, String)>;

/// The problems of one step: the field they are about, and the message.
fn step_problems(caps: &Capabilities, feature: &Feature, step: &Step) -> Found {
    let mut out = Vec::new();
    let f = &feature.id;
    let kind = step.kind.as_str();
    let mut unused = |field: &'static str, set: bool| {
        if set {
            out.push((field, format!("a {kind} step of `{f}` does not use `{field}`")));
        }
    };
    let conditions = step.requires.or(step.with).or(step.without).or(step.each);
    match step.kind {
        StepKind::Login => {
            unused("topic", step.topic.is_some());
            unused("params", step.params.is_some());
            unused("topics", !step.topics.is_empty());
            unused("command", step.command.is_some());
            unused("requires", conditions.is_some());
        }
        StepKind::Request | StepKind::Raw | StepKind::Multipart => {
            unused("login", step.login.is_some());
            unused("topics", !step.topics.is_empty());
            unused("command", step.command.is_some());
            unused("raw", step.raw);
            unused("params", step.kind == StepKind::Raw && step.params.is_some());
        }
        StepKind::Downlink => {
            unused("login", step.login.is_some());
            unused("topic", step.topic.is_some());
            unused("params", step.params.is_some());
        }
    }
    out.extend(match step.kind {
        StepKind::Login => login_problems(caps, f, step),
        StepKind::Request | StepKind::Raw | StepKind::Multipart => message_problems(caps, feature, step),
        StepKind::Downlink => downlink_problems(f, step),
    });
    out.extend(placeholder_problems(f, step));
    out
}

fn login_problems(caps: &Capabilities, f: &str, step: &Step) -> Found {
    let why = match &step.login {
        None => format!("the login step of `{f}` names no `login`"),
        Some(LoginKind::Certificate) => return Vec::new(),
        Some(LoginKind::SecureMode(mode)) if caps.secure_modes.contains_key(mode) => return Vec::new(),
        Some(LoginKind::SecureMode(other)) => {
            format!("the login step of `{f}` names `{other}`: use a key of [secure_modes] or `certificate`")
        }
    };
    vec![("login", why)]
}

/// A request, raw or multipart step: its stage, topic and params.
fn message_problems(caps: &Capabilities, feature: &Feature, step: &Step) -> Found {
    let (f, kind) = (&feature.id, step.kind.as_str());
    let mut out = Vec::new();
    if step.stage.is_none() {
        out.push(("stage", format!("a {kind} step of `{f}` names no `stage`")));
    }
    topic_problems(caps, feature, step, &mut out);
    if step.kind != StepKind::Raw && step.params.is_none() {
        out.push(("params", format!("a {kind} step of `{f}` has no `params`")));
    }
    out
}

fn downlink_problems(f: &str, step: &Step) -> Found {
    let mut out = Vec::new();
    if step.stage.is_none() {
        out.push(("stage", format!("a downlink step of `{f}` names no `stage`")));
    }
    if step.topics.is_empty() {
        out.push(("topics", format!("the downlink step of `{f}` names no `topics`")));
    }
    for t in &step.topics {
        if t.starts_with('/') || t.split('/').any(str::is_empty) {
            out.push((
                "topics",
                format!(
                    "downlink topic `{t}` of `{f}`: give the levels after /sys/{{pk}}/{{dk}}/, none empty"
                ),
            ));
        }
    }
    if step.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
        out.push((
            "command",
            format!("the downlink step of `{f}` names no `command` for the endpoint to send"),
        ));
    }
    out
}

/// Every `$name` of the params is always known or comes from a value the step depends on.
fn placeholder_problems(f: &str, step: &Step) -> Found {
    let mut names = Vec::new();
    if let Some(params) = &step.params {
        placeholders(params, &mut names);
    }
    let given: Vec<Given> = step.given().collect();
    let mut out = Vec::new();
    for name in names {
        if ALWAYS.contains(&name.as_str()) || given.iter().any(|g| g.placeholders().contains(&name.as_str()))
        {
            continue;
        }
        let from = [
            Given::Measurepoints,
            Given::Events,
            Given::Attributes,
            Given::FilePoint,
            Given::Register,
            Given::FirmwareVersion,
        ]
        .into_iter()
        .find(|g| g.placeholders().contains(&name.as_str()));
        out.push((
            "params",
            match from {
                Some(g) => format!(
                    "a step of `{f}` uses ${name} without depending on `{}`: add requires, with or each = \"{}\"",
                    given_name(g),
                    given_name(g)
                ),
                None => format!("a step of `{f}` uses the unknown placeholder ${name}"),
            },
        ));
    }
    out
}

/// The TOML name of a value (`file_point`).
fn given_name(g: Given) -> &'static str {
    match g {
        Given::Measurepoints => "measurepoints",
        Given::Events => "events",
        Given::Attributes => "attributes",
        Given::FilePoint => "file_point",
        Given::Register => "register",
        Given::FirmwareVersion => "firmware_version",
    }
}

/// A step's topic must end one of the patterns of its feature (or of `topic_of`).
fn topic_problems(
    caps: &Capabilities,
    feature: &Feature,
    step: &Step,
    out: &mut Vec<(&'static str, String)>,
) {
    let f = &feature.id;
    let Some(tail) = &step.topic else {
        out.push((
            "topic",
            format!("a {} step of `{f}` names no `topic`", step.kind.as_str()),
        ));
        return;
    };
    let owner = match &step.topic_of {
        None => feature,
        Some(other) => match caps.feature(other) {
            Some(o) => o,
            None => {
                out.push((
                    "topic_of",
                    format!("a step of `{f}` takes its topic from unknown feature `{other}`"),
                ));
                return;
            }
        },
    };
    if !owner.patterns.iter().any(|p| pattern_ends_with(p, tail)) {
        out.push((
            "topic",
            format!(
                "no pattern of feature `{}` ends in `{tail}`: the probe would send what serve does not read as `{}`",
                owner.id, owner.id
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(toml: &str, from: &str, to: &str) -> Vec<String> {
        let text = toml.replacen(from, to, 1);
        assert_ne!(text, toml, "`{from}` is in the shipped file");
        let caps: Capabilities = toml::from_str(&text).expect("parses");
        problems(&caps).into_iter().map(|p| p.message).collect()
    }

    #[test]
    fn the_shipped_exchanges_are_valid_and_every_feature_has_one() {
        let caps = crate::capabilities::embedded().expect("caps");
        assert!(problems(&caps).is_empty(), "{:?}", problems(&caps));
        for f in &caps.features {
            assert!(caps.exchange(&f.id).is_some(), "no exchange for {}", f.id);
        }
        // The facts that were code: multipart only over HTTP, no downlink over HTTP, CoAP's
        // activation inside DTLS only.
        let c = &caps.exchanges.carried_by;
        assert_eq!(c.multipart, ["http"]);
        assert!(!c.downlink.iter().any(|p| p == "http"));
        assert!(caps.activates_over("coap", "dtls") && !caps.activates_over("coap", "none"));
        assert!(caps.activates_over("mqtt", "none") && caps.activates_over("mqtt", "tls"));
        assert!(!caps.activates_over("http", "tls"));
    }

    #[test]
    fn bad_exchanges_are_named() {
        let text = crate::capabilities::EMBEDDED;
        let found = with(text, "feature = \"ota\"\nsteps", "feature = \"otaa\"\nsteps");
        assert!(
            found.iter().any(|m| m.contains("unknown feature `otaa`")),
            "{found:?}"
        );
        let found = with(text, "topic = \"thing/topo/get\"", "topic = \"thing/topo/gett\"");
        assert!(
            found.iter().any(|m| m.contains("ends in `thing/topo/gett`")),
            "{found:?}"
        );
        let found = with(text, "with = \"firmware_version\"", "with = \"register\"");
        assert!(
            found
                .iter()
                .any(|m| m.contains("$firmware_version without depending")),
            "{found:?}"
        );
        let found = with(text, "multipart = [\"http\"]", "multipart = [\"htp\"]");
        assert!(
            found.iter().any(|m| m.contains("unknown protocol `htp`")),
            "{found:?}"
        );
        // The table says HTTP uploads files; an exchange no protocol but MQTT carries disagrees.
        let found = with(text, "multipart = [\"http\"]", "multipart = [\"mqtt\"]");
        assert!(
            found
                .iter()
                .any(|m| m.contains("supported over http by the table")),
            "{found:?}"
        );
        let found = with(text, "login = \"dynamic\"", "login = \"dynamo\"");
        assert!(found.iter().any(|m| m.contains("names `dynamo`")), "{found:?}");
        let found = with(text, "activate_over = [\"dtls\"]", "activate_over = [\"tls\"]");
        assert!(
            found
                .iter()
                .any(|m| m.contains("the security of no port of coap")),
            "{found:?}"
        );
    }
}
