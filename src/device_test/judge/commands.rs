//! `command.*` and `ota.upgrade`: a command, its reply, and for an upgrade what the device
//! reports after it.

use std::time::Duration;

use super::{Judged, code_words, picked, secs};
use crate::device_test::Verdict;
use crate::device_test::catalogue::{Kind, fix_of};
use crate::device_test::evidence::{Failure, Seen, What};
use crate::enos;

/// What became of one command.
enum Fate {
    Ok(String),
    /// The device's fault, in words.
    Wrong(String),
    /// The suite could not send it, in words.
    NotSent(String),
}

/// The command at `i` of `seen` (`method`, request `id`, `topic`) and what became of it.
fn fate(seen: &[Seen], i: usize, method: &str, id: Option<&str>, topic: &str, timeout: Duration) -> Fate {
    let outcome = seen[i..].iter().find_map(|e| match &e.what {
        What::CommandOutcome {
            method: m,
            code,
            failed,
            ..
        } if m == method => Some((*code, *failed)),
        _ => None,
    });
    let reply_topic = enos::reply_topic(topic);
    let other_ids: Vec<&str> = seen[i..]
        .iter()
        .filter_map(|e| match &e.what {
            What::Publish {
                topic: t,
                reply_id: Some(r),
                ..
            } if *t == reply_topic && Some(r.as_str()) != id => Some(r.as_str()),
            _ => None,
        })
        .collect();
    let who = format!(
        "{method}{}",
        id.map(|i| format!(" (id \"{i}\")")).unwrap_or_default()
    );
    match outcome {
        Some((Some(enos::SUCCESS), None)) => Fate::Ok(format!("{who}: code 200")),
        Some((Some(code), None)) => {
            Fate::Wrong(format!("{who}: a reply with code {}", code_words(Some(code))))
        }
        Some((None, None)) => Fate::Wrong(format!("{who}: a reply without a code")),
        Some((_, Some(Failure::TimedOut))) if !other_ids.is_empty() => Fate::Wrong(format!(
            "{who}: replies on {reply_topic} with another id (\"{}\"), which EnOS matches to no command",
            other_ids.join("\", \"")
        )),
        Some((_, Some(Failure::TimedOut))) => {
            Fate::Wrong(format!("{who}: no reply within {}", secs(timeout)))
        }
        Some((_, Some(Failure::Gone))) => {
            Fate::Wrong(format!("{who}: the device disconnected before replying"))
        }
        Some((_, Some(why))) => Fate::NotSent(format!("{method}: not sent ({})", why.words())),
        None => Fate::NotSent(format!("{method}: no outcome")),
    }
}

/// `command.*`: each command of the window got a reply with its id and code 200 within
/// `timeout`.
pub fn commands(seen: &[Seen], timeout: Duration, fix: &str) -> Judged {
    let (mut oks, mut wrong, mut not_sent) = (Vec::new(), Vec::new(), Vec::new());
    for (i, e) in seen.iter().enumerate() {
        if let What::Command { method, id, topic } = &e.what {
            match fate(seen, i, method, id.as_deref(), topic, timeout) {
                Fate::Ok(w) => oks.push(w),
                Fate::Wrong(w) => wrong.push(w),
                Fate::NotSent(w) => not_sent.push(w),
            }
        }
    }
    // A command serve would not send has an outcome and no command entry.
    for e in seen {
        if let What::CommandOutcome {
            method,
            failed: Some(why @ (Failure::Invalid | Failure::NotReached)),
            ..
        } = &e.what
            && !seen
                .iter()
                .any(|c| matches!(&c.what, What::Command { method: m, .. } if m == method))
        {
            not_sent.push(format!("{method}: not sent ({})", why.words()));
        }
    }
    let expected = format!(
        "a reply with the command's id and code 200 within {} to each command",
        secs(timeout)
    );
    let evidence = picked(seen, |e| {
        matches!(
            e.what,
            What::Command { .. }
                | What::CommandOutcome { .. }
                | What::Publish {
                    reply_id: Some(_),
                    ..
                }
        )
    });
    if !wrong.is_empty() {
        Judged::new(Verdict::Fail, expected, wrong.join("; "), Some(fix)).with(evidence)
    } else if !not_sent.is_empty() || oks.is_empty() {
        let words = format!("the suite could not send the command: {}", not_sent.join("; "));
        Judged::new(Verdict::Error, expected, words, None).with(evidence)
    } else {
        Judged::new(Verdict::Pass, expected, oks.join("; "), None).with(evidence)
    }
}

