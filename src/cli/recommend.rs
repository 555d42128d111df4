//! `recommend`: answers from a file and flags -> engine -> renderer; or a whole fleet with
//! `--batch`.

use std::process::ExitCode;

use super::args::{AnswerArgs, RecommendArgs};
use super::{Context, print};
use crate::answers::Answers;
use crate::batch;
use crate::capabilities::Capabilities;
use crate::cli::error::{EXIT_FAILED, EXIT_USAGE, Error, Result};
use crate::cli::questionnaire;
use crate::engine::{self, EngineError};

pub fn run(ctx: &Context, args: &RecommendArgs) -> Result<ExitCode> {
    // clap's `requires = "batch"` is not enforced once a flag that conflicts with --batch is
    // present (`--shard 1/2 -a network=tcp` ran), so the rule is checked here too.
    if args.batch.is_none() && args.shard.is_some() {
        return Err(Error::usage_with_help(
            "--shard works only with --batch FILE",
            "a shard is a part of a fleet: add --batch FILE",
        ));
    }
    let caps = ctx.capabilities()?;
    if let Some(path) = &args.batch {
        return batch(caps, path, args);
    }
    let answers = gather(ctx, caps, &args.answers)?;
    let decision = decision(caps, &answers)?;
    let printed = print(&ctx.renderer(args.format.format).decision(caps, &decision))?;
    Ok(gate(args, !decision.unmet.is_empty(), !decision.caveats.is_empty()).unwrap_or(printed))
}

/// The exit code of `--fail-on-unmet` and `--fail-on-caveat` when they fail, for one device
/// or a fleet.
fn gate(args: &RecommendArgs, unmet: bool, caveats: bool) -> Option<ExitCode> {
    ((args.fail_on_unmet && unmet) || (args.fail_on_caveat && caveats)).then(|| ExitCode::from(EXIT_FAILED))
}

/// The answers file first, then the flags on top of it; on a terminal, prompts for what the
/// flow still needs.
pub fn gather(ctx: &Context, caps: &Capabilities, args: &AnswerArgs) -> Result<Answers> {
    let mut answers = match &args.answers {
        Some(path) => Answers::from_file(caps, path)?,
        None => Answers::default(),
    };
    answers.apply_flags_from(
        caps,
        &args.answer,
        &args.needs.need,
        &ctx.source_of("answer", "--answer", "ENOS_CONNECT_ANSWER"),
        &ctx.source_of("need", "--need", "ENOS_CONNECT_NEED"),
    )?;
    if ctx.interactive && !engine::missing(caps, &answers).is_empty() {
        questionnaire::ask(caps, &mut answers, true)?;
    }
    Ok(answers)
}

/// The engine's decision; missing answers become a usage error that names the flags that
/// supply them.
pub fn decision(caps: &Capabilities, answers: &Answers) -> Result<engine::Decision> {
    engine::decide(caps, answers).map_err(|e| match e {
        EngineError::Missing(ids) => missing_answers(caps, &ids),
        other => other.into(),
    })
}

pub fn missing_answers(caps: &Capabilities, ids: &[String]) -> Error {
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
    Error::usage_with_help(
        format!("missing answers for: {}", ids.join(", ")),
        format!(
            "supply them with {} (or in an answers file given with --answers)",
            flags.join(" ")
        ),
    )
}

fn batch(caps: &Capabilities, path: &std::path::Path, args: &RecommendArgs) -> Result<ExitCode> {
    use std::io::{BufReader, BufWriter, Write};
    let name = path.display().to_string();
    let mut input: Box<dyn std::io::BufRead> = if name == "-" {
        Box::new(BufReader::with_capacity(1 << 16, std::io::stdin().lock()))
    } else {
        let file = std::fs::File::open(path).map_err(|source| batch::BatchError::Read {
            file: name.clone(),
            source,
        })?;
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let stderr = std::io::stderr();
    let mut bad = |line: String| {
        let _ = writeln!(stderr.lock(), "enos-connect: bad row: {line}");
    };
    let shard = args.shard.unwrap_or(batch::Shard::ALL);
    let summary = batch::run(
        caps,
        &name,
        &mut input,
        &mut out,
        &mut bad,
        args.batch_format,
        shard,
    )?;
    drop(out);
    let counts: Vec<String> = summary
        .by_recommendation
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        stderr.lock(),
        "{}{} rows: {}; {} with unmet needs; {} with caveats; {} bad",
        if shard == batch::Shard::ALL {
            String::new()
        } else {
            format!("shard {shard}: ")
        },
        summary.rows,
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        },
        summary.with_unmet,
        summary.with_caveats,
        summary.bad
    );
    if summary.bad > 0 {
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    Ok(gate(args, summary.with_unmet > 0, summary.with_caveats > 0).unwrap_or(ExitCode::SUCCESS))
}
