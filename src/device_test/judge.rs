//! Each case's verdict, a pure function of the journal's entries (and the few numbers the run
//! chose): no clock, no network, testable with entries written by hand. Each verdict says what
//! was expected, what was seen, and, when it is not a pass, what to change in the firmware.

use std::time::Duration;

use super::Verdict;
use super::catalogue::{Kind, fix_of};
use super::evidence::{Failure, Seen, What};
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

    fn with(mut self, evidence: impl IntoIterator<Item = Seen>) -> Self {
        self.evidence = evidence.into_iter().take(MAX_EVIDENCE).collect();
        self
    }
}

/// The most entries a case's evidence lists.
pub const MAX_EVIDENCE: usize = 60;

/// How far a device's clock may be from this machine's before `report.timestamps` warns.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// The keep-alive EnOS's SDKs allow, in seconds.
pub const KEEP_ALIVE_RANGE: std::ops::RangeInclusive<u16> = 30..=1200;
/// Gaps within this fraction of each other (their ratios, or their differences) are the same:
/// a backoff without jitter.
pub const SAME: f64 = 0.10;
/// The last gap of a growing backoff is at least this many times the first.
pub const GROWTH: f64 = 1.5;
/// A fixed reconnect interval shorter than this fails; a longer one warns.
pub const SHORT_INTERVAL: Duration = Duration::from_secs(5);

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// `code 4 (bad user name or password)`.
fn code_words(code: Option<i64>) -> String {
    match code {
        Some(c) => match enos::meaning(c) {
            Some(m) => format!("{c} ({m})"),
            None => c.to_string(),
        },
        None => "none".into(),
    }
}

// --- login.signed -------------------------------------------------------------------------------

/// The securemode of the CONNECT before `upto` (the last one), if any.
fn mode_before(seen: &[Seen], upto: usize) -> Option<u8> {
    seen[..upto].iter().rev().find_map(|e| match &e.what {
        What::Connect { secure_mode, .. } => Some(*secure_mode),
        _ => None,
    })?
}

/// Whether the login is settled: a login that is not an activation's, or an activation
/// followed by a login with the secret it gave.
pub fn login_settled(seen: &[Seen]) -> bool {
    let logins: Vec<usize> = (0..seen.len())
        .filter(|&i| matches!(seen[i].what, What::Login { .. }))
        .collect();
    let Some(&first) = logins.first() else {
        return false;
    };
    if mode_before(seen, first) != Some(3) {
        return true;
    }
    logins[1..].iter().any(|&i| mode_before(seen, i) != Some(3))
}

/// `login.signed`: the device logged in within `wait`; every attempt refused before is listed.
pub fn login_signed(seen: &[Seen], wait: Duration) -> Judged {
    let expected = "a correctly signed EnOS login (securemode 2 with the device secret, or 3 and the activation it starts)";
    let first = seen.iter().position(|e| matches!(e.what, What::Login { .. }));
    let upto = first.map_or(seen.len(), |i| i + 1);
    let refused: Vec<&Seen> = seen[..upto]
        .iter()
        .filter(|e| matches!(e.what, What::LoginRefused { .. }))
        .collect();
    let attempts: Vec<Seen> = seen[..upto]
        .iter()
        .filter(|e| {
            matches!(
                e.what,
                What::Connect { .. }
                    | What::Login { .. }
                    | What::LoginRefused { .. }
                    | What::Activated { .. }
            )
        })
        .cloned()
        .collect();
    let refusals = refused
        .iter()
        .map(|e| match &e.what {
            What::LoginRefused { code, message, .. } => {
                format!("code {} at {} ({message})", code_words(*code), secs(e.at))
            }
            _ => String::new(),
        })
        .collect::<Vec<_>>();
    let fix = Some(fix_of(Kind::LoginSigned));
    let Some(i) = first else {
        let seen_words = if refusals.is_empty() {
            format!("no login attempt within {}", secs(wait))
        } else {
            format!(
                "no login within {}; {} attempt(s) refused: {}",
                secs(wait),
                refusals.len(),
                refusals.join("; ")
            )
        };
        return Judged::new(Verdict::Fail, expected, seen_words, fix).with(attempts);
    };
    let at = seen[i].at;
    let protocol = match &seen[i].what {
        What::Login { protocol, .. } => protocol.name(),
        _ => "",
    };
    let mode = mode_before(seen, i);
    if mode == Some(3) && !login_settled(seen) {
        return Judged::new(
            Verdict::Fail,
            expected,
            format!(
                "a securemode 3 login at {} that never ended in a securemode 2 login with the secret the activation pushed",
                secs(at)
            ),
            Some("answer thing.activate.info with code 200, keep the device secret it carries, and log in again with securemode 2 signed with it"),
        )
        .with(seen.iter().filter(|e| matches!(e.what, What::Connect { .. } | What::Login { .. } | What::Activated { .. } | What::LoginRefused { .. })).cloned());
    }
    let how = match mode {
        Some(m) => format!("securemode {m} over {protocol}"),
        None => format!("over {protocol}"),
    };
    if refusals.is_empty() {
        Judged::new(
            Verdict::Pass,
            expected,
            format!("a login {how} at {}, no attempt refused", secs(at)),
            None,
        )
        .with(attempts)
    } else {
        Judged::new(
            Verdict::Warn,
            expected,
            format!(
                "a login {how} at {}, after {} refused attempt(s): {}",
                secs(at),
                refusals.len(),
                refusals.join("; ")
            ),
            fix,
        )
        .with(attempts)
    }
}

