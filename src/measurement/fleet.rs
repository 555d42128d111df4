//! A held fleet's report (`probe --fleet`, and what `merge` joins): a load report and the
//! fleet's own section (the timeline; posts offered, acknowledged and answered; codes;
//! disconnects). Plain data, filled in by `probe::fleet`, printed by `render`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::load::LoadReport;

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
    /// `acked / offered`: the share of what was offered that the server took; `null` when
    /// nothing was offered (no `--measurepoint`, or no device logged in).
    pub delivered: Option<f64>,
    /// CONNACK codes (`connack:0`, `connack:3`) and EnOS reply codes (`enos:200`).
    pub codes: BTreeMap<String, u64>,
    /// Connections that ended before their hold, by why.
    pub disconnects: BTreeMap<String, u64>,
    pub timeline: Vec<Tick>,
}

/// `acked / offered` to four places, or `None` when nothing was offered: 0 of 0 is no ratio.
pub fn delivered(acked: u64, offered: u64) -> Option<f64> {
    (offered > 0).then(|| ((acked as f64 / offered as f64) * 10_000.0).round() / 10_000.0)
}

/// `probe --fleet -f json`: a load report (which `merge` reads) and the fleet's section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetReport {
    #[serde(flatten)]
    pub load: LoadReport,
    pub fleet: FleetPart,
}
