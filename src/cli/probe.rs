//! `probe`: parse the target and options, run the probe on a small tokio runtime, print the
//! report, and turn the outcome into the exit code (0 ok, 1 failed, 3 timed out).

use std::process::ExitCode;
use std::time::Duration;

use super::{ProbeArgs, emit, recommend};
use crate::capabilities::Capabilities;
use crate::credentials::Secret;
use crate::error::{EXIT_FAILED, EXIT_TIMEOUT, Error, Result};
use crate::plan;
use crate::probe::{self, Login, ProbeOptions, ProbeReport, Target, tls::TlsOptions};
use crate::render::{Format, json, table};

const DEFAULT_TIMEOUT_S: f64 = 10.0;

pub fn run(caps: &Capabilities, args: &ProbeArgs, interactive: bool) -> Result<ExitCode> {
    let targets = targets(caps, args, interactive)?;
    let opts = options(caps, args, interactive)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the network runtime: {e}")))?;
    if let Some(count) = args.count {
        return load(caps, args, targets, opts, &runtime, count);
    }
    let reports: Vec<ProbeReport> = runtime.block_on(async { probe_each(caps, &targets, &opts).await });
    let text = match args.format.format {
        Format::Json if reports.len() == 1 => json::to_string(&reports[0]),
        Format::Json => json::to_string(&serde_json::json!({
            "ok": reports.iter().all(|r| r.ok),
            "probes": reports,
        })),
        Format::Csv => return Err(super::csv_only()),
        Format::Table | Format::Markdown => reports.iter().map(table::probe).collect::<Vec<_>>().join("\n"),
    };
    emit(&text)?;
    Ok(ExitCode::from(if reports.iter().all(|r| r.ok) {
        0
    } else if reports.iter().any(ProbeReport::timed_out) {
        EXIT_TIMEOUT
    } else {
        EXIT_FAILED
    }))
}

/// The probes one after another: a plan's protocols are checked in order, each within its
/// own timeout.
async fn probe_each(caps: &Capabilities, targets: &[Target], opts: &ProbeOptions) -> Vec<ProbeReport> {
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        out.push(probe::run(caps, t, opts).await);
    }
    out
}

/// The URL given, or with --plan the smoke-test URL of every protocol in the plan.
fn targets(caps: &Capabilities, args: &ProbeArgs, interactive: bool) -> Result<Vec<Target>> {
    let parse = |url: &str| Target::parse(caps, url).map_err(|e| Error::Usage(format!("probe URL: {e}")));
    if !args.plan {
        let url = args.url.as_deref().ok_or_else(|| {
            Error::Usage(
                "probe needs a URL, such as mqtt://HOST:11883, or --plan with the plan's answers".into(),
            )
        })?;
        return Ok(vec![parse(url)?]);
    }
    let answers = recommend::gather(caps, &args.answers, interactive)?;
    let decision = recommend::decide(caps, &answers)?;
    let target = args
        .target
        .to_target(&args.keys.product_key, &args.keys.device_key);
    let p = plan::plan(caps, &decision, &target);
    if p.protocols.is_empty() {
        return Err(Error::Usage(format!(
            "the plan recommends {}, which has no endpoint to probe",
            p.recommendation
        )));
    }
    p.protocols
        .iter()
        .map(|pp| {
            let url = pp.ports.iter().find(|x| x.security != "none").or(pp.ports.first()).map(|x| x.url.clone());
            let url = url.unwrap_or_default();
            if url.contains('{') {
                return Err(Error::Usage(format!(
                    "the plan's endpoint `{url}` has placeholders\n  = help: give --env (and --domain) or --host"
                )));
            }
            parse(&url)
        })
        .collect()
}

