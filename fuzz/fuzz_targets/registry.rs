#![no_main]
//! The serve registry: any text is parsed and validated, with every problem located, or a
//! registry comes out; never a panic.
use enos_connect::registry::Registry;
use enos_connect::source_text::SourceFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match Registry::parse(&SourceFile::new("fuzz.toml", text)) {
            Ok(r) => {
                for d in &r.devices {
                    let _ = r.product(&d.product);
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
