//! The capabilities model: protocols, features (the comparison table), questions, the decision
//! flow, non-protocol outcomes and the credential recipes, as read from `capabilities.toml`.
//!
//! Reading ([`read`]) reports TOML errors with `file:line:col`; validation ([`validate`]) checks
//! the cross-references and the shape of the flow and reports every problem at once.

mod exchange;
mod read;
mod spelling;
mod validate;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

pub use crate::source::Problem;
pub use exchange::{
    CarriedBy, Exchanges, FeatureExchange, Given, LoginKind, Stage, Step, StepKind, pattern_ends_with,
    placeholders,
};
pub use read::{
    CapabilitiesError, EMBEDDED, EMBEDDED_NAME, embedded, embedded_checked, embedded_connection, from_file,
    parse,
};
pub use spelling::{NO_WORDS, YES_WORDS, normalize};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    pub meta: Meta,
    /// The protocols a device can connect with, in the order ties are broken.
    pub protocols: Vec<Protocol>,
    /// The rows of the comparison table: what each protocol supports.
    pub features: Vec<Feature>,
    /// What the flow asks about a device.
    pub questions: Vec<Question>,
    /// The decision flow chart, as nodes and edges.
    pub flow: Flow,
    /// Outcomes that are not a direct protocol (message integration, edge gateway, none).
    #[serde(default)]
    pub outcomes: Vec<OutcomeInfo>,
    /// EnOS secure modes by name (`static`, `dynamic`): the value sent and where the secret comes from.
    #[serde(default)]
    pub secure_modes: BTreeMap<String, SecureMode>,
    /// How to build each protocol's login from the keys and the secret.
    #[serde(default)]
    pub credentials: BTreeMap<String, CredentialRecipe>,
    /// Authentication modes a plan offers, each tied to the feature that needs it.
    #[serde(default)]
    pub auth_modes: Vec<AuthMode>,
    /// What `probe --need` and `--matrix` send to prove each feature, and which protocols can
    /// carry each kind of exchange.
    #[serde(default)]
    pub exchanges: Exchanges,
    /// What a chosen protocol costs a device that gave a certain answer: each rule a caveat
    /// the decision names when it applies.
    #[serde(default)]
    pub caveats: Vec<CaveatRule>,
}

/// A carrier that works against one of the device's answers: when the device answered
/// `question` with `answer` and the decision chose `protocol` to carry one of `needs` (or, with
/// no `needs`, chose it at all), the decision names the caveat with `why`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaveatRule {
    pub question: String,
    /// The answer (one of the question's values) the protocol works against.
    pub answer: String,
    pub protocol: String,
    /// The needs the caveat is about when that protocol carries them; empty: the protocol
    /// itself, whatever it carries.
    #[serde(default)]
    pub needs: Vec<String>,
    /// What it costs and what the device does about it, in a sentence.
    pub why: String,
    /// Where the rule comes from (the EnOS docs or SDKs).
    pub source: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthMode {
    pub id: String,
    pub feature: String,
    pub title: String,
    #[serde(default)]
    pub secure_mode: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub version: String,
    pub title: String,
    #[serde(default)]
    pub source: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    pub id: String,
    pub title: String,
    /// `tcp` or `udp`: what a `by_transport` filter tests.
    pub transport: String,
    /// The EnOS major versions that offer the protocol.
    pub enos_versions: Vec<String>,
    /// Transport security, in words.
    pub security: String,
    /// The devices it suits, in words.
    pub suits: String,
    /// Host name pattern; `{env}` and `{domain}` are filled in by `plan`.
    pub host: String,
    #[serde(default)]
    pub host_note: Option<String>,
    #[serde(default)]
    pub version_note: String,
    #[serde(default)]
    pub ports: Vec<Port>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub port: u16,
    /// The URL scheme `probe` takes for this port (`mqtt`, `mqtts`, `coap`, ...).
    pub scheme: String,
    /// `none`, `tls` or `dtls`.
    pub security: String,
    pub label: String,
}

impl Protocol {
    /// The values of a protocol attribute that a flow filter can test.
    pub fn attribute(&self, name: &str) -> Option<Vec<&str>> {
        match name {
            "transport" => Some(vec![self.transport.as_str()]),
            "enos_versions" => Some(self.enos_versions.iter().map(String::as_str).collect()),
            "id" => Some(vec![self.id.as_str()]),
            _ => None,
        }
    }
}

