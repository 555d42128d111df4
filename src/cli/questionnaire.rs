//! The interactive questionnaire: the only code that reads the terminal for answers. Prompts
//! come from the questions in the capabilities, and the engine decides what to ask next, so a
//! question that can no longer change the outcome is never asked.

use std::io::Write;

use dialoguer::{Confirm, MultiSelect, Select, theme::ColorfulTheme};

use crate::answers::Answers;
use crate::capabilities::{Capabilities, Question};
use crate::cli::error::{Error, Result};
use crate::engine;

pub use crate::engine::Asked;

/// Ask until the engine can decide (see [`engine::interview`]), with dialoguer's prompts on
/// stderr. With `use_defaults`, only questions without a default are asked (filling in what
/// `recommend` is missing); without, every question the flow reaches is asked, starting on its
/// default, and the needs on every path.
pub fn ask(caps: &Capabilities, answers: &mut Answers, use_defaults: bool) -> Result<Asked> {
    let _guard = InterruptGuard::install();
    engine::interview(caps, answers, use_defaults, &mut Terminal)
}

/// The person at the terminal.
struct Terminal;

impl engine::Prompt for Terminal {
    type Error = Error;

    fn question(&mut self, q: &Question) -> Result<String> {
        prompt_question(q)
    }

    fn needs(&mut self, caps: &Capabilities) -> Result<Vec<String>> {
        prompt_needs(caps)
    }
}

fn theme() -> ColorfulTheme {
    ColorfulTheme::default()
}

/// A question's help above its prompt, wrapped between words at the terminal's width.
fn help_line(text: &str) {
    let style = console::Style::new().dim();
    let width = console::Term::stderr()
        .size_checked()
        .map(|(_, cols)| usize::from(cols))
        .filter(|cols| *cols >= 20)
        .unwrap_or(crate::render::PIPED_TEXT_WIDTH);
    let mut err = std::io::stderr();
    for line in crate::render::wrap("  ? ", text, width).lines() {
        let _ = writeln!(err, "{}", style.apply_to(line));
    }
}

fn prompt_question(q: &Question) -> Result<String> {
    help_line(&q.help);
    if q.is_yes_no() {
        let theme = theme();
        let mut c = Confirm::with_theme(&theme).with_prompt(&q.prompt);
        if let Some(d) = &q.default {
            c = c.default(d == "yes");
        }
        let answer = c.interact_opt()?.ok_or(Error::Interrupted)?;
        return Ok(if answer { "yes" } else { "no" }.to_string());
    }
    let labels: Vec<String> = q
        .choices
        .iter()
        .map(|c| format!("{} ({})", c.label, c.value))
        .collect();
    let start = q
        .default
        .as_ref()
        .and_then(|d| q.choices.iter().position(|c| &c.value == d))
        .unwrap_or(0);
    let index = Select::with_theme(&theme())
        .with_prompt(&q.prompt)
        .items(&labels)
        .default(start)
        .interact_opt()?
        .ok_or(Error::Interrupted)?;
    q.choices
        .get(index)
        .map(|c| c.value.clone())
        .ok_or_else(|| Error::usage(format!("no choice {index} for `{}`", q.id)))
}

fn prompt_needs(caps: &Capabilities) -> Result<Vec<String>> {
    help_line("Space ticks a feature, Enter confirms; brackets show the protocols that support it.");
    let labels: Vec<String> = caps
        .features
        .iter()
        .map(|f| {
            let by: Vec<&str> = caps
                .protocols
                .iter()
                .filter(|p| f.support_for(&p.id).covers())
                .map(|p| p.title.as_str())
                .collect();
            format!("{} ({}) [{}]", f.title, f.id, by.join(", "))
        })
        .collect();
    let picked = MultiSelect::with_theme(&theme())
        .with_prompt("Which platform features does the device need?")
        .items(&labels)
        .interact_opt()?
        .ok_or(Error::Interrupted)?;
    Ok(picked
        .into_iter()
        .filter_map(|i| caps.features.get(i).map(|f| f.id.clone()))
        .collect())
}

/// While prompting, Ctrl-C (which the terminal library re-raises as SIGINT) restores the cursor
/// and exits with 130 instead of dying with the cursor hidden.
struct InterruptGuard(Option<signal_hook::iterator::Handle>);

impl InterruptGuard {
    fn install() -> Self {
        let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT]) else {
            return InterruptGuard(None);
        };
        let handle = signals.handle();
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                let term = console::Term::stderr();
                let _ = term.show_cursor();
                let _ = term.write_line("");
                let _ = writeln!(std::io::stderr(), "enos-connect: interrupted; nothing was saved");
                std::process::exit(130);
            }
        });
        InterruptGuard(Some(handle))
    }
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.close();
        }
    }
}