// --- commands -----------------------------------------------------------------------------------

/// `command.*`: each command of the window got a reply with its id and code 200 within
/// `timeout`.
pub fn commands(seen: &[Seen], timeout: Duration, fix: &str) -> Judged {
    let mut problems = Vec::new();
    let mut oks = Vec::new();
    let mut not_sent = Vec::new();
    let commands: Vec<(usize, &str, Option<&str>, &str)> = seen
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.what {
            What::Command { method, id, topic } => Some((i, method.as_str(), id.as_deref(), topic.as_str())),
            _ => None,
        })
        .collect();
    for (i, method, id, topic) in &commands {
        let outcome = seen[*i..].iter().find_map(|e| match &e.what {
            What::CommandOutcome {
                method: m,
                code,
                failed,
                ..
            } if m == method => Some((*code, *failed)),
            _ => None,
        });
        let reply_topic = enos::reply_topic(topic);
        let other_ids: Vec<String> = seen[*i..]
            .iter()
            .filter_map(|e| match &e.what {
                What::Publish {
                    topic: t,
                    reply_id: Some(r),
                    ..
                } if *t == reply_topic && Some(r.as_str()) != *id => Some(r.clone()),
                _ => None,
            })
            .collect();
        let id_words = id.map(|i| format!(" (id \"{i}\")")).unwrap_or_default();
        match outcome {
            Some((Some(enos::SUCCESS), None)) => oks.push(format!("{method}{id_words}: code 200")),
            Some((Some(code), None)) => problems.push(format!(
                "{method}{id_words}: a reply with code {}",
                code_words(Some(code))
            )),
            Some((None, None)) => problems.push(format!("{method}{id_words}: a reply without a code")),
            Some((_, Some(Failure::TimedOut))) if !other_ids.is_empty() => problems.push(format!(
                "{method}{id_words}: replies on {reply_topic} with another id (\"{}\"), which EnOS matches to no command",
                other_ids.join("\", \"")
            )),
            Some((_, Some(Failure::TimedOut))) => {
                problems.push(format!("{method}{id_words}: no reply within {}", secs(timeout)))
            }
            Some((_, Some(Failure::Gone))) => problems.push(format!(
                "{method}{id_words}: the device disconnected before replying"
            )),
            Some((_, Some(why @ (Failure::NotReached | Failure::Invalid)))) => {
                not_sent.push(format!("{method}: not sent ({})", why.words()))
            }
            None => not_sent.push(format!("{method}: no outcome")),
        }
    }
    let expected = format!(
        "a reply with the command's id and code 200 within {} to each command",
        secs(timeout)
    );
    let evidence = seen
        .iter()
        .filter(|e| {
            matches!(
                e.what,
                What::Command { .. }
                    | What::CommandOutcome { .. }
                    | What::Publish {
                        reply_id: Some(_),
                        ..
                    }
            )
        })
        .cloned();
    if !problems.is_empty() {
        return Judged::new(Verdict::Fail, expected, problems.join("; "), Some(fix)).with(evidence);
    }
    if !not_sent.is_empty() || oks.is_empty() {
        return Judged::new(
            Verdict::Error,
            expected,
            format!("the suite could not send the command: {}", not_sent.join("; ")),
            None,
        )
        .with(evidence);
    }
    Judged::new(Verdict::Pass, expected, oks.join("; "), None).with(evidence)
}

// --- mqtt.puback_retry -------------------------------------------------------------------------

/// The PUBLISH the suite lost, and whether a resend of it came (with DUP, the same packet id).
pub fn lost_publish(seen: &[Seen]) -> Option<(usize, u16, &str)> {
    seen.iter().enumerate().find_map(|(i, e)| match &e.what {
        What::Publish {
            lost: true,
            pkid,
            topic,
            ..
        } => Some((i, *pkid, topic.as_str())),
        _ => None,
    })
}

