//! The report for a terminal: a headline, a table of the cases (id, verdict, seconds), and for
//! every case that did not pass what was expected, what was seen and the fix, one paragraph
//! each. The catalogue (`--list`) as a list, each case's checks wrapped under its id.

use comfy_table::{ContentArrangement, presets};

use super::{headline, verdict_word, wrap};
use crate::device_test::catalogue::{CASES, CATALOGUE_VERSION};
use crate::device_test::{Report, Verdict};
use crate::render::Style;

pub(crate) fn report(r: &Report, style: Style) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED);
    t.set_content_arrangement(ContentArrangement::Disabled);
    if !style.terminal {
        t.force_no_tty();
    }
    if style.color {
        t.enforce_styling();
    }
    t.set_header(["case", "verdict", "seconds"]);
    for c in &r.cases {
        t.add_row([
            c.id.to_string(),
            verdict_word(c.verdict, style.color),
            format!("{:>7.1}", c.seconds.as_secs_f64()),
        ]);
    }
    let width = usize::from(style.fit_width()).max(40);
    let mut out = format!("{}\n{t}\n", headline(r));
    for c in r.cases.iter().filter(|c| c.verdict != Verdict::Pass) {
        let text = format!("{} ({}): {}", c.id, c.verdict, c.message);
        out.push_str(&wrap(&text, width, "    "));
        out.push('\n');
    }
    if let Some(log) = &r.device_log {
        out.push_str(&format!("the device's output: {log}\n"));
    }
    if let Some(exit) = &r.device_exit {
        out.push_str(&format!("the device exited early: {exit}\n"));
    }
    out
}

pub(crate) fn catalogue() -> String {
    let mut out = format!("catalogue {CATALOGUE_VERSION}: {} cases\n", CASES.len());
    for c in CASES {
        let mut when = Vec::new();
        match c.feature {
            Some(f) => when.push(format!("needs {f}")),
            None => when.push("every device".to_string()),
        }
        if let Some(p) = c.protocol {
            when.push(format!("{p} only"));
        }
        if c.long {
            when.push("--long".into());
        }
        out.push_str(&format!("\n{:<26} {}\n", c.id, when.join(", ")));
        out.push_str("    ");
        out.push_str(&wrap(c.checks, 88, "    "));
        out.push('\n');
    }
    out
}
