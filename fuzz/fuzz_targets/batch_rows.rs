#![no_main]
//! Batch input (CSV or JSON Lines) in both output formats.
use enos_connect::batch::{BatchFormat, Shard, run};
use enos_connect::capabilities::embedded;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(caps) = embedded() else { return };
    // The first byte picks a shard, so the record counting is fuzzed too.
    let (shard, data) = match data.split_first() {
        Some((&b, rest)) => (Shard::new(u64::from(b % 4) + 1, 4).unwrap_or(Shard::ALL), rest),
        None => (Shard::ALL, data),
    };
    for format in [BatchFormat::Jsonl, BatchFormat::Csv] {
        let mut out = Vec::new();
        let mut input = data;
        let _ = run(&caps, "fuzz", &mut input, &mut out, &mut |_| {}, format, shard);
    }
});
