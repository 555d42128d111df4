//! `probe --need F` and `probe --matrix`: after the login, the exchange each feature of the
//! comparison table needs, over the protocol probed, each step a stage of its own, each read up
//! to EnOS's reply code.
//!
//! Data-driven: the steps are `[exchanges]` of `capabilities.toml`. A step names the topic's
//! tail (`thing/topo/get`); the topic is the feature's own pattern that ends so (the patterns
//! `serve` enforces and `plan` prints), the method the first `enos::UPSTREAM` accepts there
//! (what the SDKs send), the params the step's JSON with the values given filled in. Which
//! protocols can carry each kind of step is data too: over another, the need is "not carried"
//! and nothing is sent. One `Transport` per protocol carries the kinds; nothing here names a
//! feature or a protocol.
//!
//! Safe against production by default: without a value the user names, a check only reads
//! (queries, subscriptions, `getversion`). Running the steps and reading the outcome is
//! `needs_run.rs`; the tests are in `needs_tests.rs`.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::command_api::CommandApi;
use super::{Failure, ProbeOptions, Recorder};
use crate::capabilities::{Capabilities, Given, LoginKind, StepKind};
use crate::enos::{self, Request};

pub(crate) use super::needs_run::run;

/// The raw bytes `passthrough_up` sends without `--raw`, and a raw command carries.
pub(crate) const DEFAULT_RAW: [u8; 4] = [0x01, 0x02, 0x03, 0x04];

/// What `--need` and its values ask for.
#[derive(Clone, Debug, Default)]
pub struct NeedOptions {
    /// Feature ids, in the order given.
    pub needs: Vec<String>,
    /// Send every need, even one the table says the protocol does not offer (`--matrix`).
    pub matrix: bool,
    /// `--event ID[=JSON]`: the event's values (an empty object when none).
    pub events: Vec<(String, Value)>,
    /// `--attribute ID=VALUE`.
    pub attributes: Map<String, Value>,
    /// `--raw HEX` (default: `DEFAULT_RAW`).
    pub raw: Option<Vec<u8>>,
    /// `--file PATH` read: its name and bytes (default: a small generated file).
    pub file: Option<(String, Vec<u8>)>,
    /// `--file-point ID`: the file-type measure point the file is posted for.
    pub file_point: Option<String>,
    /// `--await-command SECONDS`: wait for one command and answer it 200.
    pub await_command: Option<Duration>,
    /// `--command-api URL`: ask the endpoint to send the downlink needs' commands.
    pub command_api: Option<CommandApi>,
    /// `--register PK/DK`.
    pub register: Option<(String, String)>,
    /// `--firmware-version V`.
    pub firmware_version: Option<String>,
}

/// What a protocol's connection, logged in, can do for a need: one method per kind of step.
/// A kind the protocol cannot carry is never asked for (`[exchanges.carried_by]`).
#[allow(async_fn_in_trait)]
pub(crate) trait Transport {
    /// The protocol's name, for messages.
    const PROTOCOL: &'static str;
    /// A JSON request on `topic` and EnOS's reply to it (matched by id where the protocol can).
    async fn request(&mut self, topic: &str, request: &Request, rec: &mut Recorder) -> Result<(), Failure>;
    /// Raw bytes on `topic` (`thing/model/up_raw`) and the raw reply.
    async fn raw(&mut self, topic: &str, bytes: &[u8], rec: &mut Recorder) -> Result<(), Failure>;
    /// The subscriptions a downlink needs, granted: `Ok(false)` where the protocol has none
    /// (nothing was sent).
    async fn subscribe(&mut self, _topics: &[String], _rec: &mut Recorder) -> Result<bool, Failure> {
        Err(lacks::<Self>(StepKind::Downlink))
    }
    /// Wait until `until` for one command on `topics` and answer it: 200, or for a raw
    /// command the same raw bytes. What arrived (the method, or "4 raw bytes").
    async fn await_command(
        &mut self,
        _topics: &[String],
        _raw: bool,
        _until: Instant,
        _rec: &mut Recorder,
    ) -> Result<String, Failure> {
        Err(lacks::<Self>(StepKind::Downlink))
    }
    /// A multipart post of one file for a file-type measure point.
    async fn upload(
        &mut self,
        _topic: &str,
        _message: &Request,
        _file: (&str, &[u8]),
        _rec: &mut Recorder,
    ) -> Result<(), Failure> {
        Err(lacks::<Self>(StepKind::Multipart))
    }
}