/// The first PUBLISH with the lost one's packet id and topic after it.
pub fn resend_of(seen: &[Seen]) -> Option<usize> {
    let (i, pkid, topic) = lost_publish(seen)?;
    seen[i + 1..]
        .iter()
        .position(|e| matches!(&e.what, What::Publish { pkid: p, topic: t, .. } if *p == pkid && t == topic))
        .map(|j| i + 1 + j)
}

/// `mqtt.puback_retry`: the lost PUBLISH resent with DUP and its packet id, while connected
/// (pass) or after a reconnect (warn).
pub fn puback_retry(seen: &[Seen], drop_after: Duration, observe: Duration) -> Judged {
    let expected = "the PUBLISH whose PUBACK the suite withheld resent with the DUP flag and the same packet id, while connected";
    let fix = Some(fix_of(Kind::PubackRetry));
    let evidence = seen
        .iter()
        .filter(|e| {
            matches!(
                e.what,
                What::Publish { .. } | What::Connect { .. } | What::Dropped | What::Disconnect { .. }
            )
        })
        .cloned();
    let Some((i, pkid, topic)) = lost_publish(seen) else {
        let qos0 = seen
            .iter()
            .any(|e| matches!(&e.what, What::Publish { qos: 0, topic, .. } if !topic.ends_with("_reply")));
        return if qos0 {
            Judged::new(
                Verdict::Warn,
                expected,
                format!(
                    "only QoS 0 PUBLISHes within {}: a message lost on the way is never resent",
                    secs(observe)
                ),
                Some("post at QoS 1 (as EnOS's SDKs do) and resend what is not acknowledged"),
            )
            .with(evidence)
        } else {
            Judged::new(
                Verdict::Error,
                expected,
                format!(
                    "no QoS 1 PUBLISH from the device within {} to withhold the PUBACK of",
                    secs(observe)
                ),
                None,
            )
            .with(evidence)
        };
    };
    let lost_at = seen[i].at;
    let Some(r) = resend_of(seen) else {
        let others: Vec<String> = seen[i + 1..]
            .iter()
            .filter_map(|e| match &e.what {
                What::Publish {
                    topic: t, pkid: p, ..
                } if t == topic => Some(p.to_string()),
                _ => None,
            })
            .take(5)
            .collect();
        let also = if others.is_empty() {
            String::new()
        } else {
            format!(
                "; later PUBLISHes on the topic carried other packet ids ({})",
                others.join(", ")
            )
        };
        return Judged::new(
            Verdict::Fail,
            expected,
            format!(
                "packet {pkid} on {topic} at {} never sent again, neither in {} while connected nor after the reconnect{also}",
                secs(lost_at),
                secs(drop_after)
            ),
            fix,
        )
        .with(evidence);
    };
    let (resent_at, dup) = match &seen[r].what {
        What::Publish { dup, .. } => (seen[r].at, *dup),
        _ => (seen[r].at, false),
    };
    let reconnected = seen[i..r].iter().any(|e| matches!(e.what, What::Connect { .. }));
    let after = resent_at.saturating_sub(lost_at);
    if !dup {
        return Judged::new(
            Verdict::Fail,
            expected,
            format!(
                "packet {pkid} sent again {} later without the DUP flag",
                secs(after)
            ),
            Some("set the DUP flag on a PUBLISH sent again (MQTT-3.3.1-1)"),
        )
        .with(evidence);
    }
    if reconnected {
        Judged::new(
            Verdict::Warn,
            expected,
            format!(
                "packet {pkid} resent with DUP {} later, only after a reconnect (the suite dropped the connection after {})",
                secs(after),
                secs(drop_after)
            ),
            Some("also resend an unacknowledged QoS 1 PUBLISH while connected, after a timeout (the C SDK waits twice its request timeout)"),
        )
        .with(evidence)
    } else {
        Judged::new(
            Verdict::Pass,
            expected,
            format!(
                "packet {pkid} resent with DUP {} later, on the same connection",
                secs(after)
            ),
            None,
        )
        .with(evidence)
    }
}

// --- reconnect.backoff --------------------------------------------------------------------------

/// The shape of a series of reconnect gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The gaps grow, and not by a fixed rule: jitter.
    Jittered,
    /// The gaps grow by a fixed rule (doubling, adding, up to a cap).
    Deterministic,
    /// The gaps do not grow.
    Fixed,
}

fn spread(values: &[f64]) -> f64 {
    let (min, max) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    max - min
}

