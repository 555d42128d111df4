//! `man`: the man pages, `enos-connect(1)` and one per subcommand, written from the clap
//! definition with an EXIT STATUS section.

use std::process::ExitCode;

use clap::CommandFactory;

use super::args::{Cli, ManArgs};
use super::terminal::emit_bytes;
use crate::cli::error::{EXIT_CODES_HELP, Error, Result};

/// Man pages as git and cargo ship them: `enos-connect(1)` and one `enos-connect-COMMAND(1)`
/// per subcommand, each with the global flags that apply to it and an EXIT STATUS section.
pub(super) fn man(args: &ManArgs) -> Result<ExitCode> {
    // No `help` subcommand: it would be listed as enos-connect-help(1), a page nobody writes.
    let mut top = Cli::command().disable_help_subcommand(true);
    // Building propagates the global flags into the subcommands, so their pages list them.
    top.build();
    let page = |cmd: clap::Command| -> Result<Vec<u8>> { man_page(cmd).map_err(Error::Output) };
    // A subcommand's page is named and titled like git's: enos-connect-probe(1).
    let sub_page = |name: &str| -> Option<clap::Command> {
        let sub = top.find_subcommand(name)?.clone();
        let full = format!("enos-connect-{name}");
        Some(
            sub.name(full.clone())
                .display_name(full)
                .bin_name(format!("enos-connect {name}")),
        )
    };
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let mut names = vec![("enos-connect".to_string(), top.clone())];
        for sub in top.get_subcommands() {
            let name = sub.get_name().to_string();
            if let Some(cmd) = sub_page(&name) {
                names.push((format!("enos-connect-{name}"), cmd));
            }
        }
        for (name, cmd) in names {
            let path = dir.join(format!("{name}.1"));
            std::fs::write(&path, page(cmd)?)
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            eprintln!("wrote {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cmd = match &args.command {
        None => top.clone(),
        Some(name) => sub_page(name).ok_or_else(|| {
            let known: Vec<&str> = top.get_subcommands().map(|s| s.get_name()).collect();
            Error::usage_with_help(
                format!("no command `{name}`"),
                format!("man pages exist for {}", known.join(", ")),
            )
        })?,
    };
    emit_bytes(&page(cmd)?)?;
    Ok(ExitCode::SUCCESS)
}

/// One man page: clap_mangen's sections, except that the text after the options is not left
/// under clap_mangen's heading EXTRA: the exit codes go under EXIT STATUS, as man-pages(7)
/// names it, and any other text under NOTES.
fn man_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let after = cmd
        .get_after_long_help()
        .or(cmd.get_after_help())
        .map(|t| t.to_string());
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    out.extend_from_slice(synopsis(&cmd).as_bytes());
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    let notes = after
        .as_deref()
        .map(|t| t.replace(EXIT_CODES_HELP, "").trim().to_string())
        .filter(|t| !t.is_empty());
    if let Some(notes) = notes {
        out.extend_from_slice(b".SH NOTES\n");
        out.extend_from_slice(roff_preformatted(&notes).as_bytes());
    }
    out.extend_from_slice(b".SH \"EXIT STATUS\"\n");
    let codes = EXIT_CODES_HELP.trim_start_matches("Exit codes:\n");
    out.extend_from_slice(roff_preformatted(codes).as_bytes());
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// The SYNOPSIS section with each option's value placeholder (`--timeout SECONDS`), which
/// clap_mangen's own leaves out (`[--timeout]`): optional parts in brackets, alternatives
/// joined by `|`, a repeatable positional followed by `...`.
fn synopsis(cmd: &clap::Command) -> String {
    let roff = |t: &str| t.replace('\\', "\\e").replace('-', "\\-");
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    let mut line = format!("\\fB{}\\fR", roff(name));
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let values: Vec<String> = arg
            .get_value_names()
            .map(|v| v.iter().map(|n| format!("\\fI{}\\fR", roff(n))).collect())
            .unwrap_or_else(|| vec![format!("\\fI{}\\fR", roff(&arg.get_id().as_str().to_uppercase()))]);
        let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
        let mut text = if arg.is_positional() {
            values.join(" ")
        } else {
            let mut names = Vec::new();
            if let Some(short) = arg.get_short() {
                names.push(format!("\\fB\\-{}\\fR", roff(&short.to_string())));
            }
            if let Some(long) = arg.get_long() {
                names.push(format!("\\fB\\-\\-{}\\fR", roff(long)));
            }
            let mut text = names.join("|");
            if arg.get_action().takes_values() {
                let optional = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
                let value = values.join(" ");
                text.push_str(&if optional {
                    format!(" [{value}]")
                } else {
                    format!(" {value}")
                });
            }
            text
        };
        if arg.is_positional() && many {
            text.push_str("...");
        }
        line.push(' ');
        line.push_str(&if arg.is_required_set() {
            text
        } else {
            format!("[{text}]")
        });
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        line.push_str(" <\\fIsubcommands\\fR>");
    }
    format!(".SH SYNOPSIS\n{line}\n")
}

/// Text kept as it is laid out (`.nf`), escaped for roff: a backslash, a hyphen (a minus in
/// option names) and a control character at the start of a line.
fn roff_preformatted(text: &str) -> String {
    let mut out = String::from(".nf\n");
    for line in text.lines() {
        let line = line.replace('\\', "\\e").replace('-', "\\-");
        if line.starts_with('.') || line.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(".fi\n");
    out
}
