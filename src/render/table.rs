//! The readable terminal report: tables from comfy-table, lists for reasons and the path.

use comfy_table::{ContentArrangement, presets};

use super::text::{check_text, command_lines, path_lines, plan_heading};
use super::{Paint, Renderer, Style, paint, support_cell, title_of};
use crate::capabilities::{Capabilities, CheckReport};
use crate::credentials::Credentials;
use crate::engine::Decision;
use crate::measurement::ProbeReport;
use crate::measurement::load::LoadReport;
use crate::measurement::matrix::MatrixReport;
use crate::plan::Plan;

pub struct Table {
    pub style: Style,
}

impl Table {
    /// A table that wraps to the terminal when there is one and stays plain and stable otherwise.
    fn new_table(&self, header: &[&str]) -> comfy_table::Table {
        let mut t = comfy_table::Table::new();
        t.load_style(presets::UTF8_FULL_CONDENSED);
        t.set_content_arrangement(ContentArrangement::Dynamic);
        if !self.style.terminal {
            // No terminal to fit: keep lines whole so piped output is predictable.
            t.force_no_tty();
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
        if self.style.color {
            t.enforce_styling();
        }
        if !header.is_empty() {
            t.set_header(header.iter().copied());
        }
        t
    }

    /// A table laid out to `width` columns, on a terminal or not: a plan's cells are long.
    fn fitted_table(&self, width: usize) -> comfy_table::Table {
        let mut t = self.new_table(&[]);
        t.set_content_arrangement(ContentArrangement::Dynamic);
        t.set_width(u16::try_from(width).unwrap_or(u16::MAX));
        t
    }

    /// One protocol of a plan: its table, then the steps and commands below it.
    fn protocol_plan(&self, pp: &crate::plan::ProtocolPlan, width: usize) -> String {
        let carries = if pp.carries.is_empty() {
            String::new()
        } else {
            format!(", carries {}", pp.carries.join(", "))
        };
        let mut out = format!("\n{} ({}{carries})\n", pp.title, pp.protocol);
        let mut t = self.fitted_table(width);
        let mut host = pp.host.clone();
        if let Some(n) = &pp.host_note {
            host.push_str(&format!("\n({n})"));
        }
        t.add_row(vec!["Endpoint".to_string(), host]);
        let ports: Vec<String> = pp
            .ports
            .iter()
            .map(|x| format!("{} {} ({})", x.port, x.scheme, x.label))
            .collect();
        t.add_row(vec!["Ports".to_string(), ports.join("\n")]);
        t.add_row(vec!["Transport".to_string(), pp.transport.to_uppercase()]);
        t.add_row(vec!["Security".to_string(), pp.security.clone()]);
        let auth: Vec<String> = pp
            .auth
            .iter()
            .map(|a| {
                let mut line = format!("{}{}: {}", if a.recommended { "* " } else { "" }, a.mode, a.title);
                if let Some(env) = &a.secret_env {
                    line.push_str(&format!(" (secret from {env})"));
                }
                if let Some(n) = &a.note {
                    line.push_str(&format!(" ({n})"));
                }
                if !a.steps.is_empty() {
                    line.push_str(" (steps below)");
                }
                line
            })
            .collect();
        t.add_row(vec!["Authentication".to_string(), auth.join("\n")]);
        let login: Vec<String> = pp
            .login
            .iter()
            .map(|f| format!("{}: {}", f.name, f.value))
            .collect();
        t.add_row(vec!["Login".to_string(), login.join("\n")]);
        let topics: Vec<String> = if pp.topics.is_empty() {
            vec!["(no needs given: pass --need to list the topics for each)".to_string()]
        } else {
            pp.topics
                .iter()
                .map(|x| format!("{}:\n  {}", x.need, x.topics.join("\n  ")))
                .collect()
        };
        t.add_row(vec!["Topics".to_string(), topics.join("\n")]);
        out.push_str(&format!("{t}\n"));
        for a in pp.auth.iter().filter(|a| !a.steps.is_empty()) {
            out.push_str(&format!("{} authentication, step by step:\n", a.mode));
            for (i, s) in a.steps.iter().enumerate() {
                out.push_str(&super::wrap(&format!("  {}. ", i + 1), s, width));
            }
        }
        out.push_str("Smoke test:\n");
        out.push_str(&command_lines(&pp.probe, width));
        if !pp.credentials.is_empty() {
            out.push_str("Credentials:\n");
            out.push_str(&command_lines(&pp.credentials, width));
        }
        out
    }

    fn verdict(&self, ok: bool) -> String {
        if ok {
            paint("ok", Paint::Good, self.style.color)
        } else {
            paint("FAILED", Paint::Bad, self.style.color)
        }
    }

    /// A load's verdict: ok, FAILED, or INTERRUPTED (Ctrl-C).
    fn load_verdict(&self, r: &LoadReport) -> String {
        if r.interrupted {
            paint("INTERRUPTED", Paint::Bad, self.style.color)
        } else {
            self.verdict(r.ok)
        }
    }

    /// A load report under its headline: an interruption, the merge, error kinds, needs and
    /// the stage table.
    fn load_body(&self, r: &LoadReport) -> String {
        let mut out = String::new();
        if r.interrupted {
            out.push_str(&format!("  {}\n", super::INTERRUPTED));
        }
        if let Some(n) = r.merged_from {
            out.push_str(&format!(
                "  merged from {}: rates summed, percentiles from the merged histograms\n",
                super::reports(n)
            ));
        }
        for (kind, text) in super::load_errors(r) {
            out.push_str(&format!("  {kind}: {text}\n"));
        }
        for (need, c) in &r.needs {
            out.push_str(&format!(
                "  need {need}: {} succeeded, {} failed\n",
                c.succeeded, c.failed
            ));
        }
        let (header, rows) = super::load_stage_rows(r);
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        let mut t = self.new_table(&header);
        for row in rows {
            t.add_row(row);
        }
        out.push_str(&format!("{t}\n"));
        out
    }

    fn probe(&self, r: &ProbeReport) -> String {
        let verdict = self.verdict(r.ok);
        let address = r
            .address
            .as_deref()
            .map(|a| format!(" via {a}"))
            .unwrap_or_default();
        let mut out = format!("{verdict}: {} {}{address}\n", r.protocol, r.target);
        if let Some(e) = &r.error {
            out.push_str(&format!(
                "  error ({}) at {}: {}\n",
                e.kind.as_str(),
                e.stage,
                e.message
            ));
        }
        if let Some(reply) = &r.enos {
            out.push_str(&format!(
                "  EnOS replied {}\n",
                crate::enos::describe(reply.code, &reply.message)
            ));
        }
        for s in &r.stages {
            out.push_str(&format!("  {:<15} {:>10.3} ms\n", s.name, s.ms));
        }
        // The probe's own details (its login's or its post's reply) belong to the stages
        // above, not to the needs below, which each say what their exchange got.
        if !r.details.is_empty() {
            let list: Vec<String> = r
                .details
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
                .collect();
            out.push_str(&format!("  {}\n", list.join(", ")));
        }
        if !r.needs.is_empty() {
            out.push_str("  needs, each after the login on its own stages:\n");
        }
        for n in &r.needs {
            out.push_str(&format!(
                "    {:<21} {:<11} {}{}\n",
                n.need,
                n.measured.as_str(),
                n.message,
                super::need_stages(n)
            ));
        }
        out
    }
}

impl Renderer for Table {
    fn decision(&self, caps: &Capabilities, d: &Decision) -> String {
        let mut t = self.new_table(&[]);
        let rec = format!("{} ({})", title_of(caps, &d.recommendation), d.recommendation);
        let mut cell = comfy_table::Cell::new(rec);
        if self.style.color {
            let good = d.unmet.is_empty() && d.recommendation != "none";
            cell = cell.add_attribute(comfy_table::Attribute::Bold).fg(if good {
                comfy_table::Color::Green
            } else {
                comfy_table::Color::Yellow
            });
        }
        t.add_row(vec![comfy_table::Cell::new("Recommendation"), cell]);
        if !d.protocols.is_empty() {
            let list: Vec<String> = d.protocols.iter().map(|p| title_of(caps, p)).collect();
            t.add_row(vec!["Protocols".to_string(), list.join(" + ")]);
        }
        if !d.carriers.is_empty() {
            let list: Vec<String> = d
                .carriers
                .iter()
                .map(|c| format!("{} -> {}", c.need, title_of(caps, &c.protocol)))
                .collect();
            t.add_row(vec!["Needs carried".to_string(), list.join("\n")]);
        }
        let unmet = if d.unmet.is_empty() {
            "none".to_string()
        } else {
            d.unmet.join(", ")
        };
        t.add_row(vec!["Unmet needs".to_string(), unmet]);
        if !d.caveats.is_empty() {
            let list: Vec<String> = d
                .caveats
                .iter()
                .map(|c| {
                    let over = c.need.as_ref().map_or(String::new(), |n| format!("{n} -> "));
                    format!(
                        "{over}{} ({}={})",
                        title_of(caps, &c.protocol),
                        c.question,
                        c.answer
                    )
                })
                .collect();
            t.add_row(vec!["Caveats".to_string(), list.join("\n")]);
        }
        let width = self.style.text_width();
        let list = |out: &mut String, heading: &str, items: &[String]| {
            if !items.is_empty() {
                out.push_str(&format!("\n{heading}\n"));
                for item in items {
                    out.push_str(&super::wrap("  - ", item, width));
                }
            }
        };
        let mut out = format!("{t}\n");
        list(&mut out, "Why:", &d.reasons);
        let caveats: Vec<String> = d
            .caveats
            .iter()
            .map(|c| super::caveat_sentence(caps, c))
            .collect();
        list(&mut out, "Caveats (the advice stands; mind these):", &caveats);
        let aside: Vec<String> = d.set_aside.iter().map(super::set_aside_sentence).collect();
        list(
            &mut out,
            "Set aside (answers that could not change the outcome):",
            &aside,
        );
        list(&mut out, "What would change the answer:", &d.hints);
        out.push_str("\nDecision path:\n");
        out.push_str(&path_lines(d, width));
        out
    }

