//! The flags of `probe`, grouped by what they are for: the target and its login, a single
//! probe's message, `--need` and its values (`need_args.rs`), `--matrix`, a load (`--count`), a
//! fleet (`--fleet`), the plan (`--plan`), TLS and the output. Each group is a struct of its own
//! with a heading in `probe -h`; [`ProbeArgs::mode`] reads which mode the flags chose, once, as
//! a [`ProbeMode`] that carries that mode's own flags. clap keeps the modes apart (`--fleet`,
//! `--matrix` and `--count` are one group: at most one) and the command lines stay as they
//! were: the same flags, only declared in groups.

use std::path::PathBuf;

use clap::{ArgGroup, Args};

use super::args::{
    AnswerArgs, DeploymentArgs, FormatArgs, InputArgs, KeyArgs, NeedArgs, measurepoint, rate_per_second,
    timeout_seconds,
};
use super::need_args::NeedProbeArgs;

/// The most devices of `--fleet --devices N`.
pub(crate) const MAX_FLEET: u64 = 1_000_000;
/// The largest --count: ten million probes is hours of load; more is a typo.
pub(crate) const MAX_COUNT: u64 = 10_000_000;
/// The largest --concurrency: each probe in flight holds a socket.
pub(crate) const MAX_CONCURRENCY: u64 = 10_000;

// (The groups below have plain comments: clap would take a flattened struct's doc comment as
// the command's description.)
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("mode").args(["fleet", "matrix", "count"]).multiple(false)))]
pub(crate) struct ProbeArgs {
    /// mqtt://, mqtts://, coap://, http:// or https:// HOST[:PORT][/PATH]; the port defaults to
    /// the EnOS port of the scheme
    #[arg(value_name = "URL", required_unless_present = "plan")]
    pub url: Option<String>,
    #[command(flatten, next_help_heading = "Target and login")]
    pub login: LoginArgs,
    #[command(flatten, next_help_heading = "Single probe: the message after the login")]
    pub single: SingleArgs,
    #[command(flatten, next_help_heading = "--need: prove the features a device needs")]
    pub need: NeedArgs,
    #[command(flatten, next_help_heading = "--need: the values a feature's check sends")]
    pub need_values: NeedProbeArgs,
    #[command(flatten, next_help_heading = "--matrix: the comparison table as measured")]
    pub matrix: MatrixArgs,
    #[command(flatten, next_help_heading = "Load: --count")]
    pub load: LoadArgs,
    #[command(flatten, next_help_heading = "Fleet: --fleet")]
    pub fleet: FleetArgs,
    #[command(flatten, next_help_heading = "Plan: --plan")]
    pub plan: PlanProbeArgs,
    #[command(flatten, next_help_heading = "TLS")]
    pub tls: TlsArgs,
    #[command(flatten, next_help_heading = "Output")]
    pub output: OutputArgs,
    #[command(flatten)]
    pub global: super::args::GlobalArgs,
}

/// What `probe` does, chosen once from the flags: each mode with its own flags.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ProbeMode<'a> {
    /// One probe per URL (or per protocol of `--plan`): connect, log in, a message.
    Single,
    /// `--need F`: after the login, each feature's exchange (with `--plan`: only those the
    /// plan gives each protocol, and only with the device's keys).
    Need,
    /// `--matrix URL...`: every feature over one URL per protocol.
    Matrix(&'a MatrixArgs),
    /// `--count N`: N probes (with their needs, if any), percentiles per stage.
    Load(&'a LoadArgs, u64),
    /// `--fleet`: devices holding MQTT connections and posting.
    Fleet(&'a FleetArgs),
}

impl ProbeArgs {
    /// The mode the flags chose; clap has already refused two of `--fleet`, `--matrix` and
    /// `--count` together.
    pub(crate) fn mode(&self) -> ProbeMode<'_> {
        if self.fleet.fleet {
            ProbeMode::Fleet(&self.fleet)
        } else if self.matrix.matrix {
            ProbeMode::Matrix(&self.matrix)
        } else if let Some(n) = self.load.count {
            ProbeMode::Load(&self.load, n)
        } else if self.need.need.is_empty() {
            ProbeMode::Single
        } else {
            ProbeMode::Need
        }
    }

    /// The answers of `--plan`, as `recommend` reads them.
    pub(crate) fn answers(&self) -> AnswerArgs {
        AnswerArgs {
            answer: self.plan.answer.clone(),
            needs: self.need.clone(),
            answers: self.plan.answers.clone(),
        }
    }
}

// Where to connect and who logs in.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Log in with this user name; the password comes from ENOS_CONNECT_PASSWORD
    #[arg(long, value_name = "USER", env = "ENOS_CONNECT_USERNAME")]
    pub username: Option<String>,
    /// coaps:// DTLS-PSK identity; the key comes from ENOS_CONNECT_PSK (text, or hex:...)
    #[arg(long, value_name = "ID", env = "ENOS_CONNECT_PSK_IDENTITY")]
    pub psk_identity: Option<String>,
    /// Bound on the whole probe, in seconds, above 0 and at most 3600 [default: 10]
    #[arg(long, value_name = "SECONDS", env = "ENOS_CONNECT_TIMEOUT", value_parser = timeout_seconds)]
    pub timeout: Option<f64>,
    #[command(flatten)]
    pub input: InputArgs,
}

