//! Load probes: N full probes (for MQTT: connect, optional publish, disconnect; each with its
//! own client id) with at most C in flight on one tokio runtime, an optional cap on the start
//! rate, and latency percentiles per stage from HDR histograms.
//!
//! Each stage's histogram travels in the report (HdrHistogram's V2 compressed encoding, base64,
//! which the Java, Python, Go and Rust libraries all read), so reports from shards that ran
//! side by side [`merge`] into one whose percentiles come from the summed histograms: a
//! percentile of percentiles is not a percentile.
//!
//! Why over 600 lines: about 230 of them are the tests (hostile histogram headers, the merge's
//! sums); the load loop, the report and the merge share the histogram types and stay together.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::measurement::load::{LoadReport, NeedCounts, Percentiles};
use crate::measurement::{ErrorKind, ProbeReport};

/// Latencies are recorded in microseconds, from 1 µs to an hour, to three significant digits.
pub(super) const LOWEST_US: u64 = 1;
pub(super) const HIGHEST_US: u64 = 3_600_000_000;
const DIGITS: u8 = 3;

pub(super) fn new_histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, DIGITS).ok()
}

pub(super) fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
        histogram: encode(h),
    }
}

/// A histogram as HdrHistogram's V2 compressed (deflate) encoding in standard base64: the
/// interchange format of the HdrHistogram libraries (`HdrHistogram.decode` in Python,
/// `Histogram.decodeFromCompressedByteBuffer` in Java, `hdrhistogram.Decode` in Go).
pub fn encode(h: &Histogram<u64>) -> Option<String> {
    use base64::Engine as _;
    use hdrhistogram::serialization::Serializer as _;
    let mut bytes = Vec::new();
    hdrhistogram::serialization::V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The largest encoded histogram read back, in base64 characters: ours are a few hundred bytes.
const MAX_ENCODED: usize = 1 << 20;
/// The largest uncompressed V2 payload accepted: a full histogram of our bounds is well under.
const MAX_PAYLOAD: u64 = 8 << 20;

/// Read back what [`encode`] writes (or another library's V2 compressed encoding with bounds
/// within ours). The header is checked before the library's decoder sees it: that decoder
/// allocates the payload length the header claims, so 20 hostile bytes could ask for 4 GiB.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    use base64::Engine as _;
    use std::io::Read;
    if text.len() > MAX_ENCODED {
        return Err(format!(
            "the histogram is over {} KiB of base64",
            MAX_ENCODED >> 10
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("the histogram is not base64: {e}"))?;
    let be32 = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let be64 = |b: &[u8], at: usize| -> Option<u64> {
        Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
    };
    // The cookie bases with the 0x10 of the V2 word-size field, as every library writes them.
    const V2: u32 = 0x1c84_9313;
    const V2_COMPRESSED: u32 = 0x1c84_9314;
    let truncated = || "the histogram is cut short".to_string();
    if be32(&bytes, 0).ok_or_else(truncated)? != V2_COMPRESSED {
        return Err("the histogram is not an HdrHistogram V2 compressed encoding (wrong cookie)".into());
    }
    let compressed_len = be32(&bytes, 4).ok_or_else(truncated)? as usize;
    let compressed = bytes.get(8..).ok_or_else(truncated)?;
    if compressed.len() < compressed_len {
        return Err(truncated());
    }
    let mut inner = Vec::new();
    flate2::read::ZlibDecoder::new(&compressed[..compressed_len])
        .take(MAX_PAYLOAD + 40)
        .read_to_end(&mut inner)
        .map_err(|e| format!("the histogram does not inflate: {e}"))?;
    // The V2 header: cookie, payload length, normalizing offset, digits, lowest, highest, ratio.
    if be32(&inner, 0).ok_or_else(truncated)? != V2 {
        return Err("the histogram's inner cookie is not V2".into());
    }
    let payload = u64::from(be32(&inner, 4).ok_or_else(truncated)?);
    let digits = be32(&inner, 12).ok_or_else(truncated)?;
    let (low, high) = (
        be64(&inner, 16).ok_or_else(truncated)?,
        be64(&inner, 24).ok_or_else(truncated)?,
    );
    if payload > MAX_PAYLOAD || payload > (inner.len() as u64).saturating_sub(40) {
        return Err(format!(
            "the histogram claims {payload} bytes of counts but holds fewer"
        ));
    }
    if digits > 5 || low < 1 || high > HIGHEST_US || low > high {
        return Err(format!(
            "the histogram's bounds ({low}..{high} µs, {digits} digits) are outside 1..{HIGHEST_US} µs with at most 5 digits"
        ));
    }
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut inner.as_slice())
        .map_err(|e| format!("the histogram does not decode: {e:?}"))
}

/// Why reports cannot be merged: each names the report (file, and object number when a file
/// holds several).
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("no load reports to merge")]
    Empty,
    #[error("{0}: {1}")]
    Report(String, String),
    #[error("{first} is a {a} load and {other} a {b} load: only reports of one protocol merge")]
    Mixed {
        first: String,
        a: String,
        other: String,
        b: String,
    },
}

