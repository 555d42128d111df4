//! `serve`: read the registry, open the data file (`--data`), bind the listeners, print where
//! they are, and serve until SIGINT or SIGTERM (or a write to the data file fails).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::Context;
use super::args::{ListenArgs, ServeArgs};
use crate::base::Secret;
use crate::cli::error::{Error, Result};
use crate::registry::Registry;
use crate::serve::store::Store;
use crate::serve::twin::{Conflict, Twin};
use crate::serve::{self, Endpoint, Options};

pub fn run(ctx: &Context, args: &ServeArgs) -> Result<ExitCode> {
    let caps = ctx.capabilities()?;
    let registry = Registry::from_file(&args.registry)?;
    let mut opts = options(&args.listen, !args.quiet)?;
    let endpoint = Endpoint::new(
        caps.clone(),
        registry,
        opts.connack_delay,
        opts.record.as_deref(),
        opts.log,
    )
    .map_err(|e| {
        let file = opts
            .record
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        Error::io(format!("--record {file}: cannot create it"), e)
    })?;
    let (endpoint, conflicts) = keep_state(args, endpoint)?;
    // As servers do: the soft open-file limit raised to the hard one, and the connection
    // bounds sized from it unless --max-connections says otherwise: MQTT's logins and, counted
    // apart, HTTP's connections (so a full fleet never locks a test out of /twin).
    let from_fds = serve::limits::raise_open_files();
    let max = args
        .listen
        .max_connections
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(from_fds);
    endpoint.limits.set_max(max);
    endpoint.http_limits.set_max(max);
    // On a terminal each event is one readable line on stdout (the JSON goes to the record);
    // piped or redirected, stdout is JSON and the readable lines go to stderr.
    let readable = opts.log && std::io::stdout().is_terminal();
    if readable {
        endpoint.events.readable_on_stdout();
    }
    let endpoint = Arc::new(endpoint);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the network runtime", e))?;
    runtime.block_on(async {
        let bound = match serve::bind(&opts).await {
            // The console was not asked for: its default port taken is no reason to stop.
            Err(e) if e.what == "console" && args.listen.console.is_none() => {
                eprintln!(
                    "serve: warning: the console's default address {} is taken ({}); serving without a console (--console ADDR picks another address, --console off turns it off)",
                    e.addr, e.message
                );
                opts.console = None;
                serve::bind(&opts).await
            }
            bound => bound,
        }
        .map_err(|e| {
            Error::usage_with_help(
                e.to_string(),
                "pick a free port (port 0 picks one), or `off` to turn the listener off",
            )
        })?;
        let listening = bound.listening().await;
        endpoint.events.emit_line(&listening);
        report_conflicts(&endpoint, &conflicts);
        if let Some((_, access)) = &bound.console {
            // A terminal read the console's address on the listening line, unless a token
            // goes with it.
            if !readable || access.token.is_some() {
                announce_console(access, args.listen.console_token.is_none());
            }
        }
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let stop = Arc::new(stop);
        stop_on_signal(stop.clone());
        // A write to the data file that fails stops serve: nothing waiting on it is
        // acknowledged, and what was is in the file.
        let saving = endpoint.clone();
        tokio::spawn(async move {
            saving.twin.save_failed().await;
            let _ = stop.send(true);
        });
        serve::serve(bound, endpoint.clone(), shutdown).await;
        Ok::<(), Error>(())
    })?;
    endpoint.twin.close().map_err(Error::Saving)?;
    Ok(ExitCode::SUCCESS)
}

/// Where the twin keeps its state: the data file of `--data`, checked and read before anything
/// listens (a file serve cannot use stops it here, with what to do), or memory.
fn keep_state(args: &ServeArgs, endpoint: Endpoint) -> Result<(Endpoint, Vec<Conflict>)> {
    Ok(match &args.data {
        Some(path) => {
            let (store, saved) = Store::open(path, args.retain)?;
            let (twin, conflicts) = Twin::restore(&endpoint.registry, store, saved, args.retain);
            (endpoint.with_twin(twin), conflicts)
        }
        None => {
            let twin = Twin::in_memory(&endpoint.registry, args.retain);
            (endpoint.with_twin(twin), Vec::new())
        }
    })
}

/// The devices the data file holds and the registry no longer serves: an event each on stdout
/// (and in the record), a line per product on stderr. They stay in the file.
fn report_conflicts(endpoint: &Endpoint, conflicts: &[Conflict]) {
    let file = endpoint
        .twin
        .saved_to()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut by_product: std::collections::BTreeMap<&str, Vec<&Conflict>> = Default::default();
    for c in conflicts {
        let message = if c.product_listed {
            "the registry no longer lists this device: its state stays in the data file, not served (list it in the registry again to serve it)"
        } else {
            "the registry no longer lists this device's product: its state stays in the data file, not served (add the product back to the registry to serve it)"
        };
        endpoint.events.emit_line(&serde_json::json!({
            "event": "data_conflict",
            "data": file,
            "product_key": c.device.product_key,
            "device_key": c.device.device_key,
            "message": message,
        }));
        by_product.entry(&c.device.product_key).or_default().push(c);
    }
    for (product, list) in by_product {
        let keys: Vec<&str> = list
            .iter()
            .take(5)
            .map(|c| c.device.device_key.as_str())
            .collect();
        let more = list.len().saturating_sub(keys.len());
        let names = if more > 0 {
            format!("{} and {more} more", keys.join(", "))
        } else {
            keys.join(", ")
        };
        let why = if list.iter().all(|c| c.product_listed) {
            "the registry no longer lists them"
        } else {
            "the registry no longer lists their product"
        };
        eprintln!(
            "serve: --data {file}: {} device(s) of product {product} ({names}) are kept in the file but not served: {why}; \
             add them back to the registry to serve them",
            list.len()
        );
    }
}

