//! The decision flow drawn from the data: Mermaid, Graphviz DOT or indented text; with a
//! device's decision path, the nodes and edges it took drawn bold and coloured and its outcome
//! marked, so a design document shows why this device got this protocol.

use super::FlowFormat;
use crate::capabilities::{Capabilities, Node, NodeKind};

/// A device's way through the flow: the nodes in the order it passed them (the last is where
/// it ended) and a caption (the recommendation).
#[derive(Debug, Clone, Default)]
pub(crate) struct Path {
    pub nodes: Vec<String>,
    pub caption: String,
}

impl Path {
    fn has_node(&self, id: &str) -> bool {
        self.nodes.iter().any(|n| n == id)
    }

    fn has_edge(&self, from: &str, to: &str) -> bool {
        self.nodes.windows(2).any(|w| w[0] == from && w[1] == to)
    }

    fn ends_at(&self, id: &str) -> bool {
        self.nodes.last().is_some_and(|n| n == id)
    }
}

const TAKEN: &str = "#c62828";
const OUTCOME_FILL: &str = "#c8e6c9";

/// The flow in a text format (the picture formats are DOT for Graphviz), with `path` drawn
/// over it when given.
pub(crate) fn render(caps: &Capabilities, format: FlowFormat, path: Option<&Path>) -> String {
    let empty = Path::default();
    let path = path.unwrap_or(&empty);
    match format {
        FlowFormat::Mermaid => mermaid(caps, path),
        FlowFormat::Dot | FlowFormat::Svg | FlowFormat::Png => dot(caps, path),
        FlowFormat::Text => text(caps, path),
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

pub(crate) fn mermaid(caps: &Capabilities, path: &Path) -> String {
    let mut out = String::new();
    if !path.caption.is_empty() {
        out.push_str(&format!(
            "---\ntitle: \"{}\"\n---\n",
            mermaid_escape(&path.caption)
        ));
    }
    out.push_str("flowchart TD\n");
    for n in &caps.flow.nodes {
        let label = mermaid_escape(&node_text(caps, n));
        let shape = match n.kind {
            NodeKind::Question => format!("{{\"{label}\"}}"),
            NodeKind::Outcome => format!("([\"{label}\"])"),
            _ => format!("[\"{label}\"]"),
        };
        out.push_str(&format!("    {}{shape}\n", n.id));
    }
    let mut taken_edges = Vec::new();
    for (i, e) in caps.flow.edges.iter().enumerate() {
        let taken = path.has_edge(&e.from, &e.to);
        if taken {
            taken_edges.push(i.to_string());
        }
        out.push_str(&format!(
            "    {} {} \"{}\" {} {}\n",
            e.from,
            if taken { "==" } else { "--" },
            mermaid_escape(&e.when.join(", ")),
            if taken { "==>" } else { "-->" },
            e.to
        ));
    }
    if !path.nodes.is_empty() {
        let passed: Vec<&str> = caps
            .flow
            .nodes
            .iter()
            .filter(|n| path.has_node(&n.id) && !path.ends_at(&n.id))
            .map(|n| n.id.as_str())
            .collect();
        out.push_str(&format!(
            "    classDef taken stroke:{TAKEN},stroke-width:3px,font-weight:bold\n    classDef outcome fill:{OUTCOME_FILL},stroke:{TAKEN},stroke-width:4px,font-weight:bold\n"
        ));
        if !passed.is_empty() {
            out.push_str(&format!("    class {} taken\n", passed.join(",")));
        }
        if let Some(end) = path.nodes.last() {
            out.push_str(&format!("    class {end} outcome\n"));
        }
        if !taken_edges.is_empty() {
            out.push_str(&format!(
                "    linkStyle {} stroke:{TAKEN},stroke-width:3px\n",
                taken_edges.join(",")
            ));
        }
    }
    out
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub(crate) fn dot(caps: &Capabilities, path: &Path) -> String {
    let mut out = String::from(
        "digraph enos_connect {\n    rankdir=TB;\n    node [fontname=\"Helvetica\"];\n    edge [fontname=\"Helvetica\"];\n",
    );
    if !path.caption.is_empty() {
        out.push_str(&format!(
            "    labelloc=t;\n    label=\"{}\";\n    fontname=\"Helvetica-Bold\";\n",
            dot_escape(&path.caption)
        ));
    }
    for n in &caps.flow.nodes {
        let shape = match n.kind {
            NodeKind::Question => "diamond",
            NodeKind::Outcome if path.ends_at(&n.id) => {
                "box, style=\"rounded,filled,bold\", fillcolor=\"#c8e6c9\""
            }
            NodeKind::Outcome => "box, style=\"rounded,filled\", fillcolor=\"#e8f0fe\"",
            _ if path.ends_at(&n.id) => "box, style=\"filled,bold\", fillcolor=\"#c8e6c9\"",
            _ => "box",
        };
        let taken = if path.has_node(&n.id) {
            format!(", class=\"taken\", penwidth=3, color=\"{TAKEN}\", fontname=\"Helvetica-Bold\"")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "    \"{}\" [label=\"{}\", shape={shape}{taken}];\n",
            dot_escape(&n.id),
            dot_escape(&node_text(caps, n))
        ));
    }
    for e in &caps.flow.edges {
        let taken = if path.has_edge(&e.from, &e.to) {
            format!(
                ", class=\"taken\", penwidth=3, color=\"{TAKEN}\", fontcolor=\"{TAKEN}\", fontname=\"Helvetica-Bold\""
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "    \"{}\" -> \"{}\" [label=\"{}\"{taken}];\n",
            dot_escape(&e.from),
            dot_escape(&e.to),
            dot_escape(&e.when.join(", "))
        ));
    }
    out.push_str("}\n");
    out
}

pub(crate) fn text(caps: &Capabilities, path: &Path) -> String {
    let mut out = format!("start: {}\n", caps.flow.start);
    if !path.nodes.is_empty() {
        out.push_str(&format!("path: {} ({})\n", path.nodes.join(" -> "), path.caption));
    }
    for n in &caps.flow.nodes {
        let what = match (n.kind, &n.question, &n.outcome) {
            (_, Some(q), _) => format!("{} on {q}", n.kind.as_str()),
            (NodeKind::Outcome, _, Some(o)) => format!("outcome {o}"),
            _ => n.kind.as_str().to_string(),
        };
        let mark = if path.ends_at(&n.id) {
            "** "
        } else if path.has_node(&n.id) {
            "* "
        } else {
            ""
        };
        out.push_str(&format!("\n{mark}{} [{what}] {}\n", n.id, n.label));
        for r in &n.rules {
            match (&r.question, &r.equals) {
                (Some(q), Some(v)) => out.push_str(&format!("  prefer {} when {q}={v}\n", r.protocol)),
                _ => out.push_str(&format!("  otherwise prefer {}\n", r.protocol)),
            }
        }
        for e in caps.edges_from(&n.id) {
            let mark = if path.has_edge(&e.from, &e.to) { "* " } else { "" };
            out.push_str(&format!("  {mark}{} -> {}\n", e.when.join(", "), e.to));
        }
    }
    out
}
