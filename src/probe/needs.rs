//! `probe --need F` and `probe --matrix`: after the login, the exchange each feature of the
//! comparison table needs, over the protocol probed, each step a stage of its own, each read up
//! to EnOS's reply code.
//!
//! Data-driven: a step names the topic's tail (`thing/topo/get`); the topic is the feature's
//! own pattern in `capabilities.toml` that ends so (the same patterns `serve` enforces and
//! `plan` prints), and the method is the first `enos::UPSTREAM` accepts there (what the SDKs
//! send). Downlink topics come from `enos::DOWNSTREAM`. One [`Transport`] per protocol
//! carries the steps; nothing here is per protocol but what a protocol cannot carry at all
//! (MQTT and CoAP have no multipart file path, HTTP no downlink).
//!
//! Safe against production by default: without a value the user names, a check only reads
//! (queries, subscriptions, `getversion`).
//!
//! Why over 600 lines: every feature's exchange in one module, over one `Transport` per
//! protocol, is the design (a new feature row needs no code elsewhere); the tests are apart, in
//! `needs_tests.rs`.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::{Failure, ProbeOptions, Recorder};
use crate::capabilities::{Capabilities, Support};
use crate::enos::{self, Request};
use crate::measurement::{ErrorKind, Measured, NeedReport, ProbeError};

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
    /// `--raw HEX` (default: a few bytes).
    pub raw: Option<Vec<u8>>,
    /// `--file PATH` read: its name and bytes (default: a small generated file).
    pub file: Option<(String, Vec<u8>)>,
    /// `--file-point ID`: the file-type measure point the file is posted for.
    pub file_point: Option<String>,
    /// `--await-command SECONDS`: wait for one command and answer it 200.
    pub await_command: Option<Duration>,
    /// `--register PK/DK`.
    pub register: Option<(String, String)>,
    /// `--firmware-version V`.
    pub firmware_version: Option<String>,
}

/// What a protocol's connection, logged in, can do for a need.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// The protocol's name, for messages.
    const PROTOCOL: &'static str;
    /// A JSON request on `topic` and EnOS's reply to it (matched by id where the protocol can).
    async fn request(&mut self, topic: &str, request: &Request, rec: &mut Recorder) -> Result<(), Failure>;
    /// Raw bytes on `topic` (`thing/model/up_raw`) and the raw reply.
    async fn raw(&mut self, topic: &str, bytes: &[u8], rec: &mut Recorder) -> Result<(), Failure>;
    /// The subscriptions a downlink needs, granted.
    async fn subscribe(&mut self, topics: &[String], rec: &mut Recorder) -> Result<(), Failure>;
    /// Wait until `until` for one command on the subscribed topics and answer it 200.
    async fn await_command(
        &mut self,
        topics: &[String],
        until: Instant,
        rec: &mut Recorder,
    ) -> Result<(), Failure>;
    /// A multipart post of one file for a file-type measure point: only HTTP has one.
    async fn upload(
        &mut self,
        _topic: &str,
        _message: &Request,
        _file: (&str, &[u8]),
        _rec: &mut Recorder,
    ) -> Result<(), Failure> {
        Err(no_exchange(Self::PROTOCOL, "files go over HTTP's multipart path"))
    }
}

/// The failure of an exchange the protocol has no way to carry: measured as refused.
pub fn no_exchange(protocol: &str, what: &str) -> Failure {
    Failure::new(ErrorKind::Protocol, format!("{NO_EXCHANGE} {protocol}: {what}"))
}

const NO_EXCHANGE: &str = "no exchange for it over";

/// One step of a need.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Request {
        stage: &'static str,
        topic: String,
        request: Request,
    },
    Raw {
        topic: String,
        bytes: Vec<u8>,
    },
    Subscribe {
        topics: Vec<String>,
    },
    Command {
        topics: Vec<String>,
        wait: Duration,
    },
    Upload {
        topic: String,
        request: Request,
        name: String,
        bytes: Vec<u8>,
    },
    /// The login kind this feature is: proven by the login already made, or not testable.
    Login(Result<String, String>),
    /// What the login already made showed the endpoint does only in part (one-way TLS).
    Partial(String),
}

/// The login this probe made, for the login-kind needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginKind<'a> {
    pub mode: Option<&'a str>,
    pub client_cert: bool,
    pub secure: bool,
    /// Whether the server asked for the client certificate (known once the TLS login ran).
    pub cert_requested: Option<bool>,
}

