//! `recommend`: answers from a file and flags -> engine -> renderer.

use std::process::ExitCode;

use super::{AnswerArgs, RecommendArgs, emit};
use crate::answers::Answers;
use crate::batch;
use crate::capabilities::Capabilities;
use crate::engine::{self, EngineError};
use crate::error::{Error, Result};
use crate::questionnaire;
use crate::render::{Format, json, markdown, table};

pub fn run(caps: &Capabilities, args: &RecommendArgs, interactive: bool) -> Result<ExitCode> {
    if let Some(path) = &args.batch {
        return batch(caps, path, args);
    }
    let answers = gather(caps, &args.answers, interactive)?;
    let decision = decide(caps, &answers)?;
    emit(&match args.format.format {
        Format::Table => table::decision(caps, &decision),
        Format::Json => json::decision(caps, &decision),
        Format::Markdown => markdown::decision(caps, &decision),
        Format::Csv => return Err(super::csv_only()),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The answers file first, then the flags on top of it; on a terminal, prompts for what the
/// flow still needs.
pub fn gather(caps: &Capabilities, args: &AnswerArgs, interactive: bool) -> Result<Answers> {
    let mut answers = match &args.answers {
        Some(path) => Answers::from_file(caps, path)?,
        None => Answers::default(),
    };
    answers.apply_flags(caps, &args.answer, &args.need)?;
    if interactive && !engine::missing(caps, &answers).is_empty() {
        questionnaire::ask(caps, &mut answers, true)?;
    }
    Ok(answers)
}

/// Decide, turning missing answers into a usage error that says which flags supply them.
pub fn decide(caps: &Capabilities, answers: &Answers) -> Result<engine::Decision> {
    engine::decide(caps, answers).map_err(|e| match e {
        EngineError::Missing(ids) => Error::Usage(missing_message(caps, &ids)),
        other => other.into(),
    })
}

pub fn missing_message(caps: &Capabilities, ids: &[String]) -> String {
    let flags: Vec<String> = ids
        .iter()
        .map(|id| {
            let values = caps
                .question(id)
                .map(|q| q.values().collect::<Vec<_>>().join("|"))
                .unwrap_or_default();
            format!("--answer {id}={values}")
        })
        .collect();
    format!(
        "missing answers for: {}\n  = help: supply them with {} (or in an answers file given with --answers)",
        ids.join(", "),
        flags.join(" ")
    )
}

fn batch(caps: &Capabilities, path: &std::path::Path, args: &RecommendArgs) -> Result<ExitCode> {
    use std::io::{BufReader, BufWriter, Write};
    let format = match args.format.format {
        Format::Table | Format::Json => batch::OutFormat::JsonLines,
        Format::Csv => batch::OutFormat::Csv,
        Format::Markdown => {
            return Err(Error::Usage(
                "--batch writes JSON Lines (--format json) or CSV (--format csv)".into(),
            ));
        }
    };
    let name = path.display().to_string();
    let mut input: Box<dyn std::io::BufRead> = if name == "-" {
        Box::new(BufReader::with_capacity(1 << 16, std::io::stdin().lock()))
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::Usage(format!("--batch {name}: cannot open it: {e}")))?;
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let stderr = std::io::stderr();
    let mut bad = |line: String| {
        let _ = writeln!(stderr.lock(), "enos-connect: bad row: {line}");
    };
    let summary = batch::run(caps, &name, &mut input, &mut out, &mut bad, format).map_err(|e| match e {
        batch::BatchError::Write(io) => Error::Output(io),
        other => Error::Usage(other.to_string()),
    })?;
    drop(out);
    let counts: Vec<String> = summary
        .by_recommendation
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let mut err = stderr.lock();
    let _ = writeln!(
        err,
        "{} rows: {}; {} with unmet needs; {} bad",
        summary.rows,
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        },
        summary.with_unmet,
        summary.bad
    );
    Ok(ExitCode::from(if summary.bad > 0 {
        crate::error::EXIT_USAGE
    } else if args.fail_on_unmet && summary.with_unmet > 0 {
        crate::error::EXIT_FAILED
    } else {
        0
    }))
}
