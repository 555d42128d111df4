//! `plan`: the recommendation turned into endpoints, ports, authentication, login fields,
//! topics and the probe command for each protocol (or the platform steps).

use std::process::ExitCode;

use super::{PlanArgs, emit, recommend};
use crate::capabilities::Capabilities;
use crate::error::Result;
use crate::plan::{self, DEFAULT_DOMAIN, Target};
use crate::render::{Format, json, markdown, table};

pub fn run(caps: &Capabilities, args: &PlanArgs, interactive: bool) -> Result<ExitCode> {
    let answers = recommend::gather(caps, &args.answers, interactive)?;
    let decision = recommend::decide(caps, &answers)?;
    let target = Target {
        env: args.env.clone(),
        domain: args.domain.clone().unwrap_or_else(|| DEFAULT_DOMAIN.to_string()),
        host: args.host.clone(),
        product_key: args.product_key.clone(),
        device_key: args.device_key.clone(),
    };
    let plan = plan::plan(caps, &decision, &target);
    emit(&match args.format.format {
        Format::Table => table::plan(&plan),
        Format::Json => json::plan(caps, &plan),
        Format::Markdown => markdown::plan(&plan),
        Format::Csv => return Err(super::csv_only()),
    })?;
    Ok(ExitCode::SUCCESS)
}
