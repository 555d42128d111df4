//! `plan`: the recommendation turned into endpoints, ports, authentication, login fields,
//! topics and the probe command for each protocol (or the platform steps).

use std::process::ExitCode;

use super::{PlanArgs, emit, recommend};
use crate::capabilities::Capabilities;
use crate::error::Result;
use crate::plan;
use crate::render::{Format, json, markdown, table};

pub fn run(caps: &Capabilities, args: &PlanArgs, interactive: bool) -> Result<ExitCode> {
    let answers = recommend::gather(caps, &args.answers, interactive)?;
    let decision = recommend::decide(caps, &answers)?;
    let target = args.target.to_target(&args.product_key, &args.device_key);
    let plan = plan::plan(caps, &decision, &target);
    emit(&match args.format.format {
        Format::Table => table::plan(&plan),
        Format::Json => json::plan(caps, &plan),
        Format::Markdown => markdown::plan(&plan),
        Format::Csv => return Err(super::csv_only()),
    })?;
    Ok(ExitCode::SUCCESS)
}
