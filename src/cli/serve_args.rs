//! `serve`'s flags: the listeners (an address or `off`), TLS, the record, the data file and
//! its retention, the console, the limits. Apart from `args.rs` because they are many and only
//! `serve` has them.

use std::path::PathBuf;

use clap::Args;

use crate::serve::history::Retention;

/// Where a `serve` listener binds: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listen {
    Off,
    At(std::net::SocketAddr),
}

impl Listen {
    pub(crate) fn addr(self) -> Option<std::net::SocketAddr> {
        match self {
            Listen::Off => None,
            Listen::At(a) => Some(a),
        }
    }
}

/// The console's address when `--console` is not given: taken, it is a warning, not an error.
pub(super) const DEFAULT_CONSOLE: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8090);

fn listen(text: &str) -> Result<Listen, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(Listen::Off);
    }
    text.parse().map(Listen::At).map_err(|_| {
        format!("`{text}` is not IP:PORT (for example 127.0.0.1:11883, or port 0 for any) or `off`")
    })
}

fn retain(text: &str) -> Result<Retention, String> {
    text.parse()
}

pub(super) const SERVE_HELP: &str = "\
The first line on stdout names every bound listener:
  {\"event\":\"listening\",\"mqtt\":\"127.0.0.1:11883\",\"http\":\"127.0.0.1:8080\",\"coap\":\"127.0.0.1:5683\"}
Every later line is one JSON event: login, login_refused, request, reply, denied, activated,
subdevice_login, command, disconnect, connection_refused. On a terminal, each event is one
readable line instead (the JSON goes on to --record). No secret ever appears in any output.

The web console (--console, default 127.0.0.1:8090; that port taken, serve warns and goes on
without it) shows the devices live and sends them commands: open the \"console\" address of
the first line in a browser.

A test sends a command to a connected MQTT device with
  POST http://HTTP-ADDR/twin/commands/{pk}/{dk}?timeout=5  {\"method\":\"thing.service.measurepoint.set\",\"params\":{...}}
and gets the device's reply as the answer.

With --data FILE, device state survives a restart (and a kill -9): no reply leaves before what
it acknowledges is committed to the file. Each measure point's values are kept (--retain) and
answered by GET /twin/devices/{pk}/{dk}/history/{point}?from=MS&to=MS&limit=N[&format=csv].

SIGINT or SIGTERM stops serve: exit 0, the record complete. A listener that cannot bind, or a
--data file that is not serve's, from a newer version or damaged: exit 2. A --data file that
cannot be written, at start or later: exit 74.";

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The products and devices (TOML; `enos-connect schema registry` gives its schema)
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_REGISTRY")]
    pub registry: PathBuf,
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Keep device state in this SQLite file (created if missing) across restarts:
    /// registrations and activations with their secrets, topology, enabled state, attributes,
    /// tags, firmware and OTA, each point's last value and history, the last events. Without
    /// it state is in memory only
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_DATA")]
    pub data: Option<PathBuf>,
    /// How long each measure point's history is kept: a duration (7d, 12h, 30m, 90s) and/or a
    /// count of values per point, comma-separated. A value goes only when it is older than the
    /// duration and beyond the count; a point's newest value always stays
    #[arg(long, value_name = "SPEC", default_value = "7d,100000", value_parser = retain, env = "ENOS_CONNECT_RETAIN")]
    pub retain: Retention,
    /// No human-readable log on stderr (the JSON events still go to stdout)
    #[arg(long, short = 'q', env = "ENOS_CONNECT_QUIET")]
    pub quiet: bool,
    #[command(flatten)]
    pub global: super::args::GlobalArgs,
}

// serve's listeners, TLS, console, record and limits: shared by `serve` and `device-test`,
// which runs the same endpoint. (A plain comment: clap would take a doc comment of a
// flattened struct as the command's about.)
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("tls_listener").args(["mqtts", "https"]).multiple(true)))]
pub(crate) struct ListenArgs {
    /// MQTT listener
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:11883", value_parser = listen, env = "ENOS_CONNECT_MQTT")]
    pub mqtt: Listen,
    /// MQTT over TLS listener (with --tls-cert and --tls-key)
    #[arg(long, value_name = "ADDR", value_parser = listen, requires_all = ["tls_cert", "tls_key"], env = "ENOS_CONNECT_MQTTS")]
    pub mqtts: Option<Listen>,
    /// The server certificate chain (PEM) for --mqtts and --https
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls_listener",
        env = "ENOS_CONNECT_TLS_CERT"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The server private key (PEM) for --mqtts and --https
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls_listener",
        env = "ENOS_CONNECT_TLS_KEY"
    )]
    pub tls_key: Option<PathBuf>,
    /// Two-way TLS on --mqtts only: verify client certificates against this CA (PEM); a device
    /// with no certificate, or one the CA did not sign, is refused at the TLS handshake.
    /// --https stays one-way (a server certificate only), as EnOS's HTTP broker
    #[arg(long, value_name = "PEM", requires = "mqtts", env = "ENOS_CONNECT_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// HTTP listener (device API, and /twin/commands for tests)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", value_parser = listen, env = "ENOS_CONNECT_HTTP")]
    pub http: Listen,
    /// HTTPS listener: the same device API as --http over one-way TLS (with --tls-cert and
    /// --tls-key; no client certificate is asked for, as EnOS's HTTP broker on port 443)
    #[arg(long, value_name = "ADDR", value_parser = listen, requires_all = ["tls_cert", "tls_key"], env = "ENOS_CONNECT_HTTPS")]
    pub https: Option<Listen>,
    /// CoAP listener
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5683", value_parser = listen, env = "ENOS_CONNECT_COAP")]
    pub coap: Listen,
    /// CoAP over DTLS-PSK listener
    #[arg(long, value_name = "ADDR", value_parser = listen, env = "ENOS_CONNECT_COAPS")]
    pub coaps: Option<Listen>,
    /// Web console listener (a live page of the devices that sends them commands); off to
    /// disable [default: 127.0.0.1:8090, or none with a warning when that port is taken]
    #[arg(long, value_name = "ADDR", value_parser = listen, env = "ENOS_CONNECT_CONSOLE")]
    pub console: Option<Listen>,
    /// The console's token (required off loopback; generated and printed on stderr when not given)
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ENOS_CONNECT_CONSOLE_TOKEN",
        hide_env_values = true
    )]
    pub console_token: Option<String>,
    /// Also write every event line to this file (appended to; each run starts with its
    /// listening line)
    #[arg(long, value_name = "FILE", env = "ENOS_CONNECT_RECORD")]
    pub record: Option<PathBuf>,
    /// Wait this long before CONNACK, 0 to 10000 (one official SDK loses an instant one)
    #[arg(long, value_name = "MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=10_000), env = "ENOS_CONNECT_CONNACK_DELAY_MS")]
    pub connack_delay_ms: u64,
    /// The most MQTT connections logged in at once, and apart from them the most HTTP and HTTPS
    /// connections open at once, 1 to 4194304; past it a device gets CONNACK 3 (server
    /// unavailable), an HTTP client 503 with Retry-After, and an event [default: the open-file
    /// limit, raised to its hard value at start, less 256]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=4_194_304), env = "ENOS_CONNECT_MAX_CONNECTIONS")]
    pub max_connections: Option<u64>,
}
