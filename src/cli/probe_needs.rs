//! `probe --need` and `probe --matrix` at the edge: the needs' values read and checked before
//! any traffic, each target's needs, and the measured table printed with its exit code.

use std::process::ExitCode;

use super::Context;
use super::probe_args::{MatrixArgs, ProbeArgs};
use super::terminal::emit;
use crate::capabilities::{Capabilities, LoginKind};
use crate::cli::error::{EXIT_FAILED, Error, Result};
use crate::probe::needs::{NeedContext, NeedOptions, NotRun, Step};
use crate::probe::{self, ProbeOptions, Target};

/// The largest `--file`: EnOS's HTTP body bound is a few megabytes; a probe needs less.
const MAX_FILE: u64 = 4 << 20;

/// The needs' options from the flags; with `--matrix`, every feature of the table.
pub(super) fn options(caps: &Capabilities, args: &ProbeArgs) -> Result<NeedOptions> {
    let v = &args.need_values;
    let needs: Vec<String> = if args.matrix.matrix {
        caps.features.iter().map(|f| f.id.clone()).collect()
    } else {
        let mut out: Vec<String> = Vec::new();
        for n in &args.need.need {
            let n = n.trim();
            if caps.feature(n).is_none() {
                let ids: Vec<&str> = caps.features.iter().map(|f| f.id.as_str()).collect();
                let hint = crate::source_text::nearest(n, ids.iter().copied())
                    .map(|id| format!(" (did you mean `{id}`?)"))
                    .unwrap_or_default();
                return Err(Error::usage_with_help(
                    format!("--need `{n}` is not a feature of the comparison table{hint}"),
                    format!("one of {} (see `enos-connect questions`)", ids.join(", ")),
                ));
            }
            if !out.iter().any(|o| o == n) {
                out.push(n.to_string());
            }
        }
        out
    };
    let file = match &v.file {
        Some(path) => {
            let read = || -> std::io::Result<Vec<u8>> {
                let len = std::fs::metadata(path)?.len();
                if len > MAX_FILE {
                    return Err(std::io::Error::other(format!(
                        "{len} bytes, more than {MAX_FILE}"
                    )));
                }
                std::fs::read(path)
            };
            let bytes = read().map_err(|e| Error::usage(format!("--file {}: {e}", path.display())))?;
            let name = path
                .file_name()
                .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
            Some((name, bytes))
        }
        None => None,
    };
    Ok(NeedOptions {
        needs,
        matrix: args.matrix.matrix,
        events: v.event.clone(),
        attributes: v.attribute.iter().cloned().collect(),
        raw: v.raw.as_ref().map(|b| b.0.clone()),
        file,
        file_point: v.file_point.clone(),
        await_command: v
            .await_command
            .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok()),
        command_api: v
            .command_api
            .as_deref()
            .map(|url| probe::CommandApi::parse(caps, url))
            .transpose()
            .map_err(|e| Error::usage(format!("--command-api: {e}")))?,
        register: v.register.clone(),
        firmware_version: v.firmware_version.clone(),
    })
}

/// Before any traffic: needs need the device's EnOS login, and a need that cannot be checked
/// with the values given is a usage error (outside `--matrix`, which reports it as untested).
pub(super) fn check(
    caps: &Capabilities,
    args: &ProbeArgs,
    targets: &[Target],
    opts: &ProbeOptions,
) -> Result<()> {
    let n = &opts.needs;
    if n.needs.is_empty() {
        return Ok(());
    }
    let Some(device) = opts.login.enos_keys() else {
        return Err(Error::usage_with_help(
            "--need and --matrix need the device's EnOS login",
            "give --product-key and --device-key, and the secret in ENOS_DEVICE_SECRET",
        ));
    };
    if n.matrix {
        return check_matrix(&args.matrix, targets, device);
    }
    for t in targets {
        let downlink = &caps.exchanges.carried_by.downlink;
        if (n.await_command.is_some() || n.command_api.is_some()) && !downlink.contains(&t.protocol) {
            let flag = if n.await_command.is_some() {
                "--await-command"
            } else {
                "--command-api"
            };
            return Err(Error::usage(format!(
                "{flag} is for a command to the device, and {}",
                probe::needs::not_carried(caps, crate::capabilities::StepKind::Downlink, &t.protocol)
            )));
        }
        let ctx = NeedContext::of(opts, t, device);
        for need in &n.needs {
            // A need the table does not offer there is not sent: reported, not refused here.
            if !caps
                .feature(need)
                .is_some_and(|f| f.support_for(&t.protocol).offered())
            {
                continue;
            }
            let why = match probe::needs::steps(caps, need, opts, &ctx) {
                Ok(steps) => steps.into_iter().find_map(|s| match s {
                    Step::Login(Err(why)) => Some(why),
                    _ => None,
                }),
                Err(NotRun::Untested(why)) => Some(why),
                Err(NotRun::NotCarried(kind)) => Some(probe::needs::not_carried(caps, kind, &t.protocol)),
            };
            if let Some(why) = why {
                return Err(Error::usage(format!("--need {need}: {why}")));
            }
        }
    }
    Ok(())
}

