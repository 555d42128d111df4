//! Command-line definitions and dispatch: each command is a small function that loads the
//! capabilities, turns flags into domain values, calls the library and renders the result.

mod data;
mod recommend;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::capabilities::{self, Capabilities};
use crate::error::{EXIT_CODES_HELP, Error, Result};
use crate::render::{FlowFormat, Format};

#[derive(Debug, Parser)]
#[command(
    name = "enos-connect",
    version,
    about = "Decide, plan and prove how a device connects to the EnOS IoT platform",
    after_help = EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Use this capabilities file instead of the one built into the binary
    #[arg(long, global = true, value_name = "FILE", env = "ENOS_CONNECT_CAPABILITIES")]
    pub capabilities: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Recommend how a device connects, from its answers and needs
    #[command(after_help = EXIT_CODES_HELP)]
    Recommend(RecommendArgs),
    /// Show the protocol comparison table
    Compare(CompareArgs),
    /// Draw the decision flow
    Flow(FlowArgs),
    /// List the questions, their values and the feature ids
    Questions(FormatArgs),
    /// Validate a capabilities file (exit 0 when valid, 2 when not)
    #[command(after_help = EXIT_CODES_HELP)]
    Check(CheckArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct AnswerArgs {
    /// Answer a question: ID=VALUE (repeatable; see `enos-connect questions`)
    #[arg(long = "answer", short = 'a', value_name = "ID=VALUE")]
    pub answer: Vec<String>,
    /// A feature the device needs (repeatable, or comma-separated)
    #[arg(long = "need", short = 'n', value_name = "FEATURE")]
    pub need: Vec<String>,
    /// Read answers from a TOML file (question ids as keys, plus needs = [...]); flags win
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_ANSWERS")]
    pub answers: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    #[command(flatten)]
    pub answers: AnswerArgs,
    #[command(flatten)]
    pub format: FormatArgs,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct FormatArgs {
    /// Output format
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table, env = "ENOS_CONNECT_FORMAT")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Mark the rows of these features (repeatable, or comma-separated)
    #[arg(long = "need", short = 'n', value_name = "FEATURE")]
    pub need: Vec<String>,
    #[command(flatten)]
    pub format: FormatArgs,
}

#[derive(Debug, Args)]
pub struct FlowArgs {
    /// Picture format
    #[arg(long, short = 'f', value_enum, default_value_t = FlowFormat::Mermaid)]
    pub format: FlowFormat,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The file to check (default: --capabilities, else the embedded copy)
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub format: FormatArgs,
}

/// Parse the command line, run, print any error once, and map it to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if !e.is_quiet() {
                eprintln!("enos-connect: error: {e}");
            }
            e.exit_code()
        }
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Recommend(args) => recommend::run(&load(&cli.capabilities)?, &args),
        Command::Compare(args) => data::compare(&load(&cli.capabilities)?, &args),
        Command::Flow(args) => data::flow(&load(&cli.capabilities)?, &args),
        Command::Questions(args) => data::questions(&load(&cli.capabilities)?, args),
        Command::Check(args) => data::check(cli.capabilities.as_deref(), &args),
    }
}

pub fn load(path: &Option<PathBuf>) -> Result<Capabilities> {
    Ok(match path {
        Some(p) => capabilities::load_file(p)?,
        None => capabilities::load_embedded()?,
    })
}

/// Write command output to stdout; a closed pipe ends the program quietly.
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::Output)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
