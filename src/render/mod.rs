//! Output formats: one [`Renderer`] per format, one file each (`table.rs`, `json.rs`,
//! `markdown.rs`), as hyperfine has one exporter per format. A renderer is pure: domain values
//! in, text out. Whether stdout is a terminal and whether to colour is decided at the CLI edge
//! and handed in as a [`Style`]; where the text goes is the CLI's business too.

pub mod flow;
pub mod json;
pub mod markdown;
pub mod table;
mod text;

use clap::ValueEnum;

use crate::capabilities::{Capabilities, CheckReport};
use crate::credentials::Credentials;
use crate::engine::Decision;
use crate::measurement::ProbeReport;
use crate::measurement::load::LoadReport;
use crate::plan::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A readable report with tables
    Table,
    /// One JSON object (docs/deciding.md lists the keys)
    Json,
    /// Markdown to paste into a ticket or a wiki
    Markdown,
}

/// How `recommend --batch` writes its results: one line per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BatchFormat {
    /// JSON Lines: {"line","id","recommendation","protocols","unmet","caveats","set_aside"} per row
    Jsonl,
    /// CSV: id,recommendation,protocols,unmet,caveats,set_aside
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

/// What the CLI knows about where the text goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    /// stdout is a terminal: tables may wrap to its width.
    pub terminal: bool,
    /// Colour may be used.
    pub color: bool,
    /// The terminal's width in columns; 0 when unknown (piped, or a terminal that reports
    /// none), which a table that must fit reads as 80.
    pub width: u16,
}

/// The width free text (reasons, the decision path, notes) wraps at when stdout is not a
/// terminal: wide enough for a log or a ticket, narrow enough to read.
pub const PIPED_TEXT_WIDTH: usize = 100;

impl Style {
    /// The width free text wraps at: the terminal's, or [`PIPED_TEXT_WIDTH`] when piped.
    pub fn text_width(&self) -> usize {
        if self.terminal && self.width >= 20 {
            usize::from(self.width)
        } else {
            PIPED_TEXT_WIDTH
        }
    }

    /// The width to fit: the terminal's, or 80 when it is unknown.
    pub fn fit_width(&self) -> u16 {
        if self.terminal && self.width >= 20 {
            self.width
        } else {
            80
        }
    }
}

/// Everything a command prints, in one format.
pub trait Renderer {
    fn decision(&self, caps: &Capabilities, d: &Decision) -> String;
    fn plan(&self, caps: &Capabilities, p: &Plan) -> String;
    fn compare(&self, caps: &Capabilities, needs: &[String]) -> String;
    fn questions(&self, caps: &Capabilities) -> String;
    fn credentials(&self, c: &Credentials) -> String;
    /// One probe, or the probes of a plan one after another.
    fn probes(&self, reports: &[ProbeReport]) -> String;
    fn load(&self, r: &LoadReport) -> String;
    /// `probe --fleet` (and `merge` of fleets): the load's stages under a headline that counts
    /// devices and posts, and the fleet's own lines.
    fn fleet(&self, r: &crate::measurement::fleet::FleetReport) -> String;
    /// `probe --matrix`: the comparison table as measured.
    fn matrix(&self, m: &crate::measurement::matrix::MatrixReport) -> String;
    fn check(&self, r: &CheckReport) -> String;
}

