//! Semantic checks of a parsed capabilities file. Every problem is collected (not just the
//! first) with the path of the offending value, which the loader turns into `file:line:col`.
//!
//! Why over 600 lines: every cross-reference of the file is checked here, one function per
//! section, so a new section's checks have an obvious home.

use std::collections::{BTreeMap, BTreeSet};

use super::{Capabilities, FILTER_ATTRIBUTES, Node, NodeKind, Support};
use crate::source::{PathSeg, Problem};

/// Builds a TOML path: `path!("features", 3, "support", "mqtt")`.
macro_rules! path {
    ($($seg:expr),* $(,)?) => { vec![$(PathSeg::from($seg)),*] };
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: Vec<PathSeg>, message: impl Into<String>) {
        self.0.push(Problem {
            path,
            message: message.into(),
        });
    }
}

pub fn validate(caps: &Capabilities) -> Vec<Problem> {
    let mut p = Problems::default();
    if caps.meta.version.trim().is_empty() {
        p.add(path!("meta", "version"), "meta.version is empty");
    }
    duplicates(&mut p, "protocols", caps.protocols.iter().map(|x| &x.id));
    duplicates(&mut p, "features", caps.features.iter().map(|x| &x.id));
    duplicates(&mut p, "questions", caps.questions.iter().map(|x| &x.id));
    duplicates(&mut p, "outcomes", caps.outcomes.iter().map(|x| &x.id));
    protocols(caps, &mut p);
    features(caps, &mut p);
    questions(caps, &mut p);
    flow(caps, &mut p);
    outcomes(caps, &mut p);
    credentials(caps, &mut p);
    auth_modes(caps, &mut p);
    p.0.extend(super::exchange::problems(caps));
    caveats(caps, &mut p);
    // The walk below follows the flow as the engine would: only meaningful on a flow whose
    // nodes, edges and answers are all well-formed.
    if p.0.is_empty() {
        nothing_left_to_choose(caps, &mut p);
    }
    p.0
}

fn duplicates<'a>(p: &mut Problems, table: &str, ids: impl Iterator<Item = &'a String>) {
    let mut seen = BTreeSet::new();
    for (i, id) in ids.enumerate() {
        if id.trim().is_empty() {
            p.add(path!(table, i, "id"), format!("{table}[{i}] has an empty id"));
        } else if !seen.insert(id.as_str()) {
            p.add(path!(table, i, "id"), format!("duplicate {table} id `{id}`"));
        }
    }
}