/// The shape of `gaps` (seconds): growing when the last is at least [`GROWTH`] times the first;
/// deterministic when their ratios, or their differences, are the same within [`SAME`], or
/// when the last three are the same (a cap reached).
pub fn shape(gaps: &[f64]) -> Shape {
    let (Some(first), Some(last)) = (gaps.first(), gaps.last()) else {
        return Shape::Fixed;
    };
    if gaps.len() < 2 || *last <= *first || *last < GROWTH * first {
        return Shape::Fixed;
    }
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let ratios: Vec<f64> = gaps.windows(2).map(|w| w[1] / w[0].max(1e-3)).collect();
    let diffs: Vec<f64> = gaps.windows(2).map(|w| w[1] - w[0]).collect();
    let mean_ratio = ratios.iter().sum::<f64>() / ratios.len() as f64;
    let same_ratio = ratios.len() >= 2 && spread(&ratios) <= SAME * mean_ratio;
    let same_step = diffs.len() >= 2 && spread(&diffs) <= SAME * mean;
    let capped = gaps.len() >= 4 && {
        let tail = &gaps[gaps.len() - 3..];
        spread(tail) <= SAME * tail.iter().sum::<f64>() / 3.0
    };
    if same_ratio || same_step || capped {
        Shape::Deterministic
    } else {
        Shape::Jittered
    }
}

/// The gaps of a backoff: from the drop to the first CONNECT, then from each refused CONNECT's
/// answer (its arrival plus serve's CONNACK delay) to the next CONNECT; and whether the attempts
/// stopped short of `attempts`.
pub fn backoff_gaps(seen: &[Seen], connack_delay: Duration) -> Vec<Duration> {
    let Some(drop) = seen.iter().position(|e| matches!(e.what, What::Dropped)) else {
        return Vec::new();
    };
    let mut from = seen[drop].at;
    let mut gaps = Vec::new();
    for e in &seen[drop..] {
        if let What::Connect { refused_by_suite, .. } = e.what {
            gaps.push(e.at.saturating_sub(from));
            if !refused_by_suite {
                break;
            }
            from = e.at + connack_delay;
        }
    }
    gaps
}

/// `reconnect.backoff`: after the drop and `refusals` refused reconnects, the gaps.
pub fn backoff(
    seen: &[Seen],
    refusals: u32,
    first_min: Duration,
    connack_delay: Duration,
    wait: Duration,
) -> Judged {
    let expected = format!(
        "a first reconnect at least {} after the drop, then gaps that grow, with jitter",
        secs(first_min)
    );
    let fix = Some(fix_of(Kind::ReconnectBackoff));
    let gaps = backoff_gaps(seen, connack_delay);
    let evidence: Vec<Seen> = seen
        .iter()
        .filter(|e| {
            matches!(
                e.what,
                What::Dropped | What::Connect { .. } | What::Refusing { .. }
            )
        })
        .cloned()
        .collect();
    let words: Vec<String> = gaps.iter().map(|g| format!("{:.2}", g.as_secs_f64())).collect();
    let listed = format!("gaps {} s", words.join(", "));
    let wanted = usize::try_from(refusals).unwrap_or(usize::MAX).saturating_add(1);
    if gaps.len() < wanted {
        let seen_words = if gaps.is_empty() {
            format!("no reconnect within {} of the drop", secs(wait))
        } else {
            format!(
                "{} reconnect(s), then none within {} of a CONNACK 3 ({listed})",
                gaps.len(),
                secs(wait)
            )
        };
        return Judged::new(
            Verdict::Fail,
            expected,
            seen_words,
            Some("keep reconnecting after a refused CONNECT (CONNACK 3: server unavailable), backing off"),
        )
        .with(evidence);
    }
    if let Some(first) = gaps.first()
        && *first < first_min
    {
        return Judged::new(
            Verdict::Fail,
            expected,
            format!("the first reconnect {} after the drop ({listed})", ms(*first)),
            fix,
        )
        .with(evidence);
    }
    let seconds: Vec<f64> = gaps.iter().map(Duration::as_secs_f64).collect();
    match shape(&seconds) {
        Shape::Jittered => Judged::new(
            Verdict::Pass,
            expected,
            format!("gaps that grow, with jitter ({listed})"),
            None,
        )
        .with(evidence),
        Shape::Deterministic => Judged::new(
            Verdict::Warn,
            expected,
            format!("gaps that grow by a fixed rule, without jitter ({listed}): after an outage a fleet reconnects in step"),
            Some("add a random part to each wait (for example a wait drawn between half and all of the backoff)"),
        )
        .with(evidence),
        Shape::Fixed => {
            let mut sorted = seconds.clone();
            sorted.sort_by(f64::total_cmp);
            let median = Duration::from_secs_f64(sorted.get(sorted.len() / 2).copied().unwrap_or_default());
            let (verdict, what) = if median < SHORT_INTERVAL {
                (Verdict::Fail, "a fixed short interval")
            } else {
                (Verdict::Warn, "a fixed interval")
            };
            Judged::new(
                verdict,
                expected,
                format!("gaps that do not grow, {what} ({listed})"),
                fix,
            )
            .with(evidence)
        }
    }
}

