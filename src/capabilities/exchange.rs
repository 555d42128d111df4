//! `[exchanges]` of `capabilities.toml`: what `probe --need` and `--matrix` send to prove each
//! feature, as steps of a few kinds, and which protocols can carry each kind at all. The probe
//! reads the steps and runs them over one transport per protocol; nothing in the code names a
//! feature. Checked by `exchange_check.rs` (`problems`, called from `validate.rs`): every
//! reference, every placeholder against the values its step depends on, every topic against
//! the feature's patterns.

use schemars::JsonSchema;
use serde::Deserialize;

use super::Capabilities;

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

/// The login a `login` step proves: a client certificate over TLS, or a secure mode (a key of
/// `[secure_modes]`). Written as one string in the data: `certificate`, or the mode's name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(from = "String")]
#[schemars(with = "String")]
pub enum LoginKind {
    Certificate,
    SecureMode(String),
}

impl From<String> for LoginKind {
    fn from(text: String) -> Self {
        if text == "certificate" {
            LoginKind::Certificate
        } else {
            LoginKind::SecureMode(text)
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

impl Given {
    /// The probe flag that gives this value, with placeholders for what the user fills in, as
    /// a plan's smoke test prints it.
    pub fn flag(self) -> &'static str {
        match self {
            Given::Measurepoints => "--measurepoint {pointId}={value}",
            Given::Events => "--event {eventId}",
            Given::Attributes => "--attribute {attributeId}={value}",
            Given::FilePoint => "--file-point {filePointId}",
            Given::Register => "--register {productKey}/{deviceKey}",
            Given::FirmwareVersion => "--firmware-version {version}",
        }
    }
}

/// The placeholders every step may use, whatever it depends on.
pub(super) const ALWAYS: [&str; 3] = ["now", "pk", "dk"];

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
    pub login: Option<LoginKind>,
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
    pub(in crate::capabilities) fn given(&self) -> impl Iterator<Item = Given> {
        [self.requires, self.with, self.each].into_iter().flatten()
    }
}

impl Capabilities {
    /// The feature whose exchange is a login of this kind (`dynamic_auth` for the secure mode
    /// `dynamic`, `mutual_tls` for a certificate): the row a matrix's login measures.
    pub fn login_feature(&self, login: &LoginKind) -> Option<&str> {
        self.exchanges
            .features
            .iter()
            .find(|e| e.steps.iter().any(|s| s.login.as_ref() == Some(login)))
            .map(|e| e.feature.as_str())
    }

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
pub(crate) fn placeholders(v: &serde_json::Value, out: &mut Vec<String>) {
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
pub(crate) fn pattern_ends_with(pattern: &str, tail: &str) -> bool {
    let levels: Vec<&str> = pattern.split('/').collect();
    let want: Vec<&str> = tail.split('/').collect();
    levels.len() >= want.len()
        && levels[levels.len() - want.len()..]
            .iter()
            .zip(&want)
            .all(|(a, b)| a == b || (a.starts_with('{') && b.starts_with('{')))
}

#[path = "exchange_check.rs"]
mod check;
pub(in crate::capabilities) use check::problems;
