//! Markdown renderers: the same content as the tables, in a form to paste into a ticket.

use super::text::path_lines;
use super::{Renderer, support_cell, title_of};
use crate::capabilities::{Capabilities, CheckReport};
use crate::credentials::Credentials;
use crate::engine::Decision;
use crate::measurement::ProbeReport;
use crate::measurement::load::LoadReport;
use crate::plan::Plan;

pub struct Markdown;

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

impl Renderer for Markdown {
    fn decision(&self, caps: &Capabilities, d: &Decision) -> String {
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
        if !d.caveats.is_empty() {
            out.push_str("\n### Caveats\n\n");
            for c in &d.caveats {
                out.push_str(&format!("- {}\n", super::caveat_sentence(caps, c)));
            }
        }
        if !d.set_aside.is_empty() {
            out.push_str("\n### Set aside\n\nAnswers that could not change the outcome:\n\n");
            for a in &d.set_aside {
                out.push_str(&format!("- {}\n", super::set_aside_sentence(a)));
            }
        }
        if !d.hints.is_empty() {
            out.push_str("\n### What would change the answer\n\n");
            for h in &d.hints {
                out.push_str(&format!("- {h}\n"));
            }
        }
        out.push_str("\n### Decision path\n\n");
        // Markdown reflows a paragraph itself: one line per step.
        for line in path_lines(d, usize::MAX).lines() {
            out.push_str(line.trim_start());
            out.push('\n');
        }
        out
    }

