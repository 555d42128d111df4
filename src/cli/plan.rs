//! `plan`: the recommendation turned into endpoints, ports, authentication, login fields,
//! topics and the probe command for each protocol (or the platform steps).

use std::process::ExitCode;

use super::args::PlanArgs;
use super::{Context, print, recommend};
use crate::cli::error::Result;
use crate::plan;

pub(super) fn run(ctx: &Context, args: &PlanArgs) -> Result<ExitCode> {
    let caps = ctx.capabilities()?;
    let answers = recommend::gather(ctx, caps, &args.answers)?;
    let decision = recommend::decision(caps, &answers)?;
    let deployment = args.deployment.to_deployment(&args.device, &args.measurepoints);
    let plan = plan::plan(caps, &decision, &deployment);
    print(&ctx.renderer(args.format.format).plan(caps, &plan))
}
