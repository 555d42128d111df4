//! JSON Schemas for the files users write: `capabilities.toml` and the `serve` registry are
//! generated from the serde types themselves (schemars), so the schema cannot drift from what
//! the loader accepts; an answers file's schema is made from the questions of the capabilities
//! in use, since an answers file is only valid against the capabilities it answers.

use schemars::JsonSchema;
use serde_json::{Value, json};

use crate::capabilities::Capabilities;

/// A schema for `T` with the draft, id and title a TOML editor shows.
fn generated<T: JsonSchema>(id: &str, title: &str, description: &str) -> String {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    let mut v = serde_json::to_value(schema).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert(
            "$id".into(),
            json!(format!("https://enos-connect.invalid/schemas/{id}")),
        );
        map.insert("title".into(), json!(title));
        map.insert("description".into(), json!(description));
    }
    crate::render::json::to_string(&v)
}

/// The JSON Schema of `capabilities.toml` (shipped as `schemas/capabilities.schema.json`).
pub fn capabilities() -> String {
    generated::<Capabilities>(
        "capabilities.schema.json",
        "enos-connect capabilities",
        "Every fact enos-connect knows about connecting a device to EnOS: protocols, the comparison table, questions, the decision flow, outcomes and login recipes. Cross-references are checked by `enos-connect check`.",
    )
}

/// The JSON Schema of the `serve` registry.
pub fn registry() -> String {
    generated::<crate::registry::Registry>(
        "registry.schema.json",
        "enos-connect serve registry",
        "The products and devices `enos-connect serve` knows: keys, secrets, models and gateway topology.",
    )
}

/// What `recommend -f json` prints: the engine's decision and what the JSON renderer adds.
#[derive(JsonSchema)]
#[allow(dead_code)] // only its schema is used: `render::json::decision_value` builds the object
struct DecisionJson {
    #[schemars(flatten)]
    decision: crate::engine::Decision,
    /// The shape of this object; fields are only added.
    schema_version: u32,
    /// The version of the capabilities data that decided.
    data_version: String,
    /// The recommendation's title, for people.
    recommendation_title: String,
}

/// The JSON Schema of `recommend -f json`'s object (shipped as `schemas/decision.schema.json`).
pub fn decision() -> String {
    generated::<DecisionJson>(
        "decision.schema.json",
        "enos-connect decision",
        "What `enos-connect recommend -f json` prints: the recommendation, the protocols and what each carries, the unmet needs, the reasons, the path, the answers read, the answers set aside and the caveats.",
    )
}

/// The JSON Schema of an answers file for `caps`.
pub fn answers(caps: &Capabilities) -> String {
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
    crate::render::json::to_string(&json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://enos-connect.invalid/schemas/answers.schema.json",
        "title": "enos-connect answers",
        "description": format!("Answers replayed by `enos-connect recommend --answers FILE` (capabilities data {})", caps.meta.version),
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    }))
}
