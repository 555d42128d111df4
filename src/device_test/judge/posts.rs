//! The device's posts: `report.model` (every post valid against the model), `report.timestamps`
//! (their times against this machine's clock) and `reconnect.resume` (the points of an outage
//! sent after it, with their times).

use std::time::Duration;

use super::{Judged, code_words, picked, secs};
use crate::device_test::Verdict;
use crate::device_test::catalogue::{Kind, fix_of};
use crate::device_test::evidence::{Seen, What};
use crate::enos;

/// How far a device's clock may be from this machine's before `report.timestamps` warns.
pub(crate) const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

fn is_post(method: &str) -> bool {
    enos::MEASUREPOINT_POSTS.contains(&method)
}

fn is_resume(method: &str) -> bool {
    method.starts_with(enos::MEASUREPOINT_RESUME)
}

/// The measure point posts of `seen` (plain, batch, resume).
fn posts(seen: &[Seen]) -> impl Iterator<Item = &Seen> {
    seen.iter()
        .filter(|e| matches!(&e.what, What::Request { method, .. } if is_post(method)))
}

/// Whether a measure point was posted in `seen`.
pub(crate) fn posted(seen: &[Seen]) -> bool {
    posts(seen).next().is_some()
}

/// The device's clock less this machine's, from its own plain posts (the median).
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

fn outage(seen: &[Seen]) -> Option<Outage> {
    let drop = seen.iter().position(|e| matches!(e.what, What::Dropped))?;
    let back = seen[drop..]
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
        .map(|j| (drop + j, seen[drop + j].clock_ms));
    Some(Outage {
        drop,
        from: seen[drop].clock_ms,
        back,
    })
}

/// The posts after the reconnect that carry a time measured during the outage, on the device's
/// clock (`offset` from this machine's).
pub(crate) fn resumed(seen: &[Seen], offset: i64) -> Vec<usize> {
    let Some(Outage {
        from,
        back: Some((back, until)),
        ..
    }) = outage(seen)
    else {
        return Vec::new();
    };
    let window = from.saturating_add(offset)..until.saturating_add(offset);
    (back..seen.len())
        .filter(|&i| match &seen[i].what {
            What::Request {
                method, code, times, ..
            } => is_post(method) && *code == enos::SUCCESS && times.iter().any(|t| window.contains(t)),
            _ => false,
        })
        .collect()
}

/// The posts after the drop that were refused, in words.
fn refused_after(seen: &[Seen]) -> String {
    let refused: Vec<String> = seen
        .iter()
        .filter_map(|e| match &e.what {
            What::Request { method, code, .. } if is_post(method) && *code != enos::SUCCESS => {
                Some(format!("{method} got {}", code_words(Some(*code))))
            }
            _ => None,
        })
        .take(3)
        .collect();
    if refused.is_empty() {
        String::new()
    } else {
        format!(" ({})", refused.join("; "))
    }
}

/// `reconnect.resume`: points measured during the outage arrived after it, with their times.
pub fn resume(seen: &[Seen], offset: i64, observe: Duration) -> Judged {
    let expected =
        "the points measured during the outage, sent after the reconnect with the times they were measured";
    let Some(Outage { drop, from, back }) = outage(seen) else {
        return Judged::new(Verdict::Error, expected, "no outage was made", None);
    };
    let evidence = picked(&seen[drop..], |e| match &e.what {
        What::Request { method, .. } => is_post(method),
        What::Dropped | What::Refusing { .. } | What::Connect { .. } => true,
        _ => false,
    });
    let Some((back, until)) = back else {
        let fix = Some("reconnect after a drop, backing off");
        return Judged::new(Verdict::Fail, expected, "no reconnect after the outage", fix).with(evidence);
    };
    let lasted = Duration::from_millis(u64::try_from(until.saturating_sub(from)).unwrap_or_default());
    let outage_words = format!("an outage of {}", secs(lasted));
    let found = resumed(seen, offset);
    let Some(&first) = found.first() else {
        let words = format!(
            "after {outage_words}, no post within {} of the reconnect carried a time inside it{}",
            secs(observe),
            refused_after(&seen[drop..])
        );
        return Judged::new(
            Verdict::Fail,
            expected,
            words,
            Some(fix_of(Kind::ReconnectResume)),
        )
        .with(evidence);
    };
    let topic = match &seen[first].what {
        What::Request { topic, .. } => topic.as_str(),
        _ => "",
    };
    let words = format!(
        "after {outage_words}, {} post(s) with times inside it, the first on {topic} {} after the reconnect",
        found.len(),
        secs(seen[first].at.saturating_sub(seen[back].at))
    );
    Judged::new(Verdict::Pass, expected, words, None).with(evidence)
}

