//! When to colour: on a terminal only, never with NO_COLOR set or TERM=dumb, unless
//! `--color always` asks for it. Decided once per stream at start-up.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorChoice {
    /// Colour when the stream is a terminal and NO_COLOR and TERM=dumb do not say otherwise
    #[default]
    Auto,
    /// Always colour
    Always,
    /// Never colour
    Never,
}

static STDOUT: AtomicBool = AtomicBool::new(false);
static STDERR: AtomicBool = AtomicBool::new(false);

/// The decision for one stream, from the choice and the environment.
pub fn decide(choice: ColorChoice, is_terminal: bool, no_color: Option<&str>, term: Option<&str>) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_terminal && no_color.is_none_or(str::is_empty) && term != Some("dumb"),
    }
}

pub fn init(choice: ColorChoice) {
    let no_color = std::env::var("NO_COLOR").ok();
    let term = std::env::var("TERM").ok();
    let out = decide(
        choice,
        std::io::stdout().is_terminal(),
        no_color.as_deref(),
        term.as_deref(),
    );
    let err = decide(
        choice,
        std::io::stderr().is_terminal(),
        no_color.as_deref(),
        term.as_deref(),
    );
    STDOUT.store(out, Ordering::Relaxed);
    STDERR.store(err, Ordering::Relaxed);
    // The prompts draw on stderr with the console crate: same rule.
    console::set_colors_enabled(out);
    console::set_colors_enabled_stderr(err);
}

pub fn stdout_enabled() -> bool {
    STDOUT.load(Ordering::Relaxed)
}

#[derive(Debug, Clone, Copy)]
pub enum Paint {
    Good,
    Bad,
    Strong,
}

fn paint(text: &str, how: Paint, enabled: bool) -> String {
    if !enabled {
        return text.to_string();
    }
    let code = match how {
        Paint::Good => "1;32",
        Paint::Bad => "1;31",
        Paint::Strong => "1",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Text for stdout, coloured when stdout may be.
pub fn out(text: &str, how: Paint) -> String {
    paint(text, how, STDOUT.load(Ordering::Relaxed))
}

/// Text for stderr, coloured when stderr may be.
pub fn err(text: &str, how: Paint) -> String {
    paint(text, how, STDERR.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_follows_the_terminal_no_color_and_term() {
        assert!(decide(ColorChoice::Auto, true, None, Some("xterm")));
        assert!(!decide(ColorChoice::Auto, false, None, Some("xterm")));
        assert!(!decide(ColorChoice::Auto, true, Some("1"), Some("xterm")));
        assert!(
            decide(ColorChoice::Auto, true, Some(""), Some("xterm")),
            "an empty NO_COLOR does not count"
        );
        assert!(!decide(ColorChoice::Auto, true, None, Some("dumb")));
        assert!(decide(ColorChoice::Always, false, Some("1"), Some("dumb")));
        assert!(!decide(ColorChoice::Never, true, None, None));
    }
}
