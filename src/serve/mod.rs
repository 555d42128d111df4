//! `serve`: a local endpoint that speaks the EnOS device protocol over MQTT, HTTP and CoAP, for
//! testing firmware and CI without the cloud. It checks logins and messages as EnOS documents
//! them ([`crate::enos`], with the signs from the recipes in `capabilities.toml`), keeps a
//! device twin of what devices sent, and answers as EnOS does. One [`Endpoint`] holds the
//! state every listener shares. Every event is one JSON line on stdout (and in the record
//! file); no secret is ever written anywhere.
//!
//! By responsibility:
//! - [`logins`]: who may log in (MQTT CONNECT, HTTP and CoAP signs, DTLS-PSK, sub-devices
//!   through a gateway, message integration), activation secrets, HTTP sessions, CoAP bindings.
//! - [`requests`]: the answer to one upstream message: the per-protocol table of
//!   `capabilities.toml` and EnOS's checks in order; [`apply`]: what the request then does
//!   to the twin, and the reply's `data`.
//! - [`twin`]: the device twin, the one owner of per-device state (`GET /twin/devices`).
//! - [`events`]: the event log and the record file, written before a reply leaves.
//! - [`listen`] and one module per protocol: [`mqtt`] (rumqttc's MQTT 3.1.1 codec), [`http`]
//!   (hyper's server, also `/twin/...`; [`http_accept`]: its HTTP and HTTPS listeners under
//!   the bound, 503 past it), [`coap`] (coap-lite over UDP, webrtc-dtls for
//!   DTLS-PSK); [`commands`] carries a test's command to a device and its reply back.

pub mod apply;
pub mod clients;
pub mod coap;
pub mod commands;
pub mod console;
pub mod events;
pub mod gateway;
pub mod http;
pub mod http_accept;
pub mod limits;
pub mod listen;
pub mod logins;
pub mod mqtt;
pub mod requests;
pub mod twin;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::base::Secret;
use crate::capabilities::Capabilities;
use crate::credentials;
use crate::registry::Registry;

pub use commands::Downlink;
pub use events::Event;
pub use listen::{BindError, Bound, bind, serve};
pub(crate) use listen::{accept_each, slots, stopped};
pub use logins::Refusal;
pub use requests::Answer;

/// The largest MQTT packet, HTTP body or CoAP datagram accepted: larger is a broken or hostile
/// client, and the connection is closed (HTTP: 413).
pub const MAX_PACKET: usize = 1 << 20;
/// The largest EnOS message answered normally; a larger one gets code 1008 (assumed limit: EnOS
/// documents the code, not the size).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The most DTLS sessions, and console connections, served at once; past it a new one is
/// closed with a `connection_refused` event. MQTT's and HTTP's bounds are `--max-connections`
/// ([`limits`]), refused with CONNACK 3 and 503.
pub const MAX_CONNECTIONS: usize = 4096;

/// Where `serve` listens and what it logs.
pub struct Options {
    pub mqtt: Option<SocketAddr>,
    pub mqtts: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    pub http: Option<SocketAddr>,
    /// HTTPS: the device API over one-way TLS (the configuration asks for no client certificate).
    pub https: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    pub coap: Option<SocketAddr>,
    pub coaps: Option<SocketAddr>,
    pub record: Option<PathBuf>,
    /// How long CONNACK waits: one official SDK misses an instant one.
    pub connack_delay: Duration,
    /// Also write the human-readable log to stderr.
    pub log: bool,
    /// The web console's listener, and its token (required off loopback).
    pub console: Option<(SocketAddr, Option<Secret>)>,
}

/// Who is logged in on a connection or session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub product_key: String,
    pub device_key: String,
}

impl Identity {
    pub fn new(pk: &str, dk: &str) -> Self {
        Identity {
            product_key: pk.to_string(),
            device_key: dk.to_string(),
        }
    }
}

/// The state every listener shares.
pub struct Endpoint {
    pub caps: Capabilities,
    pub registry: Registry,
    pub connack_delay: Duration,
    /// What serve knows about each device.
    pub twin: twin::Twin,
    /// Device secrets issued by dynamic activation, once the device acknowledged them.
    activated: Mutex<HashMap<Identity, Secret>>,
    /// Secrets pushed to a device and not yet acknowledged.
    pending: Mutex<HashMap<Identity, Secret>>,
    /// HTTP sessions: id to device and expiry.
    sessions: Mutex<HashMap<String, (Identity, Instant)>>,
    /// CoAP clients authenticated without DTLS: address to device and expiry.
    coap_bindings: Mutex<HashMap<SocketAddr, (Identity, Instant)>>,
    /// Connected devices a command can be sent to (MQTT connections, CoAP sessions).
    connected: Mutex<HashMap<Identity, Arc<commands::Mailbox>>>,
    /// Commands announced to CoAP devices in option 2100, by device and topic, until replied.
    coap_commands: Mutex<HashMap<(Identity, String), commands::Downlink>>,
    /// How many MQTT connections are held, and those still waiting for their CONNECT.
    pub limits: Arc<limits::Limits>,
    /// How many HTTP and HTTPS connections are open, at most `--max-connections` apart from MQTT's.
    pub http_limits: Arc<limits::OpenLimit>,
    /// MQTT client ids of the live connections, for takeover (MQTT-3.1.4-2).
    clients: Mutex<HashMap<String, clients::Takeover>>,
    /// The subscriptions of clean-session-0 clients that left, by client id (MQTT-3.1.2-4).
    sessions_kept: Mutex<clients::KeptSessions>,
    sink: events::Sink,
    /// Where events meet the console's live streams.
    pub console: console::Hub,
}

impl Endpoint {
    pub fn new(
        caps: Capabilities,
        registry: Registry,
        connack_delay: Duration,
        record: Option<&std::path::Path>,
        log: bool,
    ) -> std::io::Result<Self> {
        let sink = events::Sink::streams(record, log)?;
        Ok(Self::with_sink(caps, registry, connack_delay, sink))
    }

    /// An endpoint whose events are kept in the returned list instead of printed.
    pub fn in_memory(
        caps: Capabilities,
        registry: Registry,
        connack_delay: Duration,
    ) -> (Self, Arc<Mutex<Vec<String>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events::Sink::Memory(events.clone());
        (Self::with_sink(caps, registry, connack_delay, sink), events)
    }

    fn with_sink(
        caps: Capabilities,
        registry: Registry,
        connack_delay: Duration,
        sink: events::Sink,
    ) -> Self {
        Endpoint {
            caps,
            twin: twin::Twin::seed(&registry),
            registry,
            connack_delay,
            activated: Mutex::default(),
            pending: Mutex::default(),
            sessions: Mutex::default(),
            coap_bindings: Mutex::default(),
            connected: Mutex::default(),
            coap_commands: Mutex::default(),
            limits: Arc::new(limits::Limits::new(limits::DEFAULT_MAX_CONNECTIONS)),
            http_limits: Arc::new(limits::OpenLimit::new(limits::DEFAULT_MAX_CONNECTIONS)),
            clients: Mutex::default(),
            sessions_kept: Mutex::default(),
            sink,
            console: console::Hub::default(),
        }
    }
}

/// A request parameter as text: SDKs send some as strings and some as numbers.
pub fn text_field(params: &serde_json::Value, key: &str) -> Option<String> {
    match params.get(key) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Random hex from the TLS stack's secure random source, for secrets and session ids; `None`
/// when the system's random source fails: no secret is made without it.
pub fn random_hex(bytes: usize) -> Option<String> {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; bytes]);
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut buf)
        .ok()?;
    Some(credentials::hex_lower(&buf))
}
