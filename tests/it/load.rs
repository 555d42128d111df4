//! Load probes against an in-process broker: counts, rates, per-stage percentiles, error kinds, and no growth
//! in open file descriptors or memory over repeated rounds.

use std::sync::Arc;

use crate::common::{OkStdout, bin, json_of};
use crate::peers;
use enos_connect::capabilities::embedded;
use enos_connect::probe::load::{LoadOptions, run};
use enos_connect::probe::{ProbeOptions, Target};
use predicates::prelude::*;

#[test]
fn a_load_probe_reports_counts_rate_and_percentiles() {
    let broker = peers::broker(&[]);
    let url = format!("mqtt://127.0.0.1:{}", broker.port());
    let v = json_of(
        &bin()
            .args([
                "probe",
                &url,
                "--count",
                "300",
                "--concurrency",
                "20",
                "-f",
                "json",
            ])
            .ok_stdout(),
    );
    assert_eq!(
        (v["succeeded"].as_u64(), v["failed"].as_u64()),
        (Some(300), Some(0)),
        "{v:#}"
    );
    assert!(v["rate_per_s"].as_f64().is_some_and(|r| r > 0.0));
    for stage in ["resolve", "connect", "handshake", "total"] {
        let p = &v["stages"][stage];
        assert_eq!(p["count"], 300, "{stage}");
        let (p50, p99, max) = (p["p50_ms"].as_f64(), p["p99_ms"].as_f64(), p["max_ms"].as_f64());
        assert!(p50 <= p99 && p99 <= max, "{stage}: {p}");
    }
    let v = json_of(
        &bin()
            .args([
                "probe",
                &url,
                "--count",
                "50",
                "--concurrency",
                "5",
                "--publish",
                "load/t",
                "-f",
                "json",
            ])
            .ok_stdout(),
    );
    assert_eq!(v["stages"]["roundtrip"]["count"], 50);
}

#[test]
fn a_failing_load_counts_error_kinds_and_exits_1() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let out = bin()
        .args([
            "probe",
            &format!("mqtt://127.0.0.1:{closed}"),
            "--count",
            "40",
            "--concurrency",
            "8",
            "-f",
            "json",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out.stdout);
    assert_eq!(v["errors"]["refused"], 40, "{v:#}");
    assert_eq!(v["ok"], false);
}

