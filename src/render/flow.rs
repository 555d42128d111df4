//! The decision flow drawn from the data: Mermaid, Graphviz DOT or indented text.

use super::FlowFormat;
use crate::capabilities::{Capabilities, Node, NodeKind};

/// The flow in a text format; the picture formats go through [`picture`].
pub fn render(caps: &Capabilities, format: FlowFormat) -> String {
    match format {
        FlowFormat::Mermaid => mermaid(caps),
        FlowFormat::Dot | FlowFormat::Svg | FlowFormat::Png => dot(caps),
        FlowFormat::Text => text(caps),
    }
}

fn node_text(caps: &Capabilities, n: &Node) -> String {
    match n.kind {
        NodeKind::Prefer => {
            let rules: Vec<String> = n
                .rules
                .iter()
                .map(|r| match (&r.question, &r.equals) {
                    (Some(q), Some(v)) => format!("{q}={v}: {}", caps.protocol_title(&r.protocol)),
                    _ => format!("otherwise: {}", caps.protocol_title(&r.protocol)),
                })
                .collect();
            format!("{}\n{}", n.label, rules.join("\n"))
        }
        _ => n.label.clone(),
    }
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;").replace('\n', "<br/>")
}

pub fn mermaid(caps: &Capabilities) -> String {
    let mut out = String::from("flowchart TD\n");
    for n in &caps.flow.nodes {
        let label = mermaid_escape(&node_text(caps, n));
        let shape = match n.kind {
            NodeKind::Question => format!("{{\"{label}\"}}"),
            NodeKind::Outcome => format!("([\"{label}\"])"),
            _ => format!("[\"{label}\"]"),
        };
        out.push_str(&format!("    {}{shape}\n", n.id));
    }
    for e in &caps.flow.edges {
        out.push_str(&format!(
            "    {} -- \"{}\" --> {}\n",
            e.from,
            mermaid_escape(&e.when.join(", ")),
            e.to
        ));
    }
    out
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub fn dot(caps: &Capabilities) -> String {
    let mut out = String::from(
        "digraph enos_connect {\n    rankdir=TB;\n    node [fontname=\"Helvetica\"];\n    edge [fontname=\"Helvetica\"];\n",
    );
    for n in &caps.flow.nodes {
        let shape = match n.kind {
            NodeKind::Question => "diamond",
            NodeKind::Outcome => "box, style=\"rounded,filled\", fillcolor=\"#e8f0fe\"",
            _ => "box",
        };
        out.push_str(&format!(
            "    \"{}\" [label=\"{}\", shape={shape}];\n",
            dot_escape(&n.id),
            dot_escape(&node_text(caps, n))
        ));
    }
    for e in &caps.flow.edges {
        out.push_str(&format!(
            "    \"{}\" -> \"{}\" [label=\"{}\"];\n",
            dot_escape(&e.from),
            dot_escape(&e.to),
            dot_escape(&e.when.join(", "))
        ));
    }
    out.push_str("}\n");
    out
}

pub fn text(caps: &Capabilities) -> String {
    let mut out = format!("start: {}\n", caps.flow.start);
    for n in &caps.flow.nodes {
        let what = match (n.kind, &n.question, &n.outcome) {
            (_, Some(q), _) => format!("{} on {q}", n.kind.as_str()),
            (NodeKind::Outcome, _, Some(o)) => format!("outcome {o}"),
            _ => n.kind.as_str().to_string(),
        };
        out.push_str(&format!("\n{} [{what}] {}\n", n.id, n.label));
        for r in &n.rules {
            match (&r.question, &r.equals) {
                (Some(q), Some(v)) => out.push_str(&format!("  prefer {} when {q}={v}\n", r.protocol)),
                _ => out.push_str(&format!("  otherwise prefer {}\n", r.protocol)),
            }
        }
        for e in caps.edges_from(&n.id) {
            out.push_str(&format!("  {} -> {}\n", e.when.join(", "), e.to));
        }
    }
    out
}