impl<'a> LoginKind<'a> {
    /// The login a probe with `opts` makes to `target` (a client certificate is TLS's: DTLS-PSK
    /// has none).
    pub fn of(opts: &'a ProbeOptions, target: &super::Target) -> Self {
        LoginKind {
            mode: opts.login.mode(),
            client_cert: opts.tls.cert.is_some() && target.protocol != "coap",
            secure: target.secure,
            cert_requested: None,
        }
    }
}

/// The topic of `feature` whose pattern ends with `tail`, filled for the device; `id` fills a
/// `{name}` level inside the tail (an event id).
fn topic(
    caps: &Capabilities,
    feature: &str,
    tail: &str,
    pk: &str,
    dk: &str,
    id: Option<&str>,
) -> Result<String, String> {
    let f = caps
        .feature(feature)
        .ok_or_else(|| format!("no feature `{feature}` in the capabilities"))?;
    let want: Vec<&str> = tail.split('/').collect();
    let pattern = f
        .patterns
        .iter()
        .find(|p| {
            let levels: Vec<&str> = p.split('/').collect();
            levels.len() >= want.len()
                && levels[levels.len() - want.len()..]
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a == b || (a.starts_with('{') && *b == "{id}"))
        })
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

fn downstream_topics(kinds: &[enos::Downstream], pk: &str, dk: &str) -> Vec<String> {
    kinds.iter().map(|k| k.topic(pk, dk, Some("+"))).collect()
}

/// A small file to upload when `--file` names none.
pub fn generated_file() -> (String, Vec<u8>) {
    (
        "enos-connect-probe.txt".into(),
        b"enos-connect probe file\n".to_vec(),
    )
}

/// The steps of `need` for the device `pk`/`dk`, from the values in `opts`. `Err`: the need
/// cannot be checked with what was given (the message says what to add).
pub fn steps(
    caps: &Capabilities,
    need: &str,
    opts: &ProbeOptions,
    login: LoginKind<'_>,
    (pk, dk): (&str, &str),
) -> Result<Vec<Step>, String> {
    let n = &opts.needs;
    let t = |tail: &str| topic(caps, need, tail, pk, dk, None);
    let req = |stage: &'static str, tail: &str, params: Value| -> Result<Step, String> {
        let topic = t(tail)?;
        Ok(Step::Request {
            stage,
            request: request(&topic, params)?,
            topic,
        })
    };
    let now = crate::credentials::now_ms();
    let points = opts.measurepoints.as_ref();
    Ok(match need {
        "static_auth" | "dynamic_auth" => {
            let want = need.trim_end_matches("_auth");
            vec![Step::Login(if login.mode == Some(want) {
                Ok(format!("the {want} login succeeded"))
            } else {
                Err(format!("log in with --secure-mode {want} to check {need}"))
            })]
        }
        // A server that asked for no certificate got none: the TLS login went through one-way
        // (the device authenticated the server, not the other way round), measured as partial.
        "mutual_tls" if login.client_cert && login.secure && login.cert_requested == Some(false) => {
            vec![Step::Partial(
                "the server asked for no client certificate: the TLS login was one-way".into(),
            )]
        }
        "mutual_tls" => vec![Step::Login(if login.client_cert && login.secure {
            Ok("the server asked for the client certificate, and the TLS login with it succeeded".into())
        } else {
            Err("give --cert and --key over a TLS URL (mqtts://, https://) to check mutual_tls".into())
        })],
        "report_data" => {
            let mut s = Vec::new();
            match points {
                Some(p) => s.push(req(
                    "post",
                    "thing/measurepoint/post",
                    json!({"measurepoints": p, "time": now}),
                )?),
                // Read-only without a value: the attributes EnOS holds.
                None => s.push(req("query", "thing/attribute/query", json!({"attributes": []}))?),
            }
            for (id, values) in &n.events {
                let topic = topic(caps, need, "thing/event/{id}/post", pk, dk, Some(id))?;
                let params = json!({"events": values, "time": now});
                s.push(Step::Request {
                    stage: "event",
                    request: request(&topic, params)?,
                    topic,
                });
            }
            if !n.attributes.is_empty() {
                s.push(req(
                    "attribute",
                    "thing/attribute/update",
                    json!({"attributes": n.attributes}),
                )?);
            }
            s
        }
        "passthrough_up" => vec![Step::Raw {
            topic: t("thing/model/up_raw")?,
            bytes: n.raw.clone().unwrap_or_else(|| vec![0x01, 0x02, 0x03, 0x04]),
        }],
        "passthrough_down" => vec![Step::Subscribe {
            topics: downstream_topics(&[enos::Downstream::Raw], pk, dk),
        }],
        "downlink_commands" => {
            let topics = downstream_topics(
                &[enos::Downstream::MeasurepointSet, enos::Downstream::Service],
                pk,
                dk,
            );
            let mut s = vec![Step::Subscribe {
                topics: topics.clone(),
            }];
            if let Some(wait) = n.await_command {
                s.push(Step::Command { topics, wait });
            }
            s
        }
        "file_upload" => {
            let point = n
                .file_point
                .as_ref()
                .ok_or("file_upload posts a file: name its file-type measure point with --file-point ID")?;
            let (name, bytes) = n.file.clone().unwrap_or_else(generated_file);
            // The multipart path carries the measure point post: its topic is report_data's.
            let topic = topic(caps, "report_data", "thing/measurepoint/post", pk, dk, None)?;
            let params = json!({"measurepoints": {point.as_str(): format!("local://{name}")}, "time": now});
            vec![Step::Upload {
                request: request(&topic, params)?,
                topic,
                name,
                bytes,
            }]
        }
        "batch_offline_points" => {
            let p =
                points.ok_or("batch_offline_points posts measure points: give --measurepoint ID=VALUE")?;
            let item = json!({"productKey": pk, "deviceKey": dk, "measurepoints": p, "time": now});
            vec![
                req("batch", "thing/measurepoint/post/batch", json!([item]))?,
                req(
                    "resume",
                    "thing/measurepoint/resume",
                    json!({"measurepoints": p, "time": now}),
                )?,
            ]
        }
        "subdevice_management" => {
            let mut s = vec![req("query", "thing/topo/get", json!({}))?];
            if let Some((rpk, rdk)) = &n.register {
                s.push(req(
                    "post",
                    "thing/device/register",
                    json!([{"productKey": rpk, "deviceKey": rdk}]),
                )?);
            }
            s
        }
        "ota" => {
            let mut s = vec![req("query", "ota/device/getversion", json!({}))?];
            if let Some(v) = &n.firmware_version {
                s.push(req("post", "ota/device/inform", json!({"version": v}))?);
            }
            s
        }
        other => return Err(format!("no exchange is known for feature `{other}`")),
    })
}

