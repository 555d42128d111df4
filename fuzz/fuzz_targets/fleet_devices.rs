#![no_main]
//! `probe --fleet`'s inputs: any text as a `--devices` CSV file, and as an `--every`/`--hold`
//! duration, gives devices or an error, never a panic; an error never echoes a secret field.
use enos_connect::probe::fleet::{devices_from_csv, duration};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match devices_from_csv(text) {
            Ok(devices) => {
                for d in &devices {
                    assert!(!d.product_key.is_empty() && !d.device_key.is_empty());
                    let _ = format!("{d:?}");
                }
            }
            Err(e) => {
                let _ = e.len();
            }
        }
        let _ = duration(text);
    }
});