/// A kind the data says the protocol carries and its transport does not implement: a fault
/// of enos-connect (code or data), never sent as a verdict about the endpoint.
fn lacks<T: Transport + ?Sized>(kind: StepKind) -> Failure {
    Failure::new(
        crate::measurement::ErrorKind::Internal,
        format!(
            "the {} transport has no {} exchange, though capabilities.toml says it carries one",
            T::PROTOCOL,
            kind.as_str()
        ),
    )
}

/// One step of a need, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The login kind this feature is: proven by the login already made, or not testable.
    Login(Result<String, String>),
    /// What the login already made showed the endpoint does only one way (no client
    /// certificate asked for).
    OneWay(String),
    Request {
        stage: &'static str,
        topic: String,
        request: Request,
    },
    Raw {
        stage: &'static str,
        topic: String,
        bytes: Vec<u8>,
    },
    Upload {
        stage: &'static str,
        topic: String,
        request: Request,
        name: String,
        bytes: Vec<u8>,
    },
    Downlink {
        stage: &'static str,
        /// MQTT filters: a `{name}` level is `+`.
        topics: Vec<String>,
        raw: bool,
        /// The body to ask the endpoint's command API for (`--command-api`), else `None`.
        command: Option<Value>,
        /// How long to wait for the command.
        wait: Option<Duration>,
    },
}

/// Why a need is not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRun {
    /// The protocol cannot carry one of its steps: no exchange over it.
    NotCarried(StepKind),
    /// It needs a value or a login this probe was not given (what to add).
    Untested(String),
}

/// The probe the needs run in: its protocol, its login and its device.
#[derive(Debug, Clone, Copy, Default)]
pub struct NeedContext<'a> {
    pub protocol: &'a str,
    /// The secure mode of the EnOS login made.
    pub mode: Option<&'a str>,
    /// A client certificate is offered over TLS (not DTLS-PSK, which has none).
    pub tls_cert: bool,
    /// Whether the server asked for the client certificate (known once the TLS login ran).
    pub cert_requested: Option<bool>,
    pub device: (&'a str, &'a str),
}

impl<'a> NeedContext<'a> {
    /// The context of a probe with `opts` to `target`, for the device `device`.
    pub fn of(opts: &'a ProbeOptions, target: &'a super::Target, device: (&'a str, &'a str)) -> Self {
        NeedContext {
            protocol: &target.protocol,
            mode: opts.login.mode(),
            tls_cert: opts.tls.cert.is_some() && target.security == "tls",
            cert_requested: None,
            device,
        }
    }
}

/// The flag that gives a value, for "give --file-point ID".
fn flag(g: Given) -> &'static str {
    match g {
        Given::Measurepoints => "--measurepoint ID=VALUE",
        Given::Events => "--event ID[=JSON]",
        Given::Attributes => "--attribute ID=VALUE",
        Given::FilePoint => "--file-point ID",
        Given::Register => "--register PK/DK",
        Given::FirmwareVersion => "--firmware-version V",
    }
}

fn given(opts: &ProbeOptions, g: Given) -> bool {
    let n = &opts.needs;
    match g {
        Given::Measurepoints => opts.measurepoints.is_some(),
        Given::Events => !n.events.is_empty(),
        Given::Attributes => !n.attributes.is_empty(),
        Given::FilePoint => n.file_point.is_some(),
        Given::Register => n.register.is_some(),
        Given::FirmwareVersion => n.firmware_version.is_some(),
    }
}

