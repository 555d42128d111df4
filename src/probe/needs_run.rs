//! Running a probe's needs (`needs.rs` makes their steps) over its logged-in transport, one
//! after another, each within the probe's deadline, and reading each outcome as a
//! measurement: supported, refused (EnOS's code 1009), one-way, untested, not carried, not
//! offered, or failed.

use std::time::{Duration, Instant};

use super::needs::{NeedContext, NotRun, Step, Transport, not_carried, not_offered, steps};
use super::{Failure, ProbeOptions, Recorder};
use crate::capabilities::{Capabilities, Support};
use crate::enos;
use crate::measurement::need::NOT_SENT_STAGE;
use crate::measurement::{ErrorKind, Measured, NeedReport, ProbeError};

/// How long before the probe's deadline a need stops waiting, to report its own timeout.
const NEED_MARGIN: Duration = Duration::from_millis(20);

/// Run every need of `opts` over `transport`, after the login; each need's report goes to
/// `rec.needs` as it ends, so a timeout keeps what was measured. A failure that is not a reply
/// (the connection may be gone) ends the run: later needs are reported as not run.
pub(crate) async fn run<T: Transport>(
    caps: &Capabilities,
    target: &super::Target,
    transport: &mut T,
    opts: &ProbeOptions,
    device: (&str, &str),
    rec: &mut Recorder,
    deadline: Instant,
) {
    let mut ctx = NeedContext::of(opts, target, device);
    ctx.cert_requested = rec.client_cert_requested;
    let mut broken: Option<String> = None;
    for need in &opts.needs.needs {
        let table = caps
            .feature(need)
            .map_or(Support::NotSupported, |f| f.support_for(&target.protocol));
        let report = match &broken {
            Some(why) => not_sent(need, &ctx, table, Measured::Failed, format!("not run: {why}")),
            None => one(caps, need, table, transport, opts, &ctx, rec.verbose, deadline).await,
        };
        // After a failure other than a reply code the connection's state is unknown.
        let breaks = report.measured == Measured::Failed
            && report.error.as_ref().is_some_and(|e| e.kind != ErrorKind::Enos);
        if broken.is_none() && breaks {
            broken = Some(format!("need `{need}` failed: {}", report.message));
        }
        rec.needs.push(report);
    }
}

/// A need that was not sent: nothing measured, its reason at the stage `check`.
fn not_sent(
    need: &str,
    ctx: &NeedContext<'_>,
    table: Support,
    measured: Measured,
    why: String,
) -> NeedReport {
    NeedReport {
        need: need.to_string(),
        protocol: ctx.protocol.to_string(),
        table,
        ok: false,
        measured,
        code: None,
        message: why.clone(),
        stages: Vec::new(),
        error: Some(ProbeError {
            kind: ErrorKind::Protocol,
            stage: NOT_SENT_STAGE,
            message: why,
        }),
    }
}

/// One need: not sent (not offered, not carried, untested), or its steps run and read.
#[allow(clippy::too_many_arguments)]
async fn one<T: Transport>(
    caps: &Capabilities,
    need: &str,
    table: Support,
    transport: &mut T,
    opts: &ProbeOptions,
    ctx: &NeedContext<'_>,
    verbose: bool,
    deadline: Instant,
) -> NeedReport {
    let protocol = ctx.protocol;
    if !opts.needs.matrix && !table.offered() {
        return not_sent(
            need,
            ctx,
            table,
            Measured::NotOffered,
            not_offered(caps, need, protocol),
        );
    }
    let steps = match steps(caps, need, opts, ctx) {
        Ok(s) => s,
        Err(NotRun::NotCarried(kind)) => {
            return not_sent(
                need,
                ctx,
                table,
                Measured::NotCarried,
                not_carried(caps, kind, protocol),
            );
        }
        Err(NotRun::Untested(why)) => return not_sent(need, ctx, table, Measured::Untested, why),
    };
    let mut r = Recorder::new(verbose);
    // The need's own bound ends just before the probe's, so a silent endpoint is reported as
    // this need's timeout, at its stage, rather than cut off with the whole probe.
    let until = deadline.checked_sub(NEED_MARGIN).unwrap_or(deadline);
    let run = run_steps::<T>(transport, &steps, opts, ctx.device, &mut r, until);
    let result = tokio::time::timeout_at(until.into(), run)
        .await
        .unwrap_or_else(|_| {
            Err(Outcome::Failed(Failure::new(
                ErrorKind::Timeout,
                "no answer before the probe's timeout",
            )))
        });
    read(need, ctx.protocol, table, r, result)
}

