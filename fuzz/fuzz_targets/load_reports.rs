#![no_main]
//! `merge` input: report files (JSON, with base64 HdrHistogram encodings a peer or another
//! machine wrote) parsed and merged, fleets' sections too, and a histogram decoded on its own.
use enos_connect::probe::fleet::{merge_parts, parse_parts};
use enos_connect::probe::load::{decode, merge, parse_reports};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = decode(text);
    if let Ok(reports) = parse_reports("fuzz", text) {
        let _ = merge(&reports);
    }
    if let Ok(parts) = parse_parts("fuzz", text) {
        let parts: Vec<_> = parts.into_iter().flatten().map(|p| ("fuzz".to_string(), p)).collect();
        let _ = merge_parts(&parts);
    }
});
