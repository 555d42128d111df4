//! The rules engine: walks the decision flow of the capabilities with a device's answers and
//! returns the outcome, the protocols, the needs left unmet, human reasons, hints that would
//! change the answer, and a trace of every node passed. Pure: no I/O, no printing.

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;

use crate::answers::Answers;
use crate::capabilities::{Capabilities, Node, NodeKind};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// A protocol id for a direct connection, else the outcome id (`message_integration`,
    /// `edge_gateway`, `none`).
    pub recommendation: String,
    /// `direct` or the outcome id.
    pub outcome: String,
    /// Every protocol the device should use, the recommended one first.
    pub protocols: Vec<String>,
    pub combination: bool,
    /// Which protocol carries which need.
    pub carriers: Vec<Carrier>,
    pub needs: Vec<String>,
    pub unmet: Vec<String>,
    pub reasons: Vec<String>,
    /// What would change the answer for the unmet needs or a `none` outcome.
    pub hints: Vec<String>,
    pub trace: Vec<TraceStep>,
    pub answers: Vec<AnswerUsed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Carrier {
    pub need: String,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceStep {
    pub node: String,
    pub kind: &'static str,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub by_default: bool,
    /// The edge taken (an answer value, some/none, covered/partial, chosen) or the outcome.
    pub branch: String,
    /// Protocols still open after this node.
    pub open: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Decided(Box<Decision>),
    Ask(Pending),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("missing answers: {}", .0.join(", "))]
    Missing(Vec<String>),
    #[error("the decision flow stops at node `{0}`: it has no edge for `{1}`")]
    Stuck(String, String),
    #[error(
        "the decision flow reaches node `{0}` with no protocol left to choose from\n  = help: run `enos-connect check` on the capabilities file; a `none` branch must lead to an outcome"
    )]
    NoProtocol(String),
}

/// Decide with defaults applied; a missing answer without a default is an error that names
/// every question the flow could still need.
pub fn decide(caps: &Capabilities, answers: &Answers) -> Result<Decision, EngineError> {
    match walk(caps, answers, true)? {
        Step::Decided(d) => Ok(*d),
        Step::Ask(_) => Err(EngineError::Missing(missing(caps, answers))),
    }
}

/// Walk the flow. With `use_defaults == false` the walk stops at the first question (or the
/// needs) that has not been answered: that is how the questionnaire asks only what matters.
pub fn walk(caps: &Capabilities, answers: &Answers, use_defaults: bool) -> Result<Step, EngineError> {
    Walker {
        caps,
        answers,
        use_defaults,
        open: caps.protocols.iter().map(|p| p.id.clone()).collect(),
        dropped: Vec::new(),
        options: Vec::new(),
        unmet: Vec::new(),
        reasons: Vec::new(),
        trace: Vec::new(),
        used: Vec::new(),
    }
    .run()
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

struct Dropped {
    protocol: String,
    remedy: String,
}

struct Walker<'a> {
    caps: &'a Capabilities,
    answers: &'a Answers,
    use_defaults: bool,
    open: Vec<String>,
    dropped: Vec<Dropped>,
    options: Vec<Vec<String>>,
    unmet: Vec<String>,
    reasons: Vec<String>,
    trace: Vec<TraceStep>,
    used: Vec<AnswerUsed>,
}

impl<'a> Walker<'a> {
    fn answer(&mut self, question: &str) -> Option<(String, bool)> {
        let found = match self.answers.values.get(question) {
            Some(v) => Some((v.clone(), false)),
            None if self.use_defaults => self
                .caps
                .question(question)
                .and_then(|q| q.default.clone())
                .map(|v| (v, true)),
            None => None,
        }?;
        if !self.used.iter().any(|u| u.question == question) {
            self.used.push(AnswerUsed {
                question: question.to_string(),
                value: found.0.clone(),
                by_default: found.1,
            });
        }
        Some(found)
    }

    fn title(&self, protocol: &str) -> String {
        self.caps.protocol_title(protocol).to_string()
    }

