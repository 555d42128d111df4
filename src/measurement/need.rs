//! One need's result (`probe --need F`, and each cell of `--matrix`): how the exchange of a
//! feature of the comparison table came out over the protocol probed.

use serde::Serialize;

use super::{ProbeError, StageTiming};
use crate::capabilities::Support;

/// The stage a need that was not sent names in its error (not offered, not carried, untested):
/// nothing was timed, the need was checked against the table, what the protocol can carry and
/// the values given.
pub(crate) const NOT_SENT_STAGE: &str = "check";

/// The stage names a need's steps take, in the JSON `needs[].stages` (the `stage` of the
/// steps in `capabilities.toml`'s `[exchanges]`).
pub const NEED_STAGES: [&str; 10] = [
    "login",
    "subscribe",
    "query",
    "post",
    "event",
    "attribute",
    "batch",
    "resume",
    "upload",
    "command",
];

/// How a need came out, as a cell of the measured table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measured {
    /// The exchange went through: EnOS answered 200.
    Supported,
    /// EnOS refused it as not offered over the protocol (code 1009: HTTP 403, CoAP 4.05).
    Refused,
    /// The TLS login went through one way only: the server asked for no client certificate
    /// (`mutual_tls`). What the table's `partial` predicts; `partial` in the JSON (a contract),
    /// `one-way` in the table output.
    #[serde(rename = "partial")]
    OneWay,
    /// Not sent: the protocol has no way to carry the exchange at all (no multipart path over
    /// MQTT, no downlink over HTTP: `[exchanges.carried_by]`). Nothing was measured.
    NotCarried,
    /// Not sent: the table says the protocol does not offer it (without `--matrix`).
    NotOffered,
    /// Not checked: it needs a value or a login this probe was not given.
    Untested,
    /// Another failure: a timeout, a wrong reply, another code.
    Failed,
}

impl Measured {
    pub fn as_str(self) -> &'static str {
        match self {
            Measured::Supported => "supported",
            Measured::Refused => "refused",
            Measured::OneWay => "one-way",
            Measured::NotCarried => "not carried",
            Measured::NotOffered => "not offered",
            Measured::Untested => "untested",
            Measured::Failed => "failed",
        }
    }
}

/// One need's result: an item of the JSON `needs`.
#[derive(Debug, Clone, Serialize)]
pub struct NeedReport {
    pub need: String,
    pub protocol: String,
    /// The comparison table's cell for this feature and protocol.
    pub table: Support,
    pub ok: bool,
    pub measured: Measured,
    /// EnOS's reply code, when a reply arrived.
    pub code: Option<i64>,
    pub message: String,
    pub stages: Vec<StageTiming>,
    pub error: Option<ProbeError>,
}