/// `--matrix`: one URL per protocol, and `--activate` device keys that can be activated.
fn check_matrix(matrix: &MatrixArgs, targets: &[Target], device: (&str, &str)) -> Result<()> {
    let activate = &matrix.activate;
    if activate.len() > targets.len() {
        return Err(Error::usage(format!(
            "--activate gives {} device keys for {} URLs: one per URL, in order",
            activate.len(),
            targets.len()
        )));
    }
    if let Some(dk) = activate
        .iter()
        .find(|dk| dk.trim().is_empty() || dk.contains(['/', ',']) || *dk == device.1)
    {
        return Err(Error::usage_with_help(
            format!("--activate `{dk}` is not a device key to activate"),
            "give device keys of the product that are not activated yet (not the --device-key that logs in)",
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    for t in targets {
        if seen.contains(&t.protocol.as_str()) {
            return Err(Error::usage(format!(
                "--matrix takes one URL per protocol; {} is given twice",
                t.protocol
            )));
        }
        seen.push(&t.protocol);
    }
    Ok(())
}

/// The options of one target of `--plan`: only the needs its protocol carries (the plan gave
/// the others to another protocol).
pub(super) fn for_target(
    caps: &Capabilities,
    opts: &ProbeOptions,
    target: &Target,
    plan: bool,
) -> ProbeOptions {
    let mut o = opts.clone();
    if plan {
        o.needs.needs.retain(|n| {
            caps.feature(n)
                .is_some_and(|f| f.support_for(&target.protocol).offered())
        });
    }
    o
}

/// `--matrix`: every feature over every target, one after another, and the measured table.
/// Each target's probe logs in the way the flags say; the login rows it cannot prove are then
/// measured by logins of their own: `--activate DK` activates a device per target (in order),
/// and over DTLS `--cert`/`--key` offer a certificate handshake.
pub(super) fn matrix(
    ctx: &Context,
    caps: &'static Capabilities,
    args: &ProbeArgs,
    matrix_args: &MatrixArgs,
    targets: &[Target],
    opts: &ProbeOptions,
    runtime: &tokio::runtime::Runtime,
) -> Result<ExitCode> {
    let activate = &matrix_args.activate;
    let product_secret = if activate.is_empty() {
        None
    } else {
        Some(super::credentials::read_secret(
            &super::credentials::SecretSource::of_mode(caps, "dynamic"),
            None,
            ctx.interactive,
        )?)
    };
    let mut dynamic: Vec<Option<ProbeOptions>> = Vec::with_capacity(targets.len());
    for (i, t) in targets.iter().enumerate() {
        dynamic.push(match (activate.get(i), &product_secret) {
            (Some(dk), Some(secret)) => Some(dynamic_options(caps, opts, t, dk, secret)?),
            _ => None,
        });
    }
    let (reports, logins) = runtime.block_on(async {
        let mut out = Vec::with_capacity(targets.len());
        let mut logins = Vec::new();
        for (t, dynamic) in targets.iter().zip(&dynamic) {
            out.push(matrix_column(caps, t, opts, dynamic.as_ref(), &mut logins).await);
        }
        (out, logins)
    });
    let m = crate::measurement::matrix::build(caps, reports, logins);
    emit(&ctx.renderer(args.output.format.format).matrix(&m))?;
    Ok(ExitCode::from(if m.ok { 0 } else { EXIT_FAILED }))
}

/// Why `target`'s protocol cannot activate a device over its port, when it activates over
/// others (CoAP: inside DTLS only): the URLs that would.
fn activation_elsewhere(caps: &Capabilities, target: &Target) -> Option<String> {
    let recipe = caps.credentials.get(&target.protocol)?;
    if !recipe.modes.iter().any(|m| m == "dynamic") || caps.activates_over(&target.protocol, &target.security)
    {
        return None;
    }
    let schemes: Vec<String> = caps
        .protocol(&target.protocol)?
        .ports
        .iter()
        .filter(|p| caps.activates_over(&target.protocol, &p.security))
        .map(|p| format!("{}://", p.scheme))
        .collect();
    Some(format!(
        "{} activates a device over {} only (capabilities.toml, credentials.{}.activate_over): give a {} URL",
        probe::needs::title(caps, &target.protocol),
        schemes.join(" or "),
        target.protocol,
        schemes.join(" or ")
    ))
}

fn table(caps: &Capabilities, feature: &str, protocol: &str) -> crate::capabilities::Support {
    caps.feature(feature)
        .map_or(crate::capabilities::Support::NotSupported, |f| {
            f.support_for(protocol)
        })
}

/// One URL's column of the matrix: its probe with every need, then the logins that measure the
/// login rows (a dynamic activation with `dynamic`'s options, a certificate offered over
/// DTLS), pushed to `logins` and put in their rows. The rows are the features whose exchange
/// is that login (`[exchanges]`); without one, nothing is measured.
async fn matrix_column(
    caps: &'static Capabilities,
    t: &Target,
    opts: &ProbeOptions,
    dynamic: Option<&ProbeOptions>,
    logins: &mut Vec<crate::measurement::ProbeReport>,
) -> crate::measurement::ProbeReport {
    use crate::measurement::matrix::{login_need, replace_need};
    let mut report = probe::run(caps, t, opts).await;
    let dynamic_row = caps.login_feature(&LoginKind::SecureMode("dynamic".into()));
    if let (Some(why), Some(_), Some(row)) = (activation_elsewhere(caps, t), dynamic, dynamic_row) {
        // EnOS documents this protocol's activation over other ports only.
        let untested = crate::measurement::NeedReport {
            need: row.into(),
            protocol: t.protocol.clone(),
            table: table(caps, row, &t.protocol),
            ok: false,
            measured: crate::measurement::Measured::Untested,
            code: None,
            message: why,
            stages: Vec::new(),
            error: None,
        };
        replace_need(&mut report, untested);
    } else if let (Some(o), Some(row)) = (dynamic, dynamic_row) {
        let login = probe::run(caps, t, o).await;
        replace_need(
            &mut report,
            login_need(row, table(caps, row, &t.protocol), &login),
        );
        logins.push(login);
    }
    // DTLS-PSK carries no certificate: a handshake offering one is the measurement (a TLS
    // port's certificate login is the probe's own, above).
    if let Some(row) = caps.login_feature(&LoginKind::Certificate)
        && t.security == "dtls"
        && opts.tls.cert.is_some()
    {
        let login = probe::coap::certificate_login(t, opts).await;
        replace_need(
            &mut report,
            login_need(row, table(caps, row, &t.protocol), &login),
        );
        logins.push(login);
    }
    report
}

/// The options of the login that proves `dynamic_auth` on `target`: device `dk` of the
/// product, securemode 3 with the product secret, and (over MQTT and DTLS, where EnOS
/// activates) the device secret written to `DK.secret` in the current folder, then a second
/// login with it. Over HTTP the login is sent all the same: EnOS's answer is the measurement.
fn dynamic_options(
    caps: &Capabilities,
    opts: &ProbeOptions,
    target: &Target,
    dk: &str,
    product_secret: &crate::secret::Secret,
) -> Result<ProbeOptions> {
    let Some((pk, _)) = opts.login.enos_keys() else {
        return Err(Error::usage("--activate needs --product-key"));
    };
    let mut o = opts.clone();
    o.login = probe::Login::Enos {
        product_key: pk.into(),
        device_key: dk.into(),
        mode: "dynamic".into(),
        secret: product_secret.clone().into(),
        timestamp: crate::credentials::now_ms(),
        client_id: None,
        prepared: None,
    };
    o.needs = NeedOptions::default();
    o.measurepoints = None;
    o.subdevice = None;
    o.activate_to = None;
    if caps.activates_over(&target.protocol, &target.security) {
        let file = std::path::PathBuf::from(format!("{dk}.secret"));
        if file.exists() && !opts.force {
            return Err(Error::usage_with_help(
                format!("--activate {dk}: {} exists", file.display()),
                "a device secret is not overwritten by accident: remove the file, or pass --force",
            ));
        }
        o.activate_to = Some(file);
    }
    Ok(o)
}
