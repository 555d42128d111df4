//! The fleet's report: a load report that `merge` reads, and the fleet's own section (the
//! timeline, offered, acknowledged and answered per second, codes, disconnects).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::super::load::MergeError;
use super::Shared;
use crate::measurement::fleet::delivered;
pub use crate::measurement::fleet::{FleetPart, FleetReport, Tick};
use crate::measurement::load::{LoadReport, Percentiles};

fn per_s(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        (n as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    }
}

/// The report of the run; `interrupted`: stopped by Ctrl-C with that many devices connected,
/// which count as held (they held as long as the run lasted).
pub(super) fn report(s: &Shared, devices: u64, timeline: Vec<Tick>, interrupted: Option<u64>) -> FleetReport {
    let elapsed = s.started.elapsed().as_secs_f64();
    let c = &s.counts;
    let (offered, acked, answered) = (
        c.offered.load(Ordering::Relaxed),
        c.acked.load(Ordering::Relaxed),
        c.answered.load(Ordering::Relaxed),
    );
    let held = c
        .held
        .load(Ordering::Relaxed)
        .saturating_add(interrupted.unwrap_or(0));
    let tally = s
        .tally
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default();
    let stages: BTreeMap<String, Percentiles> = tally
        .histograms
        .iter()
        .map(|(name, h)| (name.to_string(), super::super::load::percentiles(h)))
        .collect();
    // The posting span: the hold (after the ramp), not the ramp or the wait for answers; an
    // interrupted run posted for as long as it ran, at most the hold.
    let mut span = s.opts.hold.as_secs_f64();
    if interrupted.is_some() {
        span = span.min(elapsed);
    }
    let span = span.max(f64::MIN_POSITIVE);
    // An interrupted run counts the devices that ran: held, or failed (a login or a hold).
    let failed = match interrupted {
        None => devices.saturating_sub(held),
        Some(_) => c
            .login_failed
            .load(Ordering::Relaxed)
            .saturating_add(tally.disconnects.values().sum()),
    };
    let ok = interrupted.is_none() && held == devices && tally.errors.is_empty() && acked == offered;
    FleetReport {
        load: LoadReport {
            ok,
            protocol: s.target.protocol.clone(),
            target: s.target.url(),
            count: held.saturating_add(failed),
            concurrency: devices,
            succeeded: held,
            failed,
            errors: tally.errors,
            elapsed_s: (elapsed * 1000.0).round() / 1000.0,
            rate_per_s: per_s(acked, span),
            stages,
            examples: tally.examples,
            merged_from: None,
            needs: BTreeMap::new(),
            interrupted: interrupted.is_some(),
        },
        fleet: FleetPart {
            devices,
            every_s: s.opts.every.as_secs_f64(),
            hold_s: s.opts.hold.as_secs_f64(),
            peak_connected: c.peak.load(Ordering::Relaxed),
            held,
            login_failed: c.login_failed.load(Ordering::Relaxed),
            offered,
            acked,
            answered,
            offered_per_s: per_s(offered, span),
            acked_per_s: per_s(acked, span),
            answered_per_s: per_s(answered, span),
            delivered: delivered(acked, offered),
            codes: tally.codes,
            disconnects: tally.disconnects,
            timeline,
        },
    }
}

/// The fleet sections of every report in one file's text, in the order `parse_reports` reads
/// them (`None` for a load's report, which has none). The text already parsed as load reports.
pub fn parse_parts(name: &str, text: &str) -> Result<Vec<Option<FleetPart>>, MergeError> {
    let mut out = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    for (n, next) in stream.enumerate() {
        let at = if n == 0 {
            name.to_string()
        } else {
            format!("{name}#{}", n + 1)
        };
        let mut value = next.map_err(|e| MergeError::Report(at.clone(), format!("not JSON: {e}")))?;
        out.push(match value.get_mut("fleet").map(serde_json::Value::take) {
            None => None,
            Some(f) => Some(
                serde_json::from_value::<FleetPart>(f)
                    .map_err(|e| MergeError::Report(at, format!("not a fleet's section: {e}")))?,
            ),
        });
    }
    Ok(out)
}

