#![no_main]
//! serve's CONNECT reader: the protocol name and level of a CONNECT read before the codec
//! (`connect_level`), on whatever a client sends first. It must never panic, and whatever it
//! reads must lie inside the bytes it was given.
use enos_connect::serve::fuzzing::connect_level;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((name, _level)) = connect_level(data) {
        // The name is read from the packet: never longer than what came.
        assert!(name.len() <= data.len().saturating_mul(3));
    }
});