    fn feature_title(&self, id: &str) -> String {
        self.caps.feature(id).map_or(id, |f| f.title.as_str()).to_string()
    }

    fn step(&mut self, node: &Node, question: Option<(&str, &str, bool)>, branch: &str) {
        self.trace.push(TraceStep {
            node: node.id.clone(),
            kind: node.kind.as_str(),
            label: node.label.clone(),
            question: question.map(|q| q.0.to_string()),
            answer: question.map(|q| q.1.to_string()),
            by_default: question.is_some_and(|q| q.2),
            branch: branch.to_string(),
            open: self.open.clone(),
        });
    }

    fn run(mut self) -> Result<Step, EngineError> {
        let caps = self.caps;
        let mut node = caps
            .node(&caps.flow.start)
            .ok_or_else(|| EngineError::Stuck(caps.flow.start.clone(), "start".into()))?;
        // Validation rejects cycles; the bound keeps a hand-built model from looping anyway.
        for _ in 0..=caps.flow.nodes.len() {
            let branch = match node.kind {
                NodeKind::Question => {
                    let q = node.question.as_deref().unwrap_or_default();
                    let Some((value, by_default)) = self.answer(q) else {
                        return Ok(Step::Ask(Pending::Question(q.to_string())));
                    };
                    let label = caps.question(q).map_or(value.as_str(), |x| x.label_of(&value));
                    self.reasons.push(format!(
                        "{} {} ({q}={value}{})",
                        node.label,
                        label,
                        if by_default { ", the default" } else { "" }
                    ));
                    self.step(node, Some((q, &value, by_default)), &value);
                    value
                }
                NodeKind::Filter => {
                    let q = node.question.as_deref().unwrap_or_default();
                    let Some((value, by_default)) = self.answer(q) else {
                        return Ok(Step::Ask(Pending::Question(q.to_string())));
                    };
                    self.filter(node, &value);
                    let branch = if self.open.is_empty() { "none" } else { "some" };
                    self.step(node, Some((q, &value, by_default)), branch);
                    branch.to_string()
                }
                NodeKind::Cover => {
                    let needs = match &self.answers.needs {
                        Some(n) => n.clone(),
                        None if self.use_defaults => Vec::new(),
                        None => return Ok(Step::Ask(Pending::Needs)),
                    };
                    let branch = self.cover(&needs);
                    self.step(node, None, branch);
                    branch.to_string()
                }
                NodeKind::Prefer => {
                    if let Some(q) = self.prefer(node)? {
                        return Ok(Step::Ask(Pending::Question(q)));
                    }
                    self.step(node, None, "chosen");
                    "chosen".to_string()
                }
                NodeKind::Outcome => {
                    let outcome = node.outcome.clone().unwrap_or_else(|| "none".into());
                    self.step(node, None, &outcome);
                    return Ok(Step::Decided(Box::new(self.finish(&outcome))));
                }
            };
            node = caps
                .next(&node.id, &branch)
                .ok_or_else(|| EngineError::Stuck(node.id.clone(), branch.clone()))?;
        }
        Err(EngineError::Stuck(node.id.clone(), "a cycle".into()))
    }

    fn filter(&mut self, node: &Node, answer: &str) {
        let accepted: Vec<String> = match node.map.as_ref().and_then(|m| m.get(answer)) {
            Some(list) => list.clone(),
            None => vec![answer.to_string()],
        };
        let attribute = node.attribute.as_deref().unwrap_or("id");
        let mut kept = Vec::new();
        for id in std::mem::take(&mut self.open) {
            let values = self
                .caps
                .protocol(&id)
                .and_then(|p| p.attribute(attribute))
                .unwrap_or_default();
            if values.iter().any(|v| accepted.iter().any(|a| a == v)) {
                kept.push(id);
                continue;
            }
            let title = self.title(&id);
            let fill = |template: &str| {
                template
                    .replace("{protocol}", &title)
                    .replace("{value}", &values.join(" or "))
                    .replace("{answer}", answer)
            };
            if let Some(t) = &node.drop {
                self.reasons.push(fill(t));
            }
            self.dropped.push(Dropped {
                protocol: id.clone(),
                remedy: node.remedy.as_deref().map(fill).unwrap_or_default(),
            });
        }
        self.open = kept;
    }