/// Join the fleet sections of fleets that ran side by side (shards of one fleet on several
/// machines, started together): devices and counts summed, codes and disconnects summed, the
/// timelines summed second by second (each run's seconds count from its own start), the
/// rates summed, and the peak the most connected at once in the joined timeline (at least
/// each fleet's own peak). Every fleet must have posted at the same interval for the same hold.
pub fn merge_parts(parts: &[(String, FleetPart)]) -> Result<FleetPart, MergeError> {
    let ((first_name, first), _) = parts.split_first().ok_or(MergeError::Empty)?;
    let mut out = FleetPart {
        devices: 0,
        every_s: first.every_s,
        hold_s: first.hold_s,
        peak_connected: 0,
        held: 0,
        login_failed: 0,
        offered: 0,
        acked: 0,
        answered: 0,
        offered_per_s: 0.0,
        acked_per_s: 0.0,
        answered_per_s: 0.0,
        delivered: None,
        codes: BTreeMap::new(),
        disconnects: BTreeMap::new(),
        timeline: Vec::new(),
    };
    let mut own_peak = 0;
    for (name, p) in parts {
        let overflow = || MergeError::Report(name.clone(), "the counts overflow".into());
        if p.every_s != first.every_s || p.hold_s != first.hold_s {
            return Err(MergeError::Report(
                name.clone(),
                format!(
                    "posted every {} s for {} s, but {first_name} every {} s for {} s: merge the shards of one fleet",
                    p.every_s, p.hold_s, first.every_s, first.hold_s
                ),
            ));
        }
        for rate in [p.offered_per_s, p.acked_per_s, p.answered_per_s] {
            if !rate.is_finite() || rate < 0.0 {
                return Err(MergeError::Report(name.clone(), format!("a rate of {rate}")));
            }
        }
        let add = |a: u64, b: u64| a.checked_add(b).ok_or_else(overflow);
        out.devices = add(out.devices, p.devices)?;
        out.held = add(out.held, p.held)?;
        out.login_failed = add(out.login_failed, p.login_failed)?;
        out.offered = add(out.offered, p.offered)?;
        out.acked = add(out.acked, p.acked)?;
        out.answered = add(out.answered, p.answered)?;
        own_peak = own_peak.max(p.peak_connected);
        for (into, from) in [(&mut out.codes, &p.codes), (&mut out.disconnects, &p.disconnects)] {
            for (k, n) in from {
                let sum = into.entry(k.clone()).or_default();
                *sum = add(*sum, *n)?;
            }
        }
        out.offered_per_s += p.offered_per_s;
        out.acked_per_s += p.acked_per_s;
        out.answered_per_s += p.answered_per_s;
        out.timeline = join_timelines(&out.timeline, &p.timeline).ok_or_else(overflow)?;
    }
    let round = |r: f64| (r * 10.0).round() / 10.0;
    out.offered_per_s = round(out.offered_per_s);
    out.acked_per_s = round(out.acked_per_s);
    out.answered_per_s = round(out.answered_per_s);
    out.peak_connected = out
        .timeline
        .iter()
        .map(|t| t.connected)
        .max()
        .unwrap_or(0)
        .max(own_peak);
    out.delivered = delivered(out.acked, out.offered);
    Ok(out)
}

/// Two fleets' timelines summed second by second; a fleet whose timeline ended is counted
/// with its last tick (its totals stay, its devices are gone). `None` when a sum overflows.
fn join_timelines(ours: &[Tick], theirs: &[Tick]) -> Option<Vec<Tick>> {
    let len = ours.len().max(theirs.len());
    let mut joined = Vec::with_capacity(len);
    for i in 0..len {
        let mut t = Tick {
            t_s: u64::try_from(i).unwrap_or(u64::MAX),
            connected: 0,
            offered: 0,
            acked: 0,
            answered: 0,
        };
        for timeline in [ours, theirs] {
            let Some(x) = timeline.get(i).or(timeline.last()) else {
                continue;
            };
            t.t_s = x.t_s.max(t.t_s);
            if i < timeline.len() {
                t.connected = t.connected.checked_add(x.connected)?;
            }
            t.offered = t.offered.checked_add(x.offered)?;
            t.acked = t.acked.checked_add(x.acked)?;
            t.answered = t.answered.checked_add(x.answered)?;
        }
        joined.push(t);
    }
    Some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(devices: u64, timeline: &[(u64, u64)]) -> FleetPart {
        FleetPart {
            devices,
            every_s: 2.0,
            hold_s: 10.0,
            peak_connected: timeline.iter().map(|t| t.0).max().unwrap_or(0),
            held: devices,
            login_failed: 0,
            offered: devices * 5,
            acked: devices * 5,
            answered: devices * 5,
            offered_per_s: devices as f64 / 2.0,
            acked_per_s: devices as f64 / 2.0,
            answered_per_s: devices as f64 / 2.0,
            delivered: Some(1.0),
            codes: [("enos:200".to_string(), devices * 5)].into(),
            disconnects: BTreeMap::new(),
            timeline: timeline
                .iter()
                .enumerate()
                .map(|(i, &(connected, answered))| Tick {
                    t_s: i as u64,
                    connected,
                    offered: answered,
                    acked: answered,
                    answered,
                })
                .collect(),
        }
    }

    #[test]
    fn timelines_join_second_by_second_and_an_ended_fleet_keeps_its_totals() {
        let a = part(4, &[(4, 0), (4, 8), (0, 20)]);
        let b = part(6, &[(6, 0), (6, 12), (6, 24), (0, 30)]);
        let m = merge_parts(&[("a".into(), a), ("b".into(), b)]).expect("merges");
        let connected: Vec<u64> = m.timeline.iter().map(|t| t.connected).collect();
        let answered: Vec<u64> = m.timeline.iter().map(|t| t.answered).collect();
        assert_eq!(connected, [10, 10, 6, 0]);
        assert_eq!(answered, [0, 20, 44, 50]);
        assert_eq!((m.devices, m.peak_connected, m.answered), (10, 10, 50));
        assert_eq!(m.codes["enos:200"], 50);
        assert!((m.answered_per_s - 5.0).abs() < 1e-9);
    }

    #[test]
    fn fleets_of_another_interval_do_not_merge() {
        let mut b = part(6, &[(6, 0)]);
        b.every_s = 5.0;
        let e = merge_parts(&[("a".into(), part(4, &[(4, 0)])), ("b".into(), b)]).expect_err("refused");
        assert!(e.to_string().contains("merge the shards of one fleet"), "{e}");
    }
}
