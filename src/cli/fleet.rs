//! `probe URL --fleet`: read the devices (a count under one product, a CSV or a registry),
//! run the fleet on a small runtime with a progress line on a terminal, and print the report.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use super::Context;
use super::probe_args::{FleetArgs, MAX_FLEET, ProbeArgs};
use super::terminal::emit;
use crate::capabilities::Capabilities;
use crate::cli::error::{Error, Result};
use crate::probe::Target;
use crate::probe::fleet::{self, FleetDevice, FleetOptions, FleetReport, Tick};
use crate::render::Format;

const DEFAULT_TIMEOUT_S: f64 = 10.0;

pub fn run(
    ctx: &Context,
    caps: &'static Capabilities,
    args: &ProbeArgs,
    fleet_args: &FleetArgs,
    mut targets: Vec<Target>,
) -> Result<ExitCode> {
    let target = targets
        .pop()
        .ok_or_else(|| Error::usage("--fleet needs the URL of the endpoint"))?;
    if target.protocol != "mqtt" {
        return Err(Error::usage_with_help(
            format!(
                "--fleet holds MQTT connections; {} has no connection to hold",
                target.scheme
            ),
            "HTTP and CoAP devices send a request per message: measure them with --count N --rate R",
        ));
    }
    let mut devices = devices(ctx, caps, args, fleet_args)?;
    let activate_to = args.single.activate_to.clone();
    if let Some(dir) = &activate_to {
        keep_secrets_in(dir, &mut devices)?;
    }
    // Each device holds a socket: the soft open-file limit up to the hard one, as serve does.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let timeout = args.login.timeout.unwrap_or(DEFAULT_TIMEOUT_S);
    let timeout = Duration::try_from_secs_f64(timeout)
        .map_err(|_| Error::usage(format!("--timeout {timeout}: give seconds above 0")))?;
    let tls = if target.secure {
        Some(crate::probe::tls::client_config(&args.tls.options(), &[]).map_err(Error::usage)?)
    } else {
        None
    };
    let opts = FleetOptions {
        devices,
        every: fleet_args.every,
        hold: fleet_args.hold,
        rate: args.load.rate,
        measurepoints: args.single.measurepoints.iter().cloned().collect(),
        timeout,
        tls,
        sources: fleet_args.source.clone(),
        activate_to,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the network runtime", e))?;
    let report = runtime.block_on(async {
        let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Error::usage(format!("cannot resolve {}", target.host)))?;
        let terminal = std::io::stderr().is_terminal();
        let progress = |t: &Tick, devices: u64| {
            if terminal {
                eprint!(
                    "\r{:>5} s  {}/{} connected  {} offered  {} acked  {} answered   ",
                    t.t_s, t.connected, devices, t.offered, t.acked, t.answered
                );
            }
        };
        let report = fleet::run_until(caps, target, addr, opts, &progress, super::probe::ctrl_c()).await;
        if terminal {
            eprint!("\r{:100}\r", "");
        }
        Ok::<FleetReport, Error>(report)
    })?;
    print(ctx, args.output.format.format, &report)?;
    Ok(super::probe::run_exit(&report.load))
}

/// Print a fleet's report (its own or one `merge` joined) and its exit code: the stages under a
/// headline of devices and posts, and the fleet's lines; or the JSON of both.
pub fn print(ctx: &Context, format: Format, report: &FleetReport) -> Result<ExitCode> {
    emit(&ctx.renderer(format).fleet(report))?;
    Ok(super::probe::load_exit(&report.load))
}

/// `--activate-to DIR` with `--fleet`: a device that activates dynamically and whose secret an
/// earlier run kept there logs in with that secret (securemode 2); the others activate and
/// their secrets are written there. Its product folders are made now (0700), so that a folder
/// that cannot be made stops the run before any traffic.
fn keep_secrets_in(dir: &std::path::Path, devices: &mut [FleetDevice]) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    for d in devices.iter_mut().filter(|d| d.dynamic) {
        let file = fleet::kept_secret(dir, d);
        match std::fs::read_to_string(&file) {
            Ok(text) if !text.trim().is_empty() => {
                d.secret = crate::base::Secret::new(text.trim().to_string());
                d.dynamic = false;
                continue;
            }
            Ok(_) => {
                return Err(Error::usage(format!(
                    "--activate-to: {} is empty",
                    file.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::io(
                    format!("--activate-to: cannot read {}", file.display()),
                    e,
                ));
            }
        }
        if let Some(folder) = file.parent().filter(|f| !f.is_dir()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(folder)
                .map_err(|e| Error::io(format!("--activate-to: cannot make {}", folder.display()), e))?;
            let _ = std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700));
        }
    }
    Ok(())
}

/// The devices: `--devices N` generated under --product-key, or read from a CSV or TOML file.
fn devices(
    ctx: &Context,
    caps: &Capabilities,
    args: &ProbeArgs,
    fleet_args: &FleetArgs,
) -> Result<Vec<FleetDevice>> {
    let spec = fleet_args.devices.as_deref().unwrap_or_default();
    if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = spec
            .parse()
            .ok()
            .filter(|n| (1..=MAX_FLEET).contains(n))
            .ok_or_else(|| {
                Error::usage(format!(
                    "--devices {spec}: give 1 to {MAX_FLEET} devices, or a file"
                ))
            })?;
        let keys = &args.login.keys;
        let pk = keys.device.product_key.as_deref().ok_or_else(|| {
            Error::usage_with_help(
                "--devices N generates devices under one product",
                "give --product-key, and the product secret in ENOS_PRODUCT_SECRET (the devices activate dynamically)",
            )
        })?;
        let prefix = keys.device.device_key.as_deref().unwrap_or("fleet");
        let secret = super::credentials::read_secret(
            &super::credentials::SecretSource::of_mode(caps, "dynamic"),
            keys.secret_file.as_deref(),
            ctx.interactive,
        )?;
        return Ok(fleet::generated(pk, prefix, &secret, n));
    }
    let path = std::path::Path::new(spec);
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("--devices {}: cannot read it", path.display()), e))?;
    let toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let list = if toml {
        let src = crate::source::SourceFile::new(path.display().to_string(), text);
        let registry = crate::registry::Registry::parse(&src)?;
        fleet::devices_from_registry(&registry)
    } else {
        fleet::devices_from_csv(&text)
    }
    .map_err(|e| Error::usage(format!("--devices {}: {e}", path.display())))?;
    if list.is_empty() {
        return Err(Error::usage(format!(
            "--devices {}: no device in it",
            path.display()
        )));
    }
    let n = u64::try_from(list.len()).unwrap_or(u64::MAX);
    if n > MAX_FLEET {
        return Err(Error::usage(format!(
            "--devices {}: {n} devices, more than {MAX_FLEET}",
            path.display()
        )));
    }
    Ok(list)
}
