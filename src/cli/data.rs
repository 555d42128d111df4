//! `compare`, `flow`, `questions` and `check`: show and validate the capabilities data.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::{CheckArgs, CompareArgs, FlowArgs, FormatArgs, emit, emit_bytes};
use crate::answers::Answers;
use crate::capabilities::{self, Capabilities, CapabilitiesError};
use crate::error::{EXIT_USAGE, Error, Result};
use crate::render::{FlowFormat, Format, flow as flow_render, json as json_render, markdown, table};

pub fn compare(caps: &Capabilities, args: &CompareArgs) -> Result<ExitCode> {
    let mut answers = Answers::default();
    answers.add_needs(caps, args.need.iter().map(String::as_str), "--need")?;
    let needs = answers.need_list();
    emit(&match args.format.format {
        Format::Table => table::compare(caps, needs),
        Format::Json => json_render::compare(caps, needs),
        Format::Markdown => markdown::compare(caps, needs),
        Format::Csv => return Err(super::csv_only()),
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn flow(caps: &Capabilities, args: &FlowArgs) -> Result<ExitCode> {
    let text = flow_render::render(caps, args.format);
    match args.format {
        FlowFormat::Svg => emit_bytes(&flow_render::picture(&text, "svg").map_err(Error::Usage)?)?,
        FlowFormat::Png => emit_bytes(&flow_render::picture(&text, "png").map_err(Error::Usage)?)?,
        _ => emit(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn questions(caps: &Capabilities, args: FormatArgs) -> Result<ExitCode> {
    emit(&match args.format {
        Format::Table => table::questions(caps),
        Format::Json => json_render::questions(caps),
        Format::Markdown => markdown::questions(caps),
        Format::Csv => return Err(super::csv_only()),
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn check(global: Option<&Path>, args: &CheckArgs) -> Result<ExitCode> {
    let path = args.file.as_deref().or(global);
    let name = path.map_or(capabilities::EMBEDDED_NAME.to_string(), |p| {
        p.display().to_string()
    });
    let result = match path {
        Some(p) => capabilities::load_file(p),
        None => capabilities::load_embedded(),
    };
    match (result, args.format.format) {
        (Ok(caps), Format::Json) => {
            emit(&json_render::to_string(&json!({
                "ok": true, "file": name, "data_version": caps.meta.version, "problems": [],
                "counts": counts(&caps),
            })))?;
            Ok(ExitCode::SUCCESS)
        }
        (Ok(caps), _) => {
            let c = counts(&caps);
            emit(&format!(
                "ok: {name} (data version {}): {} protocols, {} features, {} questions, {} flow nodes, {} edges\n",
                caps.meta.version, c["protocols"], c["features"], c["questions"], c["nodes"], c["edges"]
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        (Err(e), Format::Json) => {
            let problems: Vec<serde_json::Value> = match &e {
                CapabilitiesError::Invalid { problems, .. } => problems
                    .iter()
                    .map(|p| json!({"file": p.file, "line": p.line, "column": p.col, "message": p.message}))
                    .collect(),
                CapabilitiesError::Syntax(p) => {
                    vec![json!({"file": p.file, "line": p.line, "column": p.col, "message": p.message})]
                }
                CapabilitiesError::Read { .. } => vec![json!({"file": name, "message": e.to_string()})],
            };
            emit(&json_render::to_string(
                &json!({"ok": false, "file": name, "problems": problems}),
            ))?;
            Ok(ExitCode::from(EXIT_USAGE))
        }
        (_, Format::Csv) => Err(super::csv_only()),
        (Err(e), _) => Err(e.into()),
    }
}

fn counts(caps: &Capabilities) -> serde_json::Value {
    json!({
        "protocols": caps.protocols.len(),
        "features": caps.features.len(),
        "questions": caps.questions.len(),
        "nodes": caps.flow.nodes.len(),
        "edges": caps.flow.edges.len(),
    })
}
