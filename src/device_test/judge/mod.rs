//! Each case's verdict, a pure function of the journal's entries (and the few numbers the run
//! chose): no clock, no network, testable with entries written by hand (`tests.rs`). Each
//! verdict says what was expected, what was seen, and, when it is not a pass, what to change in
//! the firmware. One file per kind of exchange: `login.rs` (the login, the keep-alive),
//! `commands.rs` (commands and OTA), `reconnects.rs` (the withheld PUBACK, the backoff),
//! `posts.rs` (the model, the clock, the outage's points), `sessions.rs` (sub-devices, TLS).

mod commands;
mod login;
mod posts;
mod reconnects;
mod sessions;

use std::time::Duration;

pub(crate) use commands::ota_done;
pub use commands::{commands, ota};
pub(crate) use login::{KEEP_ALIVE_RANGE, login_settled};
pub use login::{keepalive, login_signed};
pub use posts::{clock_offset, report_model, resume, timestamps};
pub(crate) use posts::{posted, resumed};
#[cfg(test)]
pub(crate) use reconnects::{Shape, backoff_gaps, shape};
pub use reconnects::{backoff, puback_retry};
pub(crate) use reconnects::{lost_publish, resend_of};
pub(crate) use sessions::{after_reconnect, logged_in_subs};
pub use sessions::{subdevice_relogin, tls};

use super::Verdict;
use super::evidence::Seen;
use crate::enos;

/// A verdict with its words and the entries it was made from.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub verdict: Verdict,
    pub expected: String,
    pub seen: String,
    pub fix: Option<String>,
    pub evidence: Vec<Seen>,
}

impl Judged {
    fn new(
        verdict: Verdict,
        expected: impl Into<String>,
        seen: impl Into<String>,
        fix: Option<&str>,
    ) -> Self {
        Judged {
            verdict,
            expected: expected.into(),
            seen: seen.into(),
            fix: fix.map(str::to_string),
            evidence: Vec::new(),
        }
    }

    /// The entries the verdict was made from (at most [`MAX_EVIDENCE`]).
    fn with(mut self, evidence: impl IntoIterator<Item = Seen>) -> Self {
        self.evidence = evidence.into_iter().take(MAX_EVIDENCE).collect();
        self
    }
}

/// The most entries a case's evidence lists.
pub(crate) const MAX_EVIDENCE: usize = 60;

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// `4 (bad user name or password)`.
fn code_words(code: Option<i64>) -> String {
    match code {
        Some(c) => match enos::meaning(c) {
            Some(m) => format!("{c} ({m})"),
            None => c.to_string(),
        },
        None => "none".into(),
    }
}

/// The entries of `seen` that `keep` selects, cloned.
fn picked(seen: &[Seen], keep: impl Fn(&Seen) -> bool) -> Vec<Seen> {
    seen.iter().filter(|e| keep(e)).cloned().collect()
}

#[cfg(test)]
mod tests;
