//! `serve`: a local endpoint that speaks the EnOS device protocol over MQTT, HTTP and CoAP, for
//! testing firmware and CI without the cloud. It checks logins and messages as EnOS documents
//! them ([`crate::enos`], with the signs from the recipes in `capabilities.toml`), keeps a
//! device twin of what devices sent, and answers as EnOS does. Every event is one JSON line on
//! stdout (and in the record file); no secret is ever printed or recorded (the data file of
//! `--data` holds the secrets serve issued, readable by its owner only).
//!
//! One [`Endpoint`] is shared by every listener. It is made of parts, each the one owner of
//! its state, behind its own methods (no other module touches a part's fields):
//! - `twin::Twin`: every device's state, the one owner of it, kept across a restart by the
//!   `store::Store` of `--data` (with `history`, each measure point's values);
//! - `activations::Activations`: secrets pushed to devices and not yet acknowledged;
//! - `leases::Leases`: HTTP sessions and CoAP bindings (who a later request is);
//! - `mqtt_clients::ClientTable`: MQTT client ids of live connections, kept sessions;
//! - `commands::Mailboxes` and `coap_commands::Offered`: the way to each connected device
//!   for a test's command, and the commands announced over CoAP;
//! - `limits`: the bounds on MQTT logins and HTTP connections;
//! - `events::EventLog`: the event log, the record, and who listens to events;
//! - [`policy::Policy`]: where a harness that examines a device changes what serve does.
//!
//! The operations that need several parts are `impl Endpoint` blocks of their own module:
//! `logins` (who may log in), `requests` and `apply` (the answer to one message, and what
//! it does to the twin), `commands` (a test's command to a device). The listeners: `listen`,
//! `mqtt` (with `mqtt_wire` and `mqtt_held`), `http` and `http_accept`, [`coap`] (with
//! `coap_dtls`), `console`.

pub(crate) mod activations;
pub(crate) mod apply;
// Public for fuzz/fuzz_targets/serve_input.rs only.
#[doc(hidden)]
pub mod coap;
pub(crate) mod coap_commands;
pub(crate) mod coap_dtls;
pub(crate) mod commands;
pub(crate) mod console;
pub(crate) mod events;
pub(crate) mod gateway;
pub(crate) mod history;
pub(crate) mod http;
pub(crate) mod http_accept;
mod keyed;
pub(crate) mod leases;
pub(crate) mod limits;
pub(crate) mod listen;
pub(crate) mod logins;
pub(crate) mod mqtt;
pub(crate) mod mqtt_clients;
pub(crate) mod mqtt_commands;
pub(crate) mod mqtt_held;
pub(crate) mod mqtt_wire;
pub(crate) mod policy;
pub(crate) mod requests;
pub(crate) mod store;
mod store_file;
mod store_writer;
pub(crate) mod twin;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::capabilities::Capabilities;
use crate::credentials;
use crate::registry::Registry;
use crate::secret::Secret;

pub(crate) use commands::{CommandFailed, Downlink};
pub(crate) use events::{Event, EventKind};
pub(crate) use listen::{BindError, Listeners};
pub(crate) use listen::{accept_each, slots, stopped};
pub use listen::{bind, serve};
pub(crate) use logins::Refusal;
// Public for fuzz/fuzz_targets/device_test_evidence.rs only.
pub(crate) use policy::{Admit, Connecting, Fate, Received};
#[doc(hidden)]
pub use policy::{Answered, Inbound, Policy};
pub(crate) use requests::Answer;

/// The largest MQTT packet, HTTP body or CoAP datagram accepted: larger is a broken or hostile
/// client, and the connection is closed (HTTP: 413).
pub(crate) const MAX_PACKET: usize = 1 << 20;
/// The largest EnOS message answered normally; a larger one gets code 1008 (assumed limit: EnOS
/// documents the code, not the size).
pub(crate) const MAX_MESSAGE: usize = 64 * 1024;
/// The most DTLS sessions, and console connections, served at once; past it a new one is
/// closed with a `connection_refused` event. MQTT's and HTTP's bounds are `--max-connections`
/// ([`limits`]), refused with CONNACK 3 and 503.
pub(crate) const MAX_CONNECTIONS: usize = 4096;

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

/// The listener something came over, as events and the twin name it (`"mqtts"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Mqtt,
    Mqtts,
    Http,
    Https,
    Coap,
    Coaps,
    /// The web console's listener (its own events only; no device comes over it).
    Console,
}

