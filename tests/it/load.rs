//! Load probes against an in-process broker: counts, rates, per-stage percentiles, error kinds, and no growth
//! in open file descriptors or memory over repeated rounds.

use std::sync::Arc;

use crate::common::{OkStdout, bin, json_of};
use crate::peers;
use enos_connect::capabilities::embedded;
use enos_connect::probe::load::{LoadOptions, run};
use enos_connect::probe::{ProbeOptions, Target};

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
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "load::load_rounds_in_this_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(BROKER_VAR, broker.to_string())
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
