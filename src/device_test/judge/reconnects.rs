//! `mqtt.puback_retry` (a PUBLISH whose PUBACK the suite withheld, and its resend) and
//! `reconnect.backoff` (the gaps between reconnects the suite refused).

use std::time::Duration;

use super::{Judged, picked, secs};
use crate::device_test::Verdict;
use crate::device_test::catalogue::{Kind, fix_of};
use crate::device_test::evidence::{Seen, What};

/// Gaps within this fraction of each other (their ratios, or their differences) are the same:
/// a backoff without jitter.
pub(crate) const SAME: f64 = 0.10;
/// The last gap of a growing backoff is at least this many times the first.
pub(crate) const GROWTH: f64 = 1.5;
/// A fixed reconnect interval shorter than this fails; a longer one warns.
pub(crate) const SHORT_INTERVAL: Duration = Duration::from_secs(5);

/// The PUBLISH the suite lost: where it is, its packet id and topic.
pub(crate) fn lost_publish(seen: &[Seen]) -> Option<(usize, u16, &str)> {
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
pub(crate) fn resend_of(seen: &[Seen]) -> Option<usize> {
    let (i, pkid, topic) = lost_publish(seen)?;
    seen[i + 1..]
        .iter()
        .position(|e| matches!(&e.what, What::Publish { pkid: p, topic: t, .. } if *p == pkid && t == topic))
        .map(|j| i + 1 + j)
}

/// No PUBLISH lost: QoS 0 only (warn), or nothing to withhold (error).
fn nothing_lost(seen: &[Seen], expected: &str, observe: Duration, evidence: Vec<Seen>) -> Judged {
    let qos0 = seen
        .iter()
        .any(|e| matches!(&e.what, What::Publish { qos: 0, topic, .. } if !topic.ends_with("_reply")));
    if qos0 {
        let words = format!(
            "only QoS 0 PUBLISHes within {}: a message lost on the way is never resent",
            secs(observe)
        );
        let fix = "post at QoS 1 (as EnOS's SDKs do) and resend what is not acknowledged";
        Judged::new(Verdict::Warn, expected, words, Some(fix)).with(evidence)
    } else {
        let words = format!(
            "no QoS 1 PUBLISH from the device within {} to withhold the PUBACK of",
            secs(observe)
        );
        Judged::new(Verdict::Error, expected, words, None).with(evidence)
    }
}

/// `mqtt.puback_retry`: the lost PUBLISH resent with DUP and its packet id, while connected
/// (pass) or after a reconnect (warn).
pub fn puback_retry(seen: &[Seen], drop_after: Duration, observe: Duration) -> Judged {
    let expected = "the PUBLISH whose PUBACK the suite withheld resent with the DUP flag and the same packet id, while connected";
    let fix = Some(fix_of(Kind::PubackRetry));
    let evidence = picked(seen, |e| {
        matches!(
            e.what,
            What::Publish { .. } | What::Connect { .. } | What::Dropped | What::Disconnect { .. }
        )
    });
    let Some((i, pkid, topic)) = lost_publish(seen) else {
        return nothing_lost(seen, expected, observe, evidence);
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
        let words = format!(
            "packet {pkid} on {topic} at {} never sent again, neither in {} while connected nor after the reconnect{also}",
            secs(lost_at),
            secs(drop_after)
        );
        return Judged::new(Verdict::Fail, expected, words, fix).with(evidence);
    };
    let after = secs(seen[r].at.saturating_sub(lost_at));
    let dup = matches!(seen[r].what, What::Publish { dup: true, .. });
    let reconnected = seen[i..r].iter().any(|e| matches!(e.what, What::Connect { .. }));
    let (verdict, words, fix) = match (dup, reconnected) {
        (false, _) => (
            Verdict::Fail,
            format!("packet {pkid} sent again {after} later without the DUP flag"),
            Some("set the DUP flag on a PUBLISH sent again (MQTT-3.3.1-1)"),
        ),
        (true, true) => (
            Verdict::Warn,
            format!(
                "packet {pkid} resent with DUP {after} later, only after a reconnect (the suite dropped the connection after {})",
                secs(drop_after)
            ),
            Some(
                "also resend an unacknowledged QoS 1 PUBLISH while connected, after a timeout (the C SDK waits twice its request timeout)",
            ),
        ),
        (true, false) => (
            Verdict::Pass,
            format!("packet {pkid} resent with DUP {after} later, on the same connection"),
            None,
        ),
    };
    Judged::new(verdict, expected, words, fix).with(evidence)
}

/// The shape of a series of reconnect gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
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
pub(crate) fn shape(gaps: &[f64]) -> Shape {
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
/// answer (its arrival plus serve's CONNACK delay) to the next CONNECT, up to the first that
/// was let in.
pub(crate) fn backoff_gaps(seen: &[Seen], connack_delay: Duration) -> Vec<Duration> {
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

/// The verdict on the shape of gaps that came as many as asked for, the first long enough.
fn judge_shape(gaps: &[Duration], listed: &str) -> (Verdict, String, Option<&'static str>) {
    let seconds: Vec<f64> = gaps.iter().map(Duration::as_secs_f64).collect();
    match shape(&seconds) {
        Shape::Jittered => (
            Verdict::Pass,
            format!("gaps that grow, with jitter ({listed})"),
            None,
        ),
        Shape::Deterministic => (
            Verdict::Warn,
            format!(
                "gaps that grow by a fixed rule, without jitter ({listed}): after an outage a fleet reconnects in step"
            ),
            Some(
                "add a random part to each wait (for example a wait drawn between half and all of the backoff)",
            ),
        ),
        Shape::Fixed => {
            let mut sorted = seconds.clone();
            sorted.sort_by(f64::total_cmp);
            let median = Duration::from_secs_f64(sorted.get(sorted.len() / 2).copied().unwrap_or_default());
            let (verdict, what) = if median < SHORT_INTERVAL {
                (Verdict::Fail, "a fixed short interval")
            } else {
                (Verdict::Warn, "a fixed interval")
            };
            let words = format!("gaps that do not grow, {what} ({listed})");
            (verdict, words, Some(fix_of(Kind::ReconnectBackoff)))
        }
    }
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
    let gaps = backoff_gaps(seen, connack_delay);
    let evidence = picked(seen, |e| {
        matches!(
            e.what,
            What::Dropped | What::Connect { .. } | What::Refusing { .. }
        )
    });
    let words: Vec<String> = gaps.iter().map(|g| format!("{:.2}", g.as_secs_f64())).collect();
    let listed = format!("gaps {} s", words.join(", "));
    let wanted = usize::try_from(refusals).unwrap_or(usize::MAX).saturating_add(1);
    let (verdict, words, fix) = if gaps.len() < wanted {
        let words = match gaps.len() {
            0 => format!("no reconnect within {} of the drop", secs(wait)),
            n => format!(
                "{n} reconnect(s), then none within {} of a CONNACK 3 ({listed})",
                secs(wait)
            ),
        };
        let fix = "keep reconnecting after a refused CONNECT (CONNACK 3: server unavailable), backing off";
        (Verdict::Fail, words, Some(fix))
    } else if let Some(first) = gaps.first().filter(|f| **f < first_min) {
        let words = format!(
            "the first reconnect {} ms after the drop ({listed})",
            first.as_millis()
        );
        (Verdict::Fail, words, Some(fix_of(Kind::ReconnectBackoff)))
    } else {
        judge_shape(&gaps, &listed)
    };
    Judged::new(verdict, expected, words, fix).with(evidence)
}