// --- reconnect.resume ---------------------------------------------------------------------------

fn is_post(method: &str) -> bool {
    enos::MEASUREPOINT_POSTS.contains(&method)
}

/// The device's clock less this machine's, from its plain posts before `upto` (their median).
pub fn clock_offset(seen: &[Seen]) -> i64 {
    let mut deltas: Vec<i64> = seen
        .iter()
        .filter_map(|e| match &e.what {
            What::Request {
                method,
                times,
                device: None,
                ..
            } if method == enos::MEASUREPOINT_POST => times.first().map(|t| t.saturating_sub(e.clock_ms)),
            _ => None,
        })
        .collect();
    deltas.sort_unstable();
    deltas.get(deltas.len() / 2).copied().unwrap_or_default()
}

/// The outage of `reconnect.resume`: where the drop is and its time on this machine's clock,
/// and where the accepted reconnect is and its time.
struct Outage {
    drop: usize,
    from: i64,
    back: Option<(usize, i64)>,
}

/// The first CONNECT after `drop` that the suite did not refuse.
fn back_index(seen: &[Seen], drop: usize) -> Option<usize> {
    seen[drop..]
        .iter()
        .position(|e| {
            matches!(
                e.what,
                What::Connect {
                    refused_by_suite: false,
                    ..
                }
            )
        })
        .map(|j| drop + j)
}

fn outage(seen: &[Seen]) -> Option<Outage> {
    let drop = seen.iter().position(|e| matches!(e.what, What::Dropped))?;
    let back = back_index(seen, drop).map(|b| (b, seen[b].clock_ms));
    Some(Outage {
        drop,
        from: seen[drop].clock_ms,
        back,
    })
}

/// The posts after the reconnect that carry a time measured during the outage.
pub fn resumed(seen: &[Seen], offset: i64) -> Vec<usize> {
    let Some(Outage {
        from,
        back: Some((back, until)),
        ..
    }) = outage(seen)
    else {
        return Vec::new();
    };
    let (from, until) = (from.saturating_add(offset), until.saturating_add(offset));
    (back..seen.len())
        .filter(|&i| match &seen[i].what {
            What::Request {
                method, code, times, ..
            } => is_post(method) && *code == enos::SUCCESS && times.iter().any(|t| (from..until).contains(t)),
            _ => false,
        })
        .collect()
}

/// `reconnect.resume`: points measured during the outage arrived after it, with their times.
pub fn resume(seen: &[Seen], offset: i64, observe: Duration) -> Judged {
    let expected =
        "the points measured during the outage, sent after the reconnect with the times they were measured";
    let fix = Some(fix_of(Kind::ReconnectResume));
    let evidence = |from: usize| -> Vec<Seen> {
        seen[from..]
            .iter()
            .filter(|e| match &e.what {
                What::Request { method, .. } => is_post(method),
                What::Dropped | What::Refusing { .. } | What::Connect { .. } => true,
                _ => false,
            })
            .cloned()
            .collect()
    };
    let Some(Outage { drop, from, back }) = outage(seen) else {
        return Judged::new(Verdict::Error, expected, "no outage was made", None);
    };
    let Some((_, until)) = back else {
        return Judged::new(
            Verdict::Fail,
            expected,
            "no reconnect after the outage",
            Some("reconnect after a drop, backing off"),
        )
        .with(evidence(drop));
    };
    let outage_words = format!(
        "an outage of {}",
        secs(Duration::from_millis(
            u64::try_from(until.saturating_sub(from)).unwrap_or_default()
        ))
    );
    let found = resumed(seen, offset);
    if let Some(&first) = found.first() {
        let topic = match &seen[first].what {
            What::Request { topic, .. } => topic.clone(),
            _ => String::new(),
        };
        let back_at = back_index(seen, drop).map_or(seen[drop].at, |b| seen[b].at);
        return Judged::new(
            Verdict::Pass,
            expected,
            format!(
                "after {outage_words}, {} post(s) with times inside it, the first on {topic} {} after the reconnect",
                found.len(),
                secs(seen[first].at.saturating_sub(back_at))
            ),
            None,
        )
        .with(evidence(drop));
    }
    let refused: Vec<String> = seen[drop..]
        .iter()
        .filter_map(|e| match &e.what {
            What::Request { method, code, .. } if is_post(method) && *code != enos::SUCCESS => {
                Some(format!("{method} got {}", code_words(Some(*code))))
            }
            _ => None,
        })
        .take(3)
        .collect();
    let also = if refused.is_empty() {
        String::new()
    } else {
        format!(" ({})", refused.join("; "))
    };
    Judged::new(
        Verdict::Fail,
        expected,
        format!(
            "after {outage_words}, no post within {} of the reconnect carried a time inside it{also}",
            secs(observe)
        ),
        fix,
    )
    .with(evidence(drop))
}

