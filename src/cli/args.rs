//! The command line: every argument, subcommand and range, as clap derives them. No logic
//! lives here beyond parsing a flag's value; each command's function is in its own module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::device_test::DEVICE_TEST_HELP;
pub(crate) use super::device_test::DeviceTestArgs;
use super::serve_args::SERVE_HELP;
pub(crate) use super::serve_args::{ListenArgs, ServeArgs};
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
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Each command's arguments are built only when that command runs (`defer`): clap would
/// otherwise build every command's definition on every start-up, which was a third of it.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub(crate) enum Command {
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
    Probe(Box<super::probe_args::ProbeArgs>),
    /// Stand in for EnOS: a local MQTT, HTTP and CoAP endpoint that checks what devices send
    #[command(after_help = SERVE_HELP)]
    Serve(Box<ServeArgs>),
    /// Examine a device: serve's endpoint and a catalogue of cases (login, posts, commands,
    /// QoS 1 retry, reconnects, OTA, sub-devices, TLS), each judged pass, warn or fail
    #[command(after_help = DEVICE_TEST_HELP)]
    DeviceTest(Box<DeviceTestArgs>),
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
    Questions(QuestionsArgs),
    /// Validate a capabilities file (exit 0 when valid, 2 when not)
    #[command(after_help = EXIT_CODES_HELP)]
    Check(CheckArgs),
}

// The flags every command takes, before its name or after it (plain comments: a doc comment
// here would become every command's --help). They are not clap's `global` arguments: clap
// copies a global argument into all fifteen commands' definitions at each start, though only
// one of them runs, which was 40 KB of the 94 KB `--version` allocated (docs/performance.md).
// Each command flattens them in instead, and [`Cli::merged`] takes a command's own over the
// top level's.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct GlobalArgs {
    /// Use this capabilities file instead of the one built into the binary
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_CAPABILITIES")]
    pub capabilities: Option<PathBuf>,

    /// Read defaults (env, domain, host, keys, CA paths, timeout) from this TOML file
    /// [default: enos-connect/config.toml in the platform's config directory]
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_CONFIG")]
    pub config: Option<PathBuf>,

    /// When to colour the output [default: auto]
    #[arg(long, value_enum, env = "ENOS_CONNECT_COLOR")]
    pub color: Option<ColorChoice>,
}

impl GlobalArgs {
    /// Each flag from `self`, else from `outer`.
    fn or(self, outer: GlobalArgs) -> GlobalArgs {
        GlobalArgs {
            capabilities: self.capabilities.or(outer.capabilities),
            config: self.config.or(outer.config),
            color: self.color.or(outer.color),
        }
    }
}

impl Cli {
    /// The command line with the command's own global flags taken over the top level's.
    pub(crate) fn merged(mut self) -> Cli {
        let own = std::mem::take(self.command.global_mut());
        self.global = own.or(std::mem::take(&mut self.global));
        self
    }
}

impl Command {
    fn global_mut(&mut self) -> &mut GlobalArgs {
        match self {
            Command::Recommend(a) => &mut a.global,
            Command::Ask(a) => &mut a.global,
            Command::Plan(a) => &mut a.global,
            Command::Credentials(a) => &mut a.global,
            Command::Probe(a) => &mut a.global,
            Command::Serve(a) => &mut a.global,
            Command::DeviceTest(a) => &mut a.global,
            Command::Merge(a) => &mut a.global,
            Command::Schema(a) => &mut a.global,
            Command::Completions(a) => &mut a.global,
            Command::Man(a) => &mut a.global,
            Command::Compare(a) => &mut a.global,
            Command::Flow(a) => &mut a.global,
            Command::Questions(a) => &mut a.global,
            Command::Check(a) => &mut a.global,
        }
    }
}

