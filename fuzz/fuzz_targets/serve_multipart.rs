#![no_main]
//! serve's multipart file check (`POST /multipart/...`): the parts of a body read with its
//! boundary, each `enos-file` checked against its `Content-MD5`, and every `local://NAME` value
//! of the `enos-message` part naming a file sent. Input: when the first byte is odd, the first
//! line is the Content-Type; else the body comes with boundary `b`.
use std::sync::OnceLock;

use enos_connect::serve::fuzzing::multipart;
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let (content_type, body) = if pick % 2 == 1 {
        let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let content_type = String::from_utf8_lossy(&rest[..split]).into_owned();
        (content_type, rest.get(split + 1..).unwrap_or_default())
    } else {
        ("multipart/form-data; boundary=b".to_string(), rest)
    };
    let body = bytes::Bytes::copy_from_slice(body);
    let _ = runtime().block_on(multipart(Some(&content_type), body));
});