    fn compare(&self, caps: &Capabilities, needs: &[String]) -> String {
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

    fn questions(&self, caps: &Capabilities) -> String {
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

    fn plan(&self, _caps: &Capabilities, p: &Plan) -> String {
        let mut out = format!(
            "## Connection plan: {}\n",
            super::text::plan_heading(p, |id| format!("`{id}`"))
        );
        for pp in &p.protocols {
            out.push_str(&protocol_plan(pp));
        }
        if !p.steps.is_empty() {
            out.push_str("\n### Steps on the platform\n\n");
            for (i, s) in p.steps.iter().enumerate() {
                out.push_str(&format!("{}. {s}\n", i + 1));
            }
        }
        if !p.unmet.is_empty() {
            out.push_str(&format!(
                "\n### Unmet needs\n\n{}\n\n",
                p.unmet
                    .iter()
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            for h in &p.hints {
                out.push_str(&format!("- {h}\n"));
            }
        }
        out
    }

    fn credentials(&self, c: &Credentials) -> String {
        let mut rows = vec![
            vec!["protocol".to_string(), c.protocol.clone()],
            vec!["secure mode".to_string(), c.secure_mode_value.to_string()],
        ];
        if let Some(ts) = c.timestamp {
            rows.push(vec!["timestamp".into(), ts.to_string()]);
        }
        if let Some((v, unit)) = &c.lifetime {
            rows.push(vec!["lifetime".into(), format!("{v} {unit}")]);
        }
        for (k, v) in c.fields_beside_metadata() {
            rows.push(vec![k.clone(), format!("`{v}`")]);
        }
        if let Some(r) = &c.request {
            rows.push(vec![
                "auth request".into(),
                format!("`{} {}` body `{}`", r.method, r.path, r.body),
            ]);
        }
        table(&["Field".into(), "Value".into()], &rows)
    }

    fn matrix(&self, m: &crate::measurement::matrix::MatrixReport) -> String {
        let mut header = vec!["feature".to_string()];
        header.extend(m.titles.iter().cloned());
        let failed: Vec<Option<String>> = m
            .probes
            .iter()
            .map(crate::measurement::matrix::column_failure)
            .collect();
        let connection = failed.iter().any(Option::is_some).then(|| {
            let mut row = vec!["(connection)".to_string()];
            row.extend(failed.iter().map(|f| f.clone().unwrap_or_else(|| "ok".into())));
            row
        });
        let rows: Vec<Vec<String>> = connection
            .into_iter()
            .chain(m.rows.iter().map(|r| {
                let mut row = vec![format!("`{}`", r.feature)];
                row.extend(
                    r.cells
                        .iter()
                        .zip(&m.titles)
                        .map(|(c, title)| crate::measurement::matrix::cell_text(c, title)),
                );
                row
            }))
            .collect();
        format!(
            "### {}: the comparison table as measured\n\n{}\n\n{}\n{}\n",
            verdict(m.ok),
            crate::measurement::matrix::LEGEND,
            table(&header, &rows),
            crate::measurement::matrix::summary(m)
        )
    }

    fn probes(&self, reports: &[ProbeReport]) -> String {
        reports.iter().map(probe).collect::<Vec<_>>().join("\n")
    }

    fn load(&self, r: &LoadReport) -> String {
        let mut out = format!(
            "### {}: {} x {} `{}`\n\n",
            load_verdict(r),
            r.count,
            r.protocol,
            r.target
        );
        let mut facts = vec![vec!["concurrency".into(), r.concurrency.to_string()]];
        facts.extend(load_facts(r, "probes/s"));
        out.push_str(&table(&["".into(), "".into()], &facts));
        out.push('\n');
        let (header, rows) = super::load_stage_rows(r);
        out.push_str(&table(&header, &rows));
        out
    }

    fn fleet(&self, r: &crate::measurement::fleet::FleetReport) -> String {
        let l = &r.load;
        let mut out = format!(
            "### {}: {} devices on {} `{}`\n\n",
            load_verdict(l),
            r.fleet.devices,
            l.protocol,
            l.target
        );
        out.push_str(&table(&["".into(), "".into()], &load_facts(l, "posts/s acked")));
        out.push('\n');
        let (header, rows) = super::load_stage_rows(l);
        out.push_str(&table(&header, &rows));
        out.push('\n');
        for line in super::fleet_lines(&r.fleet) {
            out.push_str(&format!("- {line}\n"));
        }
        out
    }

    fn check(&self, r: &CheckReport) -> String {
        if r.problems.is_empty() {
            let c = &r.counts;
            return format!(
                "**ok**: `{}` (data version {}): {} protocols, {} features, {} questions, {} flow nodes, {} edges\n",
                r.file, r.data_version, c.protocols, c.features, c.questions, c.nodes, c.edges
            );
        }
        let mut out = format!("**{} problem(s)** in `{}`:\n\n", r.problems.len(), r.file);
        for p in &r.problems {
            // A located problem spans lines (the snippet); keep it in a code block.
            out.push_str(&format!(
                "- ```text\n  {}\n  ```\n",
                p.to_string().replace('\n', "\n  ")
            ));
        }
        out
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "FAILED" }
}

fn load_verdict(r: &LoadReport) -> &'static str {
    if r.interrupted {
        "INTERRUPTED"
    } else {
        verdict(r.ok)
    }
}

/// A load's facts after its concurrency: outcomes, time, the rate in `unit`, an interruption,
/// the merge, error kinds and needs.
fn load_facts(r: &LoadReport, unit: &str) -> Vec<Vec<String>> {
    let mut facts = vec![
        vec!["succeeded".into(), r.succeeded.to_string()],
        vec!["failed".into(), r.failed.to_string()],
        vec!["elapsed".into(), format!("{:.3} s", r.elapsed_s)],
        vec!["rate".into(), format!("{:.1} {unit}", r.rate_per_s)],
    ];
    if r.interrupted {
        facts.push(vec!["interrupted".into(), super::INTERRUPTED.into()]);
    }
    if let Some(n) = r.merged_from {
        facts.push(vec!["merged from".into(), super::reports(n)]);
    }
    for (kind, text) in super::load_errors(r) {
        facts.push(vec![format!("error `{kind}`"), text]);
    }
    for (need, c) in &r.needs {
        facts.push(vec![
            format!("need `{need}`"),
            format!("{} succeeded, {} failed", c.succeeded, c.failed),
        ]);
    }
    facts
}

/// One probe: a heading with the verdict, the error and EnOS's reply, the stages as a table.
fn probe(r: &ProbeReport) -> String {
    let address = r
        .address
        .as_deref()
        .map(|a| format!(" via `{a}`"))
        .unwrap_or_default();
    let mut out = format!(
        "### {}: {} `{}`{address}\n\n",
        verdict(r.ok),
        r.protocol,
        r.target
    );
    if let Some(e) = &r.error {
        out.push_str(&format!(
            "- error (`{}`) at `{}`: {}\n",
            e.kind.as_str(),
            e.stage,
            cell(&e.message)
        ));
    }
    if let Some(reply) = &r.enos {
        out.push_str(&format!(
            "- EnOS replied {}\n",
            cell(&crate::enos::describe(reply.code, &reply.message))
        ));
    }
    for (k, v) in &r.details {
        out.push_str(&format!(
            "- {k}: `{}`\n",
            v.as_str().map_or(v.to_string(), str::to_string)
        ));
    }
    if !r.needs.is_empty() {
        if !out.ends_with("\n\n") {
            out.push('\n');
        }
        let rows: Vec<Vec<String>> = r
            .needs
            .iter()
            .map(|n| {
                vec![
                    format!("`{}`", n.need),
                    n.measured.as_str().to_string(),
                    n.code.map_or_else(String::new, |c| c.to_string()),
                    format!("{}{}", n.message, super::need_stages(n)),
                ]
            })
            .collect();
        out.push_str(&table(
            &["need".into(), "result".into(), "code".into(), "message".into()],
            &rows,
        ));
    }
    if !out.ends_with("\n\n") {
        out.push('\n');
    }
    let rows: Vec<Vec<String>> = r
        .stages
        .iter()
        .map(|s| vec![s.name.to_string(), format!("{:.3}", s.ms)])
        .collect();
    out.push_str(&table(&["stage".into(), "ms".into()], &rows));
    out
}

/// One protocol of a plan: its endpoint, ports, authentication, login fields, topics and
/// smoke test.
fn protocol_plan(pp: &crate::plan::ProtocolPlan) -> String {
    let mut out = String::new();
    out.push_str(&format!("\n### {}\n\n", pp.title));
    if !pp.carries.is_empty() {
        out.push_str(&format!(
            "Carries: {}\n\n",
            pp.carries
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut rows = vec![vec!["Endpoint".to_string(), format!("`{}`", pp.host)]];
    for x in &pp.ports {
        rows.push(vec![
            format!("Port {}", x.port),
            format!("`{}` ({})", x.url, x.label),
        ]);
    }
    rows.push(vec!["Transport".into(), pp.transport.to_uppercase()]);
    rows.push(vec!["Security".into(), pp.security.clone()]);
    out.push_str(&table(&["Item".into(), "Value".into()], &rows));
    if let Some(n) = &pp.host_note {
        out.push_str(&format!("\n> {n}\n"));
    }
    out.push_str("\n**Authentication**\n\n");
    for a in &pp.auth {
        let rec = if a.recommended { " (recommended)" } else { "" };
        let env = a
            .secret_env
            .as_ref()
            .map(|e| format!("; secret from `{e}`"))
            .unwrap_or_default();
        let note = a.note.as_ref().map(|n| format!("; {n}")).unwrap_or_default();
        out.push_str(&format!("- `{}`{rec}: {}{env}{note}\n", a.mode, a.title));
        for (i, s) in a.steps.iter().enumerate() {
            out.push_str(&format!("  {}. {s}\n", i + 1));
        }
    }
    out.push_str("\n**Login fields**\n\n");
    for f in &pp.login {
        out.push_str(&format!("- {}: `{}`\n", f.name, f.value));
    }
    out.push_str("\n**Topics and paths**\n\n");
    if pp.topics.is_empty() {
        out.push_str("- no needs given\n");
    }
    for x in &pp.topics {
        out.push_str(&format!("- `{}` ({}):\n", x.need, x.title));
        for t in &x.topics {
            out.push_str(&format!("  - `{t}`\n"));
        }
    }
    out.push_str(&format!("\n**Smoke test**\n\n```sh\n{}\n```\n", pp.probe));
    out
}
