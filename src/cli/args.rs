//! The command line: every argument, subcommand and range, as clap derives them. No logic
//! lives here beyond parsing a flag's value; each command's function is in its own module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::serve_args::SERVE_HELP;
pub use super::serve_args::{Listen, ServeArgs};
use super::terminal::ColorChoice;
use crate::cli::error::EXIT_CODES_HELP;
use crate::render::{BatchFormat, FlowFormat, Format};

#[derive(Debug, Parser)]
#[command(
    name = "enos-connect",
    version = concat!(env!("CARGO_PKG_VERSION"), " (capabilities data ", env!("ENOS_CONNECT_DATA_VERSION"), ")"),
    about = "Decide, plan and prove how a device connects to the EnOS IoT platform",
    after_help = EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Use this capabilities file instead of the one built into the binary
    #[arg(long, global = true, value_name = "FILE", env = "ENOS_CONNECT_CAPABILITIES")]
    pub capabilities: Option<PathBuf>,

    /// Read defaults (env, domain, host, keys, CA paths, timeout) from this TOML file
    /// [default: enos-connect/config.toml in the platform's config directory]
    #[arg(long, global = true, value_name = "FILE", env = "ENOS_CONNECT_CONFIG")]
    pub config: Option<PathBuf>,

    /// When to colour the output
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, env = "ENOS_CONNECT_COLOR")]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

/// Each command's arguments are built only when that command runs (`defer`): clap would
/// otherwise build every command's definition on every start-up, which was a third of it.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Recommend how a device connects, from its answers and needs
    #[command(after_help = EXIT_CODES_HELP)]
    Recommend(RecommendArgs),
    /// Answer the questions interactively and get a recommendation
    #[command(after_help = EXIT_CODES_HELP)]
    Ask(AskArgs),
    /// Turn the recommendation into endpoints, ports, authentication, topics and a probe command
    #[command(after_help = EXIT_CODES_HELP)]
    Plan(PlanArgs),
    /// Compute EnOS login material (MQTT login, HTTP sign, CoAP PSK, sub-device login) from a secret
    #[command(after_help = EXIT_CODES_HELP)]
    Credentials(CredentialsArgs),
    /// Prove a connection: resolve, connect, TLS, protocol handshake and a message, timed
    #[command(after_help = EXIT_CODES_HELP)]
    Probe(Box<ProbeArgs>),
    /// Stand in for EnOS: a local MQTT, HTTP and CoAP endpoint that checks what devices send
    #[command(after_help = SERVE_HELP)]
    Serve(Box<ServeArgs>),
    /// Join the load reports of shards that ran side by side: counts summed, percentiles from
    /// the merged histograms
    #[command(after_help = EXIT_CODES_HELP)]
    Merge(MergeArgs),
    /// Print the JSON Schema of capabilities.toml, an answers file or the serve registry
    Schema(SchemaArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish)
    Completions(CompletionsArgs),
    /// Print a man page (roff): the top-level one, one command's, or all of them into a folder
    Man(ManArgs),
    /// Show the protocol comparison table
    Compare(CompareArgs),
    /// Draw the decision flow
    Flow(FlowArgs),
    /// List the questions, their values and the feature ids
    Questions(FormatArgs),
    /// Validate a capabilities file (exit 0 when valid, 2 when not)
    #[command(after_help = EXIT_CODES_HELP)]
    Check(CheckArgs),
}

// `--no-input`: only on the commands that can prompt (recommend for missing answers,
// credentials and probe for a secret); elsewhere it would mean nothing.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct InputArgs {
    /// Never prompt; fail with what is missing instead (also when CI is set)
    #[arg(long, env = "ENOS_CONNECT_NO_INPUT")]
    pub no_input: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct AnswerArgs {
    /// Answer a question: ID=VALUE (repeatable; see `enos-connect questions`)
    #[arg(
        long = "answer",
        short = 'a',
        value_name = "ID=VALUE",
        env = "ENOS_CONNECT_ANSWER",
        value_delimiter = ','
    )]
    pub answer: Vec<String>,
    #[command(flatten)]
    pub needs: NeedArgs,
    /// Read answers from a TOML file (question ids as keys, plus needs = [...]); flags win
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_ANSWERS")]
    pub answers: Option<PathBuf>,
}

