//! `probe --matrix`: the comparison table as measured. Every feature over every protocol probed
//! (the needs run with the table's "not offered" check off), each cell the measured outcome
//! beside the table's own cell. Pure: the probes' reports in, the table out. Only what was
//! exchanged counts as measured: a cell no exchange can prove (the protocol cannot carry it)
//! is `not_carried`, one the run could not prove `untested`, and the summary counts them apart.
//!
//! The login rows are measured by logins of their own kind: `dynamic_auth` by a probe that
//! activates a device (`--activate DK`), `mutual_tls` by the TLS login with a client
//! certificate (over DTLS, a handshake offering it); [`login_need`] reads such a probe as the
//! cell, and the probes are kept in the report's `logins`.

use serde::Serialize;

use super::need::{Measured, NeedReport};
use super::{ErrorKind, ProbeReport};
use crate::capabilities::{Capabilities, Support};

/// A cell's verdict: the measurement agrees with the table, disagrees, or was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Match,
    Mismatch,
    /// No exchange can be made: the protocol cannot carry it, as the table's
    /// `not_supported`/`not_applicable` says. Nothing was measured.
    NotCarried,
    /// Not measured: a value, a login, or the probe's own connection was missing.
    Untested,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub protocol: String,
    pub table: Support,
    pub measured: Measured,
    pub verdict: Verdict,
    pub code: Option<i64>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub feature: String,
    pub title: String,
    pub cells: Vec<Cell>,
}

/// The JSON of `probe --matrix -f json`.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixReport {
    /// No mismatch (untested and not carried cells are not mismatches) and every probe logged
    /// in.
    pub ok: bool,
    pub protocols: Vec<String>,
    /// The protocols' titles, as the table prints them (`CoAP`).
    pub titles: Vec<String>,
    pub targets: Vec<String>,
    pub mismatches: usize,
    pub untested: usize,
    /// Cells an exchange was made for (matching or not).
    pub measured: usize,
    /// Cells no exchange can prove over their protocol (nothing was sent).
    pub not_carried: usize,
    pub rows: Vec<Row>,
    /// The probes themselves: their login stages and errors.
    pub probes: Vec<ProbeReport>,
    /// The logins made only for a login row (`dynamic_auth`, `mutual_tls`), in order.
    pub logins: Vec<ProbeReport>,
}

/// A login made for a login row, read as that row's cell: it went through (supported), the
/// endpoint refused it (a login or handshake refusal: refused), or something else (failed).
pub(crate) fn login_need(need: &str, table: Support, login: &ProbeReport) -> NeedReport {
    let measured = match &login.error {
        None if login.ok => Measured::Supported,
        Some(e) if matches!(e.kind, ErrorKind::Auth | ErrorKind::Tls | ErrorKind::Enos) => Measured::Refused,
        _ => Measured::Failed,
    };
    let message = match &login.error {
        None => format!(
            "the {} login went through ({})",
            need.replace('_', " "),
            login.target
        ),
        Some(e) => format!("{}: {}", e.stage, e.message),
    };
    NeedReport {
        need: need.to_string(),
        protocol: login.protocol.clone(),
        table,
        ok: login.ok,
        measured,
        code: login
            .enos
            .as_ref()
            .map(|e| e.code)
            .or_else(|| login.details.get("auth_code").and_then(serde_json::Value::as_i64)),
        message,
        stages: login.stages.clone(),
        error: login.error.clone(),
    }
}

/// Put a login row's measurement in place of the probe's own (which could not test it).
pub(crate) fn replace_need(probe: &mut ProbeReport, need: NeedReport) {
    match probe.needs.iter_mut().find(|n| n.need == need.need) {
        Some(n) => *n = need,
        None => probe.needs.push(need),
    }
}

