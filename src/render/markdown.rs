//! Markdown renderers: the same content as the tables, in a form to paste into a ticket.

use super::support_cell;
use super::table::{path_lines, title_of};
use crate::capabilities::Capabilities;
use crate::engine::Decision;

/// Escape the characters that would break a Markdown table cell.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "<br>")
}

pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "| {} |\n",
        header.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | ")
    );
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for r in rows {
        out.push_str(&format!(
            "| {} |\n",
            r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
        ));
    }
    out
}

pub fn decision(caps: &Capabilities, d: &Decision) -> String {
    let mut out = format!(
        "## Recommendation: {} (`{}`)\n\n",
        title_of(caps, &d.recommendation),
        d.recommendation
    );
    let protocols: Vec<String> = d.protocols.iter().map(|p| title_of(caps, p)).collect();
    let mut rows = vec![vec!["Outcome".to_string(), d.outcome.clone()]];
    if !protocols.is_empty() {
        rows.push(vec!["Protocols".into(), protocols.join(" + ")]);
    }
    for c in &d.carriers {
        rows.push(vec![format!("Need `{}`", c.need), title_of(caps, &c.protocol)]);
    }
    rows.push(vec![
        "Unmet needs".into(),
        if d.unmet.is_empty() {
            "none".into()
        } else {
            d.unmet.join(", ")
        },
    ]);
    out.push_str(&table(&["".into(), "".into()], &rows));
    out.push_str("\n### Why\n\n");
    for r in &d.reasons {
        out.push_str(&format!("- {r}\n"));
    }
    if !d.hints.is_empty() {
        out.push_str("\n### What would change the answer\n\n");
        for h in &d.hints {
            out.push_str(&format!("- {h}\n"));
        }
    }
    out.push_str("\n### Decision path\n\n");
    for line in path_lines(d).lines() {
        out.push_str(line.trim_start());
        out.push('\n');
    }
    out
}

pub fn compare(caps: &Capabilities, needs: &[String]) -> String {
    let mut header = vec!["Feature".to_string()];
    header.extend(caps.protocols.iter().map(|p| p.title.clone()));
    let mut rows = Vec::new();
    for f in &caps.features {
        let name = if needs.contains(&f.id) {
            format!("**{}** (`{}`, needed)", f.title, f.id)
        } else {
            format!("{} (`{}`)", f.title, f.id)
        };
        let mut row = vec![name];
        for p in &caps.protocols {
            let s = support_cell(f.support_for(&p.id));
            row.push(match f.notes.get(&p.id) {
                Some(n) => format!("{s}: {n}"),
                None => s.to_string(),
            });
        }
        rows.push(row);
    }
    let mut row = vec!["Security".to_string()];
    row.extend(caps.protocols.iter().map(|p| p.security.clone()));
    rows.push(row);
    table(&header, &rows)
}

pub fn questions(caps: &Capabilities) -> String {
    let rows: Vec<Vec<String>> = caps
        .questions
        .iter()
        .map(|q| {
            vec![
                format!("`{}`", q.id),
                q.values()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                q.default.clone().unwrap_or_else(|| "required".into()),
                q.prompt.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "Question".into(),
            "Values".into(),
            "Default".into(),
            "Prompt".into(),
        ],
        &rows,
    );
    let rows: Vec<Vec<String>> = caps
        .features
        .iter()
        .map(|f| vec![format!("`{}`", f.id), f.title.clone()])
        .collect();
    out.push('\n');
    out.push_str(&table(&["Need".into(), "Title".into()], &rows));
    out
}
