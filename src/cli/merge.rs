//! `merge`: read load reports (files or stdin, one or more JSON objects each), join them with
//! [`probe::load::merge`] and print the result like a load's.

use std::process::ExitCode;

use super::Context;
use super::args::MergeArgs;
use super::terminal::emit;
use crate::cli::error::{Error, Result};
use crate::probe::load::{self, MergeError};

/// The largest report file read: a report is a few kilobytes, even with its histograms.
const MAX_FILE: u64 = 64 << 20;

pub fn run(ctx: &Context, args: &MergeArgs) -> Result<ExitCode> {
    let mut reports = Vec::new();
    for path in &args.reports {
        let name = path.display().to_string();
        let text = read(path, &name)?;
        reports.extend(load::parse_reports(&name, &text)?);
    }
    let merged = load::merge(&reports)?;
    emit(&ctx.renderer(args.format.format).load(&merged))?;
    Ok(super::probe::load_exit(&merged))
}

fn read(path: &std::path::Path, name: &str) -> Result<String> {
    use std::io::Read;
    let bad = |message: String| Error::from(MergeError::Report(name.to_string(), message));
    let mut text = String::new();
    let result = if name == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_FILE + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_FILE + 1).read_to_string(&mut text))
    };
    result.map_err(|e| bad(format!("cannot read: {e}")))?;
    if text.len() as u64 > MAX_FILE {
        return Err(bad(format!("over {} MiB: not a load report", MAX_FILE >> 20)));
    }
    Ok(text)
}