#[test]
fn the_start_rate_is_capped() {
    let broker = peers::broker(&[]);
    let url = format!("mqtt://127.0.0.1:{}", broker.port());
    let v = json_of(
        &bin()
            .args(["probe", &url, "--count", "20", "--rate", "100", "-f", "json"])
            .ok_stdout(),
    );
    // 20 starts at 100 per second take at least 190 ms.
    assert!(v["elapsed_s"].as_f64().is_some_and(|s| s >= 0.19), "{v:#}");
    bin().args(["probe", &url, "--count", "0"]).assert().code(2);
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

const ROUND: u64 = 2000;
const BROKER_VAR: &str = "ENOS_CONNECT_TEST_ROUNDS_BROKER";

/// Ten rounds of 2000 load probes leave open file descriptors and memory where they were. The
/// rounds run in a process of their own (this test binary again, running only
/// `load::load_rounds_in_this_process`), so the other tests' peers and threads cannot move the
/// numbers; the broker stays here.
#[test]
fn rounds_of_load_leave_no_file_descriptor_or_memory_growth() {
    let broker = peers::broker(&[]);
    in_a_process_of_its_own(
        "load::load_rounds_in_this_process",
        (BROKER_VAR, &broker.to_string()),
    );
}

/// Run the ignored test `name` alone in this test binary started again, with `var` set: it
/// must pass, and it must have run.
fn in_a_process_of_its_own(name: &str, (var, value): (&str, &str)) {
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
        .env(var, value)
        .output()
        .expect("runs the rounds");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the rounds ran: {text}");
}

#[test]
#[ignore = "the body of rounds_of_load_leave_no_file_descriptor_or_memory_growth, which runs it in a process of its own"]
fn load_rounds_in_this_process() {
    let broker = std::env::var(BROKER_VAR)
        .expect("started by rounds_of_load_leave_no_file_descriptor_or_memory_growth");
    let caps = Arc::new(embedded().expect("caps"));
    let target = Arc::new(Target::parse(&caps, &format!("mqtt://{broker}")).expect("target"));
    let opts = Arc::new(ProbeOptions::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let settings = LoadOptions {
        count: ROUND,
        concurrency: 50,
        rate: None,
    };
    let one = || {
        let (caps, target, opts) = (caps.clone(), target.clone(), opts.clone());
        async move { enos_connect::probe::run(&caps, &target, &opts).await }
    };
    let round = || {
        let report = rt.block_on(run("mqtt", &target.url(), &settings, one, &|_| {}));
        assert_eq!(report.succeeded, ROUND, "{report:?}");
    };
    // Two warm-up rounds let the allocator and the runtime reach their working size.
    round();
    round();
    let (fds, rss) = (open_fds(), rss_kb());
    for _ in 0..10 {
        round();
    }
    let (fds_after, rss_after) = (open_fds(), rss_kb());
    println!("fds {fds} -> {fds_after}, rss {rss} kB -> {rss_after} kB");
    assert!(
        fds_after <= fds + 2,
        "file descriptors grew from {fds} to {fds_after}"
    );
    assert!(
        rss_after <= rss + 8 * 1024,
        "memory grew from {rss} kB to {rss_after} kB"
    );
}

/// Two shards' load reports merge: counts and rates summed, the longest elapsed time, each
/// stage's count the sum and its percentiles those of the merged histogram, which another
/// HdrHistogram library (Python's `hdrh`, when ENOS_CONNECT_HDR_PYTHON names a python that
/// has it) decodes with the summed count.
#[test]
fn load_reports_from_shards_merge_into_one() {
    let broker = peers::broker(&[]);
    let url = format!("mqtt://127.0.0.1:{}", broker.port());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    let mut shards = Vec::new();
    for (i, count) in [(1, "120"), (2, "80")] {
        let out = bin()
            .args([
                "probe",
                &url,
                "--count",
                count,
                "--concurrency",
                "8",
                "-f",
                "json",
            ])
            .ok_stdout();
        let file = dir.path().join(format!("shard-{i}.json"));
        std::fs::write(&file, &out).expect("write");
        shards.push(json_of(&out));
        files.push(file);
    }
    let merged = json_of(&bin().arg("merge").args(&files).args(["-f", "json"]).ok_stdout());
    assert_eq!(
        (merged["count"].as_u64(), merged["succeeded"].as_u64()),
        (Some(200), Some(200))
    );
    assert_eq!(merged["merged_from"], 2);
    assert_eq!(merged["concurrency"], 16);
    let rate = shards
        .iter()
        .filter_map(|s| s["rate_per_s"].as_f64())
        .sum::<f64>();
    assert!(
        (merged["rate_per_s"].as_f64().unwrap_or(0.0) - rate).abs() < 0.11,
        "{merged:#}"
    );
    let longest = shards
        .iter()
        .filter_map(|s| s["elapsed_s"].as_f64())
        .fold(0.0, f64::max);
    assert_eq!(merged["elapsed_s"].as_f64(), Some(longest));
    for stage in ["resolve", "connect", "handshake", "total"] {
        let p = &merged["stages"][stage];
        assert_eq!(p["count"], 200, "{stage}");
        // The merged p99 lies within the shards' own range: never below both, never above both.
        let p99s: Vec<f64> = shards
            .iter()
            .filter_map(|s| s["stages"][stage]["p99_ms"].as_f64())
            .collect();
        let p99 = p["p99_ms"].as_f64().expect("p99");
        assert!(
            p99 >= p99s[0].min(p99s[1]) && p99 <= p99s[0].max(p99s[1]),
            "{stage}: {p99} {p99s:?}"
        );
        let max = shards
            .iter()
            .filter_map(|s| s["stages"][stage]["max_ms"].as_f64())
            .fold(0.0, f64::max);
        assert_eq!(p["max_ms"].as_f64(), Some(max), "{stage}");
    }
    // The table says it is a merge.
    bin()
        .arg("merge")
        .args(&files)
        .assert()
        .success()
        .stdout(predicates::str::contains("merged from 2 reports"));
    // Mixed protocols, a single probe's report and a missing histogram are input errors.
    let coap = dir.path().join("coap.json");
    let mut other = shards[0].clone();
    other["protocol"] = "coap".into();
    std::fs::write(&coap, other.to_string()).expect("write");
    bin()
        .arg("merge")
        .arg(&files[0])
        .arg(&coap)
        .assert()
        .code(2)
        .stderr(
            predicates::str::contains("a mqtt load and")
                .and(predicates::str::contains("coap.json a coap load")),
        );
    let old = dir.path().join("old.json");
    let mut stripped = shards[1].clone();
    if let Some(p) = stripped["stages"]["connect"].as_object_mut() {
        p.remove("histogram");
    }
    std::fs::write(&old, stripped.to_string()).expect("write");
    bin()
        .arg("merge")
        .arg(&files[0])
        .arg(&old)
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "old.json: stage `connect` has no histogram",
        ));
    let single = bin().args(["probe", &url, "-f", "json"]).ok_stdout();
    bin()
        .args(["merge", "-"])
        .write_stdin(single)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("a single probe's report"));
    bin()
        .args(["merge", "/nonexistent/r.json"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("cannot read"));

    let merged_file = dir.path().join("merged.json");
    std::fs::write(&merged_file, merged.to_string()).expect("write");
    let Some(python) = crate::common::outside_peer(
        "ENOS_CONNECT_HDR_PYTHON",
        ".ci/run installs the HdrHistogram Python library (hdrhistogram on PyPI)",
    ) else {
        return;
    };
    let script = "import json, sys\nfrom hdrh.histogram import HdrHistogram\nfor name, s in json.load(open(sys.argv[1]))['stages'].items():\n    h = HdrHistogram.decode(s['histogram'])\n    print(name, h.get_total_count(), h.get_value_at_percentile(99) / 1000.0, s['p99_ms'])\n";
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(&merged_file)
        .output()
        .expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for line in lines {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[1], "200", "{line}: the Python library reads the summed count");
        let (theirs, ours): (f64, f64) = (f[2].parse().expect("p99"), f[3].parse().expect("p99"));
        // Python's percentile is the equivalent value's upper end: the same bucket.
        assert!((theirs - ours).abs() <= ours * 0.002 + 0.002, "{line}");
    }
}

