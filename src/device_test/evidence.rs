//! What the suite sees the device under test do, and what the suite does to it: one journal of
//! [`Seen`] entries in the order they happened, each with its time since the run began. Two
//! sources fill it: the [`Harness`], the [`Policy`] serve consults synchronously (a CONNECT
//! with its keep-alive, every packet, a PUBLISH with its packet id and DUP flag, an answered
//! request with its payload), and serve's typed events (logins and their codes, disconnects,
//! sub-device logins), which the runner drains before it acts, so what happened before an
//! action is journaled before it. The journal is bounded: a device that floods loses the
//! detail of the flood, not the verdict (what judges a case is kept per class).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::ConnectReturnCode;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::enos;
use crate::serve::events::Published;
use crate::serve::{
    Admit, Answered, Connecting, EventKind, Fate, Identity, Inbound, Policy, Protocol, Received,
};

/// The most entries of one class the journal keeps (a device flooding posts loses their detail
/// past it; the classes that judge a case are counted apart, so a verdict never depends on it).
pub const MAX_PER_CLASS: usize = 5_000;

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
struct Armed {
    /// Lose the device's next QoS 1 request PUBLISH.
    lose_next: bool,
    /// Refuse this many of the device's next CONNECTs.
    refuse_count: u32,
    /// Refuse every CONNECT of the device until then.
    refuse_until: Option<Instant>,
    /// Serve new `--mqtts` connections this configuration (a certificate no one trusts).
    untrusted: Option<Arc<rustls::ServerConfig>>,
    untrusted_peers: HashSet<SocketAddr>,
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
    start_clock_ms: i64,
    pub device: Identity,
    /// The sub-devices the registry puts in the device's topology.
    pub subdevices: Vec<Identity>,
    state: Mutex<State>,
    /// Bumped on every entry: waiters wake on it.
    version: watch::Sender<u64>,
}

