//! `device-test`: examine the device, not the endpoint. Its flags (serve's listeners, shared
//! with `serve` as [`ListenArgs`], and its own), the run wired from the library's
//! [`crate::device_test`]: serve's listeners bound, the listening line and the wait on stderr,
//! the device `--run` started, one progress line per case on a terminal, the report on stdout
//! and in `--junit`, exit 0 when no case failed or errored, 1 otherwise.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::Context;
use super::args::ListenArgs;
use super::error::{Error, Result};
use crate::answers::Answers;
use crate::device_test::catalogue::{self, Claims};
use crate::device_test::process::Device;
use crate::device_test::runner::{Session, Setup};
use crate::device_test::{DeviceTestError, Timings, report};
use crate::registry::Registry;
use crate::render::Format;
use crate::serve::Identity;

pub(super) const DEVICE_TEST_HELP: &str = "\
Each case ends pass, warn, fail, skipped or error, with what was expected, what was seen and
what to change in the firmware; `device-test --list` prints the catalogue.

The first line on stderr is serve's listening line (every bound listener's address). The
device under test connects to one of them, or `--run \"CMD\"` starts it (with sh -c) with
ENOS_CONNECT_MQTT_URL (and _MQTTS_URL, _HTTP_URL, _HTTPS_URL, _COAP_URL for the listeners that
are on), ENOS_PRODUCT_KEY and ENOS_DEVICE_KEY in its environment; it is stopped at the end
(SIGTERM, then SIGKILL after 5 s).

Exit codes:
  0    no case failed or errored
  1    a case failed, or could not be judged (error)
  2    usage or input error (bad flag, registry, answers; a listener that cannot bind)
  74   cannot write the report or a file";

// `device-test`'s own flags, and serve's listeners. (A plain comment: clap would take a doc
// comment here as the command's about.)
#[derive(Debug, Args)]
pub(crate) struct DeviceTestArgs {
    /// Print the catalogue (each case, when it runs, what it checks) and exit
    #[arg(long)]
    pub list: bool,
    /// The device under test, a device of the registry
    #[arg(long, value_name = "PK/DK", required_unless_present = "list")]
    pub device: Option<String>,
    /// The products and devices (serve's registry); the device's model, sub-devices and
    /// firmwares come from it
    #[arg(
        long,
        value_name = "FILE",
        env = "ENOS_CONNECT_REGISTRY",
        required_unless_present = "list"
    )]
    pub registry: Option<PathBuf>,
    /// What the device claims: an answers file (as `ask --save` writes); its needs select the
    /// cases of features (downlink_commands, ota, batch_offline_points, subdevice_management)
    #[arg(long, value_name = "FILE")]
    pub answers: Option<PathBuf>,
    /// Start the device under test with `sh -c CMD` once the listeners are up
    #[arg(long, value_name = "CMD")]
    pub run: Option<String>,
    /// Where the output of the device --run starts goes [default: stderr]
    #[arg(long, value_name = "FILE", requires = "run")]
    pub device_log: Option<PathBuf>,
    /// How long to wait for the device's first login (30s, 2m, 500ms; at most 1h)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub wait: Duration,
    /// How long to wait for the reply to a command
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub reply_timeout: Duration,
    /// How long to wait for an OTA upgrade to be reported done
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub ota_timeout: Duration,
    /// Run only these cases (ids of `--list`, comma-separated)
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub case: Vec<String>,
    /// Also the cases that take a keep-alive period (login.keepalive)
    #[arg(long)]
    pub long: bool,
    /// Also write the report as JUnit XML to this file
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub global: super::args::GlobalArgs,
}

/// The longest `--wait`, `--reply-timeout` or `--ota-timeout`.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// A duration: `60s`, `2m`, `500ms`, `1.5s`, or a number of seconds; above 0, at most an hour.
pub(super) fn duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let v: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 60s, 2m, 500ms)"))?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{text}`: the unit is ms, s, m or h (e.g. 60s)")),
    };
    let secs = v * scale;
    if secs.is_finite() && secs > 0.0 && secs <= MAX_WAIT.as_secs_f64() {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("`{text}`: give a duration above 0 and at most 1h"))
    }
}

