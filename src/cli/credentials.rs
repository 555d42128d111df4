//! `credentials`: EnOS login material. The secret comes from an environment variable, a file
//! or a hidden prompt, never from a command-line argument (process lists and shell history
//! would keep it).

use std::path::Path;
use std::process::ExitCode;

use super::args::CredentialsArgs;
use super::{Context, print};
use crate::base::Secret;
use crate::capabilities::Capabilities;
use crate::cli::error::{Error, Result};
use crate::credentials::{self, CredentialRequest};

pub fn run(ctx: &Context, args: &CredentialsArgs) -> Result<ExitCode> {
    let caps = ctx.capabilities()?;
    // The recipe first: a wrong name is said before the keys are asked for.
    credentials::recipe(caps, &args.protocol)?;
    let keys = &args.keys;
    let mode = keys.secure_mode.as_str();
    let need = |v: &Option<String>, flag: &str, env: &str| {
        v.clone().ok_or_else(|| {
            Error::usage_with_help(
                format!("{flag} is required"),
                format!("pass {flag}, set {env}, or put it in the config file"),
            )
        })
    };
    let request = CredentialRequest {
        protocol: args.protocol.clone(),
        product_key: need(
            &keys.device.product_key,
            "--product-key",
            "ENOS_CONNECT_PRODUCT_KEY",
        )?,
        device_key: need(&keys.device.device_key, "--device-key", "ENOS_CONNECT_DEVICE_KEY")?,
        mode: mode.to_string(),
        client_id: keys.client_id.clone(),
        timestamp: keys.timestamp.unwrap_or_else(credentials::now_ms),
        lifetime: args.lifetime,
    };
    // Check everything but the secret first, so a bad flag never costs a prompt.
    credentials::compute(caps, &request, &Secret::new("-".into()))?;
    // A sub-device's secret has its own variable, the one `probe --subdevice` reads: the
    // gateway's ENOS_DEVICE_SECRET would sign a login that EnOS refuses.
    let source = match args.protocol.as_str() {
        "subdevice" => SecretSource::named("sub-device secret", "ENOS_SUBDEVICE_SECRET"),
        _ => SecretSource::of_mode(caps, mode),
    };
    let secret = read_secret(&source, keys.secret_file.as_deref(), ctx.interactive)?;
    let creds = credentials::compute(caps, &request, &secret)?;
    drop(secret);
    print(&ctx.renderer(args.format.format).credentials(&creds))
}

/// What a secret is called and the environment variable that holds it.
pub struct SecretSource {
    what: String,
    env: String,
}

impl SecretSource {
    pub fn named(what: &str, env: &str) -> Self {
        SecretSource {
            what: what.into(),
            env: env.into(),
        }
    }

    /// A secure mode's secret (`static`: the device secret, `dynamic`: the product secret).
    pub fn of_mode(caps: &Capabilities, mode: &str) -> Self {
        caps.secure_modes.get(mode).map_or_else(
            || SecretSource::named("secret", "ENOS_DEVICE_SECRET"),
            |m| SecretSource::named(&m.secret, &m.env),
        )
    }
}

/// The secret: `--secret-file`, else the source's environment variable, else a hidden prompt
/// on a terminal.
pub fn read_secret(source: &SecretSource, file: Option<&Path>, interactive: bool) -> Result<Secret> {
    let SecretSource { what, env } = source;
    if let Some(path) = file {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            Error::usage_with_help(
                format!("--secret-file {}: cannot read it: {e}", path.display()),
                format!("the file holds the {what} on its first line"),
            )
        })?);
        let secret = Secret::new(text.lines().next().unwrap_or_default().trim().to_string());
        if secret.is_empty() {
            return Err(Error::usage_with_help(
                format!("--secret-file {}: the file is empty", path.display()),
                format!("put the {what} on its first line"),
            ));
        }
        return Ok(secret);
    }
    if let Some(value) = std::env::var_os(env) {
        let secret = Secret::new(value.to_string_lossy().trim().to_string());
        if !secret.is_empty() {
            return Ok(secret);
        }
    }
    if interactive {
        let value = dialoguer::Password::new()
            .with_prompt(format!("{what} (input hidden)"))
            .interact()?;
        return Ok(Secret::new(value));
    }
    Err(Error::usage_with_help(
        format!("no {what} given"),
        format!(
            "set {env}, or pass --secret-file FILE; a secret is never taken as a plain argument, because process lists and shell history keep it"
        ),
    ))
}
