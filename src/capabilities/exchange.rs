//! `[exchanges]` of `capabilities.toml`: what `probe --need` and `--matrix` send to prove each
//! feature, as steps of a few kinds, and which protocols can carry each kind at all. The probe
//! reads the steps and runs them over one transport per protocol; nothing in the code names a
//! feature. Checked by [`problems`] (called from `validate.rs`): every reference, every
//! placeholder against the values its step depends on, every topic against the feature's
//! patterns.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::Deserialize;

use super::Capabilities;
use crate::source::{PathSeg, Problem};

/// The section: which protocols carry each kind, and each feature's steps.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exchanges {
    /// Per kind of exchange, the protocols that can carry it; over any other a step of that
    /// kind is "not carried": nothing is sent.
    #[serde(default)]
    pub carried_by: CarriedBy,
    /// Each feature's exchange, at most one per feature.
    #[serde(default)]
    pub features: Vec<FeatureExchange>,
}

/// The protocols that can carry each kind of exchange (`login` goes over every protocol).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CarriedBy {
    #[serde(default)]
    pub request: Vec<String>,
    #[serde(default)]
    pub raw: Vec<String>,
    #[serde(default)]
    pub multipart: Vec<String>,
    #[serde(default)]
    pub downlink: Vec<String>,
}

impl CarriedBy {
    /// The protocols that carry `kind`; `None` for a login, which every protocol carries.
    pub fn of(&self, kind: StepKind) -> Option<&[String]> {
        match kind {
            StepKind::Login => None,
            StepKind::Request => Some(&self.request),
            StepKind::Raw => Some(&self.raw),
            StepKind::Multipart => Some(&self.multipart),
            StepKind::Downlink => Some(&self.downlink),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureExchange {
    /// The feature (`[[features]]` id) this exchange proves.
    pub feature: String,
    /// In order; each timed as a stage of its own.
    pub steps: Vec<Step>,
}

/// The kinds of exchange; each is one method of the probe's transport per protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// The login itself: a secure mode, or a client certificate over TLS.
    Login,
    /// A JSON request on the feature's topic, and EnOS's reply.
    Request,
    /// Raw bytes on the feature's topic, and the raw reply.
    Raw,
    /// A multipart post of a file for a file-type measure point.
    Multipart,
    /// A command from EnOS, caused or awaited, and answered 200.
    Downlink,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Login => "login",
            StepKind::Request => "request",
            StepKind::Raw => "raw",
            StepKind::Multipart => "multipart",
            StepKind::Downlink => "downlink",
        }
    }

    /// The exchange in words, for "HTTP carries no multipart post of a file".
    pub fn words(self) -> &'static str {
        match self {
            StepKind::Login => "login",
            StepKind::Request => "request with a reply",
            StepKind::Raw => "raw bytes",
            StepKind::Multipart => "multipart post of a file",
            StepKind::Downlink => "downlink (a command from EnOS to the device)",
        }
    }
}

/// The stage a step is timed as: the names of a need's stages in the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Login,
    Subscribe,
    Query,
    Post,
    Event,
    Attribute,
    Batch,
    Resume,
    Upload,
    Command,
}

impl Stage {
    pub const ALL: [Stage; 10] = [
        Stage::Login,
        Stage::Subscribe,
        Stage::Query,
        Stage::Post,
        Stage::Event,
        Stage::Attribute,
        Stage::Batch,
        Stage::Resume,
        Stage::Upload,
        Stage::Command,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Login => "login",
            Stage::Subscribe => "subscribe",
            Stage::Query => "query",
            Stage::Post => "post",
            Stage::Event => "event",
            Stage::Attribute => "attribute",
            Stage::Batch => "batch",
            Stage::Resume => "resume",
            Stage::Upload => "upload",
            Stage::Command => "command",
        }
    }
}

/// A value of the probe's flags that a step depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Given {
    /// `--measurepoint ID=VALUE`
    Measurepoints,
    /// `--event ID[=JSON]` (a list: `each`)
    Events,
    /// `--attribute ID=VALUE`
    Attributes,
    /// `--file-point ID`
    FilePoint,
    /// `--register PK/DK`
    Register,
    /// `--firmware-version V`
    FirmwareVersion,
}

impl Given {
    /// The placeholders this value fills in a step's params.
    pub fn placeholders(self) -> &'static [&'static str] {
        match self {
            Given::Measurepoints => &["measurepoints"],
            Given::Events => &["event_values"],
            Given::Attributes => &["attributes"],
            Given::FilePoint => &["file_point", "file_url"],
            Given::Register => &["register_pk", "register_dk"],
            Given::FirmwareVersion => &["firmware_version"],
        }
    }
}

/// The placeholders every step may use, whatever it depends on.
pub const ALWAYS: [&str; 3] = ["now", "pk", "dk"];