fn known_protocols(caps: &Capabilities) -> String {
    list(caps.protocols.iter().map(|x| x.id.as_str()))
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

fn protocols(caps: &Capabilities, p: &mut Problems) {
    if caps.protocols.is_empty() {
        p.add(path!("protocols"), "no protocols are defined");
    }
    for (i, proto) in caps.protocols.iter().enumerate() {
        if proto.transport.trim().is_empty() {
            p.add(
                path!("protocols", i, "transport"),
                format!("protocol `{}` has no transport", proto.id),
            );
        }
        if proto.enos_versions.is_empty() {
            p.add(
                path!("protocols", i, "enos_versions"),
                format!("protocol `{}` is offered by no EnOS version", proto.id),
            );
        }
        let mut schemes = BTreeSet::new();
        for (j, port) in proto.ports.iter().enumerate() {
            if !schemes.insert(port.scheme.as_str()) {
                p.add(
                    path!("protocols", i, "ports", j, "scheme"),
                    format!("protocol `{}` lists the scheme `{}` twice", proto.id, port.scheme),
                );
            }
        }
    }
}

fn features(caps: &Capabilities, p: &mut Problems) {
    for (i, f) in caps.features.iter().enumerate() {
        for key in f.support.keys() {
            if caps.protocol(key).is_none() {
                p.add(
                    path!("features", i, "support", key),
                    format!(
                        "feature `{}` names unknown protocol `{key}` (known: {})",
                        f.id,
                        known_protocols(caps)
                    ),
                );
            }
        }
        for proto in &caps.protocols {
            match f.support.get(&proto.id) {
                None => p.add(
                    path!("features", i, "support"),
                    format!(
                        "feature `{}` has no support value for protocol `{}` (use supported, not_supported, not_applicable or partial)",
                        f.id, proto.id
                    ),
                ),
                Some(Support::Partial) if !f.notes.contains_key(&proto.id) => p.add(
                    path!("features", i, "support", &proto.id),
                    format!(
                        "feature `{}` is partial for `{}` but has no note saying what is missing (add notes.{})",
                        f.id, proto.id, proto.id
                    ),
                ),
                Some(_) => {}
            }
        }
        for (j, pattern) in f.patterns.iter().enumerate() {
            let rooted = ["/sys/{pk}/{dk}/", "/ext/session/{pk}/{dk}/"]
                .iter()
                .any(|root| pattern.strip_prefix(root).is_some_and(|rest| !rest.is_empty()));
            if !rooted || pattern.split('/').skip(1).any(str::is_empty) {
                p.add(
                    path!("features", i, "patterns", j),
                    format!(
                        "feature `{}` pattern `{pattern}` is not /sys/{{pk}}/{{dk}}/... or /ext/session/{{pk}}/{{dk}}/... with no empty level",
                        f.id
                    ),
                );
            }
            for (k, other) in caps.features.iter().enumerate() {
                if k != i && other.patterns.contains(pattern) && k < i {
                    p.add(
                        path!("features", i, "patterns", j),
                        format!(
                            "pattern `{pattern}` of feature `{}` is also feature `{}`'s",
                            f.id, other.id
                        ),
                    );
                }
            }
        }
        for (table, keys) in [
            ("notes", f.notes.keys().collect::<Vec<_>>()),
            ("topics", f.topics.keys().collect()),
        ] {
            for key in keys {
                if caps.protocol(key).is_none() {
                    p.add(
                        path!("features", i, table, key),
                        format!("feature `{}` {table} name unknown protocol `{key}`", f.id),
                    );
                }
            }
        }
    }
}

fn questions(caps: &Capabilities, p: &mut Problems) {
    for (i, q) in caps.questions.iter().enumerate() {
        if q.choices.is_empty() {
            p.add(
                path!("questions", i, "choices"),
                format!("question `{}` has no choices", q.id),
            );
        }
        let mut seen = BTreeSet::new();
        for (j, c) in q.choices.iter().enumerate() {
            if !seen.insert(c.value.as_str()) {
                p.add(
                    path!("questions", i, "choices", j),
                    format!("question `{}` lists the value `{}` twice", q.id, c.value),
                );
            }
        }
        // Every spelling (value, label, alias) names one choice: two choices written alike
        // would make an answer mean either.
        let mut spelled: BTreeMap<String, usize> = BTreeMap::new();
        for (j, c) in q.choices.iter().enumerate() {
            let names = std::iter::once(&c.value)
                .chain(std::iter::once(&c.label))
                .chain(&c.aliases);
            for name in names {
                let key = super::normalize(name).unwrap_or_else(|| name.clone());
                match spelled.get(&key) {
                    Some(&other) if other != j => p.add(
                        path!("questions", i, "choices", j),
                        format!(
                            "question `{}`: `{name}` names both `{}` and `{}` (values, labels and aliases are compared without regard to case)",
                            q.id, q.choices[other].value, c.value
                        ),
                    ),
                    _ => {
                        spelled.insert(key, j);
                    }
                }
            }
        }
        if let Some(d) = &q.default
            && !q.values().any(|v| v == d)
        {
            p.add(
                path!("questions", i, "default"),
                format!(
                    "question `{}` defaults to `{d}`, which is not one of its values ({})",
                    q.id,
                    list(q.values())
                ),
            );
        }
    }
}

fn flow(caps: &Capabilities, p: &mut Problems) {
    duplicates(p, "nodes", caps.flow.nodes.iter().map(|n| &n.id));
    if caps.node(&caps.flow.start).is_none() {
        p.add(
            path!("flow", "start"),
            format!("flow.start names unknown node `{}`", caps.flow.start),
        );
    }
    for (i, node) in caps.flow.nodes.iter().enumerate() {
        let at = |field: &str| path!("flow", "nodes", i, field);
        let question = node.question.as_deref().and_then(|q| caps.question(q));
        match node.kind {
            NodeKind::Question | NodeKind::Filter => match &node.question {
                None => p.add(
                    at("kind"),
                    format!("{} node `{}` needs `question`", node.kind.as_str(), node.id),
                ),
                Some(q) if question.is_none() => p.add(
                    at("question"),
                    format!("node `{}` asks unknown question `{q}`", node.id),
                ),
                Some(_) => {}
            },
            _ => {}
        }
        if node.kind == NodeKind::Filter {
            match node.attribute.as_deref() {
                Some(a) if FILTER_ATTRIBUTES.contains(&a) => {}
                other => p.add(
                    at("attribute"),
                    format!(
                        "filter node `{}` has attribute {:?}; use one of {}",
                        node.id,
                        other.unwrap_or("(none)"),
                        FILTER_ATTRIBUTES.join(", ")
                    ),
                ),
            }
            if let (Some(map), Some(q)) = (&node.map, question) {
                for v in q.values() {
                    if !map.contains_key(v) {
                        p.add(
                            at("map"),
                            format!("filter node `{}` maps no value for answer `{v}`", node.id),
                        );
                    }
                }
                for k in map.keys() {
                    if !q.values().any(|v| v == k) {
                        p.add(
                            path!("flow", "nodes", i, "map", k),
                            format!(
                                "filter node `{}` maps `{k}`, which `{}` never answers",
                                node.id, q.id
                            ),
                        );
                    }
                }
            }
        }
        if node.kind == NodeKind::Prefer {
            for (j, rule) in node.rules.iter().enumerate() {
                let rat = |field: &str| path!("flow", "nodes", i, "rules", j, field);
                if caps.protocol(&rule.protocol).is_none() {
                    p.add(
                        rat("protocol"),
                        format!(
                            "prefer rule names unknown protocol `{}` (known: {})",
                            rule.protocol,
                            known_protocols(caps)
                        ),
                    );
                }
                match (&rule.question, &rule.equals) {
                    (None, None) => {}
                    (Some(q), Some(v)) => match caps.question(q) {
                        None => p.add(
                            rat("question"),
                            format!("prefer rule asks unknown question `{q}`"),
                        ),
                        Some(q) if !q.values().any(|x| x == v) => p.add(
                            rat("equals"),
                            format!(
                                "prefer rule tests `{}` = `{v}`, not one of {}",
                                q.id,
                                list(q.values())
                            ),
                        ),
                        Some(_) => {}
                    },
                    _ => p.add(
                        rat("protocol"),
                        "a prefer rule needs both `question` and `equals`, or neither",
                    ),
                }
            }
        }
        if node.kind == NodeKind::Outcome {
            match node.outcome.as_deref() {
                Some("direct") => {}
                Some(o) if caps.outcome(o).is_some() => {}
                other => p.add(
                    at("outcome"),
                    format!(
                        "outcome node `{}` names outcome {:?}, which is neither `direct` nor listed in [[outcomes]]",
                        node.id,
                        other.unwrap_or("(none)")
                    ),
                ),
            }
        }
    }
    edges(caps, p);
    reachability_and_cycles(caps, p);
}

fn edges(caps: &Capabilities, p: &mut Problems) {
    let mut taken: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (i, e) in caps.flow.edges.iter().enumerate() {
        let at = |field: &str| path!("flow", "edges", i, field);
        if caps.node(&e.to).is_none() {
            p.add(
                at("to"),
                format!("flow edge from `{}` leads to missing node `{}`", e.from, e.to),
            );
        }
        let Some(from) = caps.node(&e.from) else {
            p.add(
                at("from"),
                format!("flow edge starts at missing node `{}`", e.from),
            );
            continue;
        };
        let allowed: Vec<&str> = match from.kind {
            NodeKind::Question => from
                .question
                .as_deref()
                .and_then(|q| caps.question(q))
                .map(|q| q.values().collect())
                .unwrap_or_default(),
            NodeKind::Outcome => {
                p.add(
                    at("from"),
                    format!("outcome node `{}` ends the flow and cannot have edges", e.from),
                );
                continue;
            }
            kind => kind.fixed_branches().unwrap_or_default().to_vec(),
        };
        if e.when.is_empty() {
            p.add(
                at("when"),
                format!("flow edge {} -> {} has an empty `when`", e.from, e.to),
            );
        }
        for w in &e.when {
            if !allowed.contains(&w.as_str()) {
                p.add(
                    at("when"),
                    format!(
                        "flow edge {} -> {} takes `{w}`, which node `{}` never produces (it produces {})",
                        e.from,
                        e.to,
                        e.from,
                        allowed.join(", ")
                    ),
                );
            }
            let seen = taken.entry(e.from.as_str()).or_default();
            if seen.contains(&w.as_str()) {
                p.add(at("when"), format!("node `{}` has two edges for `{w}`", e.from));
            }
            seen.push(w.as_str());
        }
    }
    for (i, node) in caps.flow.nodes.iter().enumerate() {
        let branches: Vec<&str> = match node.kind {
            NodeKind::Outcome => continue,
            NodeKind::Question => match node.question.as_deref().and_then(|q| caps.question(q)) {
                Some(q) => q.values().collect(),
                None => continue,
            },
            kind => kind.fixed_branches().unwrap_or_default().to_vec(),
        };
        let seen = taken.get(node.id.as_str()).cloned().unwrap_or_default();
        for b in branches {
            if !seen.contains(&b) {
                p.add(
                    path!("flow", "nodes", i, "id"),
                    format!(
                        "node `{}` has no edge for `{b}`: the flow would stop there",
                        node.id
                    ),
                );
            }
        }
    }
}

fn reachability_and_cycles(caps: &Capabilities, p: &mut Problems) {
    if caps.node(&caps.flow.start).is_none() {
        return;
    }
    // Depth-first walk with colours: grey = on the current path, so reaching it again is a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Grey,
        Black,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    let mut cycles = BTreeSet::new();
    // Iterative DFS keeps deep or hostile flows from overflowing the stack.
    let mut work: Vec<(&str, bool)> = vec![(caps.flow.start.as_str(), false)];
    while let Some((id, leaving)) = work.pop() {
        if leaving {
            marks.insert(id, Mark::Black);
            continue;
        }
        if marks.contains_key(id) {
            continue;
        }
        marks.insert(id, Mark::Grey);
        work.push((id, true));
        for e in caps.edges_from(id) {
            if caps.node(&e.to).is_none() {
                continue;
            }
            match marks.get(e.to.as_str()) {
                Some(Mark::Grey) => {
                    cycles.insert((e.from.clone(), e.to.clone()));
                }
                Some(Mark::Black) => {}
                None => work.push((e.to.as_str(), false)),
            }
        }
    }
    for (from, to) in cycles {
        let i = caps
            .flow
            .edges
            .iter()
            .position(|e| e.from == from && e.to == to)
            .unwrap_or_default();
        p.add(
            path!("flow", "edges", i, "to"),
            format!("flow edge {from} -> {to} closes a cycle: the flow must always reach an outcome"),
        );
    }
    for (i, node) in caps.flow.nodes.iter().enumerate() {
        if !marks.contains_key(node.id.as_str()) {
            p.add(
                path!("flow", "nodes", i, "id"),
                format!(
                    "node `{}` cannot be reached from flow.start `{}`",
                    node.id, caps.flow.start
                ),
            );
        }
    }
}

/// A node reached with these protocols open and these answers given; `from` is the state it
/// was reached from and `via` what was taken there (for the example path).
struct State<'a> {
    node: &'a str,
    open: Vec<&'a str>,
    answers: Vec<(&'a str, &'a str)>,
    from: Option<(usize, Via<'a>)>,
}

/// What a state was left by: an answer to a question, or a fixed branch.
#[derive(Clone, Copy)]
enum Via<'a> {
    Answer(&'a str, &'a str),
    Branch(&'static str),
}

/// A `cover` or `prefer` node reached with every protocol filtered out has nothing to choose
/// from. Walks every path the answers allow (an answer keeps its value along a path, as it does
/// in the engine), tracking which protocols are still open, and reports each such node once
/// with an example path.
fn nothing_left_to_choose(caps: &Capabilities, p: &mut Problems) {
    // A hostile file could make the paths multiply; past this many states the check stops
    // (it only ever adds problems, so stopping early never hides one it found).
    const MAX_STATES: usize = 100_000;
    let mut reported = BTreeSet::new();
    let mut states = vec![State {
        node: caps.flow.start.as_str(),
        open: caps.protocols.iter().map(|x| x.id.as_str()).collect(),
        answers: Vec::new(),
        from: None,
    }];
    let mut work = vec![0usize];
    let mut seen = BTreeSet::new();
    while let Some(at) = work.pop() {
        let state = &states[at];
        if !seen.insert((state.node, state.open.clone(), state.answers.clone())) {
            continue;
        }
        if seen.len() > MAX_STATES {
            break;
        }
        let Some((i, node)) = caps
            .flow
            .nodes
            .iter()
            .enumerate()
            .find(|(_, n)| n.id == state.node)
        else {
            continue;
        };
        if matches!(node.kind, NodeKind::Cover | NodeKind::Prefer)
            && state.open.is_empty()
            && reported.insert(node.id.as_str())
        {
            p.add(
                path!("flow", "nodes", i, "id"),
                format!(
                    "{} node `{}` can be reached with no protocol left (by {}): point the branch that empties the protocols at an outcome",
                    node.kind.as_str(),
                    node.id,
                    path_to(&states, at)
                ),
            );
        }
        for next in successors(caps, node, state, at) {
            states.push(next);
            work.push(states.len() - 1);
        }
    }
}

/// The states a node leads to from `state` (at index `at`): one per branch it can take, with
/// the protocols still open after it and the answer it fixes.
fn successors<'a>(caps: &'a Capabilities, node: &'a Node, state: &State<'a>, at: usize) -> Vec<State<'a>> {
    let question = node
        .question
        .as_deref()
        .zip(node.question.as_deref().and_then(|q| caps.question(q)));
    // A question answered earlier on the path keeps its answer.
    let values: Vec<&str> = match question {
        Some((id, q)) => match state.answers.iter().find(|(k, _)| *k == id) {
            Some((_, v)) => vec![*v],
            None => q.values().collect(),
        },
        None => Vec::new(),
    };
    let q = node.question.as_deref().unwrap_or_default();
    // (the edge label, or "" for the answer itself; the protocols open; what was taken)
    let branches: Vec<(&'static str, Vec<&str>, Via<'_>)> = match node.kind {
        NodeKind::Outcome => Vec::new(),
        NodeKind::Question => values
            .into_iter()
            .map(|v| ("", state.open.clone(), Via::Answer(q, v)))
            .collect(),
        NodeKind::Filter => values
            .into_iter()
            .map(|v| {
                let kept = kept_by_filter(caps, node, &state.open, v);
                let branch = if kept.is_empty() { "none" } else { "some" };
                (branch, kept, Via::Answer(q, v))
            })
            .collect(),
        NodeKind::Cover => ["covered", "partial"]
            .into_iter()
            .map(|b| (b, state.open.clone(), Via::Branch(b)))
            .collect(),
        NodeKind::Prefer => vec![("chosen", state.open.clone(), Via::Branch("chosen"))],
    };
    branches
        .into_iter()
        .filter_map(|(branch, open, via)| {
            let label = match (branch, via) {
                ("", Via::Answer(_, v)) => v,
                (b, _) => b,
            };
            let to = caps.next(&node.id, label)?;
            let mut answers = state.answers.clone();
            if let Via::Answer(q, v) = via
                && !answers.iter().any(|(k, _)| *k == q)
            {
                answers.push((q, v));
                answers.sort_unstable();
            }
            Some(State {
                node: to.id.as_str(),
                open,
                answers,
                from: Some((at, via)),
            })
        })
        .collect()
}