fn options(caps: &Capabilities, args: &ProbeArgs, interactive: bool) -> Result<ProbeOptions> {
    let timeout = args.timeout.unwrap_or(DEFAULT_TIMEOUT_S);
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= 3600.0) {
        return Err(Error::Usage(format!(
            "--timeout {timeout}: give seconds between 0 and 3600"
        )));
    }
    let keys = &args.keys;
    let login = match (&keys.product_key, &keys.device_key, &args.username) {
        (Some(pk), Some(dk), _) => {
            let mode = keys.secure_mode.as_str();
            let secret =
                super::credentials::read_secret(caps, mode, keys.secret_file.as_deref(), interactive)?;
            Login::Enos {
                product_key: pk.clone(),
                device_key: dk.clone(),
                mode: mode.to_string(),
                secret,
                timestamp: keys.timestamp.unwrap_or_else(super::credentials::now_ms),
                client_id: keys.client_id.clone(),
            }
        }
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(Error::Usage("--product-key and --device-key go together".into()));
        }
        (None, None, Some(user)) => Login::Plain {
            username: user.clone(),
            password: std::env::var("ENOS_CONNECT_PASSWORD").ok().map(Secret::new),
        },
        (None, None, None) => Login::None,
    };
    let tls = TlsOptions {
        ca: args.ca.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
        insecure: args.insecure,
    };
    // Catch unreadable CA or key files as input errors, before any traffic. Only when some
    // were given: building a config loads the system's roots, which costs milliseconds.
    if tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some() {
        probe::tls::client_config(&tls, &[]).map_err(Error::Usage)?;
    }
    let roundtrip = args.roundtrip.as_ref().map(|t| {
        if t.is_empty() {
            format!("enos-connect/probe/{:08x}", probe::random_u64() as u32)
        } else {
            t.clone()
        }
    });
    Ok(ProbeOptions {
        timeout: Duration::from_secs_f64(timeout),
        verbose: args.verbose,
        login,
        client_id: keys.client_id.clone(),
        tls,
        publish: args.publish.clone(),
        roundtrip,
        qos: args.qos,
        payload: args.payload.clone().map(String::into_bytes),
        method: args.method.clone(),
        psk: psk(args)?,
    })
}

/// `--psk-identity` with the key from ENOS_CONNECT_PSK: plain text (as coap-client -k takes
/// it) or `hex:` followed by hex digits.
fn psk(args: &ProbeArgs) -> Result<Option<probe::coap::Psk>> {
    let Some(identity) = &args.psk_identity else {
        return Ok(None);
    };
    let raw = zeroize::Zeroizing::new(std::env::var("ENOS_CONNECT_PSK").unwrap_or_default());
    if raw.is_empty() {
        return Err(Error::Usage(
            "--psk-identity needs the key in ENOS_CONNECT_PSK (text, or hex:0a1b...)\n  = help: a key is never taken as an argument, because process lists and shell history keep it".into(),
        ));
    }
    let key = match raw.strip_prefix("hex:") {
        Some(hex) => probe::coap::hex_decode(hex).ok_or_else(|| {
            Error::Usage("ENOS_CONNECT_PSK: `hex:` must be followed by an even number of hex digits".into())
        })?,
        None => raw.as_bytes().to_vec(),
    };
    Ok(Some((identity.clone(), zeroize::Zeroizing::new(key))))
}

fn load(
    caps: &Capabilities,
    args: &ProbeArgs,
    mut targets: Vec<Target>,
    opts: ProbeOptions,
    runtime: &tokio::runtime::Runtime,
    count: u64,
) -> Result<ExitCode> {
    use std::io::IsTerminal;
    use std::sync::Arc;
    if count == 0 || args.concurrency == 0 {
        return Err(Error::Usage(
            "--count and --concurrency take a number above 0".into(),
        ));
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(Error::Usage("--rate takes probes per second above 0".into()));
    }
    let target = Arc::new(targets.remove(0));
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
        concurrency: args.concurrency,
        rate: args.rate,
    };
    let progress = |done: u64| bar.set_position(done);
    let (caps, opts) = (Arc::new(caps.clone()), Arc::new(opts));
    let one = || {
        let (caps, target, opts) = (caps.clone(), target.clone(), opts.clone());
        async move { probe::run(&caps, &target, &opts).await }
    };
    let report = runtime.block_on(probe::load::run(
        &target.protocol,
        &target.url(),
        &settings,
        one,
        &progress,
    ));
    bar.finish_and_clear();
    emit(&match args.format.format {
        Format::Json => json::to_string(&report),
        Format::Csv => return Err(super::csv_only()),
        Format::Table | Format::Markdown => table::load(&report),
    })?;
    // Exit 3 only when every failure was the peer's silence; anything else (refusals,
    // internal failures) is exit 1.
    let only_timeouts = report.errors.keys().all(|k| k == "timeout");
    Ok(ExitCode::from(if report.ok {
        0
    } else if only_timeouts {
        EXIT_TIMEOUT
    } else {
        EXIT_FAILED
    }))
}