/// The protocol's name as the table prints it (`CoAP`).
fn title(caps: &Capabilities, protocol: &str) -> String {
    caps.protocols
        .iter()
        .find(|p| p.id == protocol)
        .map_or_else(|| protocol.to_uppercase(), |p| p.title.clone())
}

/// "not offered over CoAP (comparison table: `ota`); MQTT carries it".
pub fn not_offered(caps: &Capabilities, need: &str, protocol: &str) -> String {
    let carriers: Vec<String> = caps
        .feature(need)
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
    format!(
        "not offered over {} (comparison table: `{need}`); {carried}",
        title(caps, protocol)
    )
}

/// Run every need of `opts` over `transport`, after the login; each need's report goes to
/// `rec.needs` as it ends, so a timeout keeps what was measured. A failure that is not a reply
/// (the connection may be gone) ends the run: later needs are reported as not run.
pub async fn run<T: Transport>(
    caps: &Capabilities,
    target: &super::Target,
    transport: &mut T,
    opts: &ProbeOptions,
    device: (&str, &str),
    rec: &mut Recorder,
    deadline: Instant,
) {
    let protocol = target.protocol.as_str();
    let mut login = LoginKind::of(opts, target);
    login.cert_requested = rec.client_cert_requested;
    let mut broken: Option<String> = None;
    for need in &opts.needs.needs {
        let table = caps
            .feature(need)
            .map_or(Support::NotSupported, |f| f.support_for(protocol));
        let mut r = Recorder::new(rec.verbose);
        let report = |r: Recorder, measured: Measured, result: Result<String, Failure>| {
            let (ok, message, error) = match result {
                Ok(m) => (true, m, None),
                Err(f) => (
                    false,
                    f.message.clone(),
                    Some(ProbeError {
                        kind: f.kind,
                        stage: r.stage(),
                        message: f.message,
                    }),
                ),
            };
            NeedReport {
                need: need.clone(),
                protocol: protocol.to_string(),
                table,
                ok,
                measured,
                code: r.enos.as_ref().map(|e| e.code),
                message,
                stages: r.stages,
                error,
            }
        };
        if let Some(why) = &broken {
            r.begin("request");
            let f = Failure::new(ErrorKind::Protocol, format!("not run: {why}"));
            rec.needs.push(report(r, Measured::Failed, Err(f)));
            continue;
        }
        if !opts.needs.matrix && !table.offered() {
            r.begin("request");
            let f = Failure::new(ErrorKind::Protocol, not_offered(caps, need, protocol));
            rec.needs.push(report(r, Measured::NotOffered, Err(f)));
            continue;
        }
        let steps = match steps(caps, need, opts, login, device) {
            Ok(s) => s,
            Err(why) => {
                r.begin("request");
                let f = Failure::new(ErrorKind::Protocol, format!("untested: {why}"));
                rec.needs.push(report(r, Measured::Untested, Err(f)));
                continue;
            }
        };
        // The need's own bound ends just before the probe's, so a silent endpoint is reported as
        // this need's timeout, at its stage, rather than cut off with the whole probe.
        let until = deadline.checked_sub(NEED_MARGIN).unwrap_or(deadline);
        let result =
            match tokio::time::timeout_at(until.into(), run_steps(transport, &steps, &mut r, until)).await {
                Ok(result) => result,
                Err(_) => Err(Outcome::Failed(Failure::new(
                    ErrorKind::Timeout,
                    "no answer before the probe's timeout",
                ))),
            };
        let (measured, result) = match result {
            Ok(said) => (Measured::Supported, Ok(summary(&r, said))),
            Err(Outcome::Untested(why)) => (
                Measured::Untested,
                Err(Failure::new(ErrorKind::Protocol, format!("untested: {why}"))),
            ),
            // Not what the need asks for (not ok), but the connection is fine: no later need
            // is cut off.
            Err(Outcome::Partial(why)) => (
                Measured::Partial,
                Err(Failure::new(ErrorKind::Tls, format!("partial: {why}"))),
            ),
            Err(Outcome::Failed(f)) => {
                let refused = f.message.starts_with(NO_EXCHANGE)
                    || r.enos.as_ref().is_some_and(|e| e.code == enos::NO_PERMISSION);
                if !refused && !matches!(f.kind, ErrorKind::Enos) {
                    broken = Some(format!("need `{need}` failed: {}", f.message));
                }
                (
                    if refused {
                        Measured::Refused
                    } else {
                        Measured::Failed
                    },
                    Err(f),
                )
            }
        };
        if result.is_err() {
            r.end();
        }
        rec.needs.push(report(r, measured, result));
    }
}