// `--need`: shared by the commands that decide and by `compare`, which marks the rows. (A
// plain comment: clap would take a doc comment of a flattened struct as the command's about.)
#[derive(Debug, Args, Clone, Default)]
pub struct NeedArgs {
    /// A feature the device needs (repeatable, or comma-separated)
    #[arg(
        long = "need",
        short = 'n',
        value_name = "FEATURE",
        env = "ENOS_CONNECT_NEED",
        value_delimiter = ','
    )]
    pub need: Vec<String>,
}

// Who the device is: shared by `plan`, `probe` and `credentials`.
#[derive(Debug, Args, Clone, Default)]
pub struct DeviceArgs {
    /// The device's product key
    #[arg(long, value_name = "PK", env = "ENOS_CONNECT_PRODUCT_KEY")]
    pub product_key: Option<String>,
    /// The device's device key
    #[arg(long, value_name = "DK", env = "ENOS_CONNECT_DEVICE_KEY")]
    pub device_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    #[command(flatten)]
    pub answers: AnswerArgs,
    /// Recommend for every row of a CSV or JSON Lines FILE (`-` reads stdin); writes one result
    /// per row (see --batch-format)
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_BATCH", conflicts_with_all = ["answer", "need", "answers", "format"])]
    pub batch: Option<PathBuf>,
    /// With --batch: JSON Lines or CSV
    #[arg(long, value_enum, default_value_t = BatchFormat::Jsonl, env = "ENOS_CONNECT_BATCH_FORMAT")]
    pub batch_format: BatchFormat,
    /// Exit 1, after printing the advice, when the device (with --batch: any device) has an
    /// unmet need: a CI gate
    #[arg(long, env = "ENOS_CONNECT_FAIL_ON_UNMET")]
    pub fail_on_unmet: bool,
    /// Exit 1, after printing the advice, when the device (with --batch: any device) has a
    /// caveat: a chosen protocol that works against one of its answers
    #[arg(long, env = "ENOS_CONNECT_FAIL_ON_CAVEAT")]
    pub fail_on_caveat: bool,
    /// With --batch: take only shard K of N (the records at zero-based positions i with
    /// i mod N = K-1), so N machines split a fleet; the N outputs concatenate to the whole
    /// (CSV: shard 1 writes the header)
    #[arg(long, value_name = "K/N", requires = "batch", env = "ENOS_CONNECT_SHARD")]
    pub shard: Option<crate::batch::Shard>,
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub input: InputArgs,
}

#[derive(Debug, Args)]
pub struct AskArgs {
    /// Save the answers to this TOML file (replay with `recommend --answers FILE`)
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    #[command(flatten)]
    pub format: FormatArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub answers: AnswerArgs,
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// A measure point the smoke-test command posts: ID=VALUE (repeatable)
    #[arg(long = "measurepoint", short = 'm', value_name = "ID=VALUE", value_delimiter = ',', value_parser = measurepoint)]
    pub measurepoints: Vec<(String, serde_json::Value)>,
    #[command(flatten)]
    pub format: FormatArgs,
}

// Which EnOS deployment the device connects to: shared by `plan` and `probe --plan`.
#[derive(Debug, Args, Clone, Default)]
pub struct DeploymentArgs {
    /// EnOS environment, as in the portal's address (app-portal-ENV.DOMAIN), for example eu2
    #[arg(long, value_name = "ENV", env = "ENOS_CONNECT_ENV")]
    pub env: Option<String>,
    /// EnOS domain [default: envisioniot.com]
    #[arg(long, value_name = "DOMAIN", env = "ENOS_CONNECT_DOMAIN")]
    pub domain: Option<String>,
    /// Use this host for every protocol (private deployments), instead of --env/--domain
    #[arg(long, value_name = "HOST", env = "ENOS_CONNECT_HOST", conflicts_with_all = ["env", "domain"])]
    pub host: Option<String>,
}

impl DeploymentArgs {
    pub fn to_deployment(
        &self,
        device: &DeviceArgs,
        points: &[(String, serde_json::Value)],
    ) -> crate::plan::Deployment {
        crate::plan::Deployment {
            measurepoints: points
                .iter()
                .map(|(id, v)| match v {
                    serde_json::Value::String(s) => format!("{id}={s}"),
                    other => format!("{id}={other}"),
                })
                .collect(),
            env: self.env.clone(),
            domain: self
                .domain
                .clone()
                .unwrap_or_else(|| crate::plan::DEFAULT_DOMAIN.to_string()),
            host: self.host.clone(),
            product_key: device.product_key.clone(),
            device_key: device.device_key.clone(),
        }
    }
}