impl Format {
    pub fn renderer(self, style: Style) -> Box<dyn Renderer> {
        match self {
            Format::Table => Box::new(table::Table { style }),
            Format::Json => Box::new(json::Json),
            Format::Markdown => Box::new(markdown::Markdown),
        }
    }
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

/// A need's stages in words, after its message: ` (subscribe 0.2 ms, query 0.4 ms)`.
pub fn need_stages(n: &crate::measurement::NeedReport) -> String {
    if n.stages.is_empty() {
        return String::new();
    }
    let list: Vec<String> = n
        .stages
        .iter()
        .map(|s| format!("{} {:.3} ms", s.name, s.ms))
        .collect();
    format!(" ({})", list.join(", "))
}

/// A caveat in a sentence: what carries what although the device answered otherwise, and why.
pub fn caveat_sentence(caps: &Capabilities, c: &crate::engine::Caveat) -> String {
    let protocol = caps.protocol_title(&c.protocol);
    let what = match &c.need {
        Some(need) => format!(
            "{} over {protocol}",
            caps.feature(need).map_or(need.as_str(), |f| f.title.as_str())
        ),
        None => protocol.to_string(),
    };
    format!("{what}, although {}={}: {}", c.question, c.answer, c.why)
}

/// A set-aside answer in a sentence.
pub fn set_aside_sentence(a: &crate::engine::SetAside) -> String {
    format!("{}={}: {}", a.question, a.value, a.why)
}

/// `text` as lines of at most `width` columns, broken between words; the first line starts
/// with `label`, later lines are indented under the text. A word longer than the line stays
/// whole. Ends with a newline.
pub fn wrap(label: &str, text: &str, width: usize) -> String {
    let indent = " ".repeat(label.chars().count());
    let mut out = String::new();
    let mut line = label.to_string();
    let mut empty = true;
    let mut used = line.chars().count();
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if !empty && used + 1 + len > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line.clone_from(&indent);
            used = indent.len();
            empty = true;
        }
        if !empty {
            line.push(' ');
            used += 1;
        }
        line.push_str(word);
        used += len;
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// The title of a protocol or an outcome, for people.
pub fn title_of(caps: &Capabilities, id: &str) -> String {
    caps.protocol(id)
        .map(|p| p.title.clone())
        .or_else(|| caps.outcome(id).map(|o| o.title.clone()))
        .unwrap_or_else(|| id.to_string())
}

#[derive(Debug, Clone, Copy)]
pub enum Paint {
    Good,
    Bad,
    Strong,
}

/// A load report's error kinds with their counts and an example message each.
pub fn load_errors(r: &crate::measurement::load::LoadReport) -> Vec<(String, String)> {
    r.errors
        .iter()
        .map(|(kind, n)| {
            let example = r
                .examples
                .get(kind)
                .map(|e| format!(" (e.g. {e})"))
                .unwrap_or_default();
            (kind.clone(), format!("{n}{example}"))
        })
        .collect()
}

/// A fleet's lines under its stage table, in words: devices, posts and their rates, codes,
/// disconnects. A delivery ratio of nothing offered is `n/a`.
pub fn fleet_lines(f: &crate::measurement::fleet::FleetPart) -> Vec<String> {
    let codes: Vec<String> = f.codes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let delivered = f
        .delivered
        .map_or_else(|| "n/a".to_string(), |d| format!("{d:.4}"));
    let mut out = vec![
        format!(
            "fleet: {} devices, peak {} connected, {} held to the end, {} logins failed",
            f.devices, f.peak_connected, f.held, f.login_failed
        ),
        format!(
            "posts every {} s for {} s: {} offered, {} acked ({delivered} delivered), {} answered",
            f.every_s, f.hold_s, f.offered, f.acked, f.answered
        ),
        format!(
            "per second: {} offered, {} acked, {} answered",
            f.offered_per_s, f.acked_per_s, f.answered_per_s
        ),
        format!(
            "codes: {}",
            if codes.is_empty() {
                "none".to_string()
            } else {
                codes.join(", ")
            }
        ),
    ];
    if !f.disconnects.is_empty() {
        let d: Vec<String> = f.disconnects.iter().map(|(k, v)| format!("{v}× {k}")).collect();
        out.push(format!("disconnects: {}", d.join("; ")));
    }
    out
}

/// What a load's headline says after its verdict: probes (a load) or devices and posts (a
/// fleet), and an interrupted run's count of what ran.
pub fn load_headline(r: &LoadReport, fleet: Option<&crate::measurement::fleet::FleetPart>) -> String {
    match fleet {
        None => format!(
            "{} x {} {} (concurrency {}): {} succeeded, {} failed in {:.3} s, {:.1} probes/s",
            r.count, r.protocol, r.target, r.concurrency, r.succeeded, r.failed, r.elapsed_s, r.rate_per_s
        ),
        Some(f) => format!(
            "{} devices on {} {}: {} held {}, {} failed in {:.3} s, {:.1} posts/s acked",
            f.devices,
            r.protocol,
            r.target,
            r.succeeded,
            if r.interrupted {
                "until interrupted"
            } else {
                "to the end"
            },
            r.failed,
            r.elapsed_s,
            r.rate_per_s
        ),
    }
}

/// The line an interrupted run's report carries.
pub const INTERRUPTED: &str = "interrupted (Ctrl-C): the counts are of what ran until then";

/// The header and rows of a load report's stage table, in stage order.
pub fn load_stage_rows(r: &crate::measurement::load::LoadReport) -> (Vec<String>, Vec<Vec<String>>) {
    let header = ["stage", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"]
        .iter()
        .map(|h| h.to_string())
        .collect();
    let rows = crate::measurement::STAGES
        .iter()
        .filter_map(|name| r.stages.get(*name).map(|p| (name, p)))
        .map(|(name, p)| {
            vec![
                name.to_string(),
                p.count.to_string(),
                format!("{:.3}", p.p50_ms),
                format!("{:.3}", p.p90_ms),
                format!("{:.3}", p.p99_ms),
                format!("{:.3}", p.max_ms),
            ]
        })
        .collect();
    (header, rows)
}

/// "1 report", "2 reports": what `merge` joined.
pub fn reports(n: u64) -> String {
    if n == 1 {
        "1 report".into()
    } else {
        format!("{n} reports")
    }
}

/// `text` in ANSI colour when `enabled`.
pub fn paint(text: &str, how: Paint, enabled: bool) -> String {
    if !enabled {
        return text.to_string();
    }
    let code = match how {
        Paint::Good => "1;32",
        Paint::Bad => "1;31",
        Paint::Strong => "1",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}
