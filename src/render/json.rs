//! JSON output. The decision object is the engine's [`Decision`] plus `schema_version`, the
//! capabilities data version and the human titles: a contract, so fields are only added.
//!
//! `recommend --format json` prints one object:
//! `{schema_version, data_version, recommendation, outcome, protocols[], combination,
//!   carriers[{need,protocol}], needs[], unmet[], reasons[], hints[], trace[{node,kind,label,
//!   question?,answer?,by_default?,branch,open[]}], answers[{question,value,by_default}]}`.

use serde::Serialize;
use serde_json::{Value, json};

use super::Renderer;
use crate::capabilities::{Capabilities, CheckReport};
use crate::credentials::Credentials;
use crate::engine::Decision;
use crate::measurement::ProbeReport;
use crate::measurement::load::LoadReport;
use crate::plan::Plan;

pub struct Json;

pub const SCHEMA_VERSION: u32 = 1;

pub fn to_string<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

pub fn decision_value(caps: &Capabilities, d: &Decision) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("schema_version".into(), json!(SCHEMA_VERSION));
        map.insert("data_version".into(), json!(caps.meta.version));
        map.insert(
            "recommendation_title".into(),
            json!(
                caps.protocol(&d.recommendation)
                    .map(|p| p.title.clone())
                    .or_else(|| caps.outcome(&d.recommendation).map(|o| o.title.clone()))
                    .unwrap_or_else(|| d.recommendation.clone())
            ),
        );
    }
    v
}

impl Renderer for Json {
    fn decision(&self, caps: &Capabilities, d: &Decision) -> String {
        to_string(&decision_value(caps, d))
    }

    fn compare(&self, caps: &Capabilities, needs: &[String]) -> String {
        let features: Vec<Value> = caps
            .features
            .iter()
            .map(|f| {
                json!({
                    "id": f.id,
                    "title": f.title,
                    "needed": needs.contains(&f.id),
                    "support": f.support,
                    "notes": f.notes,
                })
            })
            .collect();
        let protocols: Vec<Value> = caps
            .protocols
            .iter()
            .map(|p| {
                json!({
                    "id": p.id, "title": p.title, "transport": p.transport,
                    "enos_versions": p.enos_versions, "security": p.security,
                })
            })
            .collect();
        to_string(&json!({
            "schema_version": SCHEMA_VERSION,
            "data_version": caps.meta.version,
            "protocols": protocols,
            "features": features,
        }))
    }

    fn questions(&self, caps: &Capabilities) -> String {
        let questions: Vec<Value> = caps
            .questions
            .iter()
            .map(|q| {
                json!({
                    "id": q.id, "prompt": q.prompt, "help": q.help, "default": q.default,
                    "values": q.values().collect::<Vec<_>>(),
                    "flag": format!("--answer {}=VALUE", q.id),
                })
            })
            .collect();
        let features: Vec<Value> = caps
            .features
            .iter()
            .map(|f| json!({"id": f.id, "title": f.title, "flag": format!("--need {}", f.id)}))
            .collect();
        to_string(&json!({
            "schema_version": SCHEMA_VERSION,
            "data_version": caps.meta.version,
            "questions": questions,
            "features": features,
        }))
    }

    fn plan(&self, caps: &Capabilities, p: &Plan) -> String {
        let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.insert("schema_version".into(), json!(SCHEMA_VERSION));
            map.insert("data_version".into(), json!(caps.meta.version));
        }
        to_string(&v)
    }

    /// The credential fields at the top level (`client_id`, `username`, `password`, `sign`,
    /// `psk_identity`, `psk_key`), with `request` for the auth call where there is one.
    fn credentials(&self, c: &Credentials) -> String {
        let mut map = serde_json::Map::new();
        map.insert("protocol".into(), json!(c.protocol));
        map.insert("secure_mode".into(), json!(c.secure_mode_value));
        if let Some(ts) = c.timestamp {
            map.insert("timestamp".into(), json!(ts));
        }
        if let Some((v, unit)) = &c.lifetime {
            map.insert("lifetime".into(), json!(v));
            map.insert("lifetime_unit".into(), json!(unit));
        }
        for (k, v) in c.fields_beside_metadata() {
            map.insert(k.clone(), json!(v));
        }
        if c.protocol == "subdevice" {
            // The login's params exactly as the gateway sends them in `combine.login`: every
            // value a string, as EnOS reads them.
            let params: serde_json::Map<String, Value> =
                c.fields.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            map.insert("params".into(), Value::Object(params));
        }
        if let Some(r) = &c.request {
            map.insert(
                "request".into(),
                json!({"method": r.method, "path": r.path, "body": r.body}),
            );
        }
        if !c.steps.is_empty() {
            map.insert("steps".into(), json!(c.steps));
        }
        to_string(&Value::Object(map))
    }

    fn probes(&self, reports: &[ProbeReport]) -> String {
        match reports {
            [one] => to_string(one),
            many => to_string(&json!({
                "ok": many.iter().all(|r| r.ok),
                "probes": many,
            })),
        }
    }

    fn matrix(&self, m: &crate::measurement::matrix::MatrixReport) -> String {
        to_string(m)
    }

    fn load(&self, r: &LoadReport) -> String {
        to_string(r)
    }

    fn fleet(&self, r: &crate::measurement::fleet::FleetReport) -> String {
        to_string(r)
    }

    fn check(&self, r: &CheckReport) -> String {
        let problems: Vec<Value> = r
            .problems
            .iter()
            .map(|p| json!({"file": p.file, "line": p.line, "column": p.col, "message": p.message}))
            .collect();
        let mut v = json!({"ok": r.problems.is_empty(), "file": r.file, "problems": problems});
        if r.problems.is_empty() {
            v["data_version"] = json!(r.data_version);
            v["counts"] = json!(r.counts);
        }
        to_string(&v)
    }
}