impl crate::base::Help for MergeError {
    fn help(&self) -> Option<String> {
        Some(match self {
            MergeError::Empty => "name the JSON reports of `probe --count N -f json` runs".into(),
            MergeError::Report(..) => {
                "merge reads the JSON of `probe --count N -f json`; reports written before histograms were added cannot be merged: run the load again".into()
            }
            MergeError::Mixed { .. } => "merge the shards of one load: the same protocol against the same EnOS".into(),
        })
    }
}

/// Every report in one file's text, named `FILE` (or `FILE#2`, ... when it holds several).
pub fn parse_reports(name: &str, text: &str) -> Result<Vec<(String, LoadReport)>, MergeError> {
    let mut out = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    let mut n = 0;
    for next in stream {
        n += 1;
        let at = if n == 1 {
            name.to_string()
        } else {
            format!("{name}#{n}")
        };
        let value = next.map_err(|e| {
            MergeError::Report(
                format!("{name}:{}:{}", e.line(), e.column()),
                format!("not JSON: {e}"),
            )
        })?;
        if value.get("stages").is_some_and(serde_json::Value::is_array) || value.is_array() {
            return Err(MergeError::Report(
                at,
                "a single probe's report, not a load's: run the probe with --count N".into(),
            ));
        }
        let report = serde_json::from_value::<LoadReport>(value)
            .map_err(|e| MergeError::Report(at.clone(), format!("not a load report: {e}")))?;
        out.push((at, report));
    }
    if n == 0 {
        return Err(MergeError::Report(
            name.to_string(),
            "empty: no load report in it".into(),
        ));
    }
    Ok(out)
}

/// Join the reports of loads that ran side by side (shards of one fleet on several machines):
/// counts, outcomes and error kinds summed, each stage's percentiles from the sum of the
/// histograms, the rate the sum of the rates and the elapsed time the longest.
pub fn merge(reports: &[(String, LoadReport)]) -> Result<LoadReport, MergeError> {
    let ((first_name, first), _) = reports.split_first().ok_or(MergeError::Empty)?;
    let mut out = LoadReport {
        ok: true,
        protocol: first.protocol.clone(),
        target: String::new(),
        count: 0,
        concurrency: 0,
        succeeded: 0,
        failed: 0,
        errors: BTreeMap::new(),
        elapsed_s: 0.0,
        rate_per_s: 0.0,
        stages: BTreeMap::new(),
        examples: BTreeMap::new(),
        merged_from: None,
        needs: BTreeMap::new(),
        interrupted: false,
    };
    let mut targets: Vec<&str> = Vec::new();
    let mut histograms: BTreeMap<&str, Histogram<u64>> = BTreeMap::new();
    for (name, r) in reports {
        if r.protocol != first.protocol {
            return Err(MergeError::Mixed {
                first: first_name.clone(),
                a: first.protocol.clone(),
                other: name.clone(),
                b: r.protocol.clone(),
            });
        }
        check_sums(name, r)?;
        if !targets.contains(&r.target.as_str()) {
            targets.push(&r.target);
        }
        add_counts(&mut out, name, r)?;
        add_histograms(&mut histograms, name, r)?;
    }
    out.target = targets.join(", ");
    out.rate_per_s = (out.rate_per_s * 10.0).round() / 10.0;
    out.ok &= out.failed == 0 && out.succeeded == out.count;
    out.stages = histograms
        .iter()
        .map(|(name, h)| (name.to_string(), percentiles(h)))
        .collect();
    // Every report either merged or returned an error above.
    out.merged_from = u64::try_from(reports.len()).ok();
    Ok(out)
}

