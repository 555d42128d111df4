//! The report as one JSON object: `{"device", "catalogue_version", "protocol", "seconds",
//! "device_log", "device_exit", "evidence_dropped", "cases": [{"id", "verdict", "seconds",
//! "message", "expected", "seen", "fix", "evidence"}], "summary"}`; fields are added, never
//! renamed. The catalogue as `{"catalogue_version", "cases": [...]}`.

use serde_json::json;

use crate::device_test::Report;
use crate::device_test::catalogue::{CASES, CATALOGUE_VERSION};

pub(crate) fn report(r: &Report) -> String {
    let mut text = serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}

pub(crate) fn catalogue() -> String {
    let cases: Vec<_> = CASES
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "feature": c.feature,
                "protocol": c.protocol,
                "long": c.long,
                "checks": c.checks,
                "evidence": c.evidence,
                "fix": c.fix,
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&json!({
        "catalogue_version": CATALOGUE_VERSION,
        "cases": cases,
    }))
    .unwrap_or_default();
    text.push('\n');
    text
}
