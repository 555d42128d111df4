//! `probe`: parse the target and options, run the probe on a small tokio runtime, print the
//! report, and turn the outcome into the exit code (0 ok, 1 failed, 3 timed out).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::probe_args::{LoadArgs, ProbeArgs, ProbeMode};
use super::terminal::emit;
use super::{Context, recommend};
use crate::capabilities::Capabilities;
use crate::cli::error::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TIMEOUT, Error, Result};
use crate::measurement::ProbeReport;
use crate::plan;
use crate::probe::{self, Login, ProbeOptions, Target};
use crate::secret::Secret;

const DEFAULT_TIMEOUT_S: f64 = 10.0;

pub(super) fn run(ctx: &Context, args: &ProbeArgs) -> Result<ExitCode> {
    let mode = args.mode();
    // Only --plan decides and only needs (a load's too) read the table and its exchanges: the
    // rest reads the connection part.
    let caps = if matches!(mode, ProbeMode::Matrix(_)) || args.plan.plan || !args.need.need.is_empty() {
        ctx.capabilities()?
    } else {
        ctx.connection_capabilities()?
    };
    let targets = targets(ctx, caps, args)?;
    if let ProbeMode::Fleet(fleet) = mode {
        return super::fleet::run(ctx, caps, args, fleet, targets);
    }
    check_enos_flags(caps, args, &targets)?;
    let mut opts = options(ctx, caps, args)?;
    // With --plan, --need decides the plan; its needs are run only with the device's login.
    if !args.plan.plan || opts.login.enos_keys().is_some() {
        opts.needs = super::probe_needs::options(caps, args)?;
    }
    super::probe_needs::check(caps, args, &targets, &opts)?;
    for t in &targets {
        if t.protocol == "http" {
            let req = probe::http::build_request(caps, t, &opts).map_err(|f| Error::usage(f.message))?;
            probe::http::validate(&req).map_err(Error::usage)?;
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the network runtime", e))?;
    match mode {
        ProbeMode::Matrix(matrix) => {
            super::probe_needs::matrix(ctx, caps, args, matrix, &targets, &opts, &runtime)
        }
        ProbeMode::Load(load_args, count) => load(ctx, caps, args, load_args, count, targets, opts, &runtime),
        // (A fleet returned above: it has its own runtime and options.)
        ProbeMode::Single | ProbeMode::Need | ProbeMode::Fleet(_) => {
            single(ctx, caps, args, &targets, &opts, &runtime)
        }
    }
}

/// One probe per target (a plan's protocols one after another, each within its own timeout).
fn single(
    ctx: &Context,
    caps: &Capabilities,
    args: &ProbeArgs,
    targets: &[Target],
    opts: &ProbeOptions,
    runtime: &tokio::runtime::Runtime,
) -> Result<ExitCode> {
    let reports: Vec<ProbeReport> = runtime.block_on(async {
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            let opts = super::probe_needs::for_target(caps, opts, t, args.plan.plan);
            out.push(probe::run(caps, t, &opts).await);
        }
        out
    });
    emit(&ctx.renderer(args.output.format.format).probes(&reports))?;
    Ok(ExitCode::from(if reports.iter().all(|r| r.ok) {
        0
    } else if reports.iter().any(ProbeReport::timed_out) {
        EXIT_TIMEOUT
    } else {
        EXIT_FAILED
    }))
}

/// The URL given, or with --plan the smoke-test URL of every protocol in the plan.
fn targets(ctx: &Context, caps: &Capabilities, args: &ProbeArgs) -> Result<Vec<Target>> {
    let parse = |url: &str| Target::parse(caps, url).map_err(|e| Error::usage(format!("probe URL: {e}")));
    if !args.plan.plan {
        let url = args.url.as_deref().ok_or_else(|| {
            Error::usage("probe needs a URL, such as mqtt://HOST:11883, or --plan with the plan's answers")
        })?;
        let mut out = vec![parse(url)?];
        for more in &args.matrix.more_urls {
            out.push(parse(more)?);
        }
        return Ok(out);
    }
    let answers = recommend::gather(ctx, caps, &args.answers())?;
    let decision = recommend::decision(caps, &answers)?;
    let deployment = args
        .plan
        .deployment
        .to_deployment(&args.login.keys.device, &args.single.measurepoints);
    let p = plan::plan(caps, &decision, &deployment);
    if p.protocols.is_empty() {
        return Err(Error::usage(format!(
            "the plan recommends {}, which has no endpoint to probe",
            p.recommendation
        )));
    }
    p.protocols
        .iter()
        .map(|pp| {
            let url = pp
                .ports
                .iter()
                .find(|x| x.security != "none")
                .or(pp.ports.first())
                .map(|x| x.url.clone())
                .unwrap_or_default();
            if url.contains('{') {
                return Err(Error::usage_with_help(
                    format!("the plan's endpoint `{url}` has placeholders"),
                    "give --env (and --domain) or --host",
                ));
            }
            parse(&url)
        })
        .collect()
}

fn options(ctx: &Context, caps: &Capabilities, args: &ProbeArgs) -> Result<ProbeOptions> {
    // The flag is range-checked when parsed; a config file's value is checked when read.
    let timeout = args.login.timeout.unwrap_or(DEFAULT_TIMEOUT_S);
    let keys = &args.login.keys;
    let login = match (
        &keys.device.product_key,
        &keys.device.device_key,
        &args.login.username,
    ) {
        (Some(pk), Some(dk), _) => {
            let mode = keys.secure_mode.as_str();
            let secret = super::credentials::read_secret(
                &super::credentials::SecretSource::of_mode(caps, mode),
                keys.secret_file.as_deref(),
                ctx.interactive,
            )?;
            Login::Enos {
                product_key: pk.as_str().into(),
                device_key: dk.as_str().into(),
                mode: mode.into(),
                secret: secret.into(),
                timestamp: keys.timestamp.unwrap_or_else(crate::credentials::now_ms),
                client_id: keys.client_id.clone(),
                prepared: None,
            }
        }
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(Error::usage("--product-key and --device-key go together"));
        }
        (None, None, Some(user)) => Login::Plain {
            username: user.clone(),
            password: std::env::var("ENOS_CONNECT_PASSWORD").ok().map(Secret::new),
        },
        (None, None, None) => Login::None,
    };
    let tls = args.tls.options();
    // Catch unreadable CA or key files as input errors, before any traffic. Only when some
    // were given: building a config loads the system's roots, which costs milliseconds.
    if tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some() {
        probe::tls::client_config(&tls, &[]).map_err(Error::usage)?;
    }
    let single = &args.single;
    let roundtrip = single.roundtrip.as_ref().map(|t| {
        if t.is_empty() {
            format!("enos-connect/probe/{:08x}", crate::random::random_u64() as u32)
        } else {
            t.clone()
        }
    });
    Ok(ProbeOptions {
        timeout: Duration::try_from_secs_f64(timeout)
            .map_err(|_| Error::usage(format!("--timeout {timeout}: give seconds above 0")))?,
        verbose: args.output.verbose,
        login,
        client_id: keys.client_id.clone(),
        tls,
        publish: single.publish.clone(),
        roundtrip,
        qos: single.qos,
        payload: single.payload.clone().map(String::into_bytes),
        method: single.method.clone(),
        psk: psk(args)?,
        measurepoints: (!single.measurepoints.is_empty())
            .then(|| std::sync::Arc::new(probe::Points::new(single.measurepoints.iter().cloned().collect()))),
        activate_to: single.activate_to.clone(),
        force: single.force,
        needs: probe::needs::NeedOptions::default(),
        subdevice: match &single.subdevice {
            Some((pk, dk)) => Some(probe::SubDevice {
                product_key: pk.clone(),
                device_key: dk.clone(),
                secret: subdevice_secret()?,
            }),
            None => None,
        },
    })
}

