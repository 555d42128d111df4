//! JSON output. The decision object is the engine's [`Decision`] plus `schema_version`, the
//! capabilities data version and the human titles: a contract, so fields are only added.
//!
//! `recommend --format json` prints one object:
//! `{schema_version, data_version, recommendation, outcome, protocols[], combination,
//!   carriers[{need,protocol}], needs[], unmet[], reasons[], hints[], trace[{node,kind,label,
//!   question?,answer?,by_default?,branch,open[]}], answers[{question,value,by_default}]}`.

use serde::Serialize;
use serde_json::{Value, json};

use crate::capabilities::Capabilities;
use crate::engine::Decision;

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

pub fn decision(caps: &Capabilities, d: &Decision) -> String {
    to_string(&decision_value(caps, d))
}

pub fn compare(caps: &Capabilities, needs: &[String]) -> String {
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

pub fn questions(caps: &Capabilities) -> String {
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

pub fn plan(caps: &Capabilities, p: &crate::plan::Plan) -> String {
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("schema_version".into(), json!(SCHEMA_VERSION));
        map.insert("data_version".into(), json!(caps.meta.version));
    }
    to_string(&v)
}

/// The credential fields at the top level (`client_id`, `username`, `password`, `sign`,
/// `psk_identity`, `psk_key`), with `request` for the auth call where there is one.
pub fn credentials(c: &crate::credentials::Credentials) -> String {
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
    for (k, v) in &c.fields {
        map.insert(k.clone(), json!(v));
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

/// The JSON Schema of `capabilities.toml` (shipped in `schemas/`).
pub const CAPABILITIES_SCHEMA: &str = include_str!("../../schemas/capabilities.schema.json");

/// The JSON Schema of an answers file, made from the questions and features of `caps`: an
/// answers file is only valid against the capabilities it answers.
pub fn answers_schema(caps: &Capabilities) -> String {
    let mut properties = serde_json::Map::new();
    for q in &caps.questions {
        let mut values: Vec<Value> = q.values().map(|v| json!(v)).collect();
        // The answers file also takes yes/no as booleans and numbers as numbers.
        for v in q.values() {
            match v {
                "yes" => values.push(json!(true)),
                "no" => values.push(json!(false)),
                n => {
                    if let Ok(i) = n.parse::<i64>() {
                        values.push(json!(i));
                    }
                }
            }
        }
        let mut prop = json!({"description": format!("{} {}", q.prompt, q.help), "enum": values});
        if let Some(d) = &q.default {
            prop["default"] = json!(d);
        }
        properties.insert(q.id.clone(), prop);
    }
    let features: Vec<&str> = caps.feature_ids().collect();
    properties.insert(
        "needs".into(),
        json!({"description": "Platform features the device needs", "type": "array", "items": {"enum": features}}),
    );
    to_string(&json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://enos-connect.invalid/schemas/answers.schema.json",
        "title": "enos-connect answers",
        "description": format!("Answers replayed by `enos-connect recommend --answers FILE` (capabilities data {})", caps.meta.version),
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    }))
}
