//! `merge`: read load reports (files or stdin, one or more JSON objects each), join them with
//! [`probe::load::merge`] (and fleets' sections with [`probe::fleet::merge_parts`]) and print
//! the result like a load's (or a fleet's).

use std::process::ExitCode;

use super::Context;
use super::args::MergeArgs;
use super::terminal::emit;
use crate::cli::error::{Error, Result};
use crate::probe::fleet::{self, FleetPart, FleetReport};
use crate::probe::load::{self, MergeError};

/// The largest report file read: a report is a few kilobytes, even with its histograms.
const MAX_FILE: u64 = 64 << 20;

pub(super) fn run(ctx: &Context, args: &MergeArgs) -> Result<ExitCode> {
    let mut reports = Vec::new();
    let mut fleets = Vec::new();
    for path in &args.reports {
        let name = path.display().to_string();
        let text = read(path, &name)?;
        let loads = load::parse_reports(&name, &text)?;
        fleets.extend(
            loads
                .iter()
                .map(|(n, _)| n.clone())
                .zip(fleet::parse_parts(&name, &text)?),
        );
        reports.extend(loads);
    }
    let merged = load::merge(&reports)?;
    // Fleets' reports join with their fleet sections; a load's report has none to join with.
    let (parts, plain): (Vec<_>, Vec<_>) = fleets.into_iter().partition(|(_, f)| f.is_some());
    if parts.is_empty() {
        emit(&ctx.renderer(args.format.format).load(&merged))?;
        return Ok(super::probe::load_exit(&merged));
    }
    if let (Some((fleet, _)), Some((other, _))) = (parts.first(), plain.first()) {
        return Err(MergeError::Report(
            other.clone(),
            format!("a load's report, but {fleet} is a fleet's: merge fleets with fleets"),
        )
        .into());
    }
    let parts: Vec<(String, FleetPart)> = parts.into_iter().filter_map(|(n, f)| f.map(|f| (n, f))).collect();
    let report = FleetReport {
        load: merged,
        fleet: fleet::merge_parts(&parts)?,
    };
    super::fleet::print(ctx, args.format.format, &report)
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
