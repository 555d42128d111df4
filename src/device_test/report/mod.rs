//! A run's report and the catalogue, in each format, one file per format (as hyperfine has one
//! exporter per format): `table.rs` for a terminal, `json.rs`, `markdown.rs` for a ticket, and
//! `junit.rs`, the JUnit XML CI systems read. Pure: a report in, text out.

pub(crate) mod json;
pub mod junit;
pub(crate) mod markdown;
pub(crate) mod table;

use super::{CaseResult, Report, Verdict};
use crate::render::{Format, Paint, Style, paint};

/// The report in `format`.
pub fn render(report: &Report, format: Format, style: Style) -> String {
    match format {
        Format::Table => table::report(report, style),
        Format::Json => json::report(report),
        Format::Markdown => markdown::report(report),
    }
}

/// The catalogue (`--list`) in `format`.
pub(crate) fn catalogue(format: Format) -> String {
    match format {
        Format::Table => table::catalogue(),
        Format::Json => json::catalogue(),
        Format::Markdown => markdown::catalogue(),
    }
}

/// A verdict's word, coloured when `color`.
pub(crate) fn verdict_word(v: Verdict, color: bool) -> String {
    let how = match v {
        Verdict::Pass => Some(Paint::Good),
        Verdict::Fail | Verdict::Error => Some(Paint::Bad),
        Verdict::Warn => Some(Paint::Strong),
        Verdict::Skipped => None,
    };
    match how {
        Some(h) => paint(v.as_str(), h, color),
        None => v.as_str().to_string(),
    }
}

/// The line a terminal shows as each case ends.
pub(crate) fn progress_line(r: &CaseResult, color: bool) -> String {
    format!(
        "{:<8} {:<26} {:>6.1} s",
        verdict_word(r.verdict, color),
        r.id,
        r.seconds.as_secs_f64()
    )
}

/// "9 pass, 1 warn, 0 fail, 3 skipped, 0 error".
pub(crate) fn summary_words(r: &Report) -> String {
    let s = &r.summary;
    format!(
        "{} pass, {} warn, {} fail, {} skipped, {} error",
        s.pass, s.warn, s.fail, s.skipped, s.error
    )
}

/// Who was examined, over what, by which catalogue.
pub(crate) fn headline(r: &Report) -> String {
    let over = r
        .protocol
        .as_deref()
        .map(|p| format!(" over {p}"))
        .unwrap_or_else(|| " (never logged in)".into());
    format!(
        "device-test {}{over}, catalogue {}: {} in {:.1} s",
        r.device,
        r.catalogue_version,
        summary_words(r),
        r.seconds.as_secs_f64()
    )
}

/// `text` wrapped at `width` columns, each line after the first indented by `indent`.
pub(crate) fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line = indent.to_string();
        } else if !line.is_empty() && line != indent {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_wraps_at_the_width_with_an_indent() {
        assert_eq!(wrap("aa bb cc dd", 5, "  "), "aa bb\n  cc\n  dd");
        assert_eq!(wrap("one", 80, "  "), "one");
    }
}
