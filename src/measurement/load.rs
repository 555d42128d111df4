//! A load probe's report (`probe --count N`, and what `merge` joins): counts, error kinds and
//! each stage's percentiles with its histogram (encoded by `probe::load`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The stage's latencies in microseconds: encoded (`probe::load::encode`). Absent only in reports written
    /// before histograms were added, which cannot be merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
}

/// The result of a load probe: the JSON object of `probe --count N --format json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    pub ok: bool,
    pub protocol: String,
    pub target: String,
    pub count: u64,
    pub concurrency: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    /// Completed probes per second.
    pub rate_per_s: f64,
    pub stages: BTreeMap<String, Percentiles>,
    /// One failure message per error kind, to say what went wrong.
    pub examples: BTreeMap<String, String>,
    /// How many reports `merge` joined into this one; absent in a single run's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<u64>,
    /// `--need`: per need, how many probes' checks of it succeeded and failed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub needs: BTreeMap<String, NeedCounts>,
    /// Stopped by Ctrl-C (SIGINT): the counts are of what ran until then (`count` is the
    /// probes or devices that ran, not those asked for). Absent when the run was not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeedCounts {
    pub succeeded: u64,
    pub failed: u64,
}
