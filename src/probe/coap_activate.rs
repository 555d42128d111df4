//! Dynamic activation over CoAP (`probe coaps://… --secure-mode dynamic --activate-to FILE`): a
//! child of `coap.rs`. After the DTLS handshake with the identity `pk,dk,3,lifetime` (the key
//! from the product secret), `GET /topic/ext/session/{pk}/{dk}/thing/activate/info` answers
//! the device secret; it is written to the file (never printed) and proven by a second DTLS
//! handshake with securemode 2 and the new secret (the `relogin` stage).

use std::time::Instant;

use coap_lite::RequestType;
use tokio::net::UdpSocket;

use super::{Exchanged, Link, Wire, connect_udp_to, exchange, handshake_within, psk};
use crate::base::Secret;
use crate::capabilities::Capabilities;
use crate::probe::{ErrorKind, Failure, ProbeOptions, Recorder};

/// The `activate` and `relogin` stages: the link logged in with the new device secret.
pub(super) async fn activate(
    caps: &Capabilities,
    link: Link,
    opts: &ProbeOptions,
    (pk, dk): (&str, &str),
    prefix: &str,
    rec: &mut Recorder,
    deadline: Instant,
) -> Result<Link, Failure> {
    rec.begin("activate");
    let file = opts
        .activate_to
        .as_deref()
        .ok_or_else(|| Failure::new(ErrorKind::Io, "no file to write the device secret to"))?;
    let io_failure = |e: std::io::Error| {
        Failure::new(
            ErrorKind::Io,
            format!("cannot write the device secret to {}: {e}", file.display()),
        )
    };
    // The file first: a secret answered to a GET that cannot be stored would be lost.
    let out = super::super::secret_file(file, opts.force).map_err(io_failure)?;
    let path = format!("{prefix}/topic{}", crate::enos::activate_info(pk, dk));
    let answer = exchange(&link, rec, deadline, Some(RequestType::Get), &path, Vec::new()).await;
    let answer = match answer {
        Ok(a) => a,
        Err(f) => {
            // Nothing was activated: the empty file is not left behind.
            let _ = std::fs::remove_file(file);
            return Err(f);
        }
    };
    let Exchanged::Response(p) = answer else {
        let _ = std::fs::remove_file(file);
        return Err(Failure::new(
            ErrorKind::Protocol,
            "the activation GET was answered as a ping",
        ));
    };
    let secret = serde_json::from_slice::<serde_json::Value>(&p.payload)
        .ok()
        .and_then(|v| {
            v.pointer("/params/deviceSecret")
                .and_then(|s| s.as_str())
                .filter(|s| !s.is_empty())
                .map(|s| Secret::new(s.to_string()))
        })
        .ok_or_else(|| {
            let _ = std::fs::remove_file(file);
            Failure::new(
                ErrorKind::Protocol,
                "the activation answer has no params.deviceSecret",
            )
        })?;
    // The answer's payload holds the secret: it is not kept in the report.
    rec.details.remove("payload");
    super::super::write_secret(out, &secret).map_err(io_failure)?;
    rec.detail(
        "activated",
        format!("device secret written to {}", file.display()),
    );
    if let Wire::Dtls(c) = &link.wire {
        let _ = c.close().await;
    }
    rec.end();
    // Prove the new secret: a second DTLS handshake, with securemode 2.
    rec.begin("relogin");
    let mut o = opts.clone();
    o.login = opts.login.with_device_secret(secret);
    let key = psk(caps, &o)?;
    let addr = rec
        .address
        .ok_or_else(|| Failure::new(ErrorKind::Io, "no address to send to again"))?;
    let sock: UdpSocket = connect_udp_to(addr).await?;
    let link = handshake_within(rec, sock, key, true, deadline).await?;
    rec.end();
    Ok(link)
}
