//! Command-line definitions and dispatch: each command is a small function that loads the
//! capabilities, turns flags into domain values, calls the library and renders the result.

mod ask;
mod credentials;
mod data;
mod plan;
mod probe;
mod recommend;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::capabilities::{self, Capabilities};
use crate::error::{EXIT_CODES_HELP, Error, Result};
use crate::render::color::{self, ColorChoice, Paint};
use crate::render::{FlowFormat, Format};

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

    /// Never prompt; fail with the missing answers instead (also when CI is set)
    #[arg(long, global = true, env = "ENOS_CONNECT_NO_INPUT")]
    pub no_input: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
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
    /// Compute EnOS login material (MQTT login, HTTP sign, CoAP PSK) from a secret
    #[command(after_help = EXIT_CODES_HELP)]
    Credentials(CredentialsArgs),
    /// Prove a connection: resolve, connect, TLS, protocol handshake and a message, timed
    #[command(after_help = EXIT_CODES_HELP)]
    Probe(Box<ProbeArgs>),
    /// Print the JSON Schema of capabilities.toml or of an answers file
    Schema(SchemaArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish)
    Completions(CompletionsArgs),
    /// Print the man page (roff)
    Man,
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
    /// A feature the device needs (repeatable, or comma-separated)
    #[arg(
        long = "need",
        short = 'n',
        value_name = "FEATURE",
        env = "ENOS_CONNECT_NEED",
        value_delimiter = ','
    )]
    pub need: Vec<String>,
    /// Read answers from a TOML file (question ids as keys, plus needs = [...]); flags win
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_ANSWERS")]
    pub answers: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    #[command(flatten)]
    pub answers: AnswerArgs,
    /// Recommend for every row of a CSV or JSON Lines FILE (`-` reads stdin); writes JSON Lines
    /// (or --format csv), one result per row
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_BATCH", conflicts_with_all = ["answer", "need", "answers"])]
    pub batch: Option<PathBuf>,
    /// With --batch: exit 1 when any device has an unmet need
    #[arg(long, requires = "batch", env = "ENOS_CONNECT_FAIL_ON_UNMET")]
    pub fail_on_unmet: bool,
    #[command(flatten)]
    pub format: FormatArgs,
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
    pub target: TargetArgs,
    /// The device's product key
    #[arg(long, value_name = "PK", env = "ENOS_CONNECT_PRODUCT_KEY")]
    pub product_key: Option<String>,
    /// The device's device key
    #[arg(long, value_name = "DK", env = "ENOS_CONNECT_DEVICE_KEY")]
    pub device_key: Option<String>,
    #[command(flatten)]
    pub format: FormatArgs,
}

/// Where the device connects: shared by `plan` and `probe --plan`.
#[derive(Debug, Args, Clone, Default)]
pub struct TargetArgs {
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

impl TargetArgs {
    pub fn to_target(
        &self,
        product_key: &Option<String>,
        device_key: &Option<String>,
    ) -> crate::plan::Target {
        crate::plan::Target {
            env: self.env.clone(),
            domain: self
                .domain
                .clone()
                .unwrap_or_else(|| crate::plan::DEFAULT_DOMAIN.to_string()),
            host: self.host.clone(),
            product_key: product_key.clone(),
            device_key: device_key.clone(),
        }
    }
}

/// Who the device is and where its secret comes from: shared by `credentials` and `probe`.
#[derive(Debug, Args, Clone)]
pub struct KeyArgs {
    /// The device's product key (with --device-key: the EnOS login built from the secret)
    #[arg(long, value_name = "PK", env = "ENOS_CONNECT_PRODUCT_KEY")]
    pub product_key: Option<String>,
    /// The device's device key
    #[arg(long, value_name = "DK", env = "ENOS_CONNECT_DEVICE_KEY")]
    pub device_key: Option<String>,
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
    pub target: TargetArgs,
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
    /// With --count: start at most R probes per second (0.01 to 1000000)
    #[arg(long, value_name = "R", env = "ENOS_CONNECT_RATE", value_parser = rate_per_second)]
    pub rate: Option<f64>,
    /// coaps:// DTLS-PSK identity; the key comes from ENOS_CONNECT_PSK (text, or hex:...)
    #[arg(long, value_name = "ID", env = "ENOS_CONNECT_PSK_IDENTITY")]
    pub psk_identity: Option<String>,
    /// Output format
    #[command(flatten)]
    pub format: FormatArgs,
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
(dynamic), from --secret-file, or from a hidden prompt on a terminal; never from an argument."
)]
pub struct CredentialsArgs {
    /// mqtt, http or coap
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
}

#[derive(Debug, Args, Clone, Copy)]
pub struct FormatArgs {
    /// Output format
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table, env = "ENOS_CONNECT_FORMAT")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Mark the rows of these features (repeatable, or comma-separated)
    #[arg(
        long = "need",
        short = 'n',
        value_name = "FEATURE",
        env = "ENOS_CONNECT_NEED",
        value_delimiter = ','
    )]
    pub need: Vec<String>,
    #[command(flatten)]
    pub format: FormatArgs,
}

