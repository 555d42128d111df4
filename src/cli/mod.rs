//! The command line's dispatch: parse, apply the config file, run one command, print any error
//! once and turn it into the exit code. Each command is a small function in its own module
//! that loads the capabilities, turns flags into domain values, calls the library and renders
//! the result; the argument definitions are in [`args`].

pub mod args;
mod ask;
pub mod config;
mod credentials;
mod data;
pub mod error;
mod merge;
mod plan;
mod probe;
mod questionnaire;
mod recommend;
mod serve;
pub mod terminal;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::base::Help;
use crate::capabilities::{self, Capabilities};
use crate::cli::error::{Error, Result};
use crate::render::{Paint, Renderer, paint};
pub use args::Cli;
use args::Command;
use terminal::{Terminal, emit};

/// What every command gets besides its own arguments.
pub struct Context {
    pub capabilities: Option<std::path::PathBuf>,
    pub interactive: bool,
    pub terminal: Terminal,
}

impl Context {
    /// The model, read once per run and never freed: a command lives as long as the process,
    /// and handing its few thousand allocations back to malloc one by one just before exit
    /// cost a tenth of `recommend`'s run time.
    pub fn capabilities(&self) -> Result<&'static Capabilities> {
        let caps = match &self.capabilities {
            Some(p) => capabilities::from_file(p)?,
            None => capabilities::embedded()?,
        };
        Ok(Box::leak(Box::new(caps)))
    }

    /// What a probe needs of the model ([`capabilities::embedded_connection`]); a file given
    /// with --capabilities is read and validated whole.
    pub fn connection_capabilities(&self) -> Result<&'static Capabilities> {
        if self.capabilities.is_some() {
            return self.capabilities();
        }
        Ok(Box::leak(Box::new(capabilities::embedded_connection()?)))
    }

    /// The renderer for a `--format`, told whether stdout is a terminal and may be coloured.
    pub fn renderer(&self, format: crate::render::Format) -> Box<dyn Renderer> {
        format.renderer(self.terminal.stdout)
    }
}

/// Parse the command line, run, print any error once, and map it to an exit code.
pub fn main() -> ExitCode {
    // `Cli::parse()`, except that the clap definition is not freed: the process exits soon,
    // and dropping a command's definition costs more than building the part that ran.
    let mut cmd = command();
    let cli = cmd
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|mut m| {
            let cli = Cli::from_arg_matches_mut(&mut m);
            std::mem::forget(m);
            cli
        })
        .unwrap_or_else(|e| e.format(&mut cmd).exit());
    std::mem::forget(cmd);
    let terminal = Terminal::detect(cli.color);
    match run(cli, terminal) {
        Ok(code) => code,
        Err(e) => {
            if matches!(e, Error::Interrupted) {
                terminal::restore_terminal();
            }
            if !e.is_quiet() {
                let mut text = format!(
                    "enos-connect: {} {e}",
                    paint("error:", Paint::Bad, terminal.stderr_color)
                );
                if let Some(help) = e.help() {
                    text.push_str(&format!("\n  = help: {help}"));
                }
                eprintln!("{text}");
            }
            e.exit_code()
        }
    }
}

/// The command line as parsed: a subcommand's `-V` prints the program's version line, not
/// `enos-connect-recommend 0.1.0` (clap names a subcommand's version after its display name).
pub fn command() -> clap::Command {
    Cli::command().mut_subcommands(|sc| sc.display_name("enos-connect"))
}

pub fn run(mut cli: Cli, terminal: Terminal) -> Result<ExitCode> {
    let config = config::load(cli.config.as_deref())?;
    config.apply(&mut cli);
    let ctx = Context {
        capabilities: cli.capabilities.clone(),
        interactive: terminal::interactive(no_input(&cli.command)),
        terminal,
    };
    match cli.command {
        Command::Recommend(args) => recommend::run(&ctx, &args),
        Command::Ask(args) => ask::run(&ctx, &args),
        Command::Plan(args) => plan::run(&ctx, &args),
        Command::Credentials(args) => credentials::run(&ctx, &args),
        Command::Probe(args) => probe::run(&ctx, &args),
        Command::Serve(args) => serve::run(&ctx, &args),
        Command::Merge(args) => merge::run(&ctx, &args),
        Command::Compare(args) => data::compare(&ctx, &args),
        Command::Flow(args) => data::flow(&ctx, &args),
        Command::Questions(args) => data::questions(&ctx, args),
        Command::Check(args) => data::check(&ctx, &args),
        Command::Schema(args) => data::schema(&ctx, &args),
        Command::Completions(args) => data::completions(&args),
        Command::Man(args) => data::man(&args),
    }
}

/// `--no-input` of the commands that can prompt.
fn no_input(command: &Command) -> bool {
    match command {
        Command::Recommend(a) => a.input.no_input,
        Command::Credentials(a) => a.input.no_input,
        Command::Probe(a) => a.input.no_input,
        _ => false,
    }
}

/// Write a command's text to stdout: the command succeeded.
pub(crate) fn print(text: &str) -> Result<ExitCode> {
    emit(text)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
