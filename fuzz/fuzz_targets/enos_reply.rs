#![no_main]
//! The probe's reader of EnOS's replies (`enos::ReplyHead`, from any MQTT broker, HTTP or CoAP
//! server): it must never panic, and what it reads must agree with the `Value` tree the same
//! bytes parse into: the id as `enos::reply_id` reads it, and the code. (What it skips unread,
//! such as `data`, is not checked as strictly: a lone surrogate escape there, found by this
//! target, makes no `Value`, and the reply is still read.)
use enos_connect::enos::{ReplyHead, reply_id};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(head) = serde_json::from_slice::<ReplyHead>(data) else {
        return;
    };
    // An array is read as the fields in order, as serde reads any struct (and as the `Reply`
    // read before did); only an object's fields are compared.
    let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if matches!(v["id"], serde_json::Value::String(_) | serde_json::Value::Number(_)) {
        assert_eq!(head.id.as_deref(), reply_id(&v).as_deref(), "{v}");
    }
    match &v["code"] {
        serde_json::Value::Number(n) => assert_eq!(n.as_i64(), Some(head.code), "{v}"),
        serde_json::Value::String(s) => assert_eq!(s.trim().parse::<i64>().ok(), Some(head.code), "{v}"),
        other => panic!("code {other} read as {}", head.code),
    }
});