// --- ota.upgrade --------------------------------------------------------------------------------

/// Whether the OTA exchange after the command is over: the new version reported, or a
/// failure step.
pub fn ota_done(seen: &[Seen], target: &str) -> bool {
    seen.iter().any(|e| match &e.what {
        What::Request {
            method,
            version: Some(v),
            ..
        } => method == enos::OTA_INFORM && v == target,
        What::Request {
            method,
            step: Some(s),
            ..
        } => method == enos::OTA_PROGRESS && *s < 0,
        _ => false,
    })
}

fn failure_words(step: i64) -> Option<&'static str> {
    enos::OTA_FAILURE_STEPS
        .iter()
        .find(|(s, _)| *s == step)
        .map(|(_, w)| *w)
}

/// `ota.upgrade`: the command answered, progress rising to 100 (or a failure step), then the
/// new version.
pub fn ota(seen: &[Seen], target: &str, timeout: Duration, reply_timeout: Duration) -> Judged {
    let expected = format!(
        "a reply to ota.device.upgrade, ota.progress steps rising to 100 (or a failure step -1 to -5), then ota.inform of version {target}, within {}",
        secs(timeout)
    );
    let fix = Some(fix_of(Kind::OtaUpgrade));
    let evidence: Vec<Seen> = seen
        .iter()
        .filter(|e| match &e.what {
            What::Request { method, .. } => method == enos::OTA_PROGRESS || method == enos::OTA_INFORM,
            What::Command { .. } | What::CommandOutcome { .. } => true,
            _ => false,
        })
        .cloned()
        .collect();
    let reply = commands(seen, reply_timeout, fix_of(Kind::OtaUpgrade));
    if reply.verdict != Verdict::Pass {
        return Judged { expected, ..reply }.with(evidence);
    }
    let steps: Vec<i64> = seen
        .iter()
        .filter_map(|e| match &e.what {
            What::Request {
                method,
                step: Some(s),
                ..
            } if method == enos::OTA_PROGRESS => Some(*s),
            _ => None,
        })
        .collect();
    let informed = seen.iter().any(|e| {
        matches!(&e.what, What::Request { method, version: Some(v), .. } if method == enos::OTA_INFORM && v == target)
    });
    let listed = steps.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let judged =
        |verdict, words: String| Judged::new(verdict, expected.clone(), words, fix).with(evidence.clone());
    if steps.is_empty() {
        return judged(
            Verdict::Fail,
            if informed {
                format!("version {target} reported with ota.inform without any ota.progress step")
            } else {
                format!(
                    "no ota.progress and no ota.inform of {target} within {}",
                    secs(timeout)
                )
            },
        );
    }
    if let Some(&failed) = steps.iter().find(|s| **s < 0) {
        return match failure_words(failed) {
            Some(w) => Judged::new(
                Verdict::Pass,
                expected,
                format!("steps {listed}: the device reported failure step {failed} ({w}) as EnOS documents"),
                None,
            )
            .with(evidence),
            None => judged(
                Verdict::Fail,
                format!("steps {listed}: {failed} is not a documented failure step (-1 to -5)"),
            ),
        };
    }
    if steps.windows(2).any(|w| w[1] < w[0]) || steps.iter().any(|s| *s > 100) {
        return judged(Verdict::Fail, format!("steps {listed}: not rising from 0 to 100"));
    }
    if steps.last() != Some(&100) {
        return judged(
            Verdict::Fail,
            format!("steps {listed}: stopped short of 100 within {}", secs(timeout)),
        );
    }
    if !informed {
        return judged(
            Verdict::Fail,
            format!("steps {listed}, but version {target} never reported with ota.inform"),
        );
    }
    Judged::new(
        Verdict::Pass,
        expected,
        format!("steps {listed}, then version {target} reported with ota.inform"),
        None,
    )
    .with(evidence)
}

// --- subdevice.relogin --------------------------------------------------------------------------

/// The sub-devices logged in (code 200) in `seen`.
pub fn logged_in_subs(seen: &[Seen]) -> Vec<String> {
    let mut subs: Vec<String> = seen
        .iter()
        .filter_map(|e| match &e.what {
            What::SubdeviceLogin {
                device,
                code: Some(enos::SUCCESS),
            } => Some(device.clone()),
            _ => None,
        })
        .collect();
    subs.sort();
    subs.dedup();
    subs
}

/// Where the first connection after the entry `drop` begins (its login), or the end.
pub fn after_reconnect(seen: &[Seen], drop: usize) -> usize {
    seen.iter()
        .skip(drop)
        .position(|e| matches!(e.what, What::Login { .. }))
        .map_or(seen.len(), |i| drop + i)
}