/// What the table's cell predicts a measurement shows. `partial` is measured as such: the one
/// partial cell of the shipped table, HTTP's `mutual_tls`, is a one-way TLS login (a server
/// certificate only), so a login the server asked a certificate for would not match it either.
pub(crate) fn expected(table: Support) -> Measured {
    match table {
        Support::Supported => Measured::Supported,
        Support::Partial => Measured::OneWay,
        Support::NotSupported | Support::NotApplicable => Measured::Refused,
    }
}

/// The measured table from one probe per protocol, each run with every feature as a need.
pub(crate) fn build(caps: &Capabilities, probes: Vec<ProbeReport>, logins: Vec<ProbeReport>) -> MatrixReport {
    let rows: Vec<Row> = caps
        .features
        .iter()
        .map(|f| Row {
            feature: f.id.clone(),
            title: f.title.clone(),
            cells: probes
                .iter()
                .map(|p| cell(f.support_for(&p.protocol), p, &f.id))
                .collect(),
        })
        .collect();
    let cells = || rows.iter().flat_map(|r| &r.cells);
    let count = |v: Verdict| cells().filter(|c| c.verdict == v).count();
    let mismatches = count(Verdict::Mismatch);
    let untested = count(Verdict::Untested);
    let not_carried = cells().filter(|c| c.measured == Measured::NotCarried).count();
    let measured = cells()
        .filter(|c| {
            matches!(c.verdict, Verdict::Match | Verdict::Mismatch) && c.measured != Measured::NotCarried
        })
        .count();
    // A probe that could not log in measured nothing: that is a failure, not a table.
    let logged_in = probes.iter().all(|p| !p.needs.is_empty());
    MatrixReport {
        ok: mismatches == 0 && logged_in,
        protocols: probes.iter().map(|p| p.protocol.clone()).collect(),
        titles: probes
            .iter()
            .map(|p| {
                caps.protocol(&p.protocol)
                    .map_or_else(|| p.protocol.clone(), |x| x.title.clone())
            })
            .collect(),
        targets: probes.iter().map(|p| p.target.clone()).collect(),
        mismatches,
        untested,
        measured,
        not_carried,
        rows,
        probes,
        logins,
    }
}

/// One cell: the probe's need for `feature`, judged against the table's `table`.
fn cell(table: Support, p: &ProbeReport, feature: &str) -> Cell {
    let need = p.needs.iter().find(|n| n.need == feature);
    let (measured, code, message) = match need {
        Some(n) => (n.measured, n.code, n.message.clone()),
        None => (
            Measured::Untested,
            None,
            p.error
                .as_ref()
                .map_or("not run".into(), |e| format!("not run: {e}")),
        ),
    };
    let verdict = match measured {
        Measured::Untested => Verdict::Untested,
        // The table says the protocol offers it, and nothing can carry it: they disagree.
        Measured::NotCarried if table.offered() => Verdict::Mismatch,
        Measured::NotCarried => Verdict::NotCarried,
        m if m == expected(table) => Verdict::Match,
        _ => Verdict::Mismatch,
    };
    Cell {
        protocol: p.protocol.clone(),
        table,
        measured,
        verdict,
        code,
        message,
    }
}

/// A cell in words, the table's cell first, then what was measured over the protocol titled
/// `title`: `supported: supported`, `not_supported: refused`, `partial: one-way`,
/// `not_supported: no exchange over MQTT`, `supported: MISMATCH (refused)`,
/// `supported: untested`.
pub(crate) fn cell_text(c: &Cell, title: &str) -> String {
    let table = c.table.as_str();
    let measured = match c.measured {
        Measured::NotCarried => format!("no exchange over {title}"),
        m => m.as_str().to_string(),
    };
    match c.verdict {
        Verdict::Match | Verdict::NotCarried => format!("{table}: {measured}"),
        Verdict::Mismatch => format!("{table}: MISMATCH ({measured})"),
        Verdict::Untested => format!("{table}: untested"),
    }
}

/// What each half of a cell is: the line the table output prints above the table.
pub(crate) const LEGEND: &str = "each cell is capabilities.toml's value, then what the endpoint did: supported, refused, one-way (TLS without a client certificate asked for), no exchange over X (the protocol cannot carry it: nothing sent), untested (not measured), MISMATCH (...) (the endpoint contradicts the table)";