/// The sub-device's secret: ENOS_SUBDEVICE_SECRET, never an argument.
fn subdevice_secret() -> Result<Secret> {
    match std::env::var("ENOS_SUBDEVICE_SECRET") {
        Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim().to_string())),
        _ => Err(Error::usage_with_help(
            "--subdevice needs the sub-device's secret in ENOS_SUBDEVICE_SECRET",
            "a secret is never taken as an argument, because process lists and shell history keep it",
        )),
    }
}

/// The combinations of the EnOS-level flags that can work, checked before any traffic.
fn check_enos_flags(caps: &Capabilities, args: &ProbeArgs, targets: &[Target]) -> Result<()> {
    let device = &args.login.keys.device;
    let keys = device.product_key.is_some() && device.device_key.is_some();
    let need_keys = |flag: &str| {
        Error::usage_with_help(
            format!("{flag} needs the device's EnOS login"),
            "give --product-key and --device-key, and the secret in ENOS_DEVICE_SECRET (or ENOS_PRODUCT_SECRET with --secure-mode dynamic)",
        )
    };
    let single = &args.single;
    if !single.measurepoints.is_empty() && !keys {
        return Err(need_keys("--measurepoint"));
    }
    // A sub-device logs in through its gateway's connection, over the protocol of its recipe.
    let gateway_only = |flag: &str| {
        let over = caps
            .credentials
            .get("subdevice")
            .and_then(|r| r.protocol.as_deref())
            .unwrap_or("mqtt");
        match targets.iter().find(|t| t.protocol != over) {
            Some(t) => Err(Error::usage(format!(
                "{flag} logs a sub-device in through its gateway's {} connection (capabilities.toml, credentials.subdevice), not {}",
                probe::needs::title(caps, over),
                t.url()
            ))),
            None => Ok(()),
        }
    };
    if let Some(file) = &single.activate_to {
        if !keys {
            return Err(need_keys("--activate-to"));
        }
        // Where EnOS activates is data: MQTT over any port, CoAP inside DTLS, HTTP nowhere.
        if let Some(t) = targets
            .iter()
            .find(|t| !caps.activates_over(&t.protocol, &t.security))
        {
            return Err(Error::usage(format!(
                "--activate-to activates over {}, not {}",
                activation_urls(caps),
                t.url()
            )));
        }
        if args.login.keys.secure_mode != super::args::SecureModeArg::Dynamic {
            return Err(Error::usage_with_help(
                "--activate-to activates a device dynamically",
                "add --secure-mode dynamic, with the product secret in ENOS_PRODUCT_SECRET",
            ));
        }
        if file.exists() && !single.force {
            return Err(Error::usage_with_help(
                format!("--activate-to {}: the file exists", file.display()),
                "a device secret is not overwritten by accident: remove the file, or pass --force",
            ));
        }
    }
    if single.subdevice.is_some() {
        if !keys {
            return Err(need_keys("--subdevice"));
        }
        gateway_only("--subdevice")?;
    }
    Ok(())
}

