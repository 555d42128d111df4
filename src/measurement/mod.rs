//! What a probe measured, as data: the reports `probe` fills in and `render` prints. Below
//! both, so the output layer needs nothing of the network code and the network code nothing
//! of the output: a report is plain values (serde for the JSON, which is a contract: fields
//! are added, never renamed).
//!
//! [`ProbeReport`] is one probe with its stages; [`need`] the exchange of one feature
//! (`--need`); [`matrix`] the comparison table as measured (`--matrix`); [`load`] a load
//! probe's counts and percentiles (`--count`, `merge`); [`fleet`] a held fleet's (`--fleet`).

pub mod fleet;
pub mod load;
pub mod matrix;
pub mod need;

use serde::Serialize;

pub use need::{Measured, NeedReport};

/// Why a probe failed. The JSON `error.kind` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Resolve,
    Refused,
    Timeout,
    Tls,
    Auth,
    Protocol,
    Io,
    /// EnOS answered with a code other than 200.
    Enos,
    /// A failure of enos-connect itself (a probe task that panicked), not of the peer.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Resolve => "resolve",
            ErrorKind::Refused => "refused",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::Auth => "auth",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Io => "io",
            ErrorKind::Enos => "enos",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A probe's failure: its kind, the stage it happened in and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct ProbeError {
    pub kind: ErrorKind,
    pub stage: &'static str,
    pub message: String,
}

/// Every stage name, in the order a probe can pass them.
pub const STAGES: [&str; 11] = [
    "resolve",
    "connect",
    "tls",
    "handshake",
    "request",
    "activate",
    "relogin",
    "subdevice_login",
    "roundtrip",
    "reply",
    "total",
];

/// EnOS's answer to a request the probe sent: the `enos` object of the JSON report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnosReply {
    pub code: i64,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageTiming {
    pub name: &'static str,
    pub ms: f64,
}

/// The result of one probe: the JSON object of `probe --format json`.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub ok: bool,
    pub protocol: String,
    pub target: String,
    /// The address that answered (or was tried last).
    pub address: Option<String>,
    pub stages: Vec<StageTiming>,
    pub error: Option<ProbeError>,
    /// EnOS's reply code and message, whenever a reply arrived.
    pub enos: Option<EnosReply>,
    /// Protocol facts worth showing: CONNACK code, CoAP response code, HTTP status, attempts.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// `--need`: each need's exchange, in the order given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<NeedReport>,
}

impl ProbeReport {
    pub fn timed_out(&self) -> bool {
        self.error.as_ref().is_some_and(|e| e.kind == ErrorKind::Timeout)
    }
}
