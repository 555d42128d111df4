//! Load probes: N full probes (for MQTT: connect, optional publish, disconnect; each with its
//! own client id) with at most C in flight on one tokio runtime, an optional cap on the start
//! rate, and latency percentiles per stage from HDR histograms.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::{ProbeOptions, ProbeReport, Target};
use crate::capabilities::Capabilities;

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The result of a load probe: the JSON object of `probe --count N --format json`.
#[derive(Debug, Clone, Serialize)]
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
}

pub struct LoadOptions {
    pub count: u64,
    pub concurrency: u64,
    pub rate: Option<f64>,
}

struct Stats {
    histograms: BTreeMap<&'static str, Histogram<u64>>,
    succeeded: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
    examples: BTreeMap<String, String>,
}

impl Stats {
    fn add(&mut self, r: &ProbeReport) {
        if r.ok {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
        if let Some(e) = &r.error {
            *self.errors.entry(e.kind.as_str().to_string()).or_default() += 1;
            self.examples
                .entry(e.kind.as_str().to_string())
                .or_insert_with(|| e.to_string());
        }
        for s in &r.stages {
            if !self.histograms.contains_key(s.name) {
                // Microseconds, from 1 µs to an hour, three significant digits.
                let Ok(h) = Histogram::new_with_bounds(1, 3_600_000_000, 3) else {
                    continue;
                };
                self.histograms.insert(s.name, h);
            }
            if let Some(h) = self.histograms.get_mut(s.name) {
                let _ = h.record(((s.ms * 1000.0) as u64).clamp(1, 3_600_000_000));
            }
        }
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Run the load. `progress` is called after every finished probe with the number done.
pub async fn run(
    caps: Arc<Capabilities>,
    target: Arc<Target>,
    opts: Arc<ProbeOptions>,
    load: &LoadOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> LoadReport {
    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(
        usize::try_from(load.concurrency.max(1)).unwrap_or(1),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    let mut stats = Stats {
        histograms: BTreeMap::new(),
        succeeded: 0,
        failed: 0,
        errors: BTreeMap::new(),
        examples: BTreeMap::new(),
    };
    let period = load
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let mut done = 0u64;
    for i in 0..load.count {
        if let Some(p) = period {
            let due = started + p.mul_f64(i as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let (caps, target, opts) = (caps.clone(), target.clone(), opts.clone());
        tasks.spawn(async move {
            let report = super::run(&caps, &target, &opts).await;
            drop(permit);
            report
        });
        // Collect what has finished, so memory stays flat however large N is.
        while let Some(Ok(report)) = tasks.try_join_next() {
            stats.add(&report);
            done += 1;
            progress(done);
        }
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok(report) = joined {
            stats.add(&report);
        }
        done += 1;
        progress(done);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stages = stats
        .histograms
        .iter()
        .map(|(name, h)| {
            (
                name.to_string(),
                Percentiles {
                    count: h.len(),
                    p50_ms: ms(h.value_at_quantile(0.50)),
                    p90_ms: ms(h.value_at_quantile(0.90)),
                    p99_ms: ms(h.value_at_quantile(0.99)),
                    max_ms: ms(h.max()),
                },
            )
        })
        .collect();
    LoadReport {
        ok: stats.failed == 0 && stats.succeeded == load.count,
        protocol: target.protocol.clone(),
        target: target.url(),
        count: load.count,
        concurrency: load.concurrency,
        succeeded: stats.succeeded,
        failed: stats.failed,
        errors: stats.errors,
        elapsed_s: (elapsed * 1000.0).round() / 1000.0,
        rate_per_s: if elapsed > 0.0 {
            ((stats.succeeded + stats.failed) as f64 / elapsed * 10.0).round() / 10.0
        } else {
            0.0
        },
        stages,
        examples: stats.examples,
    }
}
