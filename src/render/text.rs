//! Text a terminal report is made of, shared by the table and Markdown renderers: a plan's
//! title, a shell command broken into lines that paste, the decision path as numbered lines,
//! and `check`'s verdict.

use crate::capabilities::CheckReport;
use crate::engine::Decision;
use crate::plan::Plan;

/// A plan's title: every protocol it uses (`MQTT + HTTP (mqtt, http)`), or the outcome; each
/// id as `id` makes it (Markdown puts it in backticks).
pub(super) fn plan_heading(p: &Plan, id: impl Fn(&str) -> String) -> String {
    if p.protocols.is_empty() {
        return format!("{} ({})", p.title, id(&p.recommendation));
    }
    let titles: Vec<&str> = p.protocols.iter().map(|x| x.title.as_str()).collect();
    let ids: Vec<String> = p.protocols.iter().map(|x| id(&x.protocol)).collect();
    format!("{} ({})", titles.join(" + "), ids.join(", "))
}

/// A shell command on lines of its own, indented, broken between arguments (a flag stays with
/// its value) with ` \` at the end of each line but the last, so it pastes into a shell.
pub(super) fn command_lines(command: &str, width: usize) -> String {
    // Words: a flag and the value after it are one unit.
    let mut units: Vec<String> = Vec::new();
    for word in command.split_whitespace() {
        match units.last_mut() {
            Some(last) if last.starts_with("--") && !last.contains(' ') && !word.starts_with("--") => {
                last.push(' ');
                last.push_str(word);
            }
            _ => units.push(word.to_string()),
        }
    }
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::from("  ");
    for unit in units {
        let room = width.saturating_sub(2); // the ` \` that ends a broken line
        if line.trim().is_empty() {
            line.push_str(&unit);
        } else if line.chars().count() + 1 + unit.chars().count() <= room {
            line.push(' ');
            line.push_str(&unit);
        } else {
            lines.push(std::mem::replace(&mut line, format!("    {unit}")));
        }
    }
    lines.push(line);
    let last = lines.len() - 1;
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        out.push_str(l);
        out.push_str(if i < last { " \\\n" } else { "\n" });
    }
    out
}

/// The trace as numbered lines wrapped at `width` (each step's later lines indented under its
/// text), shared with the Markdown renderer.
pub(super) fn path_lines(d: &Decision, width: usize) -> String {
    let mut out = String::new();
    for (i, s) in d.trace.iter().enumerate() {
        let answer = match (&s.question, &s.answer) {
            (Some(q), Some(a)) => format!(" [{q}={a}{}]", if s.by_default { ", default" } else { "" }),
            _ => String::new(),
        };
        out.push_str(&super::wrap(
            &format!("  {}. ", i + 1),
            &format!("{}: {}{} -> {}", s.node, s.label, answer, s.branch),
            width,
        ));
    }
    out
}

/// `check`'s verdict in words: the counts when the file is valid, else every problem.
pub(super) fn check_text(r: &CheckReport) -> String {
    if r.problems.is_empty() {
        let c = &r.counts;
        return format!(
            "ok: {} (data version {}): {} protocols, {} features, {} questions, {} flow nodes, {} edges\n",
            r.file, r.data_version, c.protocols, c.features, c.questions, c.nodes, c.edges
        );
    }
    let mut out = format!("{}: {} problem(s):\n", r.file, r.problems.len());
    for p in &r.problems {
        out.push_str(&format!("- {p}\n"));
    }
    out
}