// Who the device is and where its secret comes from: shared by `credentials` and `probe`.
#[derive(Debug, Args, Clone)]
pub struct KeyArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// static: device secret (ENOS_DEVICE_SECRET); dynamic: product secret (ENOS_PRODUCT_SECRET)
    #[arg(long, value_enum, default_value_t = SecureModeArg::Static, env = "ENOS_CONNECT_SECURE_MODE")]
    pub secure_mode: SecureModeArg,
    /// Client id [default: credentials: the device key; probe: random]
    #[arg(long, value_name = "ID", env = "ENOS_CONNECT_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Timestamp of the login in milliseconds since the epoch [default: now]
    #[arg(long, value_name = "MS", env = "ENOS_CONNECT_TIMESTAMP")]
    pub timestamp: Option<u64>,
    /// Read the secret from the first line of this file
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// mqtt://, mqtts://, coap://, http:// or https:// HOST[:PORT][/PATH]; the port defaults to
    /// the EnOS port of the scheme
    #[arg(value_name = "URL", required_unless_present = "plan")]
    pub url: Option<String>,
    /// Probe every protocol of the plan made from the answers (with --env/--domain or --host)
    #[arg(long, conflicts_with = "url", env = "ENOS_CONNECT_PLAN")]
    pub plan: bool,
    #[command(flatten)]
    pub answers: AnswerArgs,
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Bound on the whole probe, in seconds, above 0 and at most 3600 [default: 10]
    #[arg(long, value_name = "SECONDS", env = "ENOS_CONNECT_TIMEOUT", value_parser = timeout_seconds)]
    pub timeout: Option<f64>,
    /// Log each step (addresses tried, retransmissions, packets) to stderr
    #[arg(long, short = 'v', env = "ENOS_CONNECT_VERBOSE")]
    pub verbose: bool,
    /// Log in with this user name; the password comes from ENOS_CONNECT_PASSWORD
    #[arg(long, value_name = "USER", env = "ENOS_CONNECT_USERNAME")]
    pub username: Option<String>,
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
    /// A fleet: --devices each log in once, hold the connection and post --measurepoint every
    /// --every for --hold (MQTT); the report has connected over time, rates, codes and latencies
    #[arg(long, env = "ENOS_CONNECT_FLEET", conflicts_with_all = ["plan", "count"], requires = "devices")]
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
    /// coaps:// DTLS-PSK identity; the key comes from ENOS_CONNECT_PSK (text, or hex:...)
    #[arg(long, value_name = "ID", env = "ENOS_CONNECT_PSK_IDENTITY")]
    pub psk_identity: Option<String>,
    /// After the EnOS login, post this measure point and wait for EnOS's reply code (repeatable;
    /// VALUE is read as a JSON number or boolean, else as a string)
    #[arg(long = "measurepoint", short = 'm', value_name = "ID=VALUE", env = "ENOS_CONNECT_MEASUREPOINT",
          value_delimiter = ',', value_parser = measurepoint)]
    pub measurepoints: Vec<(String, serde_json::Value)>,
    /// Dynamic activation (with --secure-mode dynamic) over MQTT or CoAP over DTLS: write the
    /// device secret EnOS gives to FILE (mode 0600), then log in again with it
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_ACTIVATE_TO")]
    pub activate_to: Option<PathBuf>,
    /// With --activate-to: replace the file if it exists
    #[arg(long, requires = "activate_to")]
    pub force: bool,
    /// MQTT: log this sub-device in through the gateway's connection (its secret from
    /// ENOS_SUBDEVICE_SECRET); --measurepoint then posts for it
    #[arg(long, value_name = "PK/DK", env = "ENOS_CONNECT_SUBDEVICE", value_parser = subdevice)]
    pub subdevice: Option<(String, String)>,
    #[command(flatten)]
    pub need_values: super::need_args::NeedProbeArgs,
    /// Output format
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub input: InputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SecureModeArg {
    /// Device secret (securemode 2), from ENOS_DEVICE_SECRET
    Static,
    /// Product secret (securemode 3), from ENOS_PRODUCT_SECRET
    Dynamic,
}

impl SecureModeArg {
    pub fn as_str(self) -> &'static str {
        match self {
            SecureModeArg::Static => "static",
            SecureModeArg::Dynamic => "dynamic",
        }
    }
}

