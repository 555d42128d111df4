#![no_main]
//! The capabilities loader and validator: any text gives capabilities or an error, never a panic.
use enos_connect::capabilities::parse;
use enos_connect::source_text::SourceFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = parse(&SourceFile::new("fuzz.toml", text)) {
            let _ = e.to_string();
        }
    }
});