// A single probe's message after the login (also posted by `--need`, a load and a fleet:
// `--measurepoint`).
#[derive(Debug, Args)]
pub(crate) struct SingleArgs {
    /// After the EnOS login, post this measure point and wait for EnOS's reply code (repeatable;
    /// VALUE is read as a JSON number or boolean, else as a string)
    #[arg(long = "measurepoint", short = 'm', value_name = "ID=VALUE", env = "ENOS_CONNECT_MEASUREPOINT",
          value_delimiter = ',', value_parser = measurepoint)]
    pub measurepoints: Vec<(String, serde_json::Value)>,
    /// MQTT: publish one message to TOPIC and wait for its acknowledgement (QoS 1)
    #[arg(long, value_name = "TOPIC", env = "ENOS_CONNECT_PUBLISH")]
    pub publish: Option<String>,
    /// MQTT: subscribe to TOPIC, publish to it, and time the message coming back
    #[arg(long, value_name = "TOPIC", num_args = 0..=1, default_missing_value = "", env = "ENOS_CONNECT_ROUNDTRIP")]
    pub roundtrip: Option<String>,
    /// MQTT QoS of the message
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1), env = "ENOS_CONNECT_QOS")]
    pub qos: u8,
    /// Message or request body
    #[arg(long, value_name = "TEXT", env = "ENOS_CONNECT_PAYLOAD")]
    pub payload: Option<String>,
    /// HTTP or CoAP method [default: GET, or POST with a payload]
    #[arg(long, value_name = "METHOD", env = "ENOS_CONNECT_METHOD")]
    pub method: Option<String>,
    /// Dynamic activation (with --secure-mode dynamic) over MQTT or CoAP over DTLS: write the
    /// device secret EnOS gives to FILE (mode 0600), then log in again with it. With --fleet, a
    /// folder: each activated device's secret in DIR/{product key}/{device key}.secret, where
    /// the next run with the same DIR finds it and logs in with it
    #[arg(long, value_name = "FILE|DIR", env = "ENOS_CONNECT_ACTIVATE_TO")]
    pub activate_to: Option<PathBuf>,
    /// With --activate-to: replace the file if it exists
    #[arg(long, requires = "activate_to")]
    pub force: bool,
    /// MQTT: log this sub-device in through the gateway's connection (its secret from
    /// ENOS_SUBDEVICE_SECRET); --measurepoint then posts for it
    #[arg(long, value_name = "PK/DK", env = "ENOS_CONNECT_SUBDEVICE", value_parser = subdevice)]
    pub subdevice: Option<(String, String)>,
}

// `--matrix`: the comparison table as measured.
#[derive(Debug, Args)]
pub(crate) struct MatrixArgs {
    /// Every feature over every URL given (one per protocol, the same device), printed as the
    /// comparison table as measured beside the table's own cell; exit 1 on a mismatch
    #[arg(long, env = "ENOS_CONNECT_MATRIX", conflicts_with = "plan")]
    pub matrix: bool,
    /// With --matrix: the other protocols' URLs
    #[arg(value_name = "MORE_URLS", requires = "matrix")]
    pub more_urls: Vec<String>,
    /// With --matrix: prove dynamic_auth by activating these devices of the product, not yet
    /// activated, one per URL in order (the product secret from ENOS_PRODUCT_SECRET; each
    /// device secret written to DK.secret in the current folder, mode 0600)
    #[arg(long, value_name = "DK", value_delimiter = ',', requires = "matrix")]
    pub activate: Vec<String>,
}

// `--count N`: a load.
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Run N probes (a load probe, 1 to 10000000) and report rates and latency percentiles per stage
    #[arg(long, value_name = "N", env = "ENOS_CONNECT_COUNT", conflicts_with = "plan",
          value_parser = clap::value_parser!(u64).range(1..=MAX_COUNT))]
    pub count: Option<u64>,
    /// With --count: at most C probes at a time (1 to 10000)
    #[arg(
        long,
        value_name = "C",
        default_value_t = 10,
        env = "ENOS_CONNECT_CONCURRENCY",
        value_parser = clap::value_parser!(u64).range(1..=MAX_CONCURRENCY)
    )]
    pub concurrency: u64,
    /// With --count: start at most R probes per second; with --fleet, R logins per second
    /// (0.01 to 1000000)
    #[arg(long, value_name = "R", env = "ENOS_CONNECT_RATE", value_parser = rate_per_second)]
    pub rate: Option<f64>,
}

