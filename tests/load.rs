//! Load probes against rumqttd: counts, rates, per-stage percentiles, error kinds, and no growth
//! in open file descriptors or memory over repeated rounds.

mod common;

use std::sync::Arc;

use common::peers;
use common::{OkStdout, bin, json_of};
use enos_connect::capabilities::load_embedded;
use enos_connect::probe::load::{LoadOptions, run};
use enos_connect::probe::tls::TlsOptions;
use enos_connect::probe::{Login, ProbeOptions, Target};

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

#[test]
fn rounds_of_load_leave_no_file_descriptor_or_memory_growth() {
    let broker = peers::broker(&[]);
    let caps = Arc::new(load_embedded().expect("caps"));
    let target =
        Arc::new(Target::parse(&caps, &format!("mqtt://127.0.0.1:{}", broker.port())).expect("target"));
    let opts = Arc::new(ProbeOptions {
        timeout: std::time::Duration::from_secs(10),
        verbose: false,
        login: Login::None,
        client_id: None,
        tls: TlsOptions::default(),
        publish: None,
        roundtrip: None,
        qos: 1,
        payload: None,
        method: None,
        psk: None,
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let settings = LoadOptions {
        count: 500,
        concurrency: 50,
        rate: None,
    };
    let one = || {
        let (caps, target, opts) = (caps.clone(), target.clone(), opts.clone());
        async move { enos_connect::probe::run(&caps, &target, &opts).await }
    };
    let round = || {
        let report = rt.block_on(run("mqtt", &target.url(), &settings, one, &|_| {}));
        assert_eq!(report.succeeded, 500, "{report:?}");
    };
    // Two warm-up rounds let the allocator and the runtime reach their working size.
    round();
    round();
    let (fds, rss) = (open_fds(), rss_kb());
    for _ in 0..10 {
        round();
    }
    let (fds_after, rss_after) = (open_fds(), rss_kb());
    assert!(
        fds_after <= fds + 2,
        "file descriptors grew from {fds} to {fds_after}"
    );
    assert!(
        rss_after <= rss + 8 * 1024,
        "memory grew from {rss} kB to {rss_after} kB"
    );
}
