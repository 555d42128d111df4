//! The live connectivity probe: one stage model for MQTT, CoAP and HTTP.
//!
//! Every probe runs its stages in order (`measurement::STAGES`), each timed, inside one
//! overall deadline: it never hangs and never reconnects on its own (only dynamic activation
//! logs in a second time, as its `relogin` stage). A failure names its stage and one of the
//! error kinds of `measurement::ErrorKind`. With EnOS keys and `--measurepoint` it goes one
//! level up: it posts a measure point and reads EnOS's reply code.
//!
//! This file dispatches a probe to its protocol ([`run`]) and holds the failure of a stage
//! ([`Failure`]); the rest is one file per concern: the stage clock (`recorder.rs`), the
//! target URL (`target.rs`), the login (`login.rs`), the options (`options.rs`), the shared
//! network stages (`net.rs`) and the secret files of activation (`secret_file.rs`). The
//! report it produces is `crate::measurement`'s, below `render`.

// Public for fuzz/fuzz_targets/coap_reply.rs and coap_command.rs only.
#[doc(hidden)]
pub mod coap;
mod command_api;
pub mod fleet;
// Public for fuzz/fuzz_targets/http_response.rs only.
#[doc(hidden)]
pub mod http;
pub mod load;
mod login;
pub(crate) mod mqtt;
pub mod needs;
mod needs_run;
mod net;
mod options;
mod recorder;
mod secret_file;
mod target;
pub(crate) mod tls;

use std::time::Instant;

use crate::capabilities::Capabilities;
use crate::measurement::{ErrorKind, ProbeReport};

pub(crate) use command_api::CommandApi;
pub(crate) use login::{Login, SubDevice};
pub(crate) use net::{Io, connect_stream, reconnect, resolve, time_left};
pub(crate) use options::measurepoint_request;
pub use options::{Points, ProbeOptions};
pub(crate) use recorder::Recorder;
pub(crate) use secret_file::{secret_file, write_secret};
pub use target::Target;

/// A failure inside a stage; the stage is filled in by the recorder.
#[derive(Debug)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }

    pub fn io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        // With TLS 1.3 a server refuses a client certificate after the handshake: the alert
        // arrives on the first read, and it is a TLS failure all the same.
        if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
            return tls::explain(e);
        }
        match e.kind() {
            K::ConnectionRefused => {
                Failure::new(ErrorKind::Refused, "connection refused: nothing listens there")
            }
            K::TimedOut | K::WouldBlock => Failure::new(ErrorKind::Timeout, format!("timed out: {e}")),
            K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe => Failure::new(
                ErrorKind::Protocol,
                format!("the peer closed the connection ({e})"),
            ),
            _ => Failure::new(ErrorKind::Io, e.to_string()),
        }
    }
}

/// Run one probe to completion or to its deadline.
pub async fn run(caps: &Capabilities, target: &Target, opts: &ProbeOptions) -> ProbeReport {
    let mut rec = Recorder::new(opts.verbose);
    let deadline = Instant::now() + opts.timeout;
    // Each protocol's probe is boxed: this future then holds a pointer, not the largest of the
    // three state machines (the CoAP one, with DTLS, is tens of KB), which a load probe's every
    // spawn would copy several times over (docs/performance.md, *The load probe*).
    let result = tokio::time::timeout(opts.timeout, async {
        match target.protocol.as_str() {
            "mqtt" => Box::pin(mqtt::probe(caps, target, opts, &mut rec, deadline)).await,
            "coap" => Box::pin(coap::probe(caps, target, opts, &mut rec, deadline)).await,
            "http" => Box::pin(http::probe(caps, target, opts, &mut rec, deadline)).await,
            other => Err(Failure::new(
                ErrorKind::Protocol,
                format!("no probe for protocol `{other}`"),
            )),
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(Failure::new(
            ErrorKind::Timeout,
            format!("no answer within the {:.1} s timeout", opts.timeout.as_secs_f64()),
        ))
    })
    .map_err(|f| silent_plain_port(caps, target, f));
    rec.finish(&target.protocol, &target.url(), result)
}

/// A plain UDP URL that nothing answered may be a DTLS port, which drops what is not DTLS:
/// the timeout says which URL to try (`coaps://` for `coap://`).
fn silent_plain_port(caps: &Capabilities, target: &Target, f: Failure) -> Failure {
    let udp = caps
        .protocols
        .iter()
        .any(|p| p.id == target.protocol && p.transport == "udp");
    match target.secure_url(caps) {
        Some(url) if udp && f.kind == ErrorKind::Timeout => Failure::new(
            f.kind,
            format!(
                "{}; if this port speaks DTLS, it drops plain datagrams: try {url}",
                f.message
            ),
        ),
        _ => f,
    }
}