    fn covers(&self, protocol: &str, need: &str) -> bool {
        self.caps
            .feature(need)
            .is_some_and(|f| f.support_for(protocol).covers())
    }

    /// Keep the smallest sets of open protocols that cover as many needs as any set can.
    fn cover(&mut self, needs: &[String]) -> &'static str {
        let open = &self.open;
        // More than 16 open protocols would make the subset search slow; no real model has that.
        let n = open.len().min(16);
        let coverage = |mask: u32| -> usize {
            needs
                .iter()
                .filter(|need| (0..n).any(|i| mask & (1 << i) != 0 && self.covers(&open[i], need)))
                .count()
        };
        let all = (1u32 << n) - 1;
        let best = coverage(all);
        let mut options: Vec<Vec<String>> = Vec::new();
        for size in 1..=n as u32 {
            for mask in 1..=all {
                if mask.count_ones() == size && coverage(mask) == best {
                    options.push(
                        (0..n)
                            .filter(|i| mask & (1 << i) != 0)
                            .map(|i| open[i].clone())
                            .collect(),
                    );
                }
            }
            if !options.is_empty() {
                break;
            }
        }
        self.unmet = needs
            .iter()
            .filter(|need| !open.iter().any(|p| self.covers(p, need)))
            .cloned()
            .collect();
        for need in needs {
            for p in open {
                if let Some(f) = self.caps.feature(need)
                    && let Some(note) = f.notes.get(p)
                    && !f.support_for(p).covers()
                {
                    self.reasons
                        .push(format!("{} with {}: {note}", f.title, self.title(p)));
                }
            }
        }
        self.options = options;
        if self.unmet.is_empty() {
            if !needs.is_empty() {
                let list: Vec<String> = needs.iter().map(|n| self.feature_title(n)).collect();
                self.reasons.push(format!("Needed: {}", list.join("; ")));
            }
            "covered"
        } else {
            let list: Vec<String> = self.unmet.iter().map(|n| self.feature_title(n)).collect();
            self.reasons.push(format!(
                "No protocol open to this device supports: {}",
                list.join("; ")
            ));
            "partial"
        }
    }

    /// Choose among the options by the first prefer rule that applies; returns the question it
    /// still needs when answers are missing and defaults are off.
    fn prefer(&mut self, node: &Node) -> Result<Option<String>, EngineError> {
        let options = std::mem::take(&mut self.options);
        // `check` rejects a flow that reaches a prefer node with nothing open; a model built
        // by hand gets an error here instead of an index out of bounds.
        let Some(first) = options.first().and_then(|o| o.first()).cloned() else {
            return Err(EngineError::NoProtocol(node.id.clone()));
        };
        if options.len() == 1 && options[0].len() == 1 {
            let p = &first;
            self.reasons.push(format!(
                "{} is the only protocol open to this device that covers its needs",
                self.title(p)
            ));
            self.options = options;
            return Ok(None);
        }
        let mut chosen: Option<(usize, String, String)> = None;
        for rule in &node.rules {
            let Some(index) = options.iter().position(|o| o.contains(&rule.protocol)) else {
                continue;
            };
            let applies = match (&rule.question, &rule.equals) {
                (Some(q), Some(want)) => match self.answer(q) {
                    Some((v, _)) => &v == want,
                    None => {
                        self.options = options;
                        return Ok(Some(q.clone()));
                    }
                },
                _ => true,
            };
            if applies {
                chosen = Some((index, rule.protocol.clone(), rule.reason.clone()));
                break;
            }
        }
        let (index, primary, reason) = chosen.unwrap_or_else(|| {
            (
                0,
                first,
                "first open protocol in the capabilities order".to_string(),
            )
        });
        let mut set = options.get(index).cloned().unwrap_or_default();
        set.retain(|p| p != &primary);
        set.insert(0, primary);
        if set.len() > 1 {
            let names: Vec<String> = set.iter().map(|p| self.title(p)).collect();
            self.reasons.push(format!(
                "No single protocol covers every need: use {} together",
                names.join(" and ")
            ));
        }
        self.reasons.push(reason);
        self.options = vec![set];
        Ok(None)
    }

    fn finish(mut self, outcome: &str) -> Decision {
        let needs = self.answers.need_list().to_vec();
        let mut hints = Vec::new();
        let (protocols, recommendation) = match outcome {
            "direct" => {
                let protocols = self.options.first().cloned().unwrap_or_default();
                let rec = protocols.first().cloned().unwrap_or_else(|| "none".into());
                (protocols, rec)
            }
            other => {
                if let Some(info) = self.caps.outcome(other) {
                    self.reasons.push(info.summary.clone());
                    self.unmet = needs
                        .iter()
                        .filter(|n| !info.supports.contains(n))
                        .cloned()
                        .collect();
                }
                (Vec::new(), other.to_string())
            }
        };
        let carriers = needs
            .iter()
            .filter_map(|need| {
                protocols.iter().find(|p| self.covers(p, need)).map(|p| Carrier {
                    need: need.clone(),
                    protocol: p.clone(),
                })
            })
            .collect::<Vec<_>>();
        if protocols.len() > 1 {
            for p in &protocols {
                let carried: Vec<&str> = carriers
                    .iter()
                    .filter(|c| &c.protocol == p)
                    .map(|c| c.need.as_str())
                    .collect();
                self.reasons
                    .push(format!("{} carries {}", self.title(p), carried.join(", ")));
            }
        }
        let nothing_open = outcome == "none" || (outcome == "direct" && protocols.is_empty());
        if nothing_open {
            // Group the dropped protocols by what would bring them back.
            let mut groups: Vec<(String, Vec<String>)> = Vec::new();
            for d in self.dropped.iter().filter(|d| !d.remedy.is_empty()) {
                match groups.iter_mut().find(|(r, _)| *r == d.remedy) {
                    Some((_, ps)) => ps.push(self.title(&d.protocol)),
                    None => groups.push((d.remedy.clone(), vec![self.title(&d.protocol)])),
                }
            }
            for (remedy, ps) in groups {
                hints.push(format!("{} would be open with {remedy}", ps.join(" and ")));
            }
            self.unmet = needs.clone();
        } else {
            for need in &self.unmet {
                let ways: Vec<String> = self
                    .caps
                    .protocols
                    .iter()
                    .filter(|p| self.covers(&p.id, need))
                    .map(|p| {
                        match self
                            .dropped
                            .iter()
                            .find(|d| d.protocol == p.id)
                            .filter(|d| !d.remedy.is_empty())
                        {
                            Some(d) => format!("{} (needs {})", p.title, d.remedy),
                            None => format!("{} over a direct connection", p.title),
                        }
                    })
                    .collect();
                if ways.is_empty() {
                    hints.push(format!("No EnOS protocol supports {}", self.feature_title(need)));
                } else {
                    hints.push(format!(
                        "{} is carried by {}",
                        self.feature_title(need),
                        ways.join("; or ")
                    ));
                }
            }
        }
        hints.dedup();
        Decision {
            recommendation,
            outcome: outcome.to_string(),
            combination: protocols.len() > 1,
            protocols,
            carriers,
            needs,
            unmet: self.unmet,
            reasons: self.reasons,
            hints,
            trace: self.trace,
            answers: self.used,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_that_reaches_prefer_with_nothing_open_is_an_error_not_a_panic() {
        // Validation rejects this flow; the engine must not rely on it.
        let mut caps = crate::capabilities::load_embedded().expect("embedded capabilities");
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
