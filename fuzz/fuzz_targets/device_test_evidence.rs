#![no_main]
//! device-test's reading of what a device sends: a PUBLISH (a command's reply: its id and code)
//! and an answered request (the `time` of each point set, an OTA step or version) journaled by
//! the harness, then every judge over the journal. Whatever the bytes, nothing panics and every
//! verdict has words.
use std::sync::Arc;
use std::time::Duration;

use enos_connect::device_test::evidence::Journal;
use enos_connect::device_test::harness::Harness;
use enos_connect::device_test::judge;
use enos_connect::serve::{Answered, Identity, Inbound, Policy, Protocol};
use libfuzzer_sys::fuzz_target;
use rumqttc::mqttbytes::QoS;

fuzz_target!(|data: &[u8]| {
    let device = Identity::new("pk", "dk");
    let journal = Arc::new(Journal::new(device.clone(), vec![Identity::new("pk", "sub")]));
    let harness = Harness(journal.clone());
    // The first byte picks the flags, the rest is "topic \0 payload".
    let (flags, rest) = data.split_first().unwrap_or((&0, &[]));
    let (topic, payload) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let topic = String::from_utf8_lossy(topic);
    harness.publish(&Inbound {
        device: &device,
        protocol: Protocol::Mqtt,
        topic: &topic,
        qos: if flags & 1 == 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce },
        pkid: u16::from(*flags),
        dup: flags & 2 == 2,
        payload,
    });
    for method in ["thing.measurepoint.post", "thing.measurepoint.resume", "ota.progress", "ota.inform"] {
        harness.answered(&Answered {
            protocol: Protocol::Mqtt,
            device: &device,
            topic: &topic,
            method,
            payload,
            code: i64::from(*flags) * 7,
        });
    }
    let s = journal.since(Duration::ZERO);
    let t = Duration::from_secs(5);
    for j in [
        judge::report_model(&s, t),
        judge::timestamps(&s),
        judge::resume(&s, judge::clock_offset(&s), t),
        judge::ota(&s, "2.0", t, t),
        judge::commands(&s, t, "fix"),
        judge::puback_retry(&s, t, t),
        judge::backoff(&s, 3, t, t, t),
        judge::subdevice_relogin(&s, t),
        judge::tls(&s, t),
        judge::keepalive(&s, u16::from(*flags), Duration::ZERO, t),
        judge::login_signed(&s, t),
    ] {
        assert!(!j.expected.is_empty() && !j.seen.is_empty());
    }
});
