//! `compare`: the protocols side by side, for the features a device needs (`--need`).

use std::process::ExitCode;

use super::args::CompareArgs;
use super::{Context, print};
use crate::answers::Answers;
use crate::cli::error::Result;

pub(super) fn compare(ctx: &Context, args: &CompareArgs) -> Result<ExitCode> {
    let caps = ctx.capabilities()?;
    let mut answers = Answers::default();
    answers.add_needs(caps, args.needs.need.iter().map(String::as_str), "--need")?;
    print(
        &ctx.renderer(args.format.format)
            .compare(caps, answers.need_list()),
    )
}
