//! The report for a ticket: a table of the cases with their messages, then the evidence of
//! each case that did not pass. The catalogue as a table.

use crate::device_test::catalogue::{CASES, CATALOGUE_VERSION};
use crate::device_test::{Report, Verdict};

/// A table cell: no line breaks, pipes escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub(crate) fn report(r: &Report) -> String {
    let mut out = format!("## {}\n\n", super::headline(r));
    out.push_str("| case | verdict | seconds | message |\n|---|---|---|---|\n");
    for c in &r.cases {
        out.push_str(&format!(
            "| `{}` | {} | {:.1} | {} |\n",
            c.id,
            if matches!(c.verdict, Verdict::Warn | Verdict::Fail | Verdict::Error) {
                format!("**{}**", c.verdict)
            } else {
                c.verdict.to_string()
            },
            c.seconds.as_secs_f64(),
            cell(&c.message)
        ));
    }
    for c in r
        .cases
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Warn | Verdict::Fail | Verdict::Error))
    {
        out.push_str(&format!("\n### `{}`: {}\n\n", c.id, c.verdict));
        for e in &c.evidence {
            let line = serde_json::to_string(e).unwrap_or_default();
            out.push_str(&format!("- `{}`\n", line.replace('`', "'")));
        }
        if c.evidence.is_empty() {
            out.push_str("- (no evidence)\n");
        }
    }
    if let Some(log) = &r.device_log {
        out.push_str(&format!("\nThe device's output: `{log}`.\n"));
    }
    if let Some(exit) = &r.device_exit {
        out.push_str(&format!("\nThe device exited early: {exit}.\n"));
    }
    out
}

pub(crate) fn catalogue() -> String {
    let mut out =
        format!("Catalogue {CATALOGUE_VERSION}\n\n| case | runs for | checks | fix |\n|---|---|---|---|\n");
    for c in CASES {
        let mut when = vec![
            c.feature
                .map_or("every device".to_string(), |f| format!("`{f}` claimed")),
        ];
        if let Some(p) = c.protocol {
            when.push(format!("{p} only"));
        }
        if c.long {
            when.push("`--long`".into());
        }
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            c.id,
            when.join(", "),
            cell(c.checks),
            cell(c.fix)
        ));
    }
    out
}