/// One step of a feature's exchange. Which fields a kind reads: `login` the `login`;
/// `request` `stage`, `topic` (`topic_of`) and `params`; `raw` `stage` and `topic`;
/// `multipart` the same as `request`; `downlink` `stage`, `topics`, `command` and `raw`. The
/// conditions (`requires`, `with`, `without`, `each`) apply to every kind but `login`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub kind: StepKind,
    /// The stage name the step is timed as [default: `login` for a login].
    #[serde(default)]
    pub stage: Option<Stage>,
    /// `login`: a secure mode of `[secure_modes]`, or `certificate` (a client certificate
    /// over TLS).
    #[serde(default)]
    pub login: Option<String>,
    /// The tail of one of the feature's `patterns` (`thing/topo/get`); a `{name}` level is
    /// filled by `each`'s item.
    #[serde(default)]
    pub topic: Option<String>,
    /// The feature whose patterns hold `topic` [default: this one].
    #[serde(default)]
    pub topic_of: Option<String>,
    /// The request's params, JSON with `"$name"` placeholders.
    #[serde(default)]
    pub params: Option<serde_json::Value>,
    /// `downlink`: the topics a command arrives on, after `/sys/{pk}/{dk}/`.
    #[serde(default)]
    pub topics: Vec<String>,
    /// `downlink`: the method the probe asks the endpoint's command API to send.
    #[serde(default)]
    pub command: Option<String>,
    /// `downlink`: the command is raw bytes, answered with raw bytes.
    #[serde(default)]
    pub raw: bool,
    /// Without this value the need cannot be checked (untested; a usage error for `--need`).
    #[serde(default)]
    pub requires: Option<Given>,
    /// Sent only when this value is given.
    #[serde(default)]
    pub with: Option<Given>,
    /// Sent only when this value is not given.
    #[serde(default)]
    pub without: Option<Given>,
    /// Sent once per item of this value.
    #[serde(default)]
    pub each: Option<Given>,
}

impl Step {
    /// The values the step's params may use.
    fn given(&self) -> impl Iterator<Item = Given> {
        [self.requires, self.with, self.each].into_iter().flatten()
    }
}

impl Capabilities {
    /// The exchange that proves `feature`, when the data has one.
    pub fn exchange(&self, feature: &str) -> Option<&FeatureExchange> {
        self.exchanges.features.iter().find(|e| e.feature == feature)
    }

    /// Whether a device of `protocol` activates dynamically over a port of `security`
    /// (`none`, `tls`, `dtls`): its recipe signs for securemode 3, over that security.
    pub fn activates_over(&self, protocol: &str, security: &str) -> bool {
        self.credentials.get(protocol).is_some_and(|r| {
            r.modes.iter().any(|m| m == "dynamic")
                && r.activate_over
                    .as_ref()
                    .is_none_or(|over| over.iter().any(|s| s == security))
        })
    }
}

/// The `"$name"` placeholders in `v`, values and keys.
pub fn placeholders(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => {
            if let Some(name) = s.strip_prefix('$') {
                out.push(name.to_string());
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| placeholders(i, out)),
        serde_json::Value::Object(map) => {
            for (k, i) in map {
                if let Some(name) = k.strip_prefix('$') {
                    out.push(name.to_string());
                }
                placeholders(i, out);
            }
        }
        _ => {}
    }
}

/// Whether `pattern` ends with the levels of `tail` (`{...}` matches `{...}`).
pub fn pattern_ends_with(pattern: &str, tail: &str) -> bool {
    let levels: Vec<&str> = pattern.split('/').collect();
    let want: Vec<&str> = tail.split('/').collect();
    levels.len() >= want.len()
        && levels[levels.len() - want.len()..]
            .iter()
            .zip(&want)
            .all(|(a, b)| a == b || (a.starts_with('{') && b.starts_with('{')))
}

