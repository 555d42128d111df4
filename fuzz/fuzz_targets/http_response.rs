#![no_main]
//! The HTTP probe's response path: whatever a server sends, hyper parses it and the probe bounds
//! and judges it, without panicking or waiting past the end of the bytes.
use enos_connect::probe::http::{Request, exchange};
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;

fuzz_target!(|data: &[u8]| {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return;
    };
    rt.block_on(async {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let reply = data.to_vec();
        let peer = tokio::spawn(async move {
            let _ = server.write_all(&reply).await;
            let _ = server.shutdown().await;
            // Keep reading what the client sends, so its writes never block.
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut server, &mut sink).await;
        });
        let req = Request {
            method: "GET".into(),
            path: "/".into(),
            host: "fuzz:80".into(),
            body: Vec::new(),
            close: true,
            content_type: None,
        };
        let out = tokio::time::timeout(std::time::Duration::from_secs(5), exchange(client, &req)).await;
        assert!(out.is_ok(), "the response path waited after the peer closed");
        peer.abort();
    });
});
