//! `recommend`: answers from a file and flags -> engine -> renderer.

use std::process::ExitCode;

use super::{AnswerArgs, RecommendArgs, emit};
use crate::answers::Answers;
use crate::capabilities::Capabilities;
use crate::engine::{self, EngineError};
use crate::error::{Error, Result};
use crate::questionnaire;
use crate::render::{Format, json, markdown, table};

pub fn run(caps: &Capabilities, args: &RecommendArgs, interactive: bool) -> Result<ExitCode> {
    let answers = gather(caps, &args.answers, interactive)?;
    let decision = decide(caps, &answers)?;
    emit(&match args.format.format {
        Format::Table => table::decision(caps, &decision),
        Format::Json => json::decision(caps, &decision),
        Format::Markdown => markdown::decision(caps, &decision),
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
