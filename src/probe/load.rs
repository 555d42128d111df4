//! Load probes: N full probes (for MQTT: connect, optional publish, disconnect; each with its
//! own client id) with at most C in flight on one tokio runtime, an optional cap on the start
//! rate, and latency percentiles per stage from HDR histograms.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::{ErrorKind, ProbeReport};

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
    /// A probe task that panicked or was cancelled: a failure of the tool, counted as such
    /// (never as a timeout, which would blame the peer).
    fn add_internal(&mut self, e: &tokio::task::JoinError) {
        self.failed += 1;
        let kind = ErrorKind::Internal.as_str().to_string();
        *self.errors.entry(kind.clone()).or_default() += 1;
        let what = if e.is_panic() {
            "a probe task panicked (a bug in enos-connect: please report it)"
        } else {
            "a probe task was cancelled"
        };
        self.examples.entry(kind).or_insert_with(|| what.to_string());
    }

    fn add(&mut self, r: &ProbeReport) {
        if r.ok {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
        if let Some(e) = &r.error {
            // EnOS refusals are counted by their code: `enos:1204`.
            let key = match (&e.kind, &r.enos) {
                (ErrorKind::Enos, Some(reply)) => format!("enos:{}", reply.code),
                (kind, _) => kind.as_str().to_string(),
            };
            *self.errors.entry(key.clone()).or_default() += 1;
            self.examples.entry(key).or_insert_with(|| e.to_string());
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

/// Run the load: `probe()` makes one probe's future, and each runs as its own task. `progress`
/// is called after every finished probe with the number done.
pub async fn run<F, P>(
    protocol: &str,
    target: &str,
    load: &LoadOptions,
    probe: F,
    progress: &(dyn Fn(u64) + Sync),
) -> LoadReport
where
    F: Fn() -> P,
    P: Future<Output = ProbeReport> + Send + 'static,
{
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
    // The flags are range-checked at parse time; the checked conversions keep a library
    // caller's odd rate from panicking all the same.
    let rate = load.rate.filter(|r| r.is_finite() && *r > 0.0);
    let mut done = 0u64;
    let mut record = |stats: &mut Stats, joined: Result<ProbeReport, tokio::task::JoinError>| {
        match joined {
            Ok(report) => stats.add(&report),
            Err(e) => stats.add_internal(&e),
        }
        done += 1;
        progress(done);
    };
    for i in 0..load.count {
        if let Some(r) = rate
            && let Ok(offset) = Duration::try_from_secs_f64(i as f64 / r)
            && let Some(due) = started.checked_add(offset)
        {
            tokio::time::sleep_until(due.into()).await;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let one = probe();
        tasks.spawn(async move {
            let report = one.await;
            drop(permit);
            report
        });
        // Collect what has finished, so memory stays flat however large N is.
        while let Some(joined) = tasks.try_join_next() {
            record(&mut stats, joined);
        }
    }
    while let Some(joined) = tasks.join_next().await {
        record(&mut stats, joined);
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
        protocol: protocol.to_string(),
        target: target.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ok: bool) -> ProbeReport {
        ProbeReport {
            ok,
            protocol: "mqtt".into(),
            target: "mqtt://t".into(),
            address: None,
            stages: vec![super::super::StageTiming {
                name: "total",
                ms: 1.0,
            }],
            error: None,
            enos: None,
            details: serde_json::Map::new(),
        }
    }

    #[tokio::test]
    async fn a_probe_that_panics_counts_as_an_internal_failure_never_a_timeout() {
        let n = std::sync::atomic::AtomicU64::new(0);
        let load = LoadOptions {
            count: 4,
            concurrency: 2,
            rate: None,
        };
        let out = run(
            "mqtt",
            "mqtt://t",
            &load,
            || {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move {
                    assert!(i.is_multiple_of(2), "probe {i} fails on purpose");
                    report(true)
                }
            },
            &|_| {},
        )
        .await;
        assert_eq!((out.succeeded, out.failed), (2, 2));
        assert_eq!(out.errors.get("internal"), Some(&2));
        assert!(!out.errors.contains_key("timeout"));
        assert!(!out.ok);
    }

    #[tokio::test]
    async fn a_tiny_rate_is_not_a_panic() {
        let load = LoadOptions {
            count: 1,
            concurrency: 1,
            rate: Some(1e-20),
        };
        let out = run("mqtt", "mqtt://t", &load, || async { report(true) }, &|_| {}).await;
        assert_eq!(out.succeeded, 1);
    }
}