/// Every problem of `[exchanges]`, with its path.
pub(super) fn problems(caps: &Capabilities) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut add = |path: Vec<PathSeg>, message: String| out.push(Problem { path, message });
    let known = || {
        caps.protocols
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let c = &caps.exchanges.carried_by;
    for (kind, list) in [
        ("request", &c.request),
        ("raw", &c.raw),
        ("multipart", &c.multipart),
        ("downlink", &c.downlink),
    ] {
        for (j, protocol) in list.iter().enumerate() {
            if caps.protocol(protocol).is_none() {
                add(
                    vec!["exchanges".into(), "carried_by".into(), kind.into(), j.into()],
                    format!(
                        "exchanges.carried_by.{kind} names unknown protocol `{protocol}` (known: {})",
                        known()
                    ),
                );
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (i, e) in caps.exchanges.features.iter().enumerate() {
        let at = |more: &[PathSeg]| {
            let mut p: Vec<PathSeg> = vec!["exchanges".into(), "features".into(), i.into()];
            p.extend_from_slice(more);
            p
        };
        let Some(feature) = caps.feature(&e.feature) else {
            add(
                at(&["feature".into()]),
                format!("exchanges.features[{i}] proves unknown feature `{}`", e.feature),
            );
            continue;
        };
        if !seen.insert(e.feature.as_str()) {
            add(
                at(&["feature".into()]),
                format!("feature `{}` has two exchanges", e.feature),
            );
        }
        if e.steps.is_empty() {
            add(
                at(&["steps".into()]),
                format!("the exchange of `{}` has no steps", e.feature),
            );
        }
        for (j, step) in e.steps.iter().enumerate() {
            let at = |field: &str| at(&["steps".into(), j.into(), field.into()]);
            for message in step_problems(caps, feature, step) {
                add(at(message.0), message.1);
            }
            // A feature the table supports over a protocol that cannot carry one of its steps
            // could never be measured as supported: the table and the exchange disagree.
            if let Some(carriers) = c.of(step.kind) {
                for proto in &caps.protocols {
                    if feature.support_for(&proto.id).covers() && !carriers.contains(&proto.id) {
                        add(
                            at("kind"),
                            format!(
                                "feature `{}` is supported over {} by the table, but its {} step cannot go over {} (exchanges.carried_by.{})",
                                feature.id,
                                proto.id,
                                step.kind.as_str(),
                                proto.id,
                                step.kind.as_str()
                            ),
                        );
                    }
                }
            }
        }
    }
    for (name, recipe) in &caps.credentials {
        let protocol = recipe.protocol.as_deref().unwrap_or(name);
        for (j, security) in recipe.activate_over.iter().flatten().enumerate() {
            let offered = caps
                .protocol(protocol)
                .is_some_and(|p| p.ports.iter().any(|x| &x.security == security));
            if !offered {
                add(
                    vec![
                        "credentials".into(),
                        name.into(),
                        "activate_over".into(),
                        j.into(),
                    ],
                    format!(
                        "credentials.{name}.activate_over names `{security}`, the security of no port of {protocol}"
                    ),
                );
            }
        }
    }
    out
}

/// The problems of one step: the field they are about, and the message.
fn step_problems(caps: &Capabilities, feature: &super::Feature, step: &Step) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let f = &feature.id;
    let kind = step.kind.as_str();
    let unused = |field: &'static str, set: bool, out: &mut Vec<(&'static str, String)>| {
        if set {
            out.push((field, format!("a {kind} step of `{f}` does not use `{field}`")));
        }
    };
    match step.kind {
        StepKind::Login => {
            match step.login.as_deref() {
                None => out.push(("login", format!("the login step of `{f}` names no `login`"))),
                Some("certificate") => {}
                Some(mode) if caps.secure_modes.contains_key(mode) => {}
                Some(other) => out.push((
                    "login",
                    format!("the login step of `{f}` names `{other}`: use a key of [secure_modes] or `certificate`"),
                )),
            }
            unused("topic", step.topic.is_some(), &mut out);
            unused("params", step.params.is_some(), &mut out);
            unused("topics", !step.topics.is_empty(), &mut out);
            unused("command", step.command.is_some(), &mut out);
            let conditions = step.requires.or(step.with).or(step.without).or(step.each);
            unused("requires", conditions.is_some(), &mut out);
        }
        StepKind::Request | StepKind::Raw | StepKind::Multipart => {
            unused("login", step.login.is_some(), &mut out);
            unused("topics", !step.topics.is_empty(), &mut out);
            unused("command", step.command.is_some(), &mut out);
            unused("raw", step.raw, &mut out);
            if step.stage.is_none() {
                out.push(("stage", format!("a {kind} step of `{f}` names no `stage`")));
            }
            topic_problems(caps, feature, step, &mut out);
            if step.kind == StepKind::Raw {
                unused("params", step.params.is_some(), &mut out);
            } else if step.params.is_none() {
                out.push(("params", format!("a {kind} step of `{f}` has no `params`")));
            }
        }
        StepKind::Downlink => {
            unused("login", step.login.is_some(), &mut out);
            unused("topic", step.topic.is_some(), &mut out);
            unused("params", step.params.is_some(), &mut out);
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
                        format!("downlink topic `{t}` of `{f}`: give the levels after /sys/{{pk}}/{{dk}}/, none empty"),
                    ));
                }
            }
            if step.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
                out.push((
                    "command",
                    format!("the downlink step of `{f}` names no `command` for the endpoint to send"),
                ));
            }
        }
    }
    let mut names = Vec::new();
    if let Some(params) = &step.params {
        placeholders(params, &mut names);
    }
    for name in names {
        let given: Vec<Given> = step.given().collect();
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
    feature: &super::Feature,
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
