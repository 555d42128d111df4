//! Output formats. Every renderer is a pure function from the domain types to text; the CLI
//! decides where the text goes.

pub mod color;
pub mod flow;
pub mod json;
pub mod markdown;
pub mod table;

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A readable report with tables
    Table,
    /// One JSON object (see the README for the keys)
    Json,
    /// Markdown to paste into a ticket or a wiki
    Markdown,
    /// CSV (recommend --batch only: id, recommendation, protocols, unmet)
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlowFormat {
    /// Mermaid flowchart (GitHub and most wikis draw it)
    Mermaid,
    /// Graphviz DOT
    Dot,
    /// Indented text
    Text,
    /// SVG picture (needs Graphviz `dot`)
    Svg,
    /// PNG picture (needs Graphviz `dot`)
    Png,
}

/// The symbol and word for a support value, shared by the table and Markdown renderers.
pub fn support_cell(s: crate::capabilities::Support) -> &'static str {
    use crate::capabilities::Support::*;
    match s {
        Supported => "yes",
        NotSupported => "no",
        NotApplicable => "-",
        Partial => "partial",
    }
}