/// How long before the probe's deadline a need stops waiting, to report its own timeout.
const NEED_MARGIN: Duration = Duration::from_millis(20);

enum Outcome {
    Untested(String),
    Partial(String),
    Failed(Failure),
}

/// What a need that passed says: EnOS's last reply, or what its last step proved.
fn summary(r: &Recorder, said: String) -> String {
    match &r.enos {
        Some(e) if said.is_empty() => format!("EnOS answered {}", enos::describe(e.code, &e.message)),
        _ => said,
    }
}

async fn run_steps<T: Transport>(
    t: &mut T,
    steps: &[Step],
    r: &mut Recorder,
    deadline: Instant,
) -> Result<String, Outcome> {
    let mut said = String::new();
    for step in steps {
        said = match step {
            Step::Login(Ok(m)) => m.clone(),
            Step::Subscribe { topics } => format!("granted: {}", topics.join(", ")),
            Step::Command { .. } => "a command arrived and was answered 200".into(),
            _ => String::new(),
        };
        super::left(deadline).map_err(Outcome::Failed)?;
        let done = match step {
            Step::Login(result) => {
                r.begin("login");
                result.clone().map_err(Outcome::Untested)?;
                Ok(())
            }
            Step::Partial(why) => {
                r.begin("login");
                return Err(Outcome::Partial(why.clone()));
            }
            Step::Request {
                stage,
                topic,
                request,
            } => {
                r.begin(stage);
                t.request(topic, request, r).await
            }
            Step::Raw { topic, bytes } => {
                r.begin("post");
                t.raw(topic, bytes, r).await
            }
            Step::Subscribe { topics } => {
                r.begin("subscribe");
                t.subscribe(topics, r).await
            }
            Step::Command { topics, wait } => {
                r.begin("command");
                let until = (Instant::now() + *wait).min(deadline);
                t.await_command(topics, until, r).await
            }
            Step::Upload {
                topic,
                request,
                name,
                bytes,
            } => {
                r.begin("upload");
                t.upload(topic, request, (name, bytes), r).await
            }
        };
        done.map_err(Outcome::Failed)?;
        r.end();
    }
    Ok(said)
}

#[cfg(test)]
#[path = "needs_tests.rs"]
mod tests;