pub(super) fn run(ctx: &Context, args: &DeviceTestArgs) -> Result<ExitCode> {
    if args.list {
        return super::print(&report::catalogue(args.format));
    }
    let (Some(device), Some(registry_file)) = (&args.device, &args.registry) else {
        return Err(Error::usage("--device and --registry are required (or --list)"));
    };
    let caps = ctx.capabilities()?;
    let registry = Registry::from_file(registry_file)?;
    let device = device_of(&registry, device)?;
    let claims = match &args.answers {
        Some(file) => {
            let answers = Answers::from_file(caps, file)?;
            Claims::from_answers(Some(&answers))
        }
        None => Claims::default(),
    };
    let cases = catalogue::select(&args.case).map_err(|e| Error::from(DeviceTestError::Case(e)))?;
    let listen = super::serve::options(&args.listen, false)?;
    let timings = Timings {
        wait: args.wait,
        reply_timeout: args.reply_timeout,
        ota_timeout: args.ota_timeout,
        connack_delay: listen.connack_delay,
        ..Timings::default()
    };
    let setup = Setup {
        caps: caps.clone(),
        registry,
        device: device.clone(),
        claims,
        cases,
        long: args.long,
        timings,
        listen,
        max_connections: args.listen.max_connections.and_then(|n| usize::try_from(n).ok()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the network runtime", e))?;
    let console_generated = args.listen.console_token.is_none();
    let report = runtime.block_on(async {
        let session = Session::bind(setup).await.map_err(Error::from)?;
        announce(&session, &device, args, console_generated);
        let mut process = match &args.run {
            Some(cmd) => Some(
                Device::start(cmd, &session.device_env(), args.device_log.as_deref()).map_err(Error::from)?,
            ),
            None => None,
        };
        let tty = std::io::stderr().is_terminal();
        let color = ctx.terminal.stderr_color;
        let mut progress = |r: &crate::device_test::CaseResult| {
            if tty {
                eprintln!("{}", report::progress_line(r, color));
            }
        };
        Ok::<_, Error>(session.run(process.as_mut(), &mut progress).await)
    })?;
    let text = report::render(&report, args.format, ctx.terminal.stdout);
    if let Some(path) = &args.junit {
        let xml = report::junit::report(&report)
            .map_err(|e| Error::io(format!("--junit {}", path.display()), std::io::Error::other(e)))?;
        std::fs::write(path, xml)
            .map_err(|e| Error::io(format!("--junit {}: cannot write it", path.display()), e))?;
    }
    super::terminal::emit(&text)?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::error::EXIT_FAILED)
    })
}

/// The device `PK/DK` of the registry.
fn device_of(registry: &Registry, text: &str) -> Result<Identity> {
    let Some((pk, dk)) = text
        .split_once('/')
        .filter(|(p, d)| !p.is_empty() && !d.is_empty())
    else {
        return Err(DeviceTestError::DeviceFormat(text.to_string()).into());
    };
    if registry.device(pk, dk).is_none() {
        return Err(DeviceTestError::UnknownDevice {
            pk: pk.into(),
            dk: dk.into(),
        }
        .into());
    }
    Ok(Identity::new(pk, dk))
}

/// The listening line, the console, and (on a terminal) what the suite waits for, on stderr.
fn announce(session: &Session, device: &Identity, args: &DeviceTestArgs, generated: bool) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", session.listening());
    drop(err);
    if let Some(access) = session.console() {
        super::serve::announce_console(access, generated);
    }
    if std::io::stderr().is_terminal() {
        let how = if args.run.is_some() {
            "starting it with --run; "
        } else {
            ""
        };
        eprintln!(
            "waiting for {}/{} on {} ({how}at most {:.0} s)",
            device.product_key,
            device.device_key,
            session.urls().join(", "),
            args.wait.as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_and_a_range() {
        assert_eq!(duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5"), Ok(Duration::from_secs(5)));
        assert!(duration("0s").is_err());
        assert!(duration("2h").is_err());
        assert!(duration("5 parsecs").is_err());
        assert!(duration("NaNs").is_err());
    }
}