impl Protocol {
    /// The name in events and the twin.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Mqtt => "mqtt",
            Protocol::Mqtts => "mqtts",
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Coap => "coap",
            Protocol::Coaps => "coaps",
            Protocol::Console => "console",
        }
    }

    /// The protocol of the comparison table in `capabilities.toml`: MQTT over TLS is MQTT,
    /// CoAP over DTLS is CoAP, HTTPS is HTTP.
    pub fn table_name(self) -> &'static str {
        match self {
            Protocol::Mqtt | Protocol::Mqtts => "mqtt",
            Protocol::Http | Protocol::Https => "http",
            Protocol::Coap | Protocol::Coaps => "coap",
            Protocol::Console => "console",
        }
    }

    /// Every protocol serve speaks, and its console.
    pub const ALL: [Protocol; 7] = [
        Protocol::Mqtt,
        Protocol::Mqtts,
        Protocol::Http,
        Protocol::Https,
        Protocol::Coap,
        Protocol::Coaps,
        Protocol::Console,
    ];

    /// The protocol a name in events and the twin stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn is_mqtt(self) -> bool {
        matches!(self, Protocol::Mqtt | Protocol::Mqtts)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The state every listener shares: what serve was started with (read only), and its parts,
/// each the one owner of its state (see the module's comment).
pub struct Endpoint {
    pub caps: Capabilities,
    pub registry: Registry,
    pub connack_delay: Duration,
    /// Every device's state: the one owner of it.
    pub twin: twin::Twin,
    /// Device secrets pushed by dynamic activation and not yet acknowledged.
    pub activations: activations::Activations,
    /// HTTP sessions, by session id.
    pub http_sessions: leases::Leases<String>,
    /// CoAP clients authenticated without DTLS, by address.
    pub coap_bindings: leases::Leases<SocketAddr>,
    /// MQTT client ids of the live connections (takeover), and kept clean-session-0 sessions.
    pub clients: mqtt_clients::ClientTable,
    /// The mailbox of each connected device (an MQTT connection, a CoAP session).
    pub mailboxes: commands::Mailboxes,
    /// Commands announced to CoAP devices in option 2100, until replied.
    pub coap_offered: coap_commands::Offered,
    /// MQTT's bounds: logins and the connections still waiting for their CONNECT.
    pub limits: Arc<limits::MqttLimits>,
    /// HTTP's bound: connections open over `--http` and `--https`, apart from MQTT's.
    pub http_limits: limits::Limit,
    /// The event log and the record, and the console's live streams.
    pub events: events::EventLog,
    /// What a harness changes in serve's answers; `policy::Faithful` changes nothing.
    pub policy: Box<dyn Policy>,
}

impl Endpoint {
    pub fn new(
        caps: Capabilities,
        registry: Registry,
        connack_delay: Duration,
        record: Option<&std::path::Path>,
        log: bool,
    ) -> std::io::Result<Self> {
        let events = events::EventLog::streams(record, log)?;
        Ok(Self::with_events(caps, registry, connack_delay, events))
    }

    /// An endpoint for a harness examining a device: its events go to the record file (if
    /// any) and to subscribers (`events::EventLog::subscribe`), never to stdout or stderr.
    pub fn harnessed(
        caps: Capabilities,
        registry: Registry,
        connack_delay: Duration,
        record: Option<&std::path::Path>,
    ) -> std::io::Result<Self> {
        let events = events::EventLog::record_only(record)?;
        Ok(Self::with_events(caps, registry, connack_delay, events))
    }

    /// An endpoint whose events are kept in the returned list instead of printed.
    pub fn in_memory(
        caps: Capabilities,
        registry: Registry,
        connack_delay: Duration,
    ) -> (Self, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let events = events::EventLog::memory(lines.clone());
        (Self::with_events(caps, registry, connack_delay, events), lines)
    }

    /// The same endpoint with another twin: one restored from a data file (`serve --data`),
    /// or one keeping history for another retention.
    pub fn with_twin(mut self, twin: twin::Twin) -> Self {
        self.twin = twin;
        self
    }

