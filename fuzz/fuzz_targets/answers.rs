#![no_main]
//! Answers files, and deciding on whatever they hold.
use enos_connect::answers::Answers;
use enos_connect::capabilities::embedded;
use enos_connect::engine;
use enos_connect::source_text::SourceFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(caps) = embedded() else { return };
    if let Ok(text) = std::str::from_utf8(data) {
        match Answers::parse(&caps, &SourceFile::new("fuzz.toml", text)) {
            Ok(a) => {
                let _ = engine::decide(&caps, &a);
                let _ = engine::walk(&caps, &a, false);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
