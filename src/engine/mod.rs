//! The rules engine: walks the decision flow of the capabilities with a device's answers and
//! returns the outcome, the protocols, the needs left unmet, human reasons, hints that would
//! change the answer, and a trace of every node passed. Pure: no I/O, no printing.
//!
//! Two stages, each testable alone: [`walk`] traverses the flow and records the path and the
//! protocols that survive each node; [`explain`] turns a finished walk into the sentences and
//! hints of a [`Decision`].

mod aside;
mod caveats;
mod explain;
mod interview;
mod walk;

pub use aside::{set_aside, why as set_aside_why};
pub use caveats::{carriers, caveats};
pub use explain::{Verdict, explain, verdict};
pub use interview::{Asked, Prompt, interview};
pub use walk::{End, Step, Visit, Walk, walk};

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;

use crate::answers::Answers;
use crate::capabilities::{Capabilities, NodeKind};

/// What the engine recommends and why: the JSON object of `recommend --format json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Decision {
    /// A protocol id for a direct connection, else the outcome id (`message_integration`,
    /// `edge_gateway`, `none`).
    pub recommendation: String,
    /// `direct` or the outcome id.
    pub outcome: String,
    /// Every protocol the device should use, the recommended one first; empty for outcomes
    /// that are not a direct connection.
    pub protocols: Vec<String>,
    /// Whether no single protocol covers every need, so several are used together.
    pub combination: bool,
    /// Which protocol carries which need.
    pub carriers: Vec<Carrier>,
    /// The needs the answers gave, in their order.
    pub needs: Vec<String>,
    /// The needs no recommended protocol (or outcome) supports.
    pub unmet: Vec<String>,
    /// Why, one sentence per step, in the order the flow met them.
    pub reasons: Vec<String>,
    /// What would change the answer for the unmet needs or a `none` outcome.
    pub hints: Vec<String>,
    /// Every node passed, with the answer it read and the branch it took.
    pub trace: Vec<TraceStep>,
    /// Every answer the flow read, and whether it was the question's default.
    pub answers: Vec<AnswerUsed>,
    /// Every answer given that the flow did not read, and why it could not change the
    /// outcome: with `answers`, every answer the user gave.
    pub set_aside: Vec<SetAside>,
    /// A chosen protocol that works against one of the device's answers, and what to do about
    /// it (the rules are `[[caveats]]` in the capabilities).
    pub caveats: Vec<Caveat>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Carrier {
    pub need: String,
    pub protocol: String,
}

/// An answer the user gave that the decision did not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct SetAside {
    pub question: String,
    pub value: String,
    /// Why it could not change the outcome, in a sentence.
    pub why: String,
}

/// A carrier that conflicts with an answer: `protocol` carries `need` (null: the protocol
/// itself, whatever it carries) although the device answered `question` with `answer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Caveat {
    pub need: Option<String>,
    pub protocol: String,
    pub question: String,
    pub answer: String,
    /// What it costs and what to do about it, in a sentence.
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct TraceStep {
    pub node: String,
    /// question, filter, cover, prefer or outcome.
    pub kind: &'static str,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub by_default: bool,
    /// The edge taken (an answer value, some/none, covered/partial, chosen) or the outcome.
    pub branch: String,
    /// Protocols still open after this node.
    pub open: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct AnswerUsed {
    pub question: String,
    pub value: String,
    pub by_default: bool,
}

/// What the walk needs before it can go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Question(String),
    Needs,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("missing answers: {}", .0.join(", "))]
    Missing(Vec<String>),
    #[error("the decision flow stops at node `{0}`: it has no edge for `{1}`")]
    Stuck(String, String),
    #[error("the decision flow reaches node `{0}` with no protocol left to choose from")]
    NoProtocol(String),
}

impl crate::base::Help for EngineError {
    fn help(&self) -> Option<String> {
        match self {
            // The CLI turns missing answers into a usage error naming the flags.
            EngineError::Missing(_) => None,
            EngineError::Stuck(..) | EngineError::NoProtocol(_) => Some(
                "run `enos-connect check` on the capabilities file; every branch must lead to an outcome"
                    .into(),
            ),
        }
    }
}

/// Decide with defaults applied; a missing answer without a default is an error that names
/// every question the flow could still need.
pub fn decide(caps: &Capabilities, answers: &Answers) -> Result<Decision, EngineError> {
    let walked = walk(caps, answers, true)?;
    match &walked.end {
        End::Outcome(outcome) => Ok(explain(caps, answers, &walked, outcome)),
        End::Pending(_) => Err(EngineError::Missing(missing(caps, answers))),
    }
}

/// Every unanswered question without a default that the flow could reach, following the
/// known answers and every branch where an answer is missing.
pub fn missing(caps: &Capabilities, answers: &Answers) -> Vec<String> {
    let answered =
        |q: &str| answers.values.contains_key(q) || caps.question(q).is_some_and(|q| q.default.is_some());
    let mut found = BTreeSet::new();
    let mut seen = HashSet::new();
    let mut work = vec![caps.flow.start.as_str()];
    while let Some(id) = work.pop() {
        if !seen.insert(id) {
            continue;
        }
        let Some(node) = caps.node(id) else { continue };
        let mut asks: Vec<&str> = node.question.iter().map(String::as_str).collect();
        asks.extend(node.rules.iter().filter_map(|r| r.question.as_deref()));
        for q in asks.iter().filter(|q| !answered(q)) {
            found.insert(q.to_string());
        }
        let known = match (node.kind, node.question.as_deref()) {
            (NodeKind::Question, Some(q)) => answers
                .values
                .get(q)
                .cloned()
                .or_else(|| caps.question(q).and_then(|q| q.default.clone())),
            _ => None,
        };
        for e in caps.edges_from(id) {
            if known.as_ref().is_none_or(|v| e.when.contains(v)) {
                work.push(e.to.as_str());
            }
        }
    }
    caps.question_ids()
        .filter(|q| found.contains(*q))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_that_reaches_prefer_with_nothing_open_is_an_error_not_a_panic() {
        // Validation rejects this flow; the engine must not rely on it.
        let mut caps = crate::capabilities::embedded().expect("embedded capabilities");
        for e in &mut caps.flow.edges {
            if e.from == "by_version" && e.when == ["none"] {
                e.to = "by_needs".into();
            }
        }
        let mut answers = Answers::default();
        let pairs = ["network=udp", "enos_format=yes", "enos_version=3"].map(String::from);
        answers.apply_flags(&caps, &pairs, &[]).expect("valid answers");
        assert_eq!(
            decide(&caps, &answers),
            Err(EngineError::NoProtocol("prefer".into()))
        );
    }
}