/// The open protocols a filter node keeps for the answer `value`.
fn kept_by_filter<'a>(caps: &Capabilities, node: &Node, open: &[&'a str], value: &str) -> Vec<&'a str> {
    let attribute = node.attribute.as_deref().unwrap_or("id");
    let accepted: Vec<&str> = match node.map.as_ref().and_then(|m| m.get(value)) {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => vec![value],
    };
    open.iter()
        .copied()
        .filter(|id| {
            caps.protocol(id)
                .and_then(|x| x.attribute(attribute))
                .unwrap_or_default()
                .iter()
                .any(|a| accepted.contains(a))
        })
        .collect()
}

/// The path from the start to state `at`, as `node[q=v] -> node[branch] -> node`.
fn path_to(states: &[State<'_>], mut at: usize) -> String {
    let mut steps = vec![states[at].node.to_string()];
    while let Some((prev, via)) = states[at].from {
        let node = states[prev].node;
        steps.push(match via {
            Via::Answer(q, v) => format!("{node}[{q}={v}]"),
            Via::Branch(b) => format!("{node}[{b}]"),
        });
        at = prev;
    }
    steps.reverse();
    steps.join(" -> ")
}

fn outcomes(caps: &Capabilities, p: &mut Problems) {
    for (i, o) in caps.outcomes.iter().enumerate() {
        for (j, f) in o.supports.iter().enumerate() {
            if caps.feature(f).is_none() {
                p.add(
                    path!("outcomes", i, "supports", j),
                    format!("outcome `{}` supports unknown feature `{f}`", o.id),
                );
            }
        }
    }
}

/// Each caveat rule names a question and one of its values, a protocol, and needs that
/// protocol carries; its question has a default, so `recommend` decides it without asking; no
/// rule repeats another.
fn caveats(caps: &Capabilities, p: &mut Problems) {
    let mut seen = BTreeSet::new();
    for (i, rule) in caps.caveats.iter().enumerate() {
        let at = |field: &str| path!("caveats", i, field);
        caveat_question(caps, rule, i, p);
        if caps.protocol(&rule.protocol).is_none() {
            p.add(
                at("protocol"),
                format!(
                    "caveat names unknown protocol `{}` (known: {})",
                    rule.protocol,
                    known_protocols(caps)
                ),
            );
        }
        caveat_needs(caps, rule, i, p);
        let repeats = |need: Option<&String>| {
            format!(
                "a caveat for {}`{}` with {}={} is already given",
                need.map_or(String::new(), |n| format!("`{n}` over ")),
                rule.protocol,
                rule.question,
                rule.answer
            )
        };
        for (j, need) in rule.needs.iter().enumerate() {
            if !seen.insert((&rule.question, &rule.answer, &rule.protocol, Some(need))) {
                p.add(path!("caveats", i, "needs", j), repeats(Some(need)));
            }
        }
        if rule.needs.is_empty() && !seen.insert((&rule.question, &rule.answer, &rule.protocol, None)) {
            p.add(at("protocol"), repeats(None));
        }
        for (field, text) in [("why", &rule.why), ("source", &rule.source)] {
            if text.trim().is_empty() {
                p.add(at(field), format!("caveat {i} has an empty `{field}`"));
            }
        }
    }
}

/// A caveat's question exists, has a default, and takes the rule's answer.
fn caveat_question(caps: &Capabilities, rule: &super::CaveatRule, i: usize, p: &mut Problems) {
    let at = |field: &str| path!("caveats", i, field);
    let Some(q) = caps.question(&rule.question) else {
        p.add(
            at("question"),
            format!(
                "caveat names unknown question `{}` (known: {})",
                rule.question,
                list(caps.question_ids())
            ),
        );
        return;
    };
    if !q.values().any(|v| v == rule.answer) {
        p.add(
            at("answer"),
            format!(
                "caveat tests `{}` = `{}`, not one of {}",
                q.id,
                rule.answer,
                list(q.values())
            ),
        );
    }
    if q.default.is_none() {
        p.add(
            at("question"),
            format!(
                "caveat question `{}` has no default: give it one, so a decision without that answer is still complete",
                q.id
            ),
        );
    }
}

/// A caveat's needs are features its protocol carries (else the rule never applies).
fn caveat_needs(caps: &Capabilities, rule: &super::CaveatRule, i: usize, p: &mut Problems) {
    for (j, need) in rule.needs.iter().enumerate() {
        match caps.feature(need) {
            None => p.add(
                path!("caveats", i, "needs", j),
                format!("caveat names unknown feature `{need}`"),
            ),
            Some(f) if caps.protocol(&rule.protocol).is_some() && !f.support_for(&rule.protocol).covers() => {
                p.add(
                    path!("caveats", i, "needs", j),
                    format!(
                        "caveat about `{need}` over `{}` never applies: the table says `{}` does not carry it",
                        rule.protocol, rule.protocol
                    ),
                )
            }
            Some(_) => {}
        }
    }
}

fn auth_modes(caps: &Capabilities, p: &mut Problems) {
    duplicates(p, "auth_modes", caps.auth_modes.iter().map(|m| &m.id));
    for (i, m) in caps.auth_modes.iter().enumerate() {
        if caps.feature(&m.feature).is_none() {
            p.add(
                path!("auth_modes", i, "feature"),
                format!("auth mode `{}` names unknown feature `{}`", m.id, m.feature),
            );
        }
        if let Some(sm) = &m.secure_mode
            && !caps.secure_modes.contains_key(sm)
        {
            p.add(
                path!("auth_modes", i, "secure_mode"),
                format!(
                    "auth mode `{}` names secure mode `{sm}`, which [secure_modes] does not define",
                    m.id
                ),
            );
        }
    }
}

fn credentials(caps: &Capabilities, p: &mut Problems) {
    for (name, recipe) in &caps.credentials {
        let protocol = recipe.protocol.as_deref().unwrap_or(name);
        if caps.protocol(protocol).is_none() {
            p.add(
                path!("credentials", name),
                format!(
                    "credentials.{name} logs in over unknown protocol `{protocol}` (known: {}; set `protocol` for a recipe named otherwise)",
                    known_protocols(caps)
                ),
            );
        }
        if let Some(psk) = &recipe.psk_key
            && (psk.len == 0 || psk.digest_from.saturating_add(psk.len) > 32)
        {
            p.add(
                path!("credentials", name, "psk_key"),
                format!(
                    "credentials.{name}.psk_key takes {} bytes from byte {} of a 32-byte SHA-256 digest: use len 1 to 32 within the digest",
                    psk.len, psk.digest_from
                ),
            );
        }
        for (j, mode) in recipe.modes.iter().enumerate() {
            if !caps.secure_modes.contains_key(mode) {
                p.add(
                    path!("credentials", name, "modes", j),
                    format!(
                        "credentials.{name} uses secure mode `{mode}`, which [secure_modes] does not define"
                    ),
                );
            }
        }
    }
}