/// A need's steps' outcome as its report: what was measured, and EnOS's last code.
fn read(
    need: &str,
    protocol: &str,
    table: Support,
    mut r: Recorder,
    result: Result<String, Outcome>,
) -> NeedReport {
    let (measured, result) = match result {
        Ok(said) => (Measured::Supported, Ok(summary(&r, said))),
        Err(Outcome::Untested(why)) => (Measured::Untested, Err(Failure::new(ErrorKind::Protocol, why))),
        // Not what the need asks for (not ok), but the connection is fine.
        Err(Outcome::OneWay(why)) => (Measured::OneWay, Err(Failure::new(ErrorKind::Tls, why))),
        Err(Outcome::Failed(f)) => {
            let refused = r.enos.as_ref().is_some_and(|e| e.code == enos::NO_PERMISSION);
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
        need: need.to_string(),
        protocol: protocol.to_string(),
        table,
        ok,
        measured,
        code: r.enos.as_ref().map(|e| e.code),
        message,
        stages: r.stages,
        error,
    }
}

enum Outcome {
    Untested(String),
    OneWay(String),
    Failed(Failure),
}

impl From<Failure> for Outcome {
    fn from(f: Failure) -> Self {
        Outcome::Failed(f)
    }
}

/// What a need that passed says: EnOS's last reply, or what its last step proved.
fn summary(r: &Recorder, said: String) -> String {
    match &r.enos {
        Some(e) if said.is_empty() => format!("EnOS answered {}", enos::describe(e.code, &e.message)),
        _ => said,
    }
}

/// The steps in order, each a stage; what the last one proved.
async fn run_steps<T: Transport>(
    t: &mut T,
    steps: &[Step],
    opts: &ProbeOptions,
    device: (&str, &str),
    r: &mut Recorder,
    deadline: Instant,
) -> Result<String, Outcome> {
    let mut said = String::new();
    for step in steps {
        super::time_left(deadline)?;
        said = String::new();
        match step {
            Step::Login(result) => {
                r.begin("login");
                said = result.clone().map_err(Outcome::Untested)?;
            }
            Step::OneWay(why) => {
                r.begin("login");
                return Err(Outcome::OneWay(why.clone()));
            }
            Step::Request {
                stage,
                topic,
                request,
            } => {
                r.begin(stage);
                t.request(topic, request, r).await?;
            }
            Step::Raw { stage, topic, bytes } => {
                r.begin(stage);
                t.raw(topic, bytes, r).await?;
            }
            Step::Upload {
                stage,
                topic,
                request,
                name,
                bytes,
            } => {
                r.begin(stage);
                t.upload(topic, request, (name, bytes), r).await?;
            }
            Step::Downlink {
                stage,
                topics,
                raw,
                command,
                wait,
            } => {
                r.begin("subscribe");
                if t.subscribe(topics, r).await? {
                    r.end();
                }
                r.begin(stage);
                let until = wait.map_or(deadline, |w| (Instant::now() + w).min(deadline));
                let method = match (command, &opts.needs.command_api) {
                    (Some(body), Some(api)) => {
                        let wait = t.await_command(topics, *raw, until, r);
                        let send = api.send(opts, device, body, until);
                        caused(wait, send).await?
                    }
                    _ => t.await_command(topics, *raw, until, r).await?,
                };
                said = format!(
                    "a command ({method}) arrived over {} and was answered{}",
                    T::PROTOCOL,
                    if *raw { " with raw bytes" } else { " 200" }
                );
            }
        }
        r.end();
    }
    Ok(said)
}

/// A command the endpoint's API was asked for: it arrives while the API call waits for the
/// device's reply. The API's refusal (no such device, a method it does not send) ends the wait
/// at once; its 200 says the reply reached the endpoint.
async fn caused(
    wait: impl std::future::Future<Output = Result<String, Failure>>,
    send: impl std::future::Future<Output = Result<serde_json::Value, Failure>>,
) -> Result<String, Failure> {
    tokio::pin!(wait, send);
    tokio::select! {
        got = &mut wait => {
            let method = got?;
            send.await?;
            Ok(method)
        }
        sent = &mut send => {
            sent?;
            wait.await
        }
    }
}
