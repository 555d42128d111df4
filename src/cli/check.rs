//! `check`: validate a capabilities file (or the built-in one) and report every problem.

use std::process::ExitCode;

use super::Context;
use super::args::CheckArgs;
use super::terminal::emit;
use crate::capabilities::{self, CheckReport};
use crate::cli::error::{EXIT_USAGE, Result};
use crate::render::Format;

pub(super) fn check(ctx: &Context, args: &CheckArgs) -> Result<ExitCode> {
    let path = args.file.as_deref().or(ctx.capabilities.as_deref());
    let name = path.map_or(capabilities::EMBEDDED_NAME.to_string(), |p| {
        p.display().to_string()
    });
    let result = match path {
        Some(p) => capabilities::from_file(p),
        None => capabilities::embedded_checked(),
    };
    match (result, args.format.format) {
        // A person reading a terminal gets the problems on stderr, as every other command
        // reports bad input; CI asking for JSON, or a ticket asking for Markdown, gets them
        // on stdout.
        (Err(e), Format::Table) => Err(e.into()),
        (result, format) => {
            let report = CheckReport::new(name, result);
            emit(&ctx.renderer(format).check(&report))?;
            Ok(ExitCode::from(if report.problems.is_empty() {
                0
            } else {
                EXIT_USAGE
            }))
        }
    }
}