#[derive(Debug, Args)]
#[command(
    after_long_help = "The secret is read from ENOS_DEVICE_SECRET (static) or ENOS_PRODUCT_SECRET \
(dynamic), ENOS_SUBDEVICE_SECRET for `subdevice`, from --secret-file, or from a hidden prompt on a \
terminal; never from an argument."
)]
pub struct CredentialsArgs {
    /// mqtt, http, coap, or subdevice (a sub-device's login through its gateway; its secret
    /// from ENOS_SUBDEVICE_SECRET)
    #[arg(value_name = "PROTOCOL")]
    pub protocol: String,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Session lifetime: HTTP in milliseconds (default 300000), CoAP in seconds (default 3600)
    #[arg(long, value_name = "N", env = "ENOS_CONNECT_LIFETIME",
          value_parser = clap::value_parser!(u64).range(1..=MAX_LIFETIME))]
    pub lifetime: Option<u64>,
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub input: InputArgs,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct FormatArgs {
    /// Output format
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table, env = "ENOS_CONNECT_FORMAT")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Load reports: the JSON of `probe --count N -f json` runs (`-` reads stdin; a file may
    /// hold several reports one after another)
    #[arg(required = true, value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,
    #[command(flatten)]
    pub format: FormatArgs,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Marks the rows of these features
    #[command(flatten)]
    pub needs: NeedArgs,
    #[command(flatten)]
    pub format: FormatArgs,
}

#[derive(Debug, Args)]
pub struct FlowArgs {
    /// Picture format
    #[arg(long, short = 'f', value_enum, default_value_t = FlowFormat::Mermaid, env = "ENOS_CONNECT_FLOW_FORMAT")]
    pub format: FlowFormat,
    /// With answers (-a, -n, --answers): draw this device's decision path over the flow, the
    /// nodes and edges taken bold and red and the outcome marked
    #[command(flatten)]
    pub answers: AnswerArgs,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file: capabilities, answers or registry
    #[arg(value_enum, value_name = "FILE")]
    pub of: SchemaOf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaOf {
    /// capabilities.toml
    Capabilities,
    /// an answers file (made from the capabilities in use)
    Answers,
    /// the `serve` registry of products and devices
    Registry,
    /// the JSON object `recommend -f json` prints (an output, not a file to write)
    Decision,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print (enos-connect-COMMAND(1)) [default: the top-level page]
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
    /// Write every page (enos-connect.1 and enos-connect-COMMAND.1) into this folder instead
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The file to check (default: --capabilities, else the embedded copy)
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub format: FormatArgs,
}

/// `--measurepoint ID=VALUE`: the value as JSON when it is a number or a boolean (`21.5`,
/// `true`), else as the string it is (`on`, `"quoted"` keeps its quotes out).
pub fn measurepoint(text: &str) -> Result<(String, serde_json::Value), String> {
    let (id, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not ID=VALUE, for example temp=21.5"))?;
    let id = id.trim();
    if id.is_empty() {
        return Err(format!("`{text}` has no measure point id before `=`"));
    }
    let value = value.trim();
    let parsed = match serde_json::from_str::<serde_json::Value>(value) {
        Ok(
            v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_) | serde_json::Value::String(_)),
        ) => v,
        _ => serde_json::Value::String(value.to_string()),
    };
    Ok((id.to_string(), parsed))
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

/// The most devices of `--fleet --devices N`.
pub const MAX_FLEET: u64 = 1_000_000;

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

/// The largest --count: ten million probes is hours of load; more is a typo.
pub const MAX_COUNT: u64 = 10_000_000;
/// The largest --concurrency: each probe in flight holds a socket.
pub const MAX_CONCURRENCY: u64 = 10_000;
/// The largest --lifetime: a day in milliseconds (HTTP counts milliseconds, CoAP seconds; the
/// capabilities data narrows it per protocol).
pub const MAX_LIFETIME: u64 = 86_400_000;
/// The largest --timeout, in seconds.
pub const MAX_TIMEOUT_S: f64 = 3600.0;

/// `--timeout`: seconds, a finite number above 0 and at most an hour.
pub fn timeout_seconds(text: &str) -> std::result::Result<f64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v <= MAX_TIMEOUT_S {
        Ok(v)
    } else {
        Err(format!("give seconds above 0 and at most {MAX_TIMEOUT_S}"))
    }
}

/// `--rate`: probes per second, from 0.01 (one every 100 s) to a million.
pub fn rate_per_second(text: &str) -> std::result::Result<f64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of probes per second"))?;
    if v.is_finite() && (0.01..=1_000_000.0).contains(&v) {
        Ok(v)
    } else {
        Err("give probes per second from 0.01 to 1000000".into())
    }
}