/// Where a device activates, per protocol: "MQTT (mqtt://, mqtts://) or CoAP (coaps://)".
fn activation_urls(caps: &Capabilities) -> String {
    let per_protocol: Vec<String> = caps
        .protocols
        .iter()
        .filter_map(|p| {
            let schemes: Vec<String> = p
                .ports
                .iter()
                .filter(|x| caps.activates_over(&p.id, &x.security))
                .map(|x| format!("{}://", x.scheme))
                .collect();
            (!schemes.is_empty()).then(|| format!("{} ({})", p.title, schemes.join(", ")))
        })
        .collect();
    per_protocol.join(" or ")
}

/// `--psk-identity` with the key from ENOS_CONNECT_PSK: plain text (as coap-client -k takes
/// it) or `hex:` followed by hex digits.
fn psk(args: &ProbeArgs) -> Result<Option<probe::coap::Psk>> {
    let Some(identity) = &args.login.psk_identity else {
        return Ok(None);
    };
    let raw = zeroize::Zeroizing::new(std::env::var("ENOS_CONNECT_PSK").unwrap_or_default());
    if raw.is_empty() {
        return Err(Error::usage_with_help(
            "--psk-identity needs the key in ENOS_CONNECT_PSK (text, or hex:0a1b...)",
            "a key is never taken as an argument, because process lists and shell history keep it",
        ));
    }
    let key = match raw.strip_prefix("hex:") {
        Some(hex) => probe::coap::hex_decode(hex).ok_or_else(|| {
            Error::usage("ENOS_CONNECT_PSK: `hex:` must be followed by an even number of hex digits")
        })?,
        None => raw.as_bytes().to_vec(),
    };
    Ok(Some((identity.clone(), zeroize::Zeroizing::new(key))))
}

