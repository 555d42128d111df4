//! `questions` and `schema`: the reference a user writes files against, the questions of the
//! data in use and the JSON Schemas of the inputs and outputs.

use std::process::ExitCode;

use super::args::{FormatArgs, SchemaArgs, SchemaOf};
use super::{Context, print};
use crate::cli::error::Result;

pub(super) fn questions(ctx: &Context, args: FormatArgs) -> Result<ExitCode> {
    let caps = ctx.capabilities()?;
    print(&ctx.renderer(args.format).questions(caps))
}

pub(super) fn schema(ctx: &Context, args: &SchemaArgs) -> Result<ExitCode> {
    print(&match args.of {
        SchemaOf::Capabilities => crate::schema::capabilities(),
        SchemaOf::Answers => crate::schema::answers(ctx.capabilities()?),
        SchemaOf::Registry => crate::schema::registry(),
        SchemaOf::Decision => crate::schema::decision(),
    })
}