/// `subdevice.relogin`: every sub-device logged in before the drop logs in again after it.
pub fn subdevice_relogin(seen: &[Seen], observe: Duration) -> Judged {
    let expected = "every sub-device logged in before the drop logged in again after the reconnect";
    let fix = Some(fix_of(Kind::SubdeviceRelogin));
    // The last drop: sub-devices logged in at any time before it must log in again after it.
    let drop = seen
        .iter()
        .rposition(|e| matches!(e.what, What::Dropped))
        .unwrap_or(seen.len());
    let evidence: Vec<Seen> = seen
        .iter()
        .filter(|e| {
            matches!(
                e.what,
                What::SubdeviceLogin { .. } | What::Dropped | What::Login { .. }
            )
        })
        .cloned()
        .collect();
    let before = logged_in_subs(&seen[..drop]);
    // A login the old connection still made after the drop is not a login again.
    let after = logged_in_subs(&seen[after_reconnect(seen, drop)..]);
    if before.is_empty() {
        return Judged::new(
            Verdict::Fail,
            expected,
            format!("no sub-device logged in within {}", secs(observe)),
            Some("log the gateway's sub-devices in with combine.login (or combine.login.batch)"),
        )
        .with(evidence);
    }
    if drop == seen.len() {
        return Judged::new(
            Verdict::Error,
            expected,
            "the suite could not drop the connection",
            None,
        )
        .with(evidence);
    }
    let missing: Vec<&String> = before.iter().filter(|s| !after.contains(s)).collect();
    if missing.is_empty() {
        Judged::new(
            Verdict::Pass,
            expected,
            format!("{} logged in again", before.join(", ")),
            None,
        )
        .with(evidence)
    } else {
        Judged::new(
            Verdict::Fail,
            expected,
            format!(
                "{} not logged in again within {} of the reconnect",
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                secs(observe)
            ),
            fix,
        )
        .with(evidence)
    }
}

// --- tls.verify_server --------------------------------------------------------------------------

/// `tls.verify_server`: no CONNECT over a connection served the untrusted certificate.
pub fn tls(seen: &[Seen], wait: Duration) -> Judged {
    let expected = "no CONNECT over a TLS connection whose certificate no trusted CA signed";
    let evidence: Vec<Seen> = seen
        .iter()
        .filter(|e| {
            matches!(
                e.what,
                What::UntrustedTls { .. } | What::Connect { .. } | What::Dropped
            )
        })
        .cloned()
        .collect();
    let offered = seen
        .iter()
        .filter(|e| matches!(e.what, What::UntrustedTls { .. }))
        .count();
    let trusted_it = seen.iter().find(|e| {
        matches!(
            e.what,
            What::Connect {
                untrusted_certificate: true,
                ..
            }
        )
    });
    if let Some(e) = trusted_it {
        return Judged::new(
            Verdict::Fail,
            expected,
            format!(
                "a CONNECT (the signed login) at {} over a connection whose certificate no trusted CA signed",
                secs(e.at)
            ),
            Some(fix_of(Kind::TlsVerifyServer)),
        )
        .with(evidence);
    }
    if offered == 0 {
        return Judged::new(
            Verdict::Error,
            expected,
            format!(
                "no TLS connection from the device within {} of the drop",
                secs(wait)
            ),
            None,
        )
        .with(evidence);
    }
    Judged::new(
        Verdict::Pass,
        expected,
        format!("{offered} TLS connection(s) given the untrusted certificate, no CONNECT over any"),
        None,
    )
    .with(evidence)
}

// --- login.keepalive ----------------------------------------------------------------------------

/// `login.keepalive`: the keep-alive of the connection's CONNECT is within range, and no
/// silence from the device in `seen` (from its login to `until`, or its disconnect) is longer
/// than 1.5 times it.
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
    let mut last = from;
    let mut longest = Duration::ZERO;
    let mut end = until;
    let mut evidence = Vec::new();
    for e in seen.iter().filter(|e| e.at >= from && e.at <= until) {
        match e.what {
            What::Packet { .. } | What::Publish { .. } => {
                longest = longest.max(e.at.saturating_sub(last));
                last = e.at;
                evidence.push(e.clone());
            }
            What::Disconnect { .. } => {
                end = e.at;
                evidence.push(e.clone());
                break;
            }
            _ => {}
        }
    }
    longest = longest.max(end.saturating_sub(last));
    let allowed = Duration::from_millis(u64::from(keep_alive) * 1500);
    let keep = evidence.len().saturating_sub(MAX_EVIDENCE);
    let evidence = evidence.split_off(keep);
    // serve closes a connection silent for exactly that long: reaching it is failing it.
    if longest >= allowed {
        Judged::new(
            Verdict::Fail,
            expected,
            format!(
                "a keep-alive of {keep_alive} s, and {} without a packet",
                secs(longest)
            ),
            fix,
        )
        .with(evidence)
    } else {
        Judged::new(
            Verdict::Pass,
            expected,
            format!(
                "a keep-alive of {keep_alive} s; the longest silence {} over {}",
                secs(longest),
                secs(until.saturating_sub(from))
            ),
            None,
        )
        .with(evidence)
    }
}

