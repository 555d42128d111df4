//! The event log's unit tests (apart, so `events.rs` stays under 600 lines).

use super::*;

const KINDS: [EventKind; 14] = [
    EventKind::Login,
    EventKind::LoginRefused,
    EventKind::Request,
    EventKind::Reply,
    EventKind::Refused,
    EventKind::Denied,
    EventKind::Activated,
    EventKind::SubdeviceLogin,
    EventKind::SubdeviceLogout,
    EventKind::Command,
    EventKind::Duplicate,
    EventKind::Disconnect,
    EventKind::ConnectionRefused,
    EventKind::Withheld,
];

/// The JSON line and the sentence on stderr name an event alike, and as the docs list them.
#[test]
fn an_event_s_kind_and_protocol_read_the_same_in_json_and_in_words() {
    for kind in KINDS {
        let json = serde_json::to_value(kind).expect("serializes");
        assert_eq!(json, serde_json::json!(kind.name()), "{kind:?}");
    }
    let e = Event::new(EventKind::LoginRefused, Protocol::Mqtts)
        .keys("pk", "dk")
        .code(5);
    let line = serde_json::to_string(&e).expect("serializes");
    assert_eq!(
        line,
        r#"{"event":"login_refused","protocol":"mqtts","product_key":"pk","device_key":"dk","code":5}"#
    );
    assert_eq!(sentence(&e), "serve: mqtts login_refused pk/dk code 5");
    for p in Protocol::ALL {
        assert_eq!(
            serde_json::to_value(p).expect("serializes"),
            serde_json::json!(p.name())
        );
    }
    assert_eq!(Protocol::Coaps.table_name(), "coap");
    assert_eq!(Protocol::Https.table_name(), "http");
    assert!(Protocol::Mqtts.is_mqtt() && !Protocol::Http.is_mqtt());
}

/// A listener hears every event from when it subscribes, typed, naming its device.
#[test]
fn a_subscriber_hears_each_event_with_its_device() {
    let log = EventLog::memory(Arc::default());
    log.emit(Event::new(EventKind::Login, Protocol::Mqtt).keys("p", "before"));
    let mut heard = log.subscribe();
    log.emit(Event::new(EventKind::Request, Protocol::Http).keys("p", "d"));
    let p = heard.try_recv().expect("heard");
    assert_eq!(p.event.event, EventKind::Request);
    assert!(p.names(&Identity::new("p", "d")) && !p.names(&Identity::new("p", "x")));
    assert!(heard.try_recv().is_err(), "nothing more");
    assert!(
        log.hub
            .recent(Some(&Identity::new("p", "before")))
            .contains("\"events\":[]")
    );
}
