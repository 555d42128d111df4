//! `probe --need` and `probe --matrix` at the edge: the needs' values read and checked before
//! any traffic, each target's needs, and the measured table printed with its exit code.

use std::process::ExitCode;

use super::Context;
use super::args::ProbeArgs;
use super::terminal::emit;
use crate::capabilities::Capabilities;
use crate::cli::error::{EXIT_FAILED, Error, Result};
use crate::probe::needs::{LoginKind, NeedOptions};
use crate::probe::{self, ProbeOptions, Target};

/// The largest `--file`: EnOS's HTTP body bound is a few megabytes; a probe needs less.
const MAX_FILE: u64 = 4 << 20;

/// Whether the probe runs needs (so it needs the whole model, not only the connection part).
pub fn wanted(args: &ProbeArgs) -> bool {
    args.need_values.matrix || (!args.plan && !args.answers.needs.need.is_empty())
}

/// The needs' options from the flags; with `--matrix`, every feature of the table.
pub fn options(caps: &Capabilities, args: &ProbeArgs) -> Result<NeedOptions> {
    let v = &args.need_values;
    let needs: Vec<String> = if v.matrix {
        caps.features.iter().map(|f| f.id.clone()).collect()
    } else {
        let mut out: Vec<String> = Vec::new();
        for n in &args.answers.needs.need {
            let n = n.trim();
            if caps.feature(n).is_none() {
                let ids: Vec<&str> = caps.features.iter().map(|f| f.id.as_str()).collect();
                return Err(Error::usage_with_help(
                    format!("--need `{n}` is not a feature of the comparison table"),
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
        matrix: v.matrix,
        events: v.event.clone(),
        attributes: v.attribute.iter().cloned().collect(),
        raw: v.raw.as_ref().map(|b| b.0.clone()),
        file,
        file_point: v.file_point.clone(),
        await_command: v
            .await_command
            .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok()),
        register: v.register.clone(),
        firmware_version: v.firmware_version.clone(),
    })
}

/// Before any traffic: needs need the device's EnOS login, and a need that cannot be checked
/// with the values given is a usage error (outside `--matrix`, which reports it as untested).
pub fn check(caps: &Capabilities, args: &ProbeArgs, targets: &[Target], opts: &ProbeOptions) -> Result<()> {
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
        return Ok(());
    }
    if args.need_values.await_command.is_some()
        && let Some(t) = targets.iter().find(|t| t.protocol != "mqtt")
    {
        return Err(Error::usage(format!(
            "--await-command waits for a command over MQTT only, not {}",
            t.protocol
        )));
    }
    for t in targets {
        let login = LoginKind::of(opts, t);
        for need in &n.needs {
            match probe::needs::steps(caps, need, opts, login, device) {
                Ok(steps)
                    if steps
                        .iter()
                        .any(|s| matches!(s, probe::needs::Step::Login(Err(_)))) =>
                {
                    if let Some(probe::needs::Step::Login(Err(why))) = steps.first() {
                        return Err(Error::usage(format!("--need {need}: {why}")));
                    }
                }
                Ok(_) => {}
                Err(why) => return Err(Error::usage(format!("--need {need}: {why}"))),
            }
        }
    }
    Ok(())
}

/// The options of one target of `--plan`: only the needs its protocol carries (the plan gave
/// the others to another protocol).
pub fn for_target(caps: &Capabilities, opts: &ProbeOptions, target: &Target, plan: bool) -> ProbeOptions {
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
pub fn matrix(
    ctx: &Context,
    caps: &'static Capabilities,
    args: &ProbeArgs,
    targets: &[Target],
    opts: &ProbeOptions,
    runtime: &tokio::runtime::Runtime,
) -> Result<ExitCode> {
    let reports = runtime.block_on(async {
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            out.push(probe::run(caps, t, opts).await);
        }
        out
    });
    let m = probe::matrix::build(caps, reports);
    emit(&ctx.renderer(args.format.format).matrix(&m))?;
    Ok(ExitCode::from(if m.ok { 0 } else { EXIT_FAILED }))
}