/// The listeners and what to log, from the flags (serve's, and device-test's, which runs the
/// same endpoint); a usage error when every listener is off.
pub(super) fn options(args: &ListenArgs, log: bool) -> Result<Options> {
    let mqtts = match (args.mqtts.and_then(|l| l.addr()), &args.tls_cert, &args.tls_key) {
        (Some(addr), Some(cert), Some(key)) => {
            Some((addr, tls_config(cert, key, args.client_ca.as_deref(), &[])?))
        }
        _ => None,
    };
    // One-way TLS, whatever --client-ca says: EnOS's HTTP broker asks for no client certificate.
    let https = match (args.https.and_then(|l| l.addr()), &args.tls_cert, &args.tls_key) {
        (Some(addr), Some(cert), Some(key)) => Some((addr, tls_config(cert, key, None, &[b"http/1.1"])?)),
        _ => None,
    };
    let opts = Options {
        mqtt: args.mqtt.addr(),
        mqtts,
        http: args.http.addr(),
        https,
        coap: args.coap.addr(),
        coaps: args.coaps.and_then(|l| l.addr()),
        record: args.record.clone(),
        connack_delay: Duration::from_millis(args.connack_delay_ms),
        log,
        console: console(args)?,
    };
    if [
        opts.mqtt,
        opts.mqtts.as_ref().map(|(a, _)| *a),
        opts.http,
        opts.https.as_ref().map(|(a, _)| *a),
        opts.coap,
        opts.coaps,
    ]
    .iter()
    .all(Option::is_none)
    {
        return Err(Error::usage_with_help(
            "every listener is off: serve would answer nothing",
            "keep at least one of --mqtt, --mqtts, --http, --https, --coap or --coaps on (an address, or port 0 for any)",
        ));
    }
    Ok(opts)
}

/// The console's address and token: a token given is used; off loopback, one is generated.
fn console(args: &ListenArgs) -> Result<Option<(std::net::SocketAddr, Option<Secret>)>> {
    let listen = args
        .console
        .unwrap_or(super::serve_args::Listen::At(super::serve_args::DEFAULT_CONSOLE));
    let Some(addr) = listen.addr() else {
        return Ok(None);
    };
    let token = match &args.console_token {
        Some(t) if t.trim().is_empty() => {
            return Err(Error::usage_with_help(
                "--console-token is empty",
                "give a token, or leave it out: off loopback serve generates one",
            ));
        }
        Some(t) => Some(Secret::new(t.clone())),
        None if serve::console::needs_token(addr) => {
            let Some(t) = serve::random_hex(16) else {
                return Err(Error::usage(
                    "no console token can be generated: the system's random source failed",
                ));
            };
            Some(Secret::new(t))
        }
        None => None,
    };
    Ok(Some((addr, token)))
}

/// Tell people where the console is, on stderr. A generated token is printed there once, as
/// Jupyter does (the user needs it to open the page); a token the user gave is never printed.
pub(super) fn announce_console(access: &serve::console::Access, generated: bool) {
    let url = format!("http://{}/", access.addr);
    match &access.token {
        Some(t) if generated => eprintln!(
            "serve: console at {url}?token={} (a token is required off loopback; pass --console-token to choose it)",
            t.expose_for_login()
        ),
        Some(_) => eprintln!("serve: console at {url} (open it with ?token=YOUR-TOKEN)"),
        None => eprintln!("serve: console at {url}"),
    }
}

/// SIGINT or SIGTERM turns `stop` true. signal-hook's thread, not tokio's signal driver: that
/// driver is set up by every runtime that has it (a socket pair and handler storage), and
/// serve is the only command that waits for a signal.
fn stop_on_signal(stop: Arc<tokio::sync::watch::Sender<bool>>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // Without handlers the default action (exit) still stops serve.
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("serve-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                let _ = stop.send(true);
            }
        });
    drop(spawned);
}

/// The TLS server configuration for --mqtts or --https, from PEM files; with `client_ca`,
/// client certificates are required and verified against it (rustls's WebPKI verifier);
/// `alpn`, the protocols offered (none: the client's offer is ignored).
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::usage(format!("--tls-cert {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(Error::usage(format!(
            "--tls-cert {}: no PEM certificate in the file",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::usage(format!("--tls-key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::usage(format!("--tls-cert/--tls-key: {e}")))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let bad = |e: String| Error::usage(format!("--client-ca {}: {e}", ca.display()));
            let cas = CertificateDer::pem_file_iter(ca)
                .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| bad(e.to_string()))?;
            let mut roots = rustls::RootCertStore::empty();
            for c in cas {
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("no PEM certificate in the file".into()));
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| Error::usage(format!("--tls-cert/--tls-key: {e}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
