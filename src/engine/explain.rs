//! The explanation: a finished walk turned into the decision a person reads: the reasons in
//! the order the flow met them, which protocol carries which need, the needs left unmet and
//! hints at what would change the answer. Pure, like the walk.

use crate::answers::Answers;
use crate::capabilities::Capabilities;

use super::walk::{Step, Visit, Walk};
use super::{Decision, TraceStep};

/// The decision for a walk that reached `outcome`.
pub fn explain(caps: &Capabilities, answers: &Answers, walk: &Walk<'_>, outcome: &str) -> Decision {
    let needs = answers.need_list().to_vec();
    let Verdict {
        recommendation,
        protocols,
        unmet,
        nothing_open,
    } = verdict(caps, &needs, walk, outcome);
    let carriers = super::carriers(caps, &needs, &protocols);
    let mut reasons = Vec::new();
    for v in &walk.visits {
        reasons.extend(reasons_at(caps, v, &unmet));
    }
    if outcome != "direct"
        && let Some(info) = caps.outcome(outcome)
    {
        reasons.push(info.summary.clone());
        if !unmet.is_empty() && !nothing_open {
            reasons.push(format!("{} does not carry: {}", info.title, titles(caps, &unmet)));
        }
    }
    if protocols.len() > 1 {
        for p in &protocols {
            let carried: Vec<&str> = carriers
                .iter()
                .filter(|c| &c.protocol == p)
                .map(|c| c.need.as_str())
                .collect();
            reasons.push(format!(
                "{} carries {}",
                caps.protocol_title(p),
                carried.join(", ")
            ));
        }
    }
    let mut hints = if nothing_open {
        reopening_hints(caps, walk)
    } else {
        unmet
            .iter()
            .map(|need| carried_elsewhere(caps, walk, need))
            .collect()
    };
    hints.dedup();
    Decision {
        recommendation,
        outcome: outcome.to_string(),
        combination: protocols.len() > 1,
        caveats: super::caveats(caps, answers, &protocols, &carriers),
        set_aside: super::set_aside(caps, answers, walk),
        protocols,
        carriers,
        needs,
        unmet,
        reasons,
        hints,
        trace: trace(walk),
        answers: walk.answers.clone(),
    }
}