/// `report.model`: at least one post, and every post valid against the model.
pub fn report_model(seen: &[Seen], observe: Duration) -> Judged {
    let expected = "at least one measure point post, every one valid against the product's model";
    let all: Vec<&Seen> = posts(seen).collect();
    let bad: Vec<Seen> = all
        .iter()
        .filter(|e| matches!(e.what, What::Request { code, .. } if code != enos::SUCCESS))
        .map(|e| (*e).clone())
        .collect();
    if all.is_empty() {
        let words = format!(
            "no measure point post within {} of the login, nor during the run",
            secs(observe)
        );
        let fix = Some("post the device's measure points (thing.measurepoint.post)");
        return Judged::new(Verdict::Fail, expected, words, fix);
    }
    if bad.is_empty() {
        let words = format!("{} post(s), every one answered with code 200", all.len());
        return Judged::new(Verdict::Pass, expected, words, None)
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
    let words = format!(
        "{} of {} post(s) refused, with code {}",
        bad.len(),
        all.len(),
        codes.join(", ")
    );
    Judged::new(Verdict::Fail, expected, words, Some(fix_of(Kind::ReportModel))).with(bad)
}

/// `report.timestamps`: the times posts carry are within `MAX_CLOCK_SKEW` of this
/// machine's clock when they arrived (resumed points are old on purpose and not judged).
pub fn timestamps(seen: &[Seen]) -> Judged {
    let expected = format!(
        "the `time` of each post within {} of this machine's clock",
        secs(MAX_CLOCK_SKEW)
    );
    let live: Vec<&Seen> = posts(seen)
        .filter(|e| matches!(&e.what, What::Request { method, .. } if !is_resume(method)))
        .collect();
    if live.is_empty() {
        let words = "no measure point post, so no time to judge (see report.model)";
        return Judged::new(Verdict::Error, expected, words, None);
    }
    let skews: Vec<(&Seen, i64)> = live
        .iter()
        .flat_map(|e| match &e.what {
            What::Request { times, .. } => times.iter().map(|t| (*e, t.saturating_sub(e.clock_ms))).collect(),
            _ => Vec::new(),
        })
        .collect();
    let Some((worst_at, worst)) = skews.iter().max_by_key(|(_, s)| s.unsigned_abs()).copied() else {
        let words = format!(
            "{} post(s), none carrying a time: EnOS stamps each with its arrival",
            live.len()
        );
        return Judged::new(Verdict::Pass, expected, words, None)
            .with(live.iter().map(|e| (*e).clone()).take(3));
    };
    let words = format!(
        "{} time(s); the furthest {} {} this machine's clock",
        skews.len(),
        secs(Duration::from_millis(worst.unsigned_abs())),
        if worst < 0 { "behind" } else { "ahead of" }
    );
    let too_far = u128::from(worst.unsigned_abs()) > MAX_CLOCK_SKEW.as_millis();
    let (verdict, fix) = if too_far {
        (Verdict::Warn, Some(fix_of(Kind::ReportTimestamps)))
    } else {
        (Verdict::Pass, None)
    };
    Judged::new(verdict, expected, words, fix).with([worst_at.clone()])
}