// --- report.model and report.timestamps ---------------------------------------------------------

/// The measure point posts of `seen`.
fn posts(seen: &[Seen]) -> impl Iterator<Item = &Seen> {
    seen.iter()
        .filter(|e| matches!(&e.what, What::Request { method, .. } if is_post(method)))
}

/// Whether a measure point was posted in `seen`.
pub fn posted(seen: &[Seen]) -> bool {
    posts(seen).next().is_some()
}

/// `report.model`: at least one post, and every post valid against the model.
pub fn report_model(seen: &[Seen], observe: Duration) -> Judged {
    let expected = "at least one measure point post, every one valid against the product's model";
    let all: Vec<&Seen> = posts(seen).collect();
    let bad: Vec<&Seen> = all
        .iter()
        .copied()
        .filter(|e| matches!(e.what, What::Request { code, .. } if code != enos::SUCCESS))
        .collect();
    if all.is_empty() {
        return Judged::new(
            Verdict::Fail,
            expected,
            format!(
                "no measure point post within {} of the login, nor during the run",
                secs(observe)
            ),
            Some("post the device's measure points (thing.measurepoint.post)"),
        );
    }
    if bad.is_empty() {
        return Judged::new(
            Verdict::Pass,
            expected,
            format!("{} post(s), every one answered with code 200", all.len()),
            None,
        )
        .with(all.iter().map(|e| (*e).clone()).take(5));
    }
    let mut codes: Vec<String> = bad
        .iter()
        .filter_map(|e| match &e.what {
            What::Request { code, .. } => Some(code_words(Some(*code))),
            _ => None,
        })
        .collect();
    codes.sort();
    codes.dedup();
    Judged::new(
        Verdict::Fail,
        expected,
        format!(
            "{} of {} post(s) refused, with code {}",
            bad.len(),
            all.len(),
            codes.join(", ")
        ),
        Some(fix_of(Kind::ReportModel)),
    )
    .with(bad.iter().map(|e| (*e).clone()))
}

/// `report.timestamps`: the times posts carry are within [`MAX_CLOCK_SKEW`] of this
/// machine's clock when they arrived (resumed points are old on purpose and not judged).
pub fn timestamps(seen: &[Seen]) -> Judged {
    let expected = format!(
        "the `time` of each post within {} of this machine's clock",
        secs(MAX_CLOCK_SKEW)
    );
    let live: Vec<&Seen> = posts(seen)
        .filter(|e| matches!(&e.what, What::Request { method, .. } if method != enos::MEASUREPOINT_RESUME && !method.starts_with("thing.measurepoint.resume")))
        .collect();
    if live.is_empty() {
        return Judged::new(
            Verdict::Error,
            expected,
            "no measure point post, so no time to judge (see report.model)",
            None,
        );
    }
    let skews: Vec<(&Seen, i64)> = live
        .iter()
        .flat_map(|e| match &e.what {
            What::Request { times, .. } => times.iter().map(|t| (*e, t.saturating_sub(e.clock_ms))).collect(),
            _ => Vec::new(),
        })
        .collect();
    let Some((worst_at, worst)) = skews.iter().max_by_key(|(_, s)| s.unsigned_abs()).copied() else {
        return Judged::new(
            Verdict::Pass,
            expected,
            format!(
                "{} post(s), none carrying a time: EnOS stamps each with its arrival",
                live.len()
            ),
            None,
        )
        .with(live.iter().map(|e| (*e).clone()).take(3));
    };
    let worst_words = format!(
        "{} {} this machine's clock",
        secs(Duration::from_millis(worst.unsigned_abs())),
        if worst < 0 { "behind" } else { "ahead of" }
    );
    if worst.unsigned_abs() > u64::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX) {
        Judged::new(
            Verdict::Warn,
            expected,
            format!("{} time(s); the furthest {worst_words}", skews.len()),
            Some(fix_of(Kind::ReportTimestamps)),
        )
        .with([worst_at.clone()])
    } else {
        Judged::new(
            Verdict::Pass,
            expected,
            format!("{} time(s); the furthest {worst_words}", skews.len()),
            None,
        )
        .with([worst_at.clone()])
    }
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