    /// The comparison table made to read at 80 columns, piped or on a terminal of any width:
    /// plain aligned columns with short cells (the feature id, a word per protocol), long words
    /// as numbered notes under the table, and the feature's title last, cut to the width.
    fn compare(&self, caps: &Capabilities, needs: &[String]) -> String {
        let mut notes: Vec<String> = Vec::new();
        let mut note = |text: String| -> String {
            let n = notes.iter().position(|t| *t == text).unwrap_or_else(|| {
                notes.push(text);
                notes.len() - 1
            });
            format!("[{}]", n + 1)
        };
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut header = vec!["need".to_string()];
        header.extend(caps.protocols.iter().map(|p| p.title.clone()));
        header.push("feature".into());
        rows.push(header);
        for f in &caps.features {
            let mark = if needs.contains(&f.id) { "* " } else { "" };
            let mut row = vec![format!("{mark}{}", f.id)];
            for p in &caps.protocols {
                let s = support_cell(f.support_for(&p.id));
                row.push(match f.notes.get(&p.id) {
                    Some(text) => format!("{s}{}", note(format!("{}, {}: {text}", p.title, f.id))),
                    None => s.to_string(),
                });
            }
            row.push(f.title.clone());
            rows.push(row);
        }
        let mut row = vec!["transport".to_string()];
        row.extend(caps.protocols.iter().map(|p| p.transport.to_uppercase()));
        rows.push(row);
        let mut row = vec!["EnOS versions".to_string()];
        row.extend(caps.protocols.iter().map(|p| p.enos_versions.join(",")));
        rows.push(row);
        let mut row = vec!["security".to_string()];
        row.extend(
            caps.protocols
                .iter()
                .map(|p| format!("opt.{}", note(format!("{}: {}", p.title, p.security)))),
        );
        rows.push(row);
        let width = usize::from(self.style.fit_width());
        let columns = caps.protocols.len() + 1;
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                rows.iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let used: usize = widths.iter().map(|w| w + 2).sum();
        let title_room = width.saturating_sub(used);
        let mut out = String::new();
        for (n, row) in rows.iter().enumerate() {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                line.push_str(&format!("{cell:<w$}  "));
            }
            // The title wraps under itself: nothing is cut, and the short columns stay one line.
            let mut line = match row.get(columns) {
                Some(title) if title_room >= 12 => {
                    let wrapped = super::wrap(&line, title, width);
                    wrapped.trim_end().to_string()
                }
                _ => line,
            };
            line.truncate(line.trim_end().len());
            let line = line.as_str();
            if n == 0 && self.style.color {
                out.push_str(&paint(line, Paint::Strong, true));
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out.push('\n');
        if !needs.is_empty() {
            out.push_str("* needed; ");
        }
        out.push_str("yes supported, no not supported, - not applicable\n");
        for (i, text) in notes.iter().enumerate() {
            out.push_str(&super::wrap(&format!("[{}] ", i + 1), text, width));
        }
        out
    }

    fn questions(&self, caps: &Capabilities) -> String {
        let mut t = self.new_table(&["Question", "Values", "Default", "Prompt"]);
        for q in &caps.questions {
            t.add_row(vec![
                q.id.clone(),
                q.values().collect::<Vec<_>>().join(" | "),
                q.default.clone().unwrap_or_else(|| "(required)".into()),
                q.prompt.clone(),
            ]);
        }
        let mut f = self.new_table(&["Need (feature id)", "Title"]);
        for feat in &caps.features {
            f.add_row(vec![feat.id.clone(), feat.title.clone()]);
        }
        format!(
            "{t}\n\nSet with --answer ID=VALUE (repeatable) or in an answers file (ID = \"VALUE\").\n\n{f}\n\nSet with --need FEATURE (repeatable, or comma-separated) or needs = [\"...\"] in an answers file.\n"
        )
    }

    /// The plan: a heading that names every protocol; per protocol a table that fits the
    /// width, then what a reader copies or follows step by step on lines of its own (the
    /// dynamic activation steps, the smoke test and credentials commands), wrapped between
    /// words with their indent kept.
    fn plan(&self, _caps: &Capabilities, p: &Plan) -> String {
        let width = self.style.text_width();
        let mut out = format!("Plan: {}\n", plan_heading(p, str::to_string));
        for pp in &p.protocols {
            out.push_str(&self.protocol_plan(pp, width));
        }
        if !p.steps.is_empty() {
            out.push_str("\nSteps on the platform:\n");
            for (i, s) in p.steps.iter().enumerate() {
                out.push_str(&super::wrap(&format!("  {}. ", i + 1), s, width));
            }
        }
        if !p.unmet.is_empty() {
            out.push_str(&format!("\nUnmet needs: {}\n", p.unmet.join(", ")));
            for h in &p.hints {
                out.push_str(&super::wrap("  - ", h, width));
            }
        }
        out
    }

    fn credentials(&self, c: &Credentials) -> String {
        let mut t = self.new_table(&[]);
        t.add_row(vec!["protocol".to_string(), c.protocol.clone()]);
        t.add_row(vec![
            "secure mode".to_string(),
            format!("{} ({})", c.secure_mode, c.secure_mode_value),
        ]);
        if let Some(ts) = c.timestamp {
            t.add_row(vec!["timestamp".to_string(), ts.to_string()]);
        }
        if let Some((v, unit)) = &c.lifetime {
            t.add_row(vec!["lifetime".to_string(), format!("{v} {unit}")]);
        }
        for (k, v) in c.fields_beside_metadata() {
            t.add_row(vec![k.clone(), v.clone()]);
        }
        if let Some(r) = &c.request {
            t.add_row(vec![
                "auth request".to_string(),
                format!("{} {}\n{}", r.method, r.path, r.body),
            ]);
        }
        let mut out = format!("{t}\n");
        for (i, s) in c.steps.iter().enumerate() {
            out.push_str(&format!("  {}. {s}\n", i + 1));
        }
        out
    }

    fn load(&self, r: &LoadReport) -> String {
        let mut out = format!("{}: {}\n", self.load_verdict(r), super::load_headline(r, None));
        out.push_str(&self.load_body(r));
        out
    }

    fn fleet(&self, r: &crate::measurement::fleet::FleetReport) -> String {
        let mut out = format!(
            "{}: {}\n",
            self.load_verdict(&r.load),
            super::load_headline(&r.load, Some(&r.fleet))
        );
        out.push_str(&self.load_body(&r.load));
        out.push('\n');
        for line in super::fleet_lines(&r.fleet) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    fn matrix(&self, m: &MatrixReport) -> String {
        use crate::measurement::matrix::{Verdict, cell_text, column_failure};
        let mut header = vec!["feature".to_string()];
        header.extend(m.titles.iter().cloned());
        let mut t = self.new_table(&[]);
        t.set_header(header);
        // A URL that failed shows why in its column, above the cells it left unmeasured.
        if m.probes.iter().any(|p| column_failure(p).is_some()) {
            let mut cells = vec![comfy_table::Cell::new("(connection)")];
            for p in &m.probes {
                cells.push(comfy_table::Cell::new(
                    column_failure(p).unwrap_or_else(|| "ok".into()),
                ));
            }
            t.add_row(cells);
        }
        for row in &m.rows {
            let mut cells = vec![comfy_table::Cell::new(&row.feature)];
            for (c, title) in row.cells.iter().zip(&m.titles) {
                let mut cell = comfy_table::Cell::new(cell_text(c, title));
                if self.style.color && c.verdict == Verdict::Mismatch {
                    cell = cell.fg(comfy_table::Color::Red);
                }
                cells.push(cell);
            }
            t.add_row(cells);
        }
        let legend = super::wrap(
            "",
            crate::measurement::matrix::LEGEND,
            usize::from(self.style.fit_width()),
        );
        let mut out = format!(
            "{}: the comparison table as measured over {}\n{legend}{t}\n{}\n",
            self.verdict(m.ok),
            m.targets.join(", "),
            crate::measurement::matrix::summary(m)
        );
        for (p, title) in m.probes.iter().zip(&m.titles) {
            if let (Some(_), Some(e)) = (column_failure(p), &p.error) {
                out.push_str(&format!("{title} {}: {}: {}\n", p.target, e.stage, e.message));
            }
        }
        out
    }

    fn probes(&self, reports: &[ProbeReport]) -> String {
        reports
            .iter()
            .map(|r| self.probe(r))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn check(&self, r: &CheckReport) -> String {
        check_text(r)
    }
}