/// A report's own numbers agree: its outcomes add up to its count, its time and rate are
/// numbers.
fn check_sums(name: &str, r: &LoadReport) -> Result<(), MergeError> {
    let bad = |message: String| MergeError::Report(name.to_string(), message);
    if r.succeeded.checked_add(r.failed) != Some(r.count) {
        return Err(bad(format!(
            "succeeded ({}) and failed ({}) do not add up to count ({})",
            r.succeeded, r.failed, r.count
        )));
    }
    for (what, v) in [("elapsed_s", r.elapsed_s), ("rate_per_s", r.rate_per_s)] {
        if !v.is_finite() || v < 0.0 {
            return Err(bad(format!("{what} is {v}, not a duration or rate")));
        }
    }
    Ok(())
}

/// `r`'s counts, outcomes, error kinds and needs added to `out`, with checked sums.
fn add_counts(out: &mut LoadReport, name: &str, r: &LoadReport) -> Result<(), MergeError> {
    let overflow = || MergeError::Report(name.to_string(), "the counts overflow".into());
    let sum = |a: u64, b: u64| a.checked_add(b).ok_or_else(overflow);
    out.ok &= r.ok;
    out.interrupted |= r.interrupted;
    out.count = sum(out.count, r.count)?;
    out.concurrency = sum(out.concurrency, r.concurrency)?;
    out.succeeded = sum(out.succeeded, r.succeeded)?;
    out.failed = sum(out.failed, r.failed)?;
    for (kind, n) in &r.errors {
        let total = out.errors.entry(kind.clone()).or_default();
        *total = sum(*total, *n)?;
    }
    for (need, n) in &r.needs {
        let total = out.needs.entry(need.clone()).or_default();
        total.succeeded = sum(total.succeeded, n.succeeded)?;
        total.failed = sum(total.failed, n.failed)?;
    }
    for (kind, example) in &r.examples {
        out.examples
            .entry(kind.clone())
            .or_insert_with(|| example.clone());
    }
    out.elapsed_s = out.elapsed_s.max(r.elapsed_s);
    out.rate_per_s += r.rate_per_s;
    Ok(())
}

/// Each stage's histogram of `r`, decoded and checked against its count, added to the sums.
fn add_histograms<'a>(
    sums: &mut BTreeMap<&'a str, Histogram<u64>>,
    name: &str,
    r: &'a LoadReport,
) -> Result<(), MergeError> {
    let bad = |message: String| MergeError::Report(name.to_string(), message);
    for (stage, p) in &r.stages {
        let text = p.histogram.as_deref().ok_or_else(|| {
            bad(format!(
                "stage `{stage}` has no histogram, so its percentiles cannot be merged"
            ))
        })?;
        let h = decode(text).map_err(|e| bad(format!("stage `{stage}`: {e}")))?;
        if h.len() != p.count {
            return Err(bad(format!(
                "stage `{stage}`: the histogram holds {} latencies but count says {}",
                h.len(),
                p.count
            )));
        }
        let sum = match sums.entry(stage.as_str()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(new_histogram().ok_or_else(|| bad("cannot make a histogram".into()))?)
            }
        };
        sum.add(&h).map_err(|e| bad(format!("stage `{stage}`: {e:?}")))?;
    }
    Ok(())
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
    needs: BTreeMap<String, NeedCounts>,
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
        for n in &r.needs {
            let c = self.needs.entry(n.need.clone()).or_default();
            if n.ok {
                c.succeeded += 1;
            } else {
                c.failed += 1;
            }
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
                let Some(h) = new_histogram() else {
                    continue;
                };
                self.histograms.insert(s.name, h);
            }
            if let Some(h) = self.histograms.get_mut(s.name) {
                let _ = h.record(((s.ms * 1000.0) as u64).clamp(LOWEST_US, HIGHEST_US));
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
    run_until(protocol, target, load, probe, progress, std::future::pending()).await
}