    /// Wait until what a reply acknowledges is safe: the events emitted so far written to the
    /// record, and the changes of the devices this connection changed or saw committed to the
    /// data file. Every reply (an MQTT reply, PUBACK or CONNACK, an HTTP answer, a CoAP
    /// response) leaves after this, so what serve acknowledged survives a `kill -9`. Many
    /// replies share one write and one commit ([`Endpoint::flusher`]).
    pub async fn committed(&self) {
        let target = twin::seen_mark().unwrap_or_else(|| self.twin.save_target());
        self.events.wait_written().await;
        self.twin.wait_saved(target).await;
    }

    /// The group commit, for as long as serve runs: once events are pending and every task
    /// that was ready has run (and made its changes), write the events to stdout and the
    /// record in one write (one per batch instead of two per event, which had capped serve's
    /// connection rate) and have the data file commit that batch's changes in one
    /// transaction; beside it, the store's relay wakes the replies waiting for a commit.
    pub async fn flusher(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        let events = async {
            loop {
                tokio::select! {
                    () = self.events.pending() => {}
                    () = stopped(shutdown.clone()) => break,
                }
                tokio::task::yield_now().await;
                self.events.flush();
                self.twin.save_activity();
                self.twin.save_now();
            }
            self.events.flush();
        };
        tokio::join!(events, self.twin.relay(shutdown.clone()));
    }

    /// The same endpoint, answering under `policy` (a harness examining a device).
    pub fn with_policy(mut self, policy: impl Policy) -> Self {
        self.policy = Box::new(policy);
        self
    }

    fn with_events(
        caps: Capabilities,
        registry: Registry,
        connack_delay: Duration,
        events: events::EventLog,
    ) -> Self {
        Endpoint {
            caps,
            twin: twin::Twin::seed(&registry),
            registry,
            connack_delay,
            activations: activations::Activations::default(),
            http_sessions: leases::Leases::default(),
            coap_bindings: leases::Leases::default(),
            clients: mqtt_clients::ClientTable::default(),
            mailboxes: commands::Mailboxes::default(),
            coap_offered: coap_commands::Offered::default(),
            limits: Arc::new(limits::MqttLimits::new(limits::DEFAULT_MAX_CONNECTIONS)),
            http_limits: limits::Limit::new(limits::DEFAULT_MAX_CONNECTIONS),
            events,
            policy: Box::new(policy::Faithful),
        }
    }
}

/// A request parameter as text: SDKs send some as strings and some as numbers.
pub(crate) fn text_field(params: &serde_json::Value, key: &str) -> Option<String> {
    match params.get(key) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Random hex from the TLS stack's secure random source, for secrets and session ids; `None`
/// when the system's random source fails: no secret is made without it.
pub(crate) fn random_hex(bytes: usize) -> Option<String> {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; bytes]);
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut buf)
        .ok()?;
    Some(credentials::hex_lower(&buf))
}

/// Entry points for the fuzz targets (`fuzz/fuzz_targets`): serve's own readers of what a
/// device sends, reachable without making them part of the API.
#[doc(hidden)]
pub mod fuzzing {
    /// The query of `GET .../history/{point}`: `(from, to, limit, csv)`, or why it is refused.
    pub fn history_query(query: &str) -> Result<(i64, i64, usize, bool), String> {
        super::history::Query::parse(Some(query))
            .map(|q| (q.from, q.to, q.limit, q.format == super::history::Format::Csv))
    }

    /// The most values one history answer holds.
    pub const HISTORY_MAX_LIMIT: usize = super::history::MAX_LIMIT;

    /// `--retain`'s spec (a duration and/or a count): `(seconds, count)`, or why it is refused.
    pub fn retention(spec: &str) -> Result<(Option<u64>, Option<u64>), String> {
        spec.parse::<super::history::Retention>()
            .map(|r| (r.duration.map(|d| d.as_secs()), r.count))
    }

    /// The protocol name and level of a CONNECT, read before the codec.
    pub fn connect_level(buf: &[u8]) -> Option<(String, u8)> {
        super::mqtt_wire::connect_level(buf)
    }

    /// The multipart body of `POST /multipart/...`: its parts read and each file checked
    /// against its `Content-MD5` and the `local://` names of the message; `Err` is the refusal.
    pub async fn multipart(content_type: Option<&str>, body: bytes::Bytes) -> Result<String, String> {
        super::http::read_multipart(content_type, body)
            .await
            .map(|form| form.summary())
            .map_err(|r| r.to_string())
    }
}