const FLEET_VAR: &str = "ENOS_CONNECT_TEST_FLEET_SERVE";
const FLEET: usize = 300;

/// A held fleet, then all gone: three rounds of 300 devices logging in, holding and posting
/// against an in-process `serve`, and afterwards the process (serve and fleet both) holds the
/// file descriptors it held before and about the memory. In a process of its own, as above.
#[test]
fn a_held_fleet_then_all_gone_returns_the_file_descriptors_and_the_memory() {
    in_a_process_of_its_own("load::fleet_rounds_in_this_process", (FLEET_VAR, "1"));
}

#[test]
#[ignore = "the body of a_held_fleet_then_all_gone_returns_the_file_descriptors_and_the_memory"]
fn fleet_rounds_in_this_process() {
    use enos_connect::base::Secret;
    use enos_connect::probe::fleet::{FleetDevice, FleetOptions, run};
    std::env::var(FLEET_VAR).expect("started by a_held_fleet_then_all_gone_...");
    let mut registry = String::from("[[products]]\nkey = \"pkf\"\nmeasurepoints = [\"temp\"]\n");
    for i in 0..FLEET {
        registry.push_str(&format!(
            "[[devices]]\nproduct = \"pkf\"\nkey = \"d{i}\"\nsecret = \"s{i}\"\n"
        ));
    }
    let serve = peers::enos(&registry);
    let caps: &'static _ = Box::leak(Box::new(embedded().expect("caps")));
    let target = Target::parse(caps, &format!("mqtt://{}", serve.mqtt)).expect("target");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let round = || {
        let opts = FleetOptions {
            devices: (0..FLEET)
                .map(|i| FleetDevice {
                    product_key: "pkf".into(),
                    device_key: format!("d{i}"),
                    secret: Secret::new(format!("s{i}")),
                    dynamic: false,
                })
                .collect(),
            every: std::time::Duration::from_millis(200),
            hold: std::time::Duration::from_millis(600),
            rate: None,
            measurepoints: [("temp".to_string(), serde_json::json!(1))].into_iter().collect(),
            timeout: std::time::Duration::from_secs(10),
            tls: None,
            sources: Vec::new(),
            activate_to: None,
        };
        let report = rt.block_on(run(caps, target.clone(), serve.mqtt, opts, &|_, _| {}));
        assert_eq!(report.fleet.held, FLEET as u64, "{:?}", report.fleet);
        assert_eq!(report.fleet.answered, report.fleet.offered, "{:?}", report.fleet);
    };
    let fds_before = open_fds();
    round();
    // serve sees each close a moment after the fleet leaves.
    let settle = || std::thread::sleep(std::time::Duration::from_millis(300));
    settle();
    let (fds, rss) = (open_fds(), rss_kb());
    assert!(
        fds <= fds_before,
        "file descriptors grew from {fds_before} to {fds} in the first round"
    );
    for _ in 0..3 {
        round();
    }
    settle();
    let (fds_after, rss_after) = (open_fds(), rss_kb());
    println!("fleet: fds {fds} -> {fds_after}, rss {rss} kB -> {rss_after} kB");
    assert!(
        fds_after <= fds,
        "file descriptors grew from {fds} to {fds_after}"
    );
    assert!(
        rss_after <= rss + 4 * 1024,
        "memory grew from {rss} kB to {rss_after} kB"
    );
}