// `--fleet`: devices holding their connections.
#[derive(Debug, Args)]
pub(crate) struct FleetArgs {
    /// A fleet: --devices each log in once, hold the connection and post --measurepoint every
    /// --every for --hold (MQTT); the report has connected over time, rates, codes and latencies
    #[arg(
        long,
        env = "ENOS_CONNECT_FLEET",
        conflicts_with = "plan",
        requires = "devices"
    )]
    pub fleet: bool,
    /// With --fleet: N devices (1 to 1000000) keyed `{--device-key or fleet}-{i}` under
    /// --product-key, activated by their login (the product secret from ENOS_PRODUCT_SECRET);
    /// or a FILE of devices: CSV (`product,key,secret`) or a serve registry (TOML)
    #[arg(long, value_name = "N|FILE", requires = "fleet", env = "ENOS_CONNECT_DEVICES")]
    pub devices: Option<String>,
    /// With --fleet: between two posts of a device, 10ms to 1h (`250ms`, `2s`, `5m`)
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = fleet_every, env = "ENOS_CONNECT_EVERY")]
    pub every: std::time::Duration,
    /// With --fleet: how long each device holds its connection after its login, 0 to 24h
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = fleet_hold, env = "ENOS_CONNECT_HOLD")]
    pub hold: std::time::Duration,
    /// With --fleet: connect from these local addresses, device i from the (i mod n)-th; one
    /// address reaches a server port from at most ~28,000 ports (the kernel's ephemeral range).
    /// Default for a 127.x.x.x target: 127.0.0.1 to 127.0.0.16
    #[arg(
        long,
        value_name = "ADDR",
        requires = "fleet",
        value_delimiter = ',',
        env = "ENOS_CONNECT_SOURCE"
    )]
    pub source: Vec<std::net::IpAddr>,
}

// `--plan`: probe every protocol of the plan made from the answers.
#[derive(Debug, Args)]
pub(crate) struct PlanProbeArgs {
    /// Probe every protocol of the plan made from the answers (with --env/--domain or --host)
    #[arg(long, conflicts_with = "url", env = "ENOS_CONNECT_PLAN")]
    pub plan: bool,
    /// Answer a question: ID=VALUE (repeatable; see `enos-connect questions`)
    #[arg(
        long = "answer",
        short = 'a',
        value_name = "ID=VALUE",
        env = "ENOS_CONNECT_ANSWER",
        value_delimiter = ','
    )]
    pub answer: Vec<String>,
    /// Read answers from a TOML file (question ids as keys, plus needs = [...]); flags win
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_ANSWERS")]
    pub answers: Option<PathBuf>,
    #[command(flatten)]
    pub deployment: DeploymentArgs,
}

// The server's certificate check and the client certificate.
#[derive(Debug, Args)]
pub(crate) struct TlsArgs {
    /// CA certificate (PEM) that signs the server certificate [default: the system's]
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for two-way TLS
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM) for two-way TLS
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Do not check the server certificate (the connection is still encrypted)
    #[arg(long, env = "ENOS_CONNECT_INSECURE")]
    pub insecure: bool,
}

impl TlsArgs {
    pub(crate) fn options(&self) -> crate::probe::tls::TlsOptions {
        crate::probe::tls::TlsOptions {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            insecure: self.insecure,
        }
    }
}

// What is printed, and how much is said on the way.
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    #[command(flatten)]
    pub format: FormatArgs,
    /// Log each step (addresses tried, retransmissions, packets) to stderr
    #[arg(long, short = 'v', env = "ENOS_CONNECT_VERBOSE")]
    pub verbose: bool,
}

/// `--subdevice PK/DK`.
fn subdevice(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((pk, dk)) if !pk.is_empty() && !dk.is_empty() && !dk.contains('/') => {
            Ok((pk.to_string(), dk.to_string()))
        }
        _ => Err(format!("`{text}` is not PRODUCT_KEY/DEVICE_KEY")),
    }
}

/// `--every`: 10 ms to an hour.
fn fleet_every(text: &str) -> std::result::Result<std::time::Duration, String> {
    let d = crate::probe::fleet::duration(text)?;
    if d < std::time::Duration::from_millis(10) || d > std::time::Duration::from_secs(3600) {
        return Err(format!("`{text}` is outside 10ms to 1h"));
    }
    Ok(d)
}

/// `--hold`: zero to a day.
fn fleet_hold(text: &str) -> std::result::Result<std::time::Duration, String> {
    let d = crate::probe::fleet::duration(text)?;
    if d > std::time::Duration::from_secs(86_400) {
        return Err(format!("`{text}` is longer than 24h"));
    }
    Ok(d)
}