#[derive(Debug, Args)]
pub struct FlowArgs {
    /// Picture format
    #[arg(long, short = 'f', value_enum, default_value_t = FlowFormat::Mermaid, env = "ENOS_CONNECT_FLOW_FORMAT")]
    pub format: FlowFormat,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file
    #[arg(value_enum)]
    pub of: SchemaOf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaOf {
    /// capabilities.toml
    Capabilities,
    /// an answers file (made from the capabilities in use)
    Answers,
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

/// Parse the command line, run, print any error once, and map it to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if matches!(e, Error::Interrupted) {
                restore_terminal();
            }
            if !e.is_quiet() {
                eprintln!("enos-connect: {} {e}", color::err("error:", Paint::Bad));
            }
            e.exit_code()
        }
    }
}

pub fn run(mut cli: Cli) -> Result<ExitCode> {
    color::init(cli.color);
    let config = crate::config::load(cli.config.as_deref())?;
    apply_config(&mut cli, config);
    let interactive = interactive(cli.no_input);
    match cli.command {
        Command::Recommend(args) => recommend::run(&load(&cli.capabilities)?, &args, interactive),
        Command::Ask(args) => ask::run(&load(&cli.capabilities)?, &args, interactive),
        Command::Probe(args) => probe::run(&load(&cli.capabilities)?, &args, interactive),
        Command::Plan(args) => plan::run(&load(&cli.capabilities)?, &args, interactive),
        Command::Credentials(args) => credentials::run(&load(&cli.capabilities)?, &args, interactive),
        Command::Compare(args) => data::compare(&load(&cli.capabilities)?, &args),
        Command::Flow(args) => data::flow(&load(&cli.capabilities)?, &args),
        Command::Questions(args) => data::questions(&load(&cli.capabilities)?, args),
        Command::Check(args) => data::check(cli.capabilities.as_deref(), &args),
        Command::Completions(args) => {
            let mut out = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "enos-connect", &mut out);
            emit(&String::from_utf8_lossy(&out))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema(args) => {
            emit(&match args.of {
                SchemaOf::Capabilities => crate::render::json::CAPABILITIES_SCHEMA.to_string(),
                SchemaOf::Answers => crate::render::json::answers_schema(&load(&cli.capabilities)?),
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .map_err(Error::Output)?;
            emit(&String::from_utf8_lossy(&out))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn load(path: &Option<PathBuf>) -> Result<Capabilities> {
    Ok(match path {
        Some(p) => capabilities::load_file(p)?,
        None => capabilities::load_embedded()?,
    })
}

fn fill<T: Clone>(slot: &mut Option<T>, from: &Option<T>) {
    if slot.is_none() {
        slot.clone_from(from);
    }
}

fn fill_target(t: &mut TargetArgs, c: &crate::config::Config) {
    // A host given on the command line replaces env/domain: do not mix the config's in.
    if t.host.is_none() {
        fill(&mut t.env, &c.env);
        fill(&mut t.domain, &c.domain);
        if t.env.is_none() && t.domain.is_none() {
            fill(&mut t.host, &c.host);
        }
    }
}

/// Fill what neither a flag nor its environment variable gave from the config file.
fn apply_config(cli: &mut Cli, c: crate::config::Config) {
    fill(&mut cli.capabilities, &c.capabilities);
    match &mut cli.command {
        Command::Plan(a) => {
            fill_target(&mut a.target, &c);
            fill(&mut a.product_key, &c.product_key);
            fill(&mut a.device_key, &c.device_key);
        }
        Command::Probe(a) => {
            fill_target(&mut a.target, &c);
            fill(&mut a.keys.product_key, &c.product_key);
            fill(&mut a.keys.device_key, &c.device_key);
            fill(&mut a.ca, &c.ca);
            fill(&mut a.cert, &c.cert);
            fill(&mut a.key, &c.key);
            fill(&mut a.timeout, &c.timeout);
        }
        Command::Credentials(a) => {
            fill(&mut a.keys.product_key, &c.product_key);
            fill(&mut a.keys.device_key, &c.device_key);
        }
        _ => {}
    }
}

pub fn csv_only() -> Error {
    Error::Usage("--format csv is for `recommend --batch`\n  = help: use table, json or markdown here".into())
}

/// Prompts only when a person is there: stdin and stderr are terminals (dialoguer draws on
/// stderr), and neither --no-input nor CI says otherwise.
pub fn interactive(no_input: bool) -> bool {
    use std::io::IsTerminal;
    !no_input
        && std::env::var_os("CI").is_none()
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
}

/// A prompt that failed: Ctrl-C or Esc is an interrupt, anything else an I/O problem.
pub fn prompt_error(e: dialoguer::Error) -> Error {
    match e {
        dialoguer::Error::IO(io) if io.kind() == std::io::ErrorKind::Interrupted => Error::Interrupted,
        dialoguer::Error::IO(io) => Error::Usage(format!("cannot prompt: {io}")),
    }
}

/// Prompts hide the cursor while they draw; an interrupted prompt must give it back.
fn restore_terminal() {
    let term = console::Term::stderr();
    if term.is_term() {
        let _ = term.show_cursor();
        let _ = term.write_line("");
    }
}

/// Write command output to stdout; a closed pipe ends the program quietly.
pub fn emit(text: &str) -> Result<()> {
    emit_bytes(text.as_bytes())
}

pub fn emit_bytes(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(Error::Output)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
