//! The answers a device gave that its decision never read, each with why it could not change
//! the outcome: a preference that had nothing to choose between, or a branch of the flow the
//! device's path does not take. Pure; the sentences come from the flow's own labels, drop
//! templates and rules.

use std::collections::BTreeSet;

use crate::answers::Answers;
use crate::capabilities::{Capabilities, Node};

use super::SetAside;
use super::walk::{Step, Visit, Walk};

/// Every answer in `answers` that the walk did not read, in the questions' order.
pub fn set_aside(caps: &Capabilities, answers: &Answers, walk: &Walk<'_>) -> Vec<SetAside> {
    caps.questions
        .iter()
        .filter(|q| !walk.answers.iter().any(|u| u.question == q.id))
        .filter_map(|q| {
            let value = answers.values.get(&q.id)?;
            Some(SetAside {
                question: q.id.clone(),
                value: value.clone(),
                why: why(caps, walk, &q.id),
            })
        })
        .collect()
}

/// Why the walk did not read `question`.
pub fn why(caps: &Capabilities, walk: &Walk<'_>, question: &str) -> String {
    walk.visits
        .iter()
        .enumerate()
        .find_map(|(i, v)| unasked_preference(caps, walk, i, v, question))
        .unwrap_or_else(|| off_the_path(caps, walk, question))
}

/// A prefer node on the path has a rule on `question` that it never tested: the rule's
/// protocol was not among the options, an earlier rule chose, or there was one option only.
fn unasked_preference(
    caps: &Capabilities,
    walk: &Walk<'_>,
    at: usize,
    visit: &Visit<'_>,
    question: &str,
) -> Option<String> {
    let Step::Chose {
        protocols,
        options: count,
        rule: chosen,
    } = &visit.step
    else {
        return None;
    };
    let index = visit
        .node
        .rules
        .iter()
        .position(|r| r.question.as_deref() == Some(question))?;
    let rule = &visit.node.rules[index];
    let title = caps.protocol_title(&rule.protocol);
    // The options are what the cover node before this prefer node left.
    let options = walk.visits[..at]
        .iter()
        .rev()
        .find_map(|v| match &v.step {
            Step::Covered { options, .. } => Some(options.as_slice()),
            _ => None,
        })
        .unwrap_or(&[]);
    if !options.iter().any(|o| o.contains(&rule.protocol)) {
        return Some(format!(
            "{title} could not be chosen: {}",
            not_an_option(caps, walk, &rule.protocol, protocols)
        ));
    }
    if let Some(r) = chosen.and_then(|r| (r < index).then(|| visit.node.rules.get(r)).flatten()) {
        return Some(format!(
            "the preference before it chose {}: {}",
            caps.protocol_title(&r.protocol),
            r.reason
        ));
    }
    if *count <= 1 {
        let chosen: Vec<&str> = protocols.iter().map(|p| caps.protocol_title(p)).collect();
        return Some(format!(
            "{} was the only choice left, so there was nothing to prefer",
            chosen.join(" + ")
        ));
    }
    None
}

/// Why `protocol` was not among the options a cover node left: a filter dropped it, or it
/// does not carry every need that the chosen protocols carry (else it alone would have been an
/// option). Said without naming the needs, so that the sentence depends on the path alone.
fn not_an_option(caps: &Capabilities, walk: &Walk<'_>, protocol: &str, chosen: &[String]) -> String {
    let dropped = walk
        .visits
        .iter()
        .find_map(|v| match (&v.step, &v.answer, &v.node.drop) {
            (Step::Filtered { dropped }, Some((_, answer, _)), Some(template))
                if dropped.iter().any(|d| d == protocol) =>
            {
                Some(super::explain::fill_remedy(
                    caps,
                    template,
                    v.node.attribute.as_deref(),
                    protocol,
                    answer,
                ))
            }
            _ => None,
        });
    if let Some(sentence) = dropped {
        return sentence;
    }
    let names: Vec<&str> = chosen.iter().map(|p| caps.protocol_title(p)).collect();
    format!(
        "it does not carry every need that {} {}",
        names.join(" and "),
        if names.len() == 1 { "carries" } else { "carry" }
    )
}

/// The flow reads `question` only at nodes this device's path does not pass: name the first
/// such node and where the path turned away from it.
fn off_the_path(caps: &Capabilities, walk: &Walk<'_>, question: &str) -> String {
    let reads = |n: &Node| {
        n.question.as_deref() == Some(question)
            || n.rules.iter().any(|r| r.question.as_deref() == Some(question))
    };
    for v in walk.visits.iter().rev() {
        let untaken = caps
            .edges_from(&v.node.id)
            .filter(|e| !e.when.contains(&v.branch));
        for e in untaken {
            if let Some(reader) = reachable(caps, &e.to, &reads) {
                return format!(
                    "the flow reads it only at “{}”, which this device's path does not reach (it turns at {})",
                    reader.label,
                    turn(v)
                );
            }
        }
    }
    "the flow never reads it on this device's path".to_string()
}

/// The first node from `start` on (breadth first) that `reads`.
fn reachable<'c>(caps: &'c Capabilities, start: &str, reads: &dyn Fn(&Node) -> bool) -> Option<&'c Node> {
    let mut seen = BTreeSet::new();
    let mut queue = std::collections::VecDeque::from([start.to_string()]);
    while let Some(id) = queue.pop_front() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(node) = caps.node(&id) else { continue };
        if reads(node) {
            return Some(node);
        }
        queue.extend(caps.edges_from(&id).map(|e| e.to.clone()));
    }
    None
}

/// Where a path turned, in words: `network=none`, or a node's label and its branch.
fn turn(v: &Visit<'_>) -> String {
    match (&v.step, &v.answer) {
        (Step::Asked, Some((q, value, _))) => format!("{q}={value}"),
        (Step::Filtered { .. }, _) if v.open.is_empty() => {
            format!("“{}”, which left no protocol", v.node.label)
        }
        _ => format!("“{}” -> {}", v.node.label, v.branch),
    }
}