/// The attribute names a filter node may use (see [`Protocol::attribute`]).
pub const FILTER_ATTRIBUTES: [&str; 3] = ["transport", "enos_versions", "id"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Support {
    Supported,
    NotSupported,
    NotApplicable,
    Partial,
}

impl Support {
    /// Only full support satisfies a need: partial support (HTTP's one-way certificate
    /// authentication) does not give what the need asks for.
    pub fn covers(self) -> bool {
        self == Support::Supported
    }

    /// Whether a device may use the feature's topics over the protocol at all (partial
    /// support is offered, with what it lacks in a note).
    pub fn offered(self) -> bool {
        matches!(self, Support::Supported | Support::Partial)
    }

    /// "not supported", "not applicable", ...: for a sentence.
    pub fn words(self) -> &'static str {
        match self {
            Support::Supported => "supported",
            Support::NotSupported => "not supported",
            Support::NotApplicable => "not applicable",
            Support::Partial => "partly supported",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Support::Supported => "supported",
            Support::NotSupported => "not_supported",
            Support::NotApplicable => "not_applicable",
            Support::Partial => "partial",
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// The id `--need` takes.
    pub id: String,
    pub title: String,
    /// The row's wording in the seed document.
    #[serde(default)]
    pub seed: String,
    #[serde(default)]
    pub note: String,
    /// Support per protocol id.
    pub support: BTreeMap<String, Support>,
    /// Per protocol: what partial support lacks.
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
    /// Per protocol: the topics or paths a device uses for the feature, in words (`plan`
    /// prints them).
    #[serde(default)]
    pub topics: BTreeMap<String, Vec<String>>,
    /// The EnOS topics of the device's messages that belong to this feature, as patterns a
    /// program matches (`serve` refuses a message on one over a protocol this row does not
    /// support): `/sys/{pk}/{dk}/...` or `/ext/session/{pk}/{dk}/...`, where every `{name}`
    /// matches one topic level.
    #[serde(default)]
    pub patterns: Vec<String>,
}

/// Whether `topic` matches `pattern`, whose `{name}` levels match any one non-empty level.
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    let (mut p, mut t) = (pattern.split('/'), topic.split('/'));
    loop {
        match (p.next(), t.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with('{') && a.ends_with('}') && a.len() > 2 => {
                if b.is_empty() {
                    return false;
                }
            }
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

impl Feature {
    pub fn support_for(&self, protocol: &str) -> Support {
        self.support
            .get(protocol)
            .copied()
            .unwrap_or(Support::NotSupported)
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// The id `--answer ID=VALUE` takes.
    pub id: String,
    pub prompt: String,
    pub help: String,
    /// The value used when the question is not answered; none means it must be answered.
    #[serde(default)]
    pub default: Option<String>,
    pub choices: Vec<Choice>,
}

impl Question {
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.choices.iter().map(|c| c.value.as_str())
    }

    pub fn label_of<'a>(&'a self, value: &'a str) -> &'a str {
        self.choices
            .iter()
            .find(|c| c.value == value)
            .map_or(value, |c| c.label.as_str())
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub value: String,
    pub label: String,
    /// Other ways people write this value (`2.x`, `EnOS 2`); matched, like the value and the
    /// label, without regard to case.
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    pub start: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Question,
    Filter,
    Cover,
    Prefer,
    Outcome,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Question => "question",
            NodeKind::Filter => "filter",
            NodeKind::Cover => "cover",
            NodeKind::Prefer => "prefer",
            NodeKind::Outcome => "outcome",
        }
    }

    /// The edge labels a node of this kind can produce, where they are fixed by the kind.
    pub fn fixed_branches(self) -> Option<&'static [&'static str]> {
        match self {
            NodeKind::Filter => Some(&["some", "none"]),
            NodeKind::Cover => Some(&["covered", "partial"]),
            NodeKind::Prefer => Some(&["chosen"]),
            NodeKind::Question | NodeKind::Outcome => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: String,
    /// question (branches on an answer), filter (drops protocols), cover (meets the needs),
    /// prefer (chooses by rules) or outcome (ends the flow).
    pub kind: NodeKind,
    pub label: String,
    #[serde(default)]
    pub question: Option<String>,
    #[serde(default)]
    pub attribute: Option<String>,
    #[serde(default)]
    pub map: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub drop: Option<String>,
    #[serde(default)]
    pub remedy: Option<String>,
    #[serde(default)]
    pub rules: Vec<PreferRule>,
    #[serde(default)]
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferRule {
    #[serde(default)]
    pub question: Option<String>,
    #[serde(default)]
    pub equals: Option<String>,
    pub protocol: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub when: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeInfo {
    pub id: String,
    pub title: String,
    pub summary: String,
    #[serde(default)]
    pub supports: Vec<String>,
    #[serde(default)]
    pub steps: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecureMode {
    pub value: u8,
    pub secret: String,
    pub env: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialRecipe {
    /// The protocol the login travels over [default: the recipe's own name].
    #[serde(default)]
    pub protocol: Option<String>,
    /// The secure modes the recipe signs for (keys of `[secure_modes]`).
    pub modes: Vec<String>,
    /// The port securities (`none`, `tls`, `dtls`) over which a device activates dynamically
    /// [default: every port of the protocol].
    #[serde(default)]
    pub activate_over: Option<Vec<String>>,
    #[serde(default)]
    pub lifetime: Option<Lifetime>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    pub sign: SignRecipe,
    #[serde(default)]
    pub psk_key: Option<PskKeyRecipe>,
    #[serde(default)]
    pub request: Option<RequestRecipe>,
    #[serde(default)]
    pub client_id_note: Option<String>,
    #[serde(default)]
    pub dynamic_steps: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lifetime {
    pub default: u64,
    pub unit: String,
    #[serde(default)]
    pub min: Option<u64>,
    #[serde(default)]
    pub max: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignRecipe {
    pub field: String,
    pub content: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PskKeyRecipe {
    pub field: String,
    pub digest_from: usize,
    pub len: usize,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestRecipe {
    pub method: String,
    pub path: String,
    pub body: String,
}

impl Capabilities {
    pub fn protocol(&self, id: &str) -> Option<&Protocol> {
        self.protocols.iter().find(|p| p.id == id)
    }

    /// The feature whose [`Feature::patterns`] match an EnOS topic.
    pub fn feature_for_topic(&self, topic: &str) -> Option<&Feature> {
        self.features
            .iter()
            .find(|f| f.patterns.iter().any(|p| topic_matches(p, topic)))
    }

    pub fn feature(&self, id: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.id == id)
    }

    pub fn question(&self, id: &str) -> Option<&Question> {
        self.questions.iter().find(|q| q.id == id)
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.flow.nodes.iter().find(|n| n.id == id)
    }

    pub fn outcome(&self, id: &str) -> Option<&OutcomeInfo> {
        self.outcomes.iter().find(|o| o.id == id)
    }

    pub fn edges_from<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Edge> + 'a {
        self.flow.edges.iter().filter(move |e| e.from == node)
    }

    /// The node an edge labelled `branch` leads to from `node`.
    pub fn next(&self, node: &str, branch: &str) -> Option<&Node> {
        self.edges_from(node)
            .find(|e| e.when.iter().any(|w| w == branch))
            .and_then(|e| self.node(&e.to))
    }

    pub fn protocol_title<'a>(&'a self, id: &'a str) -> &'a str {
        self.protocol(id).map_or(id, |p| p.title.as_str())
    }

    pub fn feature_ids(&self) -> impl Iterator<Item = &str> {
        self.features.iter().map(|f| f.id.as_str())
    }

    pub fn question_ids(&self) -> impl Iterator<Item = &str> {
        self.questions.iter().map(|q| q.id.as_str())
    }
}

/// How much a capabilities file holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub protocols: usize,
    pub features: usize,
    pub questions: usize,
    pub nodes: usize,
    pub edges: usize,
}

/// What `check` found in a capabilities file: its counts when valid, else every problem.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub file: String,
    pub data_version: String,
    pub counts: Counts,
    pub problems: Vec<crate::source::Located>,
}

impl CheckReport {
    pub fn new(file: String, result: Result<Capabilities, CapabilitiesError>) -> Self {
        match result {
            Ok(caps) => CheckReport {
                file,
                data_version: caps.meta.version.clone(),
                counts: Counts {
                    protocols: caps.protocols.len(),
                    features: caps.features.len(),
                    questions: caps.questions.len(),
                    nodes: caps.flow.nodes.len(),
                    edges: caps.flow.edges.len(),
                },
                problems: Vec::new(),
            },
            Err(e) => {
                let problems = match e {
                    CapabilitiesError::Invalid { problems, .. } => problems,
                    CapabilitiesError::Syntax(p) => vec![p],
                    read @ CapabilitiesError::Read { .. } => {
                        vec![crate::source::SourceFile::new(file.clone(), "").locate(None, read.to_string())]
                    }
                };
                CheckReport {
                    file,
                    data_version: String::new(),
                    counts: Counts::default(),
                    problems,
                }
            }
        }
    }
}