/// Feature titles for a sentence: `Firmware OTA update; Report file-type data`.
fn titles(caps: &Capabilities, ids: &[String]) -> String {
    ids.iter()
        .map(|id| caps.feature(id).map_or(id.as_str(), |f| f.title.as_str()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A hint for an unmet need: the protocols that would carry it, and what would open them.
fn carried_elsewhere(caps: &Capabilities, walk: &Walk<'_>, need: &str) -> String {
    let covers = |p: &str| caps.feature(need).is_some_and(|f| f.support_for(p).covers());
    let ways: Vec<String> = caps
        .protocols
        .iter()
        .filter(|p| covers(&p.id))
        .map(|p| match remedy_for(caps, walk, &p.id) {
            Some(remedy) => format!("{} (needs {remedy})", p.title),
            None => format!("{} over a direct connection", p.title),
        })
        .collect();
    let title = caps.feature(need).map_or(need, |f| f.title.as_str());
    if ways.is_empty() {
        format!("No EnOS protocol supports {title}")
    } else {
        format!("{title} is carried by {}", ways.join("; or "))
    }
}

/// What a walk decided, without the sentences: the recommendation, the protocols (the
/// recommended one first) and the needs left unmet, in the order of `needs`.
pub struct Verdict {
    pub recommendation: String,
    pub protocols: Vec<String>,
    pub unmet: Vec<String>,
    /// No protocol was left open (outcome `none`, or a direct outcome with nothing to use).
    pub nothing_open: bool,
}

/// The verdict of a walk that reached `outcome`: what [`explain`] says in sentences and
/// `recommend --batch` writes per row.
pub fn verdict(caps: &Capabilities, needs: &[String], walk: &Walk<'_>, outcome: &str) -> Verdict {
    let mut unmet = Vec::new();
    let mut protocols = Vec::new();
    for v in &walk.visits {
        match &v.step {
            Step::Covered { options, .. } => {
                // From `needs` and what was open at the cover node, not the walk's own needs:
                // `recommend --batch` reuses a walk for needs that lead the same way.
                unmet = needs
                    .iter()
                    .filter(|n| {
                        !caps
                            .feature(n)
                            .is_some_and(|f| v.open.iter().any(|p| f.support_for(p).covers()))
                    })
                    .cloned()
                    .collect();
                // A flow without a prefer node takes the first of the smallest sets.
                protocols = options.first().cloned().unwrap_or_default();
            }
            Step::Chose { protocols: p, .. } => protocols.clone_from(p),
            _ => {}
        }
    }
    let direct = outcome == "direct";
    let recommendation = if direct {
        protocols.first().cloned().unwrap_or_else(|| "none".into())
    } else {
        protocols.clear();
        if let Some(info) = caps.outcome(outcome) {
            unmet = needs
                .iter()
                .filter(|n| !info.supports.contains(n))
                .cloned()
                .collect();
        }
        outcome.to_string()
    };
    let nothing_open = outcome == "none" || (direct && protocols.is_empty());
    if nothing_open {
        unmet = needs.to_vec();
    }
    Verdict {
        recommendation,
        protocols,
        unmet,
        nothing_open,
    }
}

/// The sentences one node adds to the reasons; `unmet` is what the decision leaves unmet, so
/// that no sentence claims the needs are covered when they are not.
fn reasons_at(caps: &Capabilities, v: &Visit<'_>, unmet: &[String]) -> Vec<String> {
    let node = v.node;
    match &v.step {
        Step::Asked => {
            let Some((q, value, by_default)) = &v.answer else {
                return Vec::new();
            };
            let label = caps.question(q).map_or(value.as_str(), |x| x.label_of(value));
            vec![format!(
                "{} {} ({q}={value}{})",
                node.label,
                label,
                if *by_default { ", the default" } else { "" }
            )]
        }
        Step::Filtered { dropped } => match (&node.drop, &v.answer) {
            (Some(template), Some((_, answer, _))) => dropped
                .iter()
                .map(|p| fill_remedy(caps, template, node.attribute.as_deref(), p, answer))
                .collect(),
            _ => Vec::new(),
        },
        Step::Covered { needs, unmet, .. } => covered_reasons(caps, &v.open, needs, unmet),
        Step::Chose {
            protocols,
            options,
            rule,
        } => {
            let reason = rule.and_then(|r| node.rules.get(r)).map(|r| r.reason.as_str());
            chose_reasons(caps, v.open.len(), protocols, *options, reason, unmet)
        }
        Step::Outcome => Vec::new(),
    }
}

/// A cover node's sentences: the notes of partial support, then the needs it meets or the
/// ones no open protocol supports.
fn covered_reasons(caps: &Capabilities, open: &[String], needs: &[String], unmet: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for need in needs {
        for p in open {
            if let Some(f) = caps.feature(need)
                && let Some(note) = f.notes.get(p)
                && !f.support_for(p).covers()
            {
                out.push(format!("{} with {}: {note}", f.title, caps.protocol_title(p)));
            }
        }
    }
    if unmet.is_empty() {
        if !needs.is_empty() {
            out.push(format!("Needed: {}", titles(caps, needs)));
        }
    } else {
        out.push(format!(
            "No protocol open to this device supports: {}",
            titles(caps, unmet)
        ));
    }
    out
}

/// A prefer node's sentences: why these protocols (the only one open, the one that carries
/// the most, a combination), then the rule that chose the primary. `open` protocols were open,
/// `options` sets of them were left to choose from.
fn chose_reasons(
    caps: &Capabilities,
    open: usize,
    protocols: &[String],
    options: usize,
    rule_reason: Option<&str>,
    unmet: &[String],
) -> Vec<String> {
    let title = |p: &str| caps.protocol_title(p).to_string();
    let Some(primary) = protocols.first() else {
        return Vec::new();
    };
    if options == 1 && protocols.len() == 1 {
        return vec![if unmet.is_empty() {
            format!(
                "{} is the only protocol open to this device that covers its needs",
                title(primary)
            )
        } else if open == 1 {
            format!("{} is the only protocol open to this device", title(primary))
        } else {
            format!(
                "{} carries the most needs of the protocols open to this device",
                title(primary)
            )
        }];
    }
    let mut out = Vec::new();
    if protocols.len() > 1 {
        let names: Vec<String> = protocols.iter().map(|p| title(p)).collect();
        out.push(if unmet.is_empty() {
            format!(
                "No single protocol covers every need: use {} together",
                names.join(" and ")
            )
        } else {
            format!(
                "No one protocol carries all the needs that can be carried: use {} together",
                names.join(" and ")
            )
        });
    }
    out.push(rule_reason.map_or_else(
        || "first open protocol in the capabilities order".to_string(),
        str::to_string,
    ));
    out
}

/// A filter's `drop` or `remedy` template filled in for one protocol.
pub(super) fn fill_remedy(
    caps: &Capabilities,
    template: &str,
    attribute: Option<&str>,
    protocol: &str,
    answer: &str,
) -> String {
    let values = caps
        .protocol(protocol)
        .and_then(|p| p.attribute(attribute.unwrap_or("id")))
        .unwrap_or_default();
    template
        .replace("{protocol}", caps.protocol_title(protocol))
        .replace("{value}", &values.join(" or "))
        .replace("{answer}", answer)
}

/// What would bring back `protocol`, when a filter dropped it: the filter's remedy.
fn remedy_for(caps: &Capabilities, walk: &Walk<'_>, protocol: &str) -> Option<String> {
    walk.visits
        .iter()
        .find_map(|v| match (&v.step, &v.answer, &v.node.remedy) {
            (Step::Filtered { dropped }, Some((_, answer, _)), Some(template))
                if dropped.iter().any(|d| d == protocol) =>
            {
                let remedy = fill_remedy(caps, template, v.node.attribute.as_deref(), protocol, answer);
                (!remedy.is_empty()).then_some(remedy)
            }
            _ => None,
        })
}

/// With nothing open: the dropped protocols grouped by what would bring them back.
fn reopening_hints(caps: &Capabilities, walk: &Walk<'_>) -> Vec<String> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for v in &walk.visits {
        let Step::Filtered { dropped } = &v.step else {
            continue;
        };
        for p in dropped {
            let Some(remedy) = remedy_for(caps, walk, p) else {
                continue;
            };
            let name = caps.protocol_title(p).to_string();
            match groups.iter_mut().find(|(r, _)| *r == remedy) {
                Some((_, ps)) => {
                    if !ps.contains(&name) {
                        ps.push(name);
                    }
                }
                None => groups.push((remedy, vec![name])),
            }
        }
    }
    groups
        .into_iter()
        .map(|(remedy, ps)| format!("{} would be open with {remedy}", ps.join(" and ")))
        .collect()
}

/// The walk as the trace printed under "Decision path".
fn trace(walk: &Walk<'_>) -> Vec<TraceStep> {
    walk.visits
        .iter()
        .map(|v| TraceStep {
            node: v.node.id.clone(),
            kind: v.node.kind.as_str(),
            label: v.node.label.clone(),
            question: v.answer.as_ref().map(|a| a.0.clone()),
            answer: v.answer.as_ref().map(|a| a.1.clone()),
            by_default: v.answer.as_ref().is_some_and(|a| a.2),
            branch: v.branch.clone(),
            open: v.open.clone(),
        })
        .collect()
}
