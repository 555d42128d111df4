//! `device-test`: examine the device, not the endpoint. serve's listeners stand in for EnOS
//! while a catalogue of cases tests how the device under test behaves: its login, its posts,
//! its answers to commands, how it retries and reconnects, OTA, its sub-devices, TLS.
//!
//! - [`catalogue`]: the cases as data (ids, features, what each checks and the fix it
//!   suggests), and which of them a run makes (`--case`, the answers' needs, the comparison
//!   table of `capabilities.toml`);
//! - [`evidence`]: the journal of what the device did and the suite did to it, filled by the
//!   [`harness::Harness`] (the [`crate::serve::Policy`] of the run) and serve's events, which
//!   the runner drains as it waits (`watcher`);
//! - [`judge`]: each case's verdict, a pure function of the evidence;
//! - [`runner`] (with `cases`): binds serve's listeners, waits for the device, drives each
//!   case through serve's parts, every wait bounded;
//! - `process`: the device `--run` starts, and its end;
//! - [`report`]: the report, one file per format (table, JSON, markdown, JUnit XML).

pub(crate) mod cases;
pub mod catalogue;
// Public for fuzz/fuzz_targets/device_test_evidence.rs only.
#[doc(hidden)]
pub mod evidence;
#[doc(hidden)]
pub mod harness;
#[doc(hidden)]
pub mod judge;
pub(crate) mod process;
pub mod report;
pub mod runner;
pub(crate) mod watcher;

use std::time::Duration;

use serde::Serialize;

use crate::help::Help;
use evidence::Seen;

/// A case's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    /// It works, in a way that will hurt (no jitter, a resend only after a reconnect).
    Warn,
    Fail,
    /// Not run: not claimed, not offered over the device's protocol, or not applicable.
    Skipped,
    /// The suite could not judge it (the device never logged in, or exited).
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
            Verdict::Skipped => "skipped",
            Verdict::Error => "error",
        }
    }

    /// Whether the run fails because of it (exit 1).
    pub fn fails_the_run(self) -> bool {
        matches!(self, Verdict::Fail | Verdict::Error)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One case's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub id: &'static str,
    pub verdict: Verdict,
    /// How long the case took.
    #[serde(serialize_with = "seconds")]
    pub seconds: Duration,
    /// What was expected, what was seen, and what to change in the firmware.
    pub message: String,
    pub expected: String,
    pub seen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The journal's entries the verdict was made from.
    pub evidence: Vec<Seen>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl CaseResult {
    /// The result of a judged case.
    pub fn judged(id: &'static str, seconds: Duration, j: judge::Judged) -> Self {
        let mut message = format!("Expected {}; saw {}.", j.expected, j.seen);
        if let Some(fix) = &j.fix {
            message.push_str(&format!(" Fix: {fix}."));
        }
        CaseResult {
            id,
            verdict: j.verdict,
            seconds,
            message,
            expected: j.expected,
            seen: j.seen,
            fix: j.fix,
            evidence: j.evidence,
        }
    }

    /// A case not run, and why.
    pub fn skipped(id: &'static str, why: impl Into<String>) -> Self {
        let why = why.into();
        CaseResult {
            id,
            verdict: Verdict::Skipped,
            seconds: Duration::ZERO,
            message: why.clone(),
            expected: String::new(),
            seen: why,
            fix: None,
            evidence: Vec::new(),
        }
    }

    /// A case the suite could not judge, and why.
    pub fn error(id: &'static str, seconds: Duration, why: impl Into<String>, evidence: Vec<Seen>) -> Self {
        let why = why.into();
        CaseResult {
            id,
            verdict: Verdict::Error,
            seconds,
            message: why.clone(),
            expected: String::new(),
            seen: why,
            fix: None,
            evidence,
        }
    }
}

/// The report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `PK/DK`.
    pub device: String,
    pub catalogue_version: &'static str,
    /// The protocol the device logged in over (`mqtt`, `mqtts`, `http`, ...).
    pub protocol: Option<String>,
    /// The run's length.
    #[serde(serialize_with = "seconds")]
    pub seconds: Duration,
    /// Where the output of the device `--run` started went.
    pub device_log: Option<String>,
    /// How the device `--run` started ended before the suite stopped it, if it did.
    pub device_exit: Option<String>,
    /// Journal entries left out past the bound (a flooding device).
    pub evidence_dropped: u64,
    pub cases: Vec<CaseResult>,
    pub summary: Summary,
}

/// How many cases got each verdict.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    pub skipped: usize,
    pub error: usize,
}