/// `--count N`: N probes at most `--concurrency` at a time, with percentiles per stage.
#[allow(clippy::too_many_arguments)]
fn load(
    ctx: &Context,
    caps: &'static Capabilities,
    args: &ProbeArgs,
    load_args: &LoadArgs,
    count: u64,
    mut targets: Vec<Target>,
    mut opts: ProbeOptions,
    runtime: &tokio::runtime::Runtime,
) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let target = Arc::new(targets.remove(0));
    // Every probe logs in with the same keys and its own client id: the rest of the login is
    // worked out once.
    opts.login.prepare(caps, &target.protocol);
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(count);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} probes, {per_sec}, {eta} left")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let settings = probe::load::LoadOptions {
        count,
        concurrency: load_args.concurrency,
        rate: load_args.rate,
    };
    let progress = |done: u64| bar.set_position(done);
    let next = std::sync::atomic::AtomicU64::new(0);
    let one = || {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (target, opts) = (target.clone(), opts.for_load(n));
        async move { probe::run(caps, &target, &opts).await }
    };
    let report = runtime.block_on(probe::load::run_until(
        &target.protocol,
        &target.url(),
        &settings,
        one,
        &progress,
        ctrl_c(),
    ));
    bar.finish_and_clear();
    emit(&ctx.renderer(args.output.format.format).load(&report))?;
    Ok(run_exit(&report))
}

/// The exit code of a load or fleet that ran here: 130 when Ctrl-C stopped it (its report
/// printed), else [`load_exit`].
pub(crate) fn run_exit(report: &crate::measurement::load::LoadReport) -> ExitCode {
    if report.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        load_exit(report)
    }
}

/// The first Ctrl-C (SIGINT), as a future: a load or a fleet stops there and reports what ran
/// (exit 130). A second Ctrl-C ends the process at once, as if no handler were set. A thread of
/// signal-hook's, as serve's: tokio's signal driver would be set up by every runtime.
pub(crate) fn ctrl_c() -> impl std::future::Future<Output = ()> {
    use signal_hook::consts::SIGINT;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT]) {
        let spawned = std::thread::Builder::new()
            .name("probe-signals".into())
            .spawn(move || {
                let mut first = Some(tx);
                for _ in signals.forever() {
                    match first.take() {
                        Some(tx) => {
                            let _ = tx.send(());
                        }
                        None => {
                            let _ = signal_hook::low_level::emulate_default_handler(SIGINT);
                        }
                    }
                }
            });
        drop(spawned);
    }
    // Without a handler (the thread could not start), SIGINT's default action still stops it.
    async move {
        if rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A load's exit code: 3 only when every failure was the peer's silence; anything else
/// (refusals, internal failures, a shard that was interrupted) is 1.
pub(crate) fn load_exit(report: &crate::measurement::load::LoadReport) -> ExitCode {
    let only_timeouts = report.errors.keys().all(|k| k == "timeout");
    ExitCode::from(if report.ok {
        0
    } else if only_timeouts {
        EXIT_TIMEOUT
    } else {
        EXIT_FAILED
    })
}
