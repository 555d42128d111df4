//! Which chosen protocol carries which need, and the caveats of the capabilities' `[[caveats]]`
//! that apply: a carrier that works against one of the device's answers. Pure.

use crate::answers::Answers;
use crate::capabilities::Capabilities;

use super::{Carrier, Caveat};

/// For each need, the first of `protocols` (the recommended one first) that supports it; a
/// need none of them supports has no carrier.
pub fn carriers(caps: &Capabilities, needs: &[String], protocols: &[String]) -> Vec<Carrier> {
    needs
        .iter()
        .filter_map(|need| {
            let f = caps.feature(need)?;
            protocols
                .iter()
                .find(|p| f.support_for(p).covers())
                .map(|p| Carrier {
                    need: need.clone(),
                    protocol: p.clone(),
                })
        })
        .collect()
}

/// The device's answer to `question`: given, or the question's default.
fn effective<'a>(caps: &'a Capabilities, answers: &'a Answers, question: &str) -> Option<&'a str> {
    answers
        .values
        .get(question)
        .map(String::as_str)
        .or_else(|| caps.question(question).and_then(|q| q.default.as_deref()))
}

/// The caveats that apply to these protocols and carriers, in the rules' order: a rule applies
/// when the device's answer (given or by default) is the rule's, and its protocol is chosen and
/// carries one of its needs (a rule without needs: is chosen at all).
pub fn caveats(
    caps: &Capabilities,
    answers: &Answers,
    protocols: &[String],
    carriers: &[Carrier],
) -> Vec<Caveat> {
    let mut out = Vec::new();
    for rule in &caps.caveats {
        if !protocols.contains(&rule.protocol)
            || effective(caps, answers, &rule.question) != Some(rule.answer.as_str())
        {
            continue;
        }
        let caveat = |need: Option<&String>| Caveat {
            need: need.cloned(),
            protocol: rule.protocol.clone(),
            question: rule.question.clone(),
            answer: rule.answer.clone(),
            why: rule.why.clone(),
        };
        if rule.needs.is_empty() {
            out.push(caveat(None));
            continue;
        }
        out.extend(
            carriers
                .iter()
                .filter(|c| c.protocol == rule.protocol && rule.needs.contains(&c.need))
                .map(|c| caveat(Some(&c.need))),
        );
    }
    out
}

/// The questions of the caveats that could apply to these protocols and carriers, whatever the
/// answers: what the questionnaire still asks once the flow has chosen.
pub(super) fn questions<'c>(
    caps: &'c Capabilities,
    protocols: &[String],
    carriers: &[Carrier],
) -> impl Iterator<Item = &'c str> {
    caps.caveats
        .iter()
        .filter(move |rule| {
            protocols.contains(&rule.protocol)
                && (rule.needs.is_empty()
                    || carriers
                        .iter()
                        .any(|c| c.protocol == rule.protocol && rule.needs.contains(&c.need)))
        })
        .map(|rule| rule.question.as_str())
}
