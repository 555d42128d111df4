//! The fleet's report: a load report that `merge` reads, and the fleet's own section (the
//! timeline, offered, acknowledged and answered per second, codes, disconnects).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::super::load::{LoadReport, Percentiles};
use super::Shared;

/// A second of the run: how many devices were connected, and the counts so far.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tick {
    pub t_s: u64,
    pub connected: u64,
    pub offered: u64,
    pub acked: u64,
    pub answered: u64,
}

/// The fleet's own section of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetPart {
    pub devices: u64,
    pub every_s: f64,
    pub hold_s: f64,
    /// The most devices connected at once.
    pub peak_connected: u64,
    /// Devices that logged in and held until their hold ended.
    pub held: u64,
    pub login_failed: u64,
    /// Posts sent, acknowledged (PUBACK) and answered (EnOS's reply, any code).
    pub offered: u64,
    pub acked: u64,
    pub answered: u64,
    pub offered_per_s: f64,
    pub acked_per_s: f64,
    pub answered_per_s: f64,
    /// `acked / offered`: the share of what was offered that the server took.
    pub delivered: f64,
    /// CONNACK codes (`connack:0`, `connack:3`) and EnOS reply codes (`enos:200`).
    pub codes: BTreeMap<String, u64>,
    /// Connections that ended before their hold, by why.
    pub disconnects: BTreeMap<String, u64>,
    pub timeline: Vec<Tick>,
}

/// `probe --fleet -f json`: a load report (which `merge` reads) and the fleet's section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetReport {
    #[serde(flatten)]
    pub load: LoadReport,
    pub fleet: FleetPart,
}

fn per_s(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        (n as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    }
}

pub(super) fn report(s: &Shared, devices: u64, timeline: Vec<Tick>) -> FleetReport {
    let elapsed = s.started.elapsed().as_secs_f64();
    let c = &s.counts;
    let (offered, acked, answered) = (
        c.offered.load(Ordering::Relaxed),
        c.acked.load(Ordering::Relaxed),
        c.answered.load(Ordering::Relaxed),
    );
    let held = c.held.load(Ordering::Relaxed);
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
    // The posting span: the hold (after the ramp), not the ramp or the wait for answers.
    let span = s.opts.hold.as_secs_f64().max(f64::MIN_POSITIVE);
    let ok = held == devices && tally.errors.is_empty() && acked == offered;
    FleetReport {
        load: LoadReport {
            ok,
            protocol: s.target.protocol.clone(),
            target: s.target.url(),
            count: devices,
            concurrency: devices,
            succeeded: held,
            failed: devices.saturating_sub(held),
            errors: tally.errors,
            elapsed_s: (elapsed * 1000.0).round() / 1000.0,
            rate_per_s: per_s(acked, span),
            stages,
            examples: tally.examples,
            merged_from: None,
            needs: BTreeMap::new(),
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
            delivered: if offered == 0 {
                1.0
            } else {
                ((acked as f64 / offered as f64) * 10_000.0).round() / 10_000.0
            },
            codes: tally.codes,
            disconnects: tally.disconnects,
            timeline,
        },
    }
}