/// This machine's clock, ms since the epoch.
pub fn clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl Journal {
    pub fn new(device: Identity, subdevices: Vec<Identity>) -> Self {
        Journal {
            start: Instant::now(),
            start_clock_ms: clock_ms(),
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

    /// When the run began, on this machine's clock (ms since the epoch).
    pub fn start_clock_ms(&self) -> i64 {
        self.start_clock_ms
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
        self.state
            .lock()
            .map(|s| s.seen.iter().filter(|e| e.at >= from).cloned().collect())
            .unwrap_or_default()
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

    fn arm(&self, f: impl FnOnce(&mut Armed)) {
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
    fn ours(&self, id: &Identity) -> bool {
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

/// The [`Policy`] of a run: it journals what serve's events do not carry and does what the
/// runner armed (lose a PUBLISH, refuse CONNECTs, present an untrusted certificate).
pub struct Harness(pub Arc<Journal>);

/// The device a CONNECT's user name (`dk&pk`) names.
fn named_by(user_name: &str) -> Option<Identity> {
    let (dk, pk) = user_name.split_once('&')?;
    Some(Identity::new(pk, dk))
}

impl Policy for Harness {
    fn publish(&self, p: &Inbound<'_>) -> Fate {
        let j = &self.0;
        if *p.device != j.device {
            return Fate::Answer;
        }
        let request = !p.topic.ends_with("_reply");
        let mut lose = false;
        j.arm(|a| {
            if a.lose_next && request && p.qos == QoS::AtLeastOnce && !p.dup {
                a.lose_next = false;
                lose = true;
            }
        });
        let reply: Option<Value> = (!request)
            .then(|| serde_json::from_slice(p.payload).ok())
            .flatten();
        j.record(What::Publish {
            topic: p.topic.to_string(),
            qos: p.qos as u8,
            pkid: p.pkid,
            dup: p.dup,
            lost: lose,
            reply_id: reply.as_ref().and_then(enos::reply_id),
            reply_code: reply
                .and_then(|r| serde_json::from_value::<enos::Reply>(r).ok())
                .map(|r| r.code),
        });
        if lose { Fate::Lose } else { Fate::Answer }
    }

    fn mqtts_config(&self, peer: SocketAddr) -> Option<Arc<rustls::ServerConfig>> {
        let j = &self.0;
        let mut config = None;
        j.arm(|a| {
            if let Some(c) = &a.untrusted {
                a.untrusted_peers.insert(peer);
                config = Some(c.clone());
            }
        });
        if config.is_some() {
            j.record(What::UntrustedTls {
                peer: peer.to_string(),
            });
        }
        config
    }

    fn connect(&self, c: &Connecting<'_>) -> Admit {
        let j = &self.0;
        if named_by(c.user_name).as_ref() != Some(&j.device) {
            return Admit::Check;
        }
        let (mut refuse, mut untrusted) = (false, false);
        j.arm(|a| {
            untrusted = a.untrusted_peers.contains(&c.peer);
            if a.refuse_count > 0 {
                a.refuse_count -= 1;
                refuse = true;
            } else if a.refuse_until.is_some_and(|t| Instant::now() < t) {
                refuse = true;
            }
        });
        j.record(What::Connect {
            protocol: c.protocol,
            peer: c.peer.to_string(),
            keep_alive: c.keep_alive,
            clean_session: c.clean_session,
            secure_mode: enos::MqttLogin::parse(c.client_id, c.user_name)
                .ok()
                .map(|l| l.secure_mode),
            refused_by_suite: refuse,
            untrusted_certificate: untrusted,
        });
        if refuse {
            Admit::Refuse(ConnectReturnCode::ServiceUnavailable)
        } else {
            Admit::Check
        }
    }

    fn received(&self, device: &Identity, packet: Received) {
        let kind = match packet {
            // Journaled with its packet id and flags by `publish`.
            Received::Publish => return,
            Received::PingReq => "pingreq",
            Received::Subscribe => "subscribe",
            Received::Unsubscribe => "unsubscribe",
            Received::Acknowledgement => "acknowledgement",
            Received::Other => "other",
        };
        if *device == self.0.device {
            self.0.record(What::Packet { kind });
        }
    }

    fn answered(&self, a: &Answered<'_>) {
        let j = &self.0;
        let topic_ours = enos::owns(a.topic, &j.device.product_key, &j.device.device_key);
        if !j.ours(a.device) && !topic_ours {
            return;
        }
        let params = serde_json::from_slice::<Value>(a.payload)
            .ok()
            .and_then(|v| v.get("params").cloned())
            .unwrap_or(Value::Null);
        j.record(What::Request {
            device: (*a.device != j.device)
                .then(|| format!("{}/{}", a.device.product_key, a.device.device_key)),
            topic: a.topic.to_string(),
            method: a.method.to_string(),
            code: a.code,
            times: times_in(&params),
            step: number(params.get("step")),
            version: crate::serve::text_field(&params, "version"),
        });
    }
}

/// The most point times read from one request.
const MAX_TIMES: usize = 100;

/// The `time` of each point set of a post's params: the params' own, or each item's (batch).
fn times_in(params: &Value) -> Vec<i64> {
    match params {
        Value::Object(_) => number(params.get("time")).into_iter().collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| number(i.get("time")))
            .take(MAX_TIMES)
            .collect(),
        _ => Vec::new(),
    }
}

/// A number the SDKs send as a number or as text.
fn number(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| s.trim().parse::<f64>().ok().map(|f| f as i64)),
        _ => None,
    }
}

/// Where the runner waits: it drains serve's events into the journal as they come, so an
/// event is journaled before anything the runner does after it.
pub struct Watcher {
    pub journal: Arc<Journal>,
    events: broadcast::Receiver<Arc<Published>>,
    version: watch::Receiver<u64>,
}

impl Watcher {
    pub fn new(journal: Arc<Journal>, events: broadcast::Receiver<Arc<Published>>) -> Self {
        let version = journal.watch();
        Watcher {
            journal,
            events,
            version,
        }
    }

    /// Journal every event emitted so far.
    pub fn drain(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(p) => self.journal.event(&p),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    self.journal.record(What::Lagged { missed: n })
                }
                Err(_) => return,
            }
        }
    }

    /// Record what the suite does, after every event before it.
    pub fn act(&mut self, what: What) {
        self.drain();
        self.journal.record(what);
    }

    /// Wait until `check` finds something in the journal, or until `deadline` (`None`).
    pub async fn until<T>(
        &mut self,
        deadline: Instant,
        mut check: impl FnMut(&[Seen]) -> Option<T>,
    ) -> Option<T> {
        loop {
            self.drain();
            if let Some(t) = self.journal.with(&mut check) {
                return Some(t);
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline.into()) => {
                    self.drain();
                    return self.journal.with(&mut check);
                }
                r = self.events.recv() => match r {
                    Ok(p) => self.journal.event(&p),
                    Err(broadcast::error::RecvError::Lagged(n)) => self.journal.record(What::Lagged { missed: n }),
                    // serve stopped: nothing more will come.
                    Err(broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep_until(deadline.into()).await;
                    }
                },
                _ = self.version.changed() => {}
            }
        }
    }

    /// Run `f` while journaling the events that come meanwhile.
    pub async fn during<F: std::future::Future>(&mut self, f: F) -> F::Output {
        tokio::pin!(f);
        loop {
            tokio::select! {
                out = &mut f => {
                    self.drain();
                    return out;
                }
                r = self.events.recv() => match r {
                    Ok(p) => self.journal.event(&p),
                    Err(broadcast::error::RecvError::Lagged(n)) => self.journal.record(What::Lagged { missed: n }),
                    Err(broadcast::error::RecvError::Closed) => return f.await,
                },
            }
        }
    }

    /// Wait for `d`, journaling events.
    pub async fn sleep(&mut self, d: Duration) {
        self.during(tokio::time::sleep(d)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_from_a_post_and_from_each_item_of_a_batch() {
        let post = serde_json::json!({"measurepoints": {"t": 1}, "time": 1_700_000_000_123_i64});
        assert_eq!(times_in(&post), [1_700_000_000_123]);
        let batch = serde_json::json!([{"time": "1700000000000"}, {"measurepoints": {}}, {"time": 1.7e12}]);
        assert_eq!(times_in(&batch), [1_700_000_000_000, 1_700_000_000_000]);
        assert!(times_in(&serde_json::json!({"measurepoints": {}})).is_empty());
    }

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