impl Summary {
    pub fn of(cases: &[CaseResult]) -> Self {
        let mut s = Summary::default();
        for c in cases {
            *match c.verdict {
                Verdict::Pass => &mut s.pass,
                Verdict::Warn => &mut s.warn,
                Verdict::Fail => &mut s.fail,
                Verdict::Skipped => &mut s.skipped,
                Verdict::Error => &mut s.error,
            } += 1;
        }
        s
    }
}

impl Report {
    /// Exit 0 when no case failed or errored.
    pub fn passed(&self) -> bool {
        !self.cases.iter().any(|c| c.verdict.fails_the_run())
    }
}

/// How long the suite waits, and how it provokes the device. The defaults are the and
/// the docs'; tests shorten them (a device of the test suite backs off in milliseconds).
#[derive(Debug, Clone)]
pub struct Timings {
    /// The wait for the device's first login (`--wait`).
    pub wait: Duration,
    /// The wait for a command's reply (`--reply-timeout`).
    pub reply_timeout: Duration,
    /// The wait for an OTA upgrade to be reported done (`--ota-timeout`).
    pub ota_timeout: Duration,
    /// `mqtt.puback_retry`: how long the suite waits for a resend while connected before it
    /// drops the connection.
    pub puback_drop: Duration,
    /// `reconnect.backoff`: the least wait after a drop before the first reconnect.
    pub first_reconnect: Duration,
    /// `reconnect.backoff`: the reconnects refused after the drop (the connection is dropped
    /// once, then each of these: `1 + refusals` drops).
    pub refusals: u32,
    /// The longest wait for one reconnect (a device backing off to 128 s, as the Java SDK).
    pub reconnect_wait: Duration,
    /// `reconnect.resume`: the least outage (longer for a device that posts less often).
    pub outage: Duration,
    /// How long the suite watches for what the device does at its own pace: a first post, a
    /// QoS 1 PUBLISH to withhold, sub-device logins, the points of an outage after it.
    pub observe: Duration,
    /// `tls.verify_server`: after a connection got the untrusted certificate, how long the
    /// suite watches for a CONNECT over it.
    pub tls_settle: Duration,
    /// serve's wait before CONNACK (the refused reconnects' gaps are measured from the refusal).
    pub connack_delay: Duration,
    /// How long a reconnected device is left to itself before the next case (what it does
    /// as a connection opens: sub-device logins, resent messages).
    pub settle: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            wait: Duration::from_secs(60),
            reply_timeout: Duration::from_secs(5),
            ota_timeout: Duration::from_secs(60),
            puback_drop: Duration::from_secs(20),
            first_reconnect: Duration::from_secs(1),
            refusals: 3,
            reconnect_wait: Duration::from_secs(130),
            outage: Duration::from_secs(5),
            observe: Duration::from_secs(30),
            tls_settle: Duration::from_secs(2),
            connack_delay: Duration::from_millis(50),
            settle: Duration::from_secs(1),
        }
    }
}

/// Why a run could not start (a usage error at the edge).
#[derive(Debug, thiserror::Error)]
pub enum DeviceTestError {
    #[error("--device {0}: not `PRODUCT_KEY/DEVICE_KEY`")]
    DeviceFormat(String),
    #[error("--device {pk}/{dk}: the registry has no such device")]
    UnknownDevice { pk: String, dk: String },
    #[error("--case: {0}")]
    Case(String),
    #[error("every device listener is off: the device could not connect")]
    NoListener,
    #[error(transparent)]
    Bind(#[from] crate::serve::BindError),
    #[error("--record {path}: cannot create it: {source}")]
    Record {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--run: cannot start `{command}`: {source}")]
    Run {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--device-log {path}: cannot create it: {source}")]
    DeviceLog {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Help for DeviceTestError {
    fn help(&self) -> Option<String> {
        Some(
            match self {
                DeviceTestError::DeviceFormat(_) => {
                    "give the device as PK/DK, e.g. --device Pk7Xy2/meter-0042"
                }
                DeviceTestError::UnknownDevice { .. } => {
                    "list the device under [[devices]] in the registry (product, key, secret)"
                }
                DeviceTestError::Case(_) => "`enos-connect device-test --list` lists the case ids",
                DeviceTestError::NoListener => "keep at least one of --mqtt, --mqtts, --http or --coap on",
                DeviceTestError::Bind(_) => {
                    "pick a free port (port 0 picks one), or `off` to turn the listener off"
                }
                DeviceTestError::Record { .. } | DeviceTestError::DeviceLog { .. } => {
                    "check that the folder exists and is writable"
                }
                DeviceTestError::Run { .. } => "the command runs with `sh -c`; check that it exists",
            }
            .to_string(),
        )
    }
}