/// The probe of a column that failed before its needs: "refused at connect".
pub(crate) fn column_failure(p: &ProbeReport) -> Option<String> {
    if !p.needs.is_empty() {
        return None;
    }
    p.error
        .as_ref()
        .map(|e| format!("FAILED: {} at {}", e.kind.as_str(), e.stage))
}

/// The line under the table: what was measured, and whether it matches the shipped table.
pub(crate) fn summary(m: &MatrixReport) -> String {
    let mut parts = vec![if m.mismatches == 0 {
        format!(
            "{} cell(s) measured, every one as capabilities.toml says",
            m.measured
        )
    } else {
        format!(
            "{} cell(s) measured; {} MISMATCH(es) with capabilities.toml",
            m.measured, m.mismatches
        )
    }];
    if m.not_carried > 0 {
        parts.push(format!(
            "{} not carried (no exchange over the protocol: nothing to measure)",
            m.not_carried
        ));
    }
    if m.untested > 0 {
        parts.push(format!(
            "{} untested (they need a value, a login or a command this run was not given, or their URL failed)",
            m.untested
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measurement::{ProbeError, StageTiming};

    fn report(error: Option<(ErrorKind, &str)>) -> ProbeReport {
        ProbeReport {
            ok: error.is_none(),
            protocol: "coap".into(),
            target: "coaps://h:5684".into(),
            address: None,
            stages: vec![StageTiming { name: "tls", ms: 1.0 }],
            error: error.map(|(kind, message)| ProbeError {
                kind,
                stage: "tls",
                message: message.into(),
            }),
            enos: None,
            details: serde_json::Map::new(),
            needs: Vec::new(),
        }
    }

    #[test]
    fn a_login_made_for_a_row_is_read_as_its_cell() {
        let ok = login_need("dynamic_auth", Support::Supported, &report(None));
        assert_eq!((ok.measured, ok.ok), (Measured::Supported, true));
        let refused = login_need(
            "mutual_tls",
            Support::NotApplicable,
            &report(Some((ErrorKind::Tls, "handshake refused"))),
        );
        assert_eq!(refused.measured, Measured::Refused);
        assert!(refused.message.contains("handshake refused"));
        // Silence is not a refusal: nothing was measured but a failure.
        let silent = login_need(
            "dynamic_auth",
            Support::Supported,
            &report(Some((ErrorKind::Timeout, "no answer"))),
        );
        assert_eq!(silent.measured, Measured::Failed);
        let mut probe = report(None);
        replace_need(&mut probe, silent);
        replace_need(&mut probe, ok);
        assert_eq!(probe.needs.len(), 1);
        assert_eq!(probe.needs[0].measured, Measured::Supported);
    }

    #[test]
    fn a_partial_cell_expects_a_one_way_login_and_only_mutual_tls_over_http_is_partial() {
        assert_eq!(expected(Support::Partial), Measured::OneWay);
        assert_eq!(expected(Support::Supported), Measured::Supported);
        assert_eq!(expected(Support::NotApplicable), Measured::Refused);
        let caps = crate::capabilities::embedded().expect("caps");
        let partial: Vec<(String, String)> = caps
            .features
            .iter()
            .flat_map(|f| {
                caps.protocols
                    .iter()
                    .filter(|p| f.support_for(&p.id) == Support::Partial)
                    .map(|p| (f.id.clone(), p.id.clone()))
            })
            .collect();
        assert_eq!(partial, [("mutual_tls".to_string(), "http".to_string())]);
        let one_way = Cell {
            protocol: "http".into(),
            table: Support::Partial,
            measured: Measured::OneWay,
            verdict: Verdict::Match,
            code: None,
            message: String::new(),
        };
        assert_eq!(cell_text(&one_way, "HTTP"), "partial: one-way");
    }
}