// `--no-input`: only on the commands that can prompt (recommend for missing answers,
// credentials and probe for a secret); elsewhere it would mean nothing.
#[derive(Debug, Args, Clone, Copy, Default)]
pub(crate) struct InputArgs {
    /// Never prompt; fail with what is missing instead (also when CI is set)
    #[arg(long, env = "ENOS_CONNECT_NO_INPUT")]
    pub no_input: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub(crate) struct AnswerArgs {
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
pub(crate) struct NeedArgs {
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
pub(crate) struct DeviceArgs {
    /// The device's product key
    #[arg(long, value_name = "PK", env = "ENOS_CONNECT_PRODUCT_KEY")]
    pub product_key: Option<String>,
    /// The device's device key
    #[arg(long, value_name = "DK", env = "ENOS_CONNECT_DEVICE_KEY")]
    pub device_key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RecommendArgs {
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
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args)]
pub(crate) struct AskArgs {
    /// Save the answers to this TOML file (replay with `recommend --answers FILE`)
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
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
    #[command(flatten)]
    pub global: GlobalArgs,
}

// Which EnOS deployment the device connects to: shared by `plan` and `probe --plan`.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct DeploymentArgs {
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
    pub(crate) fn to_deployment(
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
pub(crate) struct KeyArgs {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SecureModeArg {
    /// Device secret (securemode 2), from ENOS_DEVICE_SECRET
    Static,
    /// Product secret (securemode 3), from ENOS_PRODUCT_SECRET
    Dynamic,
}

impl SecureModeArg {
    pub(crate) fn as_str(self) -> &'static str {
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
pub(crate) struct CredentialsArgs {
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
    #[command(flatten)]
    pub global: GlobalArgs,
}

// `questions`: a format, and the flags every command takes (a plain comment: a doc
// comment here would be the command's --help).
#[derive(Debug, Args)]
pub(crate) struct QuestionsArgs {
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args, Clone, Copy)]
pub(crate) struct FormatArgs {
    /// Output format
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table, env = "ENOS_CONNECT_FORMAT")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// Load reports: the JSON of `probe --count N -f json` runs (`-` reads stdin; a file may
    /// hold several reports one after another)
    #[arg(required = true, value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    /// Marks the rows of these features
    #[command(flatten)]
    pub needs: NeedArgs,
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args)]
pub(crate) struct FlowArgs {
    /// Picture format
    #[arg(long, short = 'f', value_enum, default_value_t = FlowFormat::Mermaid, env = "ENOS_CONNECT_FLOW_FORMAT")]
    pub format: FlowFormat,
    /// With answers (-a, -n, --answers): draw this device's decision path over the flow, the
    /// nodes and edges taken bold and red and the outcome marked
    #[command(flatten)]
    pub answers: AnswerArgs,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {
    /// Which kind of file: capabilities, answers or registry (a kind, not a file's path)
    #[arg(value_name = "KIND", value_parser = SchemaKind)]
    pub of: SchemaOf,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// `schema KIND`: a kind of file. A path or a typo is told so, with the kinds (clap's own
/// message read as if a file were wanted).
#[derive(Clone)]
struct SchemaKind;

impl clap::builder::TypedValueParser for SchemaKind {
    type Value = SchemaOf;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<SchemaOf, clap::Error> {
        use clap::ValueEnum;
        let text = value.to_string_lossy();
        if let Ok(kind) = SchemaOf::from_str(&text, true) {
            return Ok(kind);
        }
        let kinds: Vec<String> = SchemaOf::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        let list = kinds.join(", ");
        let message = if text.contains(['.', '/', '\\']) {
            format!(
                "`{text}` looks like a file: schema takes a kind of file, not a file: one of {list} \
                 (`enos-connect check {text}` validates a capabilities file)"
            )
        } else {
            let hint = crate::source_text::nearest(&text, kinds.iter().map(String::as_str))
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            format!("`{text}` is not a kind of file{hint}: schema takes one of {list}")
        };
        Err(clap::Error::raw(clap::error::ErrorKind::InvalidValue, message).with_cmd(cmd))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        use clap::ValueEnum;
        Some(Box::new(
            SchemaOf::value_variants()
                .iter()
                .filter_map(ValueEnum::to_possible_value),
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SchemaOf {
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
pub(crate) struct ManArgs {
    /// The command whose page to print (enos-connect-COMMAND(1)) [default: the top-level page]
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
    /// Write every page (enos-connect.1 and enos-connect-COMMAND.1) into this folder instead
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub out_dir: Option<PathBuf>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The file to check (default: --capabilities, else the embedded copy)
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// `--measurepoint ID=VALUE`: the value as JSON when it is a number or a boolean (`21.5`,
/// `true`), else as the string it is (`on`, `"quoted"` keeps its quotes out).
pub(crate) fn measurepoint(text: &str) -> Result<(String, serde_json::Value), String> {
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

/// The largest --lifetime: a day in milliseconds (HTTP counts milliseconds, CoAP seconds; the
/// capabilities data narrows it per protocol).
pub(crate) const MAX_LIFETIME: u64 = 86_400_000;
/// The largest --timeout, in seconds.
pub(crate) const MAX_TIMEOUT_S: f64 = 3600.0;

/// `--timeout`: seconds, a finite number above 0 and at most an hour.
pub(crate) fn timeout_seconds(text: &str) -> std::result::Result<f64, String> {
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
pub(crate) fn rate_per_second(text: &str) -> std::result::Result<f64, String> {
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
