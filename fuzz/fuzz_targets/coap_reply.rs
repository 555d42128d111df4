#![no_main]
//! CoAP reply handling: whatever a peer sends is classified, never trusted blindly.
use enos_connect::probe::coap::{Datagram, classify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let mid = u16::from_be_bytes([data[0], data[1]]);
    let token = &data[2..6];
    if let Datagram::Response { packet, .. } = classify(&data[6..], mid, token) {
        // The report reads the code and payload of an accepted response.
        let _ = u8::from(packet.header.code);
        let _ = String::from_utf8_lossy(&packet.payload[..packet.payload.len().min(200)]);
    }
});
