//! The command line's dispatch: parse, apply the config file, run one command, print any error
//! once and turn it into the exit code. Each command is a small function in its own module
//! that loads the capabilities, turns flags into domain values, calls the library and renders
//! the result; the argument definitions are in `args`.

pub(crate) mod args;
mod ask;
mod check;
mod compare;
mod completions;
pub(crate) mod config;
mod credentials;
mod device_test;
pub(crate) mod error;
mod fleet;
mod flow;
mod man;
mod merge;
mod need_args;
mod plan;
mod probe;
pub(crate) mod probe_args;
mod probe_needs;
mod questionnaire;
mod recommend;
mod reference;
mod serve;
mod serve_args;
pub(crate) mod terminal;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::capabilities::{self, Capabilities};
use crate::cli::error::{Error, Result};
use crate::help::Help;
use crate::render::{Paint, Renderer, paint};
pub(crate) use args::Cli;
use args::Command;
use terminal::{Terminal, emit};

/// What every command gets besides its own arguments.
pub(crate) struct Context {
    /// `--capabilities` (or its variable); else the config file's `capabilities`, else the
    /// built-in model.
    pub capabilities: Option<std::path::PathBuf>,
    /// `--config` (or its variable): read only by a command that uses a value it may hold.
    pub config: Option<std::path::PathBuf>,
    pub interactive: bool,
    pub terminal: Terminal,
    /// The arguments (clap ids) whose values came from an environment variable, so that an
    /// error about one names the variable, not a flag the user never typed.
    pub from_env: Vec<String>,
}

impl Context {
    /// `--answer`, or `ENOS_CONNECT_ANSWER (--answer)` when the environment gave the values.
    pub(crate) fn source_of(&self, id: &str, flag: &str, var: &str) -> String {
        if self.from_env.iter().any(|e| e == id) {
            format!("{var} ({flag})")
        } else {
            flag.to_string()
        }
    }
}

impl Context {
    /// The model, read once per run and never freed: a command lives as long as the process,
    /// and handing its few thousand allocations back to malloc one by one just before exit
    /// cost a tenth of `recommend`'s run time.
    pub(crate) fn capabilities(&self) -> Result<&'static Capabilities> {
        let caps = match self.capabilities_path()? {
            Some(p) => capabilities::from_file(&p)?,
            None => capabilities::embedded()?,
        };
        Ok(Box::leak(Box::new(caps)))
    }

    /// What a probe needs of the model ([`capabilities::embedded_connection`]); a file given
    /// with --capabilities is read and validated whole.
    pub(crate) fn connection_capabilities(&self) -> Result<&'static Capabilities> {
        if self.capabilities_path()?.is_some() {
            return self.capabilities();
        }
        Ok(Box::leak(Box::new(capabilities::embedded_connection()?)))
    }

    /// The capabilities file in use: the flag's, else the config file's (which is read only
    /// here, when a command reads the model and no flag named one), else none (built in).
    fn capabilities_path(&self) -> Result<Option<std::path::PathBuf>> {
        if self.capabilities.is_some() {
            return Ok(self.capabilities.clone());
        }
        Ok(config::load(self.config.as_deref())?.capabilities)
    }

    /// The renderer for a `--format`, told whether stdout is a terminal and may be coloured.
    pub(crate) fn renderer(&self, format: crate::render::Format) -> Box<dyn Renderer> {
        format.renderer(self.terminal.stdout)
    }
}

/// Parse the command line, run, print any error once, and map it to an exit code.
pub fn main() -> ExitCode {
    // `Cli::parse()`, except that the clap definition is not freed: the process exits soon,
    // and dropping a command's definition costs more than building the part that ran.
    let mut cmd = command();
    let mut from_env = Vec::new();
    let cli = cmd
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|mut m| {
            if let Some((_, sub)) = m.subcommand() {
                from_env = sub
                    .ids()
                    .filter(|id| {
                        sub.value_source(id.as_str()) == Some(clap::parser::ValueSource::EnvVariable)
                    })
                    .map(|id| id.to_string())
                    .collect();
            }
            let cli = Cli::from_arg_matches_mut(&mut m).map(Cli::merged);
            std::mem::forget(m);
            cli
        })
        .unwrap_or_else(|e| {
            let e = e.format(&mut cmd);
            let note = env_note(&e, &cmd);
            let _ = e.print();
            if let Some(note) = note {
                eprintln!("{note}");
            }
            std::process::exit(e.exit_code())
        });
    std::mem::forget(cmd);
    let terminal = Terminal::detect(cli.global.color.unwrap_or_default());
    match run(cli, terminal, from_env) {
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
pub(crate) fn command() -> clap::Command {
    Cli::command().mut_subcommands(|sc| sc.display_name("enos-connect"))
}

/// For a bad value that came from an environment variable, not the command line: a line that
/// names the variable, since clap's message names only the flag.
fn env_note(e: &clap::Error, cmd: &clap::Command) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let on_argv = std::env::args().any(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")));
    if on_argv {
        return None;
    }
    let in_cmd = |c: &clap::Command| {
        c.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env().map(|v| v.to_string_lossy().into_owned()))
    };
    let var = in_cmd(cmd).or_else(|| cmd.get_subcommands().find_map(in_cmd))?;
    std::env::var_os(&var)
        .map(|_| format!("  note: the value of --{long} came from the environment variable {var}"))
}

pub(crate) fn run(mut cli: Cli, terminal: Terminal, from_env: Vec<String>) -> Result<ExitCode> {
    // The config file is read where it is used: by the commands whose flags it fills (here),
    // and by any command that reads the model when no flag names the capabilities file
    // (`Context::capabilities`). `man`, `merge` and the like never open it.
    if config::fills(&cli.command) {
        config::load(cli.global.config.as_deref())?.apply(&mut cli);
    }
    let ctx = Context {
        capabilities: cli.global.capabilities.clone(),
        config: cli.global.config.clone(),
        interactive: terminal::interactive(no_input(&cli.command)),
        terminal,
        from_env,
    };
    match cli.command {
        Command::Recommend(args) => recommend::run(&ctx, &args),
        Command::Ask(args) => ask::run(&ctx, &args),
        Command::Plan(args) => plan::run(&ctx, &args),
        Command::Credentials(args) => credentials::run(&ctx, &args),
        Command::Probe(args) => probe::run(&ctx, &args),
        Command::Serve(args) => serve::run(&ctx, &args),
        Command::DeviceTest(args) => device_test::run(&ctx, &args),
        Command::Merge(args) => merge::run(&ctx, &args),
        Command::Compare(args) => compare::compare(&ctx, &args),
        Command::Flow(args) => flow::flow(&ctx, &args),
        Command::Questions(args) => reference::questions(&ctx, args.format),
        Command::Check(args) => check::check(&ctx, &args),
        Command::Schema(args) => reference::schema(&ctx, &args),
        Command::Completions(args) => completions::completions(&ctx, &args),
        Command::Man(args) => man::man(&args),
    }
}

/// `--no-input` of the commands that can prompt.
fn no_input(command: &Command) -> bool {
    match command {
        Command::Recommend(a) => a.input.no_input,
        Command::Credentials(a) => a.input.no_input,
        Command::Probe(a) => a.login.input.no_input,
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
