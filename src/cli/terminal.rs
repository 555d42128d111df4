//! The terminal edge: when to colour, whether a person is there to prompt, restoring the
//! cursor after an interrupted prompt, and writing the command's output.

use std::io::{IsTerminal, Write};

use clap::ValueEnum;

use crate::cli::error::{Error, Result};
use crate::render::Style;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub(crate) enum ColorChoice {
    /// Colour when the stream is a terminal and NO_COLOR and TERM=dumb do not say otherwise
    #[default]
    Auto,
    /// Always colour
    Always,
    /// Never colour
    Never,
}

/// Whether a stream may be coloured: on a terminal only, never with NO_COLOR set or
/// TERM=dumb, unless `--color always` asks for it.
pub(crate) fn color_enabled(
    choice: ColorChoice,
    is_terminal: bool,
    no_color: Option<&str>,
    term: Option<&str>,
) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_terminal && no_color.is_none_or(str::is_empty) && term != Some("dumb"),
    }
}

/// What the CLI decided about stdout and stderr, once at start-up.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Terminal {
    pub stdout: Style,
    /// Colour on stderr (errors, progress).
    pub stderr_color: bool,
}

impl Terminal {
    pub(crate) fn detect(choice: ColorChoice) -> Self {
        let no_color = std::env::var("NO_COLOR").ok();
        let term = std::env::var("TERM").ok();
        let out_tty = std::io::stdout().is_terminal();
        let err_tty = std::io::stderr().is_terminal();
        let out = color_enabled(choice, out_tty, no_color.as_deref(), term.as_deref());
        let err = color_enabled(choice, err_tty, no_color.as_deref(), term.as_deref());
        // The prompts draw on stderr with the console crate: same rule.
        console::set_colors_enabled(out);
        console::set_colors_enabled_stderr(err);
        Terminal {
            stdout: Style {
                terminal: out_tty,
                color: out,
                // `script` and some CI pseudo-terminals report 0 columns: unknown, not tiny.
                width: if out_tty {
                    console::Term::stdout().size_checked().map_or(0, |(_, cols)| cols)
                } else {
                    0
                },
            },
            stderr_color: err,
        }
    }
}

/// Prompts only when a person is there: stdin and stderr are terminals (dialoguer draws on
/// stderr), and neither --no-input nor CI says otherwise.
pub(crate) fn interactive(no_input: bool) -> bool {
    !no_input
        && std::env::var_os("CI").is_none()
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
}

/// Prompts hide the cursor while they draw; an interrupted prompt must give it back.
pub(crate) fn restore_terminal() {
    let term = console::Term::stderr();
    if term.is_term() {
        let _ = term.show_cursor();
        let _ = term.write_line("");
    }
}

/// Write command output to stdout; a closed pipe ends the program quietly.
pub(crate) fn emit(text: &str) -> Result<()> {
    emit_bytes(text.as_bytes())
}

pub(crate) fn emit_bytes(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(Error::Output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_follows_the_terminal_no_color_and_term() {
        assert!(color_enabled(ColorChoice::Auto, true, None, Some("xterm")));
        assert!(!color_enabled(ColorChoice::Auto, false, None, Some("xterm")));
        assert!(!color_enabled(ColorChoice::Auto, true, Some("1"), Some("xterm")));
        assert!(
            color_enabled(ColorChoice::Auto, true, Some(""), Some("xterm")),
            "an empty NO_COLOR does not count"
        );
        assert!(!color_enabled(ColorChoice::Auto, true, None, Some("dumb")));
        assert!(color_enabled(ColorChoice::Always, false, Some("1"), Some("dumb")));
        assert!(!color_enabled(ColorChoice::Never, true, None, None));
    }
}