/// The version an `ota.inform` reports, and the step an `ota.progress` reports.
fn informed(e: &Seen) -> Option<&str> {
    match &e.what {
        What::Request {
            method,
            version: Some(v),
            ..
        } if method == enos::OTA_INFORM => Some(v),
        _ => None,
    }
}

fn step(e: &Seen) -> Option<i64> {
    match &e.what {
        What::Request {
            method,
            step: Some(s),
            ..
        } if method == enos::OTA_PROGRESS => Some(*s),
        _ => None,
    }
}

/// Whether the OTA exchange after the command is over: the new version reported, or a
/// failure step.
pub(crate) fn ota_done(seen: &[Seen], target: &str) -> bool {
    seen.iter()
        .any(|e| informed(e) == Some(target) || step(e).is_some_and(|s| s < 0))
}

/// What the steps of an upgrade say: `Ok(words)` or `Err(words)` for a fail.
fn steps_verdict(steps: &[i64], informed: bool, target: &str, timeout: Duration) -> Result<String, String> {
    let listed = steps.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    if steps.is_empty() {
        return Err(if informed {
            format!("version {target} reported with ota.inform without any ota.progress step")
        } else {
            format!(
                "no ota.progress and no ota.inform of {target} within {}",
                secs(timeout)
            )
        });
    }
    if let Some(&failed) = steps.iter().find(|s| **s < 0) {
        return match enos::OTA_FAILURE_STEPS.iter().find(|(s, _)| *s == failed) {
            Some((_, w)) => Ok(format!(
                "steps {listed}: the device reported failure step {failed} ({w}) as EnOS documents"
            )),
            None => Err(format!(
                "steps {listed}: {failed} is not a documented failure step (-1 to -5)"
            )),
        };
    }
    if steps.windows(2).any(|w| w[1] < w[0]) || steps.iter().any(|s| *s > 100) {
        return Err(format!("steps {listed}: not rising from 0 to 100"));
    }
    if steps.last() != Some(&100) {
        return Err(format!(
            "steps {listed}: stopped short of 100 within {}",
            secs(timeout)
        ));
    }
    if !informed {
        return Err(format!(
            "steps {listed}, but version {target} never reported with ota.inform"
        ));
    }
    Ok(format!(
        "steps {listed}, then version {target} reported with ota.inform"
    ))
}

/// `ota.upgrade`: the command answered, progress rising to 100 (or a failure step), then the
/// new version.
pub fn ota(seen: &[Seen], target: &str, timeout: Duration, reply_timeout: Duration) -> Judged {
    let expected = format!(
        "a reply to ota.device.upgrade, ota.progress steps rising to 100 (or a failure step -1 to -5), then ota.inform of version {target}, within {}",
        secs(timeout)
    );
    let fix = fix_of(Kind::OtaUpgrade);
    let evidence = picked(seen, |e| {
        step(e).is_some()
            || informed(e).is_some()
            || matches!(e.what, What::Command { .. } | What::CommandOutcome { .. })
    });
    let reply = commands(seen, reply_timeout, fix);
    if reply.verdict != Verdict::Pass {
        return Judged { expected, ..reply }.with(evidence);
    }
    let steps: Vec<i64> = seen.iter().filter_map(step).collect();
    let informed = seen.iter().any(|e| informed(e) == Some(target));
    match steps_verdict(&steps, informed, target, timeout) {
        Ok(words) => Judged::new(Verdict::Pass, expected, words, None).with(evidence),
        Err(words) => Judged::new(Verdict::Fail, expected, words, Some(fix)).with(evidence),
    }
}
