#![no_main]
//! Batch input (CSV or JSON Lines) in both output formats.
use enos_connect::batch::{BatchFormat, run};
use enos_connect::capabilities::embedded;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(caps) = embedded() else { return };
    for format in [BatchFormat::Jsonl, BatchFormat::Csv] {
        let mut out = Vec::new();
        let mut input = data;
        let _ = run(&caps, "fuzz", &mut input, &mut out, &mut |_| {}, format);
    }
});