/// [`run`] until `stop` completes (Ctrl-C) first: then no probe starts, those in flight are
/// dropped, and the report, marked interrupted, counts the probes that finished.
pub async fn run_until<F, P>(
    protocol: &str,
    target: &str,
    load: &LoadOptions,
    probe: F,
    progress: &(dyn Fn(u64) + Sync),
    stop: impl Future<Output = ()>,
) -> LoadReport
where
    F: Fn() -> P,
    P: Future<Output = ProbeReport> + Send + 'static,
{
    let started = Instant::now();
    tokio::pin!(stop);
    let mut interrupted = false;
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
        needs: BTreeMap::new(),
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
        let next = async {
            if let Some(r) = rate
                && let Ok(offset) = Duration::try_from_secs_f64(i as f64 / r)
                && let Some(due) = started.checked_add(offset)
            {
                tokio::time::sleep_until(due.into()).await;
            }
            slots.clone().acquire_owned().await
        };
        let permit = tokio::select! {
            () = &mut stop => {
                interrupted = true;
                break;
            }
            permit = next => permit,
        };
        let Ok(permit) = permit else {
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
    while !interrupted {
        tokio::select! {
            () = &mut stop => interrupted = true,
            joined = tasks.join_next() => match joined {
                Some(joined) => record(&mut stats, joined),
                None => break,
            },
        }
    }
    if interrupted {
        // What finished counts; what is in flight is dropped, not counted as a failure.
        while let Some(joined) = tasks.try_join_next() {
            record(&mut stats, joined);
        }
        tasks.abort_all();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stages = stats
        .histograms
        .iter()
        .map(|(name, h)| (name.to_string(), percentiles(h)))
        .collect();
    let ran = stats.succeeded.saturating_add(stats.failed);
    LoadReport {
        ok: !interrupted && stats.failed == 0 && stats.succeeded == load.count,
        protocol: protocol.to_string(),
        target: target.to_string(),
        count: if interrupted { ran } else { load.count },
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
        merged_from: None,
        needs: stats.needs,
        interrupted,
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
            stages: vec![crate::measurement::StageTiming {
                name: "total",
                ms: 1.0,
            }],
            error: None,
            enos: None,
            details: serde_json::Map::new(),
            needs: Vec::new(),
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

    fn histogram_of(values: &[u64]) -> Histogram<u64> {
        let mut h = new_histogram().expect("bounds");
        for v in values {
            h.record(*v).expect("in bounds");
        }
        h
    }

    fn load_report(protocol: &str, values: &[u64], rate: f64, elapsed: f64) -> LoadReport {
        let h = histogram_of(values);
        let n = values.len() as u64;
        LoadReport {
            ok: true,
            protocol: protocol.into(),
            target: "mqtt://t".into(),
            count: n,
            concurrency: 5,
            succeeded: n,
            failed: 0,
            errors: BTreeMap::new(),
            elapsed_s: elapsed,
            rate_per_s: rate,
            stages: [("total".to_string(), percentiles(&h))].into(),
            examples: BTreeMap::new(),
            merged_from: None,
            needs: BTreeMap::new(),
            interrupted: false,
        }
    }

    #[test]
    fn histograms_round_trip_and_merge_to_the_percentiles_of_all_latencies() {
        let a: Vec<u64> = (1..=900).map(|i| 1000 + i).collect();
        let b: Vec<u64> = (1..=100).map(|i| 50_000 + i * 100).collect();
        let h = decode(&encode(&histogram_of(&a)).expect("encodes")).expect("decodes");
        assert_eq!(h.len(), 900);
        let mut ra = load_report("mqtt", &a, 300.0, 3.0);
        ra.failed = 1;
        ra.succeeded -= 1;
        ra.ok = false;
        ra.errors.insert("timeout".into(), 1);
        let rb = load_report("mqtt", &b, 50.0, 2.0);
        let m = merge(&[("a".into(), ra), ("b".into(), rb)]).expect("merges");
        assert_eq!(
            (m.count, m.succeeded, m.failed, m.concurrency),
            (1000, 999, 1, 10)
        );
        assert_eq!((m.rate_per_s, m.elapsed_s, m.merged_from), (350.0, 3.0, Some(2)));
        assert_eq!(m.errors.get("timeout"), Some(&1));
        assert!(!m.ok);
        let all: Vec<u64> = a.iter().chain(&b).copied().collect();
        let direct = histogram_of(&all);
        let p = &m.stages["total"];
        assert_eq!(p.count, 1000);
        // The 99th percentile lies among b's slow latencies: averaging the two reports' p99
        // would say about 30 ms; the merged histogram says what 1000 probes saw.
        assert_eq!(p.p99_ms, ms(direct.value_at_quantile(0.99)));
        assert_eq!(p.p50_ms, ms(direct.value_at_quantile(0.50)));
        assert!(p.p99_ms > 50.0, "{}", p.p99_ms);
        let again = decode(p.histogram.as_deref().expect("a histogram")).expect("decodes");
        assert_eq!(again.len(), 1000);
    }

    #[test]
    fn mixed_or_incomplete_reports_are_refused_with_the_file_named() {
        let ok = load_report("mqtt", &[1000, 2000], 1.0, 1.0);
        let err = |reports: &[(String, LoadReport)]| {
            merge(reports).err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(err(&[]).contains("no load reports"));
        let coap = load_report("coap", &[1000], 1.0, 1.0);
        let e = err(&[("a.json".into(), ok.clone()), ("b.json".into(), coap)]);
        assert!(e.contains("a.json is a mqtt load and b.json a coap load"), "{e}");
        let mut none = ok.clone();
        if let Some(p) = none.stages.get_mut("total") {
            p.histogram = None;
        }
        let e = err(&[("a.json".into(), ok.clone()), ("old.json".into(), none)]);
        assert!(e.starts_with("old.json: stage `total` has no histogram"), "{e}");
        let mut lying = ok.clone();
        if let Some(p) = lying.stages.get_mut("total") {
            p.count = 3;
        }
        let e = err(&[("x.json".into(), lying)]);
        assert!(e.contains("holds 2 latencies but count says 3"), "{e}");
        let mut sums = ok.clone();
        sums.failed = 5;
        assert!(err(&[("s".into(), sums)]).contains("do not add up"));
        let mut big = ok.clone();
        big.count = u64::MAX;
        big.succeeded = u64::MAX;
        big.failed = 0;
        let e = err(&[("a".into(), big.clone()), ("b".into(), big)]);
        assert!(e.contains("overflow"), "{e}");
    }

    #[test]
    fn hostile_histograms_are_refused_before_the_decoder_allocates() {
        use base64::Engine as _;
        use std::io::Write;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        // A valid compressed wrapper around a V2 header that claims 4 GiB of counts.
        let mut inner = Vec::new();
        inner.extend(0x1c84_9313u32.to_be_bytes());
        inner.extend(u32::MAX.to_be_bytes());
        inner.extend(0u32.to_be_bytes());
        inner.extend(3u32.to_be_bytes());
        inner.extend(1u64.to_be_bytes());
        inner.extend(HIGHEST_US.to_be_bytes());
        inner.extend(1f64.to_be_bytes());
        let deflate = |inner: &[u8]| {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(inner).expect("deflates");
            let body = z.finish().expect("deflates");
            let mut out = 0x1c84_9314u32.to_be_bytes().to_vec();
            out.extend((body.len() as u32).to_be_bytes());
            out.extend(body);
            out
        };
        let e = decode(&b64(&deflate(&inner))).expect_err("4 GiB claim");
        assert!(e.contains("claims 4294967295 bytes"), "{e}");
        // Bounds past an hour, or zero as the lowest value.
        let mut wide = inner.clone();
        wide[4..8].copy_from_slice(&0u32.to_be_bytes());
        wide[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(
            decode(&b64(&deflate(&wide)))
                .expect_err("wide")
                .contains("outside")
        );
        for bad in [
            "",
            "!!!",
            "SElTVA==",
            &b64(&[0x1c, 0x84, 0x93, 0x14, 0, 0, 0, 9, 1, 2]),
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
        assert!(
            decode(&"A".repeat(MAX_ENCODED + 4))
                .expect_err("long")
                .contains("KiB")
        );
    }

    #[test]
    fn report_files_name_each_report_and_refuse_single_probes() {
        let one = serde_json::to_string(&load_report("mqtt", &[1000], 1.0, 1.0)).expect("json");
        let two = format!("{one}\n{one}\n");
        let names: Vec<String> = parse_reports("r.json", &two)
            .expect("parses")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["r.json", "r.json#2"]);
        let e = parse_reports("p.json", r#"{"ok":true,"stages":[]}"#)
            .expect_err("single")
            .to_string();
        assert!(e.contains("a single probe's report"), "{e}");
        let e = parse_reports("t.json", "{\n  \"ok\": tru\n}")
            .expect_err("syntax")
            .to_string();
        assert!(e.starts_with("t.json:3:0: not JSON"), "{e}");
        assert!(
            parse_reports("e.json", "  \n")
                .expect_err("empty")
                .to_string()
                .contains("empty")
        );
        let e = parse_reports("n.json", r#"{"ok":true}"#)
            .expect_err("fields")
            .to_string();
        assert!(e.contains("not a load report: missing field"), "{e}");
    }
}
