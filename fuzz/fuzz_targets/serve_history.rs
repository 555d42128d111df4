#![no_main]
//! serve's readers of a history request's query (`?from=&to=&limit=&format=`, from any HTTP
//! client) and of `--retain`'s spec. They must never panic; an accepted query has `from <= to`
//! and a limit within bounds.
use enos_connect::serve::fuzzing::{HISTORY_MAX_LIMIT, history_query, retention};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((from, to, limit, _csv)) = history_query(text) {
        assert!(from <= to, "{text:?}: from {from} after to {to}");
        assert!((1..=HISTORY_MAX_LIMIT).contains(&limit), "{text:?}: limit {limit}");
    }
    if let Ok((seconds, count)) = retention(text) {
        assert!(seconds.is_some() || count.is_some(), "{text:?}: a retention of nothing");
    }
});
