//! `login.signed` and `login.keepalive`.

use std::time::Duration;

use super::{Judged, MAX_EVIDENCE, code_words, picked, secs};
use crate::device_test::Verdict;
use crate::device_test::catalogue::{Kind, fix_of};
use crate::device_test::evidence::{Seen, What};

/// The keep-alive EnOS's SDKs allow, in seconds.
pub(crate) const KEEP_ALIVE_RANGE: std::ops::RangeInclusive<u16> = 30..=1200;

/// The securemode of the CONNECT before `upto` (the last one), if any.
fn mode_before(seen: &[Seen], upto: usize) -> Option<u8> {
    seen[..upto].iter().rev().find_map(|e| match &e.what {
        What::Connect { secure_mode, .. } => Some(*secure_mode),
        _ => None,
    })?
}

/// Whether the login is settled: a login that is not an activation's, or an activation
/// followed by a login with the secret it gave.
pub(crate) fn login_settled(seen: &[Seen]) -> bool {
    let logins: Vec<usize> = (0..seen.len())
        .filter(|&i| matches!(seen[i].what, What::Login { .. }))
        .collect();
    let Some(&first) = logins.first() else {
        return false;
    };
    mode_before(seen, first) != Some(3) || logins[1..].iter().any(|&i| mode_before(seen, i) != Some(3))
}

fn is_attempt(e: &Seen) -> bool {
    matches!(
        e.what,
        What::Connect { .. } | What::Login { .. } | What::LoginRefused { .. } | What::Activated { .. }
    )
}

/// The refused attempts in `seen`, in words.
fn refusals(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter_map(|e| match &e.what {
            What::LoginRefused { code, message, .. } => Some(format!(
                "code {} at {} ({message})",
                code_words(*code),
                secs(e.at)
            )),
            _ => None,
        })
        .collect()
}

/// `login.signed`: the device logged in within `wait`; every attempt refused before is listed.
pub fn login_signed(seen: &[Seen], wait: Duration) -> Judged {
    let expected = "a correctly signed EnOS login (securemode 2 with the device secret, or 3 and the activation it starts)";
    let fix = Some(fix_of(Kind::LoginSigned));
    let first = seen.iter().position(|e| matches!(e.what, What::Login { .. }));
    let before = &seen[..first.map_or(seen.len(), |i| i + 1)];
    let refused = refusals(before);
    let attempts = picked(before, is_attempt);
    let Some(i) = first else {
        let words = if refused.is_empty() {
            format!("no login attempt within {}", secs(wait))
        } else {
            format!(
                "no login within {}; {} attempt(s) refused: {}",
                secs(wait),
                refused.len(),
                refused.join("; ")
            )
        };
        return Judged::new(Verdict::Fail, expected, words, fix).with(attempts);
    };
    let at = secs(seen[i].at);
    let protocol = match &seen[i].what {
        What::Login { protocol, .. } => protocol.name(),
        _ => "",
    };
    let mode = mode_before(seen, i);
    if mode == Some(3) && !login_settled(seen) {
        return Judged::new(
            Verdict::Fail,
            expected,
            format!("a securemode 3 login at {at} that never ended in a securemode 2 login with the secret the activation pushed"),
            Some("answer thing.activate.info with code 200, keep the device secret it carries, and log in again with securemode 2 signed with it"),
        )
        .with(picked(seen, is_attempt));
    }
    let how = mode.map_or(format!("over {protocol}"), |m| {
        format!("securemode {m} over {protocol}")
    });
    if refused.is_empty() {
        let words = format!("a login {how} at {at}, no attempt refused");
        Judged::new(Verdict::Pass, expected, words, None).with(attempts)
    } else {
        let words = format!(
            "a login {how} at {at}, after {} refused attempt(s): {}",
            refused.len(),
            refused.join("; ")
        );
        Judged::new(Verdict::Warn, expected, words, fix).with(attempts)
    }
}

/// `login.keepalive`: the keep-alive of the connection's CONNECT is within range, and no
/// silence from the device in `seen` (from `from` to `until`, or its disconnect) reaches 1.5
/// times it (serve closes a connection silent for that long).
pub fn keepalive(seen: &[Seen], keep_alive: u16, from: Duration, until: Duration) -> Judged {
    let expected = format!(
        "a keep-alive of {} to {} s, and a packet at least every 1.5 keep-alive periods",
        KEEP_ALIVE_RANGE.start(),
        KEEP_ALIVE_RANGE.end()
    );
    let fix = Some(fix_of(Kind::LoginKeepalive));
    if !KEEP_ALIVE_RANGE.contains(&keep_alive) {
        let words = if keep_alive == 0 {
            "a keep-alive of 0 (none): a half-open connection is never noticed".to_string()
        } else {
            format!("a keep-alive of {keep_alive} s")
        };
        return Judged::new(Verdict::Fail, expected, words, fix);
    }
    let (mut last, mut longest, mut end) = (from, Duration::ZERO, until);
    let mut evidence = Vec::new();
    for e in seen.iter().filter(|e| e.at >= from && e.at <= until) {
        match e.what {
            What::Packet { .. } | What::Publish { .. } => {
                longest = longest.max(e.at.saturating_sub(last));
                last = e.at;
            }
            What::Disconnect { .. } => end = e.at,
            _ => continue,
        }
        evidence.push(e.clone());
        if end < until {
            break;
        }
    }
    longest = longest.max(end.saturating_sub(last));
    let evidence = evidence.split_off(evidence.len().saturating_sub(MAX_EVIDENCE));
    let allowed = Duration::from_millis(u64::from(keep_alive) * 1500);
    if longest >= allowed {
        let words = format!(
            "a keep-alive of {keep_alive} s, and {} without a packet",
            secs(longest)
        );
        Judged::new(Verdict::Fail, expected, words, fix).with(evidence)
    } else {
        let words = format!(
            "a keep-alive of {keep_alive} s; the longest silence {} over {}",
            secs(longest),
            secs(until.saturating_sub(from))
        );
        Judged::new(Verdict::Pass, expected, words, None).with(evidence)
    }
}
