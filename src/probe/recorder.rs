//! The stage clock of one probe: each stage timed as it happens, the details worth showing,
//! EnOS's reply read and checked, and at the end the report. What it holds survives a timeout
//! that drops the probe's future.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Failure;
use crate::measurement::{EnosReply, ErrorKind, NeedReport, ProbeError, ProbeReport, StageTiming};

/// Times stages as they happen; what it holds survives a timeout that drops the probe.
pub(crate) struct Recorder {
    started: Instant,
    stage: &'static str,
    stage_started: Instant,
    pub stages: Vec<StageTiming>,
    pub address: Option<SocketAddr>,
    pub details: serde_json::Map<String, serde_json::Value>,
    pub enos: Option<EnosReply>,
    pub verbose: bool,
    pub needs: Vec<NeedReport>,
    /// With a client certificate over TLS: whether the server asked for it.
    pub client_cert_requested: Option<bool>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Recorder {
    pub(crate) fn new(verbose: bool) -> Self {
        let now = Instant::now();
        Recorder {
            started: now,
            stage: "resolve",
            stage_started: now,
            stages: Vec::new(),
            address: None,
            details: serde_json::Map::new(),
            enos: None,
            verbose,
            needs: Vec::new(),
            client_cert_requested: None,
        }
    }

    /// The stage running (or the last one begun).
    pub(crate) fn stage(&self) -> &'static str {
        self.stage
    }

    pub(crate) fn begin(&mut self, stage: &'static str) {
        self.stage = stage;
        self.stage_started = Instant::now();
    }

    pub(crate) fn end(&mut self) {
        self.stages.push(StageTiming {
            name: self.stage,
            ms: ms(self.stage_started.elapsed()),
        });
    }

    pub(crate) fn detail(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.details.insert(key.to_string(), value.into());
    }

    /// A line on stderr in --verbose mode: what happened and when. Given as `format_args!`, the
    /// text is formatted only when it is printed: a load probe runs thousands of probes quietly.
    pub(crate) fn note(&self, text: impl std::fmt::Display) {
        if self.verbose {
            eprintln!("[{:>9.3} ms] {}: {text}", ms(self.started.elapsed()), self.stage);
        }
    }

    pub(super) fn finish(mut self, protocol: &str, target: &str, result: Result<(), Failure>) -> ProbeReport {
        let mut error = result.err().map(|f| ProbeError {
            kind: f.kind,
            stage: self.stage,
            message: f.message,
        });
        if error.is_some() {
            // The failing stage is timed too: how long a timeout or a refusal took matters.
            self.end();
        }
        // A need that failed fails the probe, with its own kind (a timeout exits 3).
        if error.is_none()
            && let Some((need, e)) = self
                .needs
                .iter()
                .find_map(|n| n.error.clone().map(|e| (&n.need, e)))
        {
            error = Some(ProbeError {
                message: format!("need `{need}`: {}", e.message),
                ..e
            });
        }
        self.stages.push(StageTiming {
            name: "total",
            ms: ms(self.started.elapsed()),
        });
        ProbeReport {
            ok: error.is_none(),
            protocol: protocol.to_string(),
            target: target.to_string(),
            address: self.address.map(|a| a.to_string()),
            stages: self.stages,
            error,
            enos: self.enos,
            details: self.details,
            needs: self.needs,
        }
    }

    /// Read EnOS's reply to the request `id` (MQTT matches by id; `None` takes any). `Ok(None)`:
    /// a reply to something else, to be ignored. A reply with a code other than 200 is a
    /// failure of kind `enos` that names the code and its meaning.
    pub(crate) fn enos_reply(&mut self, payload: &[u8], id: Option<&str>) -> Result<Option<()>, Failure> {
        let shown =
            || String::from_utf8_lossy(payload.get(..payload.len().min(60)).unwrap_or_default()).into_owned();
        let reply = match serde_json::from_slice::<crate::enos::ReplyHead>(payload) {
            Ok(reply) => reply,
            Err(e) if e.is_data() => {
                // JSON, but no EnOS reply: a message about another request is still ignored.
                let other = serde_json::from_slice::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| crate::enos::reply_id(&v));
                if let Some(want) = id
                    && other.as_deref() != Some(want)
                {
                    self.note(format_args!(
                        "ignored a message about another request ({other:?})"
                    ));
                    return Ok(None);
                }
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("the reply is not an EnOS reply ({e}): {:?}", shown()),
                ));
            }
            Err(_) => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("the reply is not JSON: {:?}", shown()),
                ));
            }
        };
        if let Some(want) = id
            && reply.id.as_deref() != Some(want)
        {
            self.note(format_args!(
                "ignored a reply to another request ({:?})",
                reply.id
            ));
            return Ok(None);
        }
        self.enos = Some(EnosReply {
            code: reply.code,
            message: reply.message.to_string(),
        });
        if reply.code == crate::enos::SUCCESS {
            return Ok(Some(()));
        }
        Err(Failure::new(
            ErrorKind::Enos,
            format!(
                "EnOS answered {}",
                crate::enos::describe(reply.code, &reply.message)
            ),
        ))
    }
}
