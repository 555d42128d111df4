#![no_main]
//! The path of a command announced in CoAP option 2100, which the probe reads from the
//! endpoint's response and then requests: refused unless it is `/topic/` and an EnOS topic.
use enos_connect::probe::coap::{MAX_ANNOUNCED, announced_topic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(topic) = announced_topic(data) {
        // What is accepted is a bounded, printable, rooted topic with no empty or dot level:
        // safe to put in a request path.
        assert!(data.len() <= MAX_ANNOUNCED);
        assert!(topic.starts_with('/') && topic.bytes().all(|b| b.is_ascii_graphic()));
        assert!(!topic.split('/').skip(1).any(|l| l.is_empty() || l == "." || l == ".."));
        assert!(!topic.contains(['?', '#']));
        assert_eq!(format!("/topic{topic}").as_bytes(), data);
    }
});