/// The topic of `feature` whose pattern ends with `tail`, filled for the device; `id` fills a
/// `{name}` level inside the tail (an event id).
fn topic(
    caps: &Capabilities,
    feature: &str,
    tail: &str,
    (pk, dk): (&str, &str),
    id: Option<&str>,
) -> Result<String, String> {
    let f = caps
        .feature(feature)
        .ok_or_else(|| format!("no feature `{feature}` in the capabilities"))?;
    let pattern = f
        .patterns
        .iter()
        .find(|p| crate::capabilities::pattern_ends_with(p, tail))
        .ok_or_else(|| format!("feature `{feature}` has no topic pattern ending in `{tail}`"))?;
    Ok(pattern
        .split('/')
        .map(|level| match level {
            "{pk}" => pk.to_string(),
            "{dk}" => dk.to_string(),
            l if l.starts_with('{') => id.unwrap_or_default().to_string(),
            l => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/"))
}

/// The request the SDKs send on `topic`: the first method `enos::UPSTREAM` accepts there.
fn request(topic: &str, params: Value) -> Result<Request, String> {
    let split = enos::split(topic).ok_or_else(|| format!("`{topic}` is not an EnOS topic"))?;
    let method = enos::upstream(&split)
        .ok_or_else(|| format!("`{topic}` is in no row of enos::UPSTREAM"))?
        .method()
        .to_string();
    Ok(Request::new(enos::new_id(), method, params))
}

/// Whether `topic` matches the MQTT filter `filter` (`+` one level; `#` the rest).
pub(crate) fn filter_matches(filter: &str, topic: &str) -> bool {
    let (mut f, mut t) = (filter.split('/'), topic.split('/'));
    loop {
        match (f.next(), t.next()) {
            (None, None) => return true,
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// A small file to upload when `--file` names none.
pub(crate) fn generated_file() -> (String, Vec<u8>) {
    (
        "enos-connect-probe.txt".into(),
        b"enos-connect probe file\n".to_vec(),
    )
}

/// The values a step's params are filled with (`$name`).
struct Values<'a> {
    opts: &'a ProbeOptions,
    device: (&'a str, &'a str),
    now: u64,
    /// The item of `each` (an event's values).
    event_values: Option<&'a Value>,
    file_url: Option<String>,
}

impl Values<'_> {
    fn get(&self, name: &str) -> Option<Value> {
        let n = &self.opts.needs;
        Some(match name {
            "now" => json!(self.now),
            "pk" => json!(self.device.0),
            "dk" => json!(self.device.1),
            "measurepoints" => json!(self.opts.measurepoints.as_deref()?.map()),
            "attributes" => json!(n.attributes),
            "event_values" => self.event_values?.clone(),
            "file_point" => json!(n.file_point.as_ref()?),
            "file_url" => json!(self.file_url.as_ref()?),
            "register_pk" => json!(n.register.as_ref()?.0),
            "register_dk" => json!(n.register.as_ref()?.1),
            "firmware_version" => json!(n.firmware_version.as_ref()?),
            _ => return None,
        })
    }

    /// `v` with every `"$name"` (value or key) replaced.
    fn fill(&self, v: &Value) -> Result<Value, String> {
        let missing = |name: &str| format!("no value for ${name}");
        Ok(match v {
            Value::String(s) => match s.strip_prefix('$') {
                Some(name) => self.get(name).ok_or_else(|| missing(name))?,
                None => v.clone(),
            },
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| self.fill(i)).collect::<Result<_, _>>()?)
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, i) in map {
                    let key = match k.strip_prefix('$') {
                        Some(name) => match self.get(name).ok_or_else(|| missing(name))? {
                            Value::String(s) => s,
                            other => other.to_string(),
                        },
                        None => k.clone(),
                    };
                    out.insert(key, self.fill(i)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }
}

/// The steps of `need` in `ctx`, from `[exchanges]` and the values in `opts`. `Err`: the
/// need is not sent (its protocol cannot carry it, or a value or a login is missing).
pub fn steps(
    caps: &Capabilities,
    need: &str,
    opts: &ProbeOptions,
    ctx: &NeedContext<'_>,
) -> Result<Vec<Step>, NotRun> {
    let exchange = caps
        .exchange(need)
        .ok_or_else(|| NotRun::Untested(format!("capabilities.toml has no exchange for `{need}`")))?;
    for s in &exchange.steps {
        if let Some(carriers) = caps.exchanges.carried_by.of(s.kind)
            && !carriers.iter().any(|p| p == ctx.protocol)
        {
            return Err(NotRun::NotCarried(s.kind));
        }
        if let Some(g) = s.requires
            && !given(opts, g)
        {
            return Err(NotRun::Untested(format!(
                "`{need}` needs a value: give {}",
                flag(g)
            )));
        }
    }
    let mut out = Vec::new();
    for s in &exchange.steps {
        if s.with.is_some_and(|g| !given(opts, g)) || s.without.is_some_and(|g| given(opts, g)) {
            continue;
        }
        out.extend(step(caps, need, s, opts, ctx).map_err(NotRun::Untested)?);
    }
    Ok(out)
}

/// One step of the data made ready: none, one, or one per item of `each`.
fn step(
    caps: &Capabilities,
    need: &str,
    s: &crate::capabilities::Step,
    opts: &ProbeOptions,
    ctx: &NeedContext<'_>,
) -> Result<Vec<Step>, String> {
    let stage = s.stage.map_or("login", crate::capabilities::Stage::as_str);
    let owner = s.topic_of.as_deref().unwrap_or(need);
    let n = &opts.needs;
    let (name, bytes) = n.file.clone().unwrap_or_else(generated_file);
    let now = crate::credentials::now_ms();
    let values = |event_values: Option<&Value>| -> Result<Value, String> {
        let v = Values {
            opts,
            device: ctx.device,
            now,
            event_values,
            file_url: Some(format!("local://{name}")),
        };
        v.fill(s.params.as_ref().unwrap_or(&Value::Null))
    };
    let tail = s.topic.as_deref().unwrap_or_default();
    let raw = n.raw.clone().unwrap_or_else(|| DEFAULT_RAW.to_vec());
    Ok(match s.kind {
        StepKind::Login => match &s.login {
            Some(kind) => vec![login(caps, need, kind, ctx)],
            None => return Err(format!("the login step of `{need}` names no login")),
        },
        StepKind::Request if s.each == Some(Given::Events) => {
            let mut out = Vec::new();
            for (id, event_values) in &n.events {
                let topic = topic(caps, owner, tail, ctx.device, Some(id))?;
                out.push(Step::Request {
                    stage,
                    request: request(&topic, values(Some(event_values))?)?,
                    topic,
                });
            }
            out
        }
        StepKind::Request | StepKind::Multipart => {
            let topic = topic(caps, owner, tail, ctx.device, None)?;
            let request = request(&topic, values(None)?)?;
            vec![if s.kind == StepKind::Request {
                Step::Request {
                    stage,
                    topic,
                    request,
                }
            } else {
                Step::Upload {
                    stage,
                    topic,
                    request,
                    name,
                    bytes,
                }
            }]
        }
        StepKind::Raw => vec![Step::Raw {
            stage,
            topic: topic(caps, owner, tail, ctx.device, None)?,
            bytes: raw,
        }],
        StepKind::Downlink => vec![downlink(need, s, opts, ctx, &raw)?],
    })
}

/// A login step: the secure mode made, or a client certificate the server asked for.
fn login(caps: &Capabilities, need: &str, kind: &LoginKind, ctx: &NeedContext<'_>) -> Step {
    if let LoginKind::SecureMode(want) = kind {
        return Step::Login(if ctx.mode == Some(want.as_str()) {
            Ok(format!("the {want} login succeeded"))
        } else {
            Err(format!("log in with --secure-mode {want} to check {need}"))
        });
    }
    // A server that asked for no certificate got none: the TLS login went through one way
    // (the device authenticated the server, not the other way round).
    match (ctx.tls_cert, ctx.cert_requested) {
        (true, Some(false)) => {
            Step::OneWay("the server asked for no client certificate: the TLS login was one-way".into())
        }
        (true, _) => Step::Login(Ok(
            "the server asked for the client certificate, and the TLS login with it succeeded".into(),
        )),
        (false, _) => {
            let schemes: Vec<String> = caps
                .protocols
                .iter()
                .flat_map(|p| &p.ports)
                .filter(|x| x.security == "tls")
                .map(|x| format!("{}://", x.scheme))
                .collect();
            Step::Login(Err(format!(
                "give --cert and --key over a TLS URL ({}) to check {need}",
                schemes.join(", ")
            )))
        }
    }
}

/// A downlink step: its topics as filters, and what causes the command (the endpoint's
/// command API, or a wait for one sent by other means); neither: untested.
fn downlink(
    need: &str,
    s: &crate::capabilities::Step,
    opts: &ProbeOptions,
    ctx: &NeedContext<'_>,
    raw: &[u8],
) -> Result<Step, String> {
    let n = &opts.needs;
    if n.command_api.is_none() && n.await_command.is_none() {
        return Err(format!(
            "`{need}` is proven by a command that arrives and is answered: give --command-api URL (serve's /twin/commands) or --await-command SECONDS and send one"
        ));
    }
    let (pk, dk) = ctx.device;
    let topics = s
        .topics
        .iter()
        .map(|t| {
            let levels: Vec<&str> = t
                .split('/')
                .map(|l| if l.starts_with('{') { "+" } else { l })
                .collect();
            format!("/sys/{pk}/{dk}/{}", levels.join("/"))
        })
        .collect();
    let method = s.command.clone().unwrap_or_default();
    let command = n.command_api.as_ref().map(|_| {
        if s.raw {
            use base64::Engine;
            json!({"method": method, "payload_base64": base64::engine::general_purpose::STANDARD.encode(raw)})
        } else {
            json!({"method": method, "params": {}})
        }
    });
    Ok(Step::Downlink {
        stage: s.stage.map_or("command", crate::capabilities::Stage::as_str),
        topics,
        raw: s.raw,
        command,
        wait: n.await_command,
    })
}

/// The protocol's name as the table prints it (`CoAP`).
pub(crate) fn title(caps: &Capabilities, protocol: &str) -> String {
    caps.protocols
        .iter()
        .find(|p| p.id == protocol)
        .map_or_else(|| protocol.to_uppercase(), |p| p.title.clone())
}

/// "comparison table: `ota` is not_supported over CoAP; MQTT carries it".
pub(crate) fn not_offered(caps: &Capabilities, need: &str, protocol: &str) -> String {
    let feature = caps.feature(need);
    let carriers: Vec<String> = feature
        .map(|f| {
            caps.protocols
                .iter()
                .filter(|p| f.support_for(&p.id).covers())
                .map(|p| p.title.clone())
                .collect()
        })
        .unwrap_or_default();
    let carried = match carriers.as_slice() {
        [] => "no protocol carries it".to_string(),
        [one] => format!("{one} carries it"),
        many => format!("{} carry it", many.join(" and ")),
    };
    let support = feature.map_or("not_supported", |f| f.support_for(protocol).as_str());
    format!(
        "comparison table: `{need}` is {support} over {}; {carried}",
        title(caps, protocol)
    )
}

/// "HTTP carries no downlink (a command from EnOS to the device); MQTT and CoAP do".
pub(crate) fn not_carried(caps: &Capabilities, kind: StepKind, protocol: &str) -> String {
    let carriers: Vec<String> = caps
        .exchanges
        .carried_by
        .of(kind)
        .unwrap_or_default()
        .iter()
        .map(|p| title(caps, p))
        .collect();
    let others = match carriers.as_slice() {
        [] => "no protocol does".to_string(),
        [one] => format!("only {one} does"),
        many => format!("{} do", many.join(" and ")),
    };
    format!(
        "{} carries no {} (capabilities.toml, exchanges.carried_by.{}); {others}",
        title(caps, protocol),
        kind.words(),
        kind.as_str()
    )
}

#[cfg(test)]
#[path = "needs_tests.rs"]
mod tests;
