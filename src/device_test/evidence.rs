//! What the suite sees the device under test do, and what the suite does to it: one journal of
//! [`Seen`] entries in the order they happened, each with its time since the run began. Two
//! sources fill it: the [`super::harness::Harness`], the policy serve consults synchronously (a CONNECT
//! with its keep-alive, every packet, a PUBLISH with its packet id and DUP flag, an answered
//! request with its payload), and serve's typed events (logins and their codes, disconnects,
//! sub-device logins), which the runner drains before it acts, so what happened before an
//! action is journaled before it. The journal is bounded: a device that floods loses the
//! detail of the flood, not the verdict (what judges a case is kept per class).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::enos;
use crate::serve::events::Published;
use crate::serve::{EventKind, Identity, Protocol};

/// The most entries of one class the journal keeps (a device flooding posts loses their detail
/// past it; the classes that judge a case are counted apart, so a verdict never depends on it).
pub(crate) const MAX_PER_CLASS: usize = 5_000;

/// One thing seen, and when.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Seen {
    /// Seconds since the run began.
    #[serde(serialize_with = "seconds")]
    pub at: Duration,
    /// This machine's clock when it was seen, ms since the epoch.
    #[serde(skip)]
    pub clock_ms: i64,
    #[serde(flatten)]
    pub what: What,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What was seen (an event of the device) or done (an action of the suite).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum What {
    /// A CONNECT of the device, before its login was checked.
    Connect {
        protocol: Protocol,
        peer: String,
        keep_alive: u16,
        clean_session: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        secure_mode: Option<u8>,
        /// The suite refused it (CONNACK 3), testing how the device reconnects.
        #[serde(skip_serializing_if = "is_false")]
        refused_by_suite: bool,
        /// It came over a TLS connection the suite served a certificate no trusted CA signed.
        #[serde(skip_serializing_if = "is_false")]
        untrusted_certificate: bool,
    },
    /// serve logged the device in (code: CONNACK 0, or HTTP/CoAP 200).
    Login { protocol: Protocol, code: i64 },
    /// serve refused a login, with its code (CONNACK, or HTTP/CoAP) and why.
    LoginRefused {
        protocol: Protocol,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<i64>,
        message: String,
    },
    /// The device acknowledged a dynamic activation.
    Activated { protocol: Protocol },
    /// A connection of the device ended.
    Disconnect { protocol: Protocol, message: String },
    /// A packet other than PUBLISH from the logged-in device (PINGREQ, SUBSCRIBE, ...).
    Packet { kind: &'static str },
    /// A PUBLISH from the logged-in device.
    Publish {
        topic: String,
        qos: u8,
        pkid: u16,
        dup: bool,
        /// The suite withheld its PUBACK (not acknowledged, not processed).
        #[serde(skip_serializing_if = "is_false")]
        lost: bool,
        /// On a `_reply` topic: the id and code of the reply.
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_code: Option<i64>,
    },
    /// A request serve answered, with its code and what the suite reads in it.
    Request {
        /// The device the topic names, when not the device under test (a sub-device).
        #[serde(skip_serializing_if = "Option::is_none")]
        device: Option<String>,
        topic: String,
        method: String,
        code: i64,
        /// The `time` of each point set it carries (ms since the epoch).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        times: Vec<i64>,
        /// `ota.progress`: the step.
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<i64>,
        /// `ota.inform`: the version.
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    /// A sub-device login the gateway made, with serve's code.
    SubdeviceLogin {
        device: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<i64>,
    },
    /// The suite sent a command.
    Command {
        method: String,
        topic: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// What became of it: the device's reply, or why there was none.
    CommandOutcome {
        method: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        failed: Option<Failure>,
        /// What serve said about a command it could not send.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The suite dropped the device's connection.
    Dropped,
    /// The suite refuses the device's next CONNECTs (a count, or for a time).
    Refusing {
        #[serde(skip_serializing_if = "Option::is_none")]
        count: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        seconds: Option<f64>,
    },
    /// A TLS connection served the certificate no trusted CA signed.
    UntrustedTls { peer: String },
    /// The suite fell behind serve's events and missed some.
    Lagged { missed: u64 },
}

impl What {
    /// The class bounds are counted in: successes and failures apart, so a flood of one does
    /// not push out the other.
    fn class(&self) -> (u8, bool) {
        match self {
            What::Connect { .. } => (0, true),
            What::Login { .. } => (1, true),
            What::LoginRefused { .. } => (2, true),
            What::Activated { .. } => (3, true),
            What::Disconnect { .. } => (4, true),
            What::Packet { .. } => (5, true),
            What::Publish { lost, dup, .. } => (6, !lost && !dup),
            What::Request { code, .. } => (7, *code == enos::SUCCESS),
            What::SubdeviceLogin { .. } => (8, true),
            _ => (9, true),
        }
    }
}

/// Why a command got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// serve would not send it (not a command for this device).
    Invalid,
    /// The device was not connected.
    NotReached,
    /// The device disconnected before replying.
    Gone,
    /// No reply in time.
    TimedOut,
}

impl Failure {
    pub fn of(f: &crate::serve::CommandFailed) -> Self {
        use crate::serve::CommandFailed;
        match f {
            CommandFailed::Invalid(_) => Failure::Invalid,
            CommandFailed::NotReached(_) => Failure::NotReached,
            CommandFailed::Gone => Failure::Gone,
            CommandFailed::TimedOut => Failure::TimedOut,
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            Failure::Invalid => "serve would not send it",
            Failure::NotReached => "the device was not connected",
            Failure::Gone => "the device disconnected before replying",
            Failure::TimedOut => "no reply in time",
        }
    }
}

/// What the policy is set to do now.
#[derive(Default)]
pub(super) struct Armed {
    /// Lose the device's next QoS 1 request PUBLISH.
    pub(super) lose_next: bool,
    /// Refuse this many of the device's next CONNECTs.
    pub(super) refuse_count: u32,
    /// Refuse every CONNECT of the device until then.
    pub(super) refuse_until: Option<Instant>,
    /// Serve new `--mqtts` connections this configuration (a certificate no one trusts).
    pub(super) untrusted: Option<Arc<rustls::ServerConfig>>,
    pub(super) untrusted_peers: HashSet<SocketAddr>,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    counts: std::collections::HashMap<(u8, bool), usize>,
    /// Entries not kept, past [`MAX_PER_CLASS`].
    dropped: u64,
    armed: Armed,
}

/// The journal of one run: what was seen, and what the policy is set to do.
pub struct Journal {
    start: Instant,
    pub device: Identity,
    /// The sub-devices the registry puts in the device's topology.
    pub subdevices: Vec<Identity>,
    state: Mutex<State>,
    /// Bumped on every entry: waiters wake on it.
    version: watch::Sender<u64>,
}

/// The entries of `seen` from `from` on (entries are journaled in time order).
pub(crate) fn window(seen: &[Seen], from: Duration) -> &[Seen] {
    &seen[seen.partition_point(|e| e.at < from)..]
}

/// This machine's clock, ms since the epoch.
pub(crate) fn clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl Journal {
    pub fn new(device: Identity, subdevices: Vec<Identity>) -> Self {
        Journal {
            start: Instant::now(),
            device,
            subdevices,
            state: Mutex::new(State::default()),
            version: watch::Sender::new(0),
        }
    }

    /// Time since the run began.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Journal `what`, now.
    pub fn record(&self, what: What) {
        let seen = Seen {
            at: self.now(),
            clock_ms: clock_ms(),
            what,
        };
        if let Ok(mut s) = self.state.lock() {
            let class = seen.what.class();
            let n = s.counts.entry(class).or_default();
            if *n < MAX_PER_CLASS {
                *n += 1;
                s.seen.push(seen);
            } else {
                s.dropped = s.dropped.saturating_add(1);
            }
        }
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A copy of what was seen from `from` on.
    pub fn since(&self, from: Duration) -> Vec<Seen> {
        self.with(|s| window(s, from).to_vec())
    }

    /// Apply `f` to everything seen so far.
    pub fn with<T>(&self, f: impl FnOnce(&[Seen]) -> T) -> T {
        match self.state.lock() {
            Ok(s) => f(&s.seen),
            Err(_) => f(&[]),
        }
    }

    /// How many entries the bound left out.
    pub fn dropped(&self) -> u64 {
        self.state.lock().map(|s| s.dropped).unwrap_or_default()
    }

    pub fn watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub(super) fn arm(&self, f: impl FnOnce(&mut Armed)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s.armed);
        }
    }

    /// Lose the device's next QoS 1 request.
    pub fn lose_next(&self, on: bool) {
        self.arm(|a| a.lose_next = on);
    }

    /// Refuse the device's next `n` CONNECTs.
    pub fn refuse_next(&self, n: u32) {
        self.arm(|a| a.refuse_count = n);
        self.record(What::Refusing {
            count: Some(n),
            seconds: None,
        });
    }

    /// Refuse every CONNECT of the device for `d` from now.
    pub fn refuse_for(&self, d: Duration) {
        self.arm(|a| a.refuse_until = Some(Instant::now() + d));
        self.record(What::Refusing {
            count: None,
            seconds: Some(d.as_secs_f64()),
        });
    }

    /// Serve new `--mqtts` connections `config` (`None`: the listener's own again).
    pub fn untrusted(&self, config: Option<Arc<rustls::ServerConfig>>) {
        self.arm(|a| {
            a.untrusted = config;
            a.untrusted_peers.clear();
        });
    }

    /// Whether `id` is the device under test or one of its sub-devices.
    pub(super) fn ours(&self, id: &Identity) -> bool {
        *id == self.device || self.subdevices.contains(id)
    }

    /// Journal one of serve's events, if it is about the device (or a sub-device it logs in).
    pub fn event(&self, p: &Published) {
        let e = &p.event;
        let about_device = e.device_named().as_ref() == Some(&self.device);
        let what = match e.event {
            EventKind::Login if about_device => What::Login {
                protocol: e.protocol,
                code: e.code.unwrap_or_default(),
            },
            EventKind::LoginRefused if about_device => What::LoginRefused {
                protocol: e.protocol,
                code: e.code,
                message: e.message.clone().unwrap_or_default(),
            },
            EventKind::Activated if about_device => What::Activated { protocol: e.protocol },
            EventKind::Disconnect if about_device => What::Disconnect {
                protocol: e.protocol,
                message: e.message.clone().unwrap_or_default(),
            },
            EventKind::SubdeviceLogin
                if e.topic
                    .as_deref()
                    .is_some_and(|t| enos::owns(t, &self.device.product_key, &self.device.device_key)) =>
            {
                What::SubdeviceLogin {
                    device: e
                        .device_named()
                        .map(|d| format!("{}/{}", d.product_key, d.device_key))
                        .unwrap_or_default(),
                    code: e.code,
                }
            }
            _ => return,
        };
        self.record(what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_keeps_its_first_entries_of_each_class_and_counts_the_rest() {
        let j = Journal::new(Identity::new("p", "d"), vec![]);
        let request = |code| What::Request {
            device: None,
            topic: "/sys/p/d/thing/measurepoint/post".into(),
            method: "thing.measurepoint.post".into(),
            code,
            times: vec![],
            step: None,
            version: None,
        };
        for _ in 0..MAX_PER_CLASS + 10 {
            j.record(request(200));
        }
        j.record(request(1204));
        assert_eq!(j.dropped(), 10);
        assert!(
            j.with(|s| s
                .iter()
                .any(|e| matches!(e.what, What::Request { code: 1204, .. }))),
            "a refused post after a flood of good ones is still journaled"
        );
    }
}
