//! `credentials`: EnOS login material. The secret comes from an environment variable, a file
//! or a hidden prompt, never from a command-line argument (process lists and shell history
//! would keep it).

use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{CredentialsArgs, emit};
use crate::capabilities::Capabilities;
use crate::credentials::{self, CredentialRequest, Secret};
use crate::error::{Error, Result};
use crate::render::{Format, json, markdown, table};

pub fn run(caps: &Capabilities, args: &CredentialsArgs, interactive: bool) -> Result<ExitCode> {
    let keys = &args.keys;
    let mode = keys.secure_mode.as_str();
    let need = |v: &Option<String>, flag: &str, env: &str| {
        v.clone().ok_or_else(|| {
            Error::Usage(format!(
                "{flag} is required\n  = help: pass {flag}, set {env}, or put it in the config file"
            ))
        })
    };
    let request = CredentialRequest {
        protocol: args.protocol.clone(),
        product_key: need(&keys.product_key, "--product-key", "ENOS_CONNECT_PRODUCT_KEY")?,
        device_key: need(&keys.device_key, "--device-key", "ENOS_CONNECT_DEVICE_KEY")?,
        mode: mode.to_string(),
        client_id: keys.client_id.clone(),
        timestamp: keys.timestamp.unwrap_or_else(now_ms),
        lifetime: args.lifetime,
    };
    // Check everything but the secret first, so a bad flag never costs a prompt.
    credentials::compute(caps, &request, &Secret::new("-".into())).map_err(usage)?;
    let secret = read_secret(caps, mode, keys.secret_file.as_deref(), interactive)?;
    let creds = credentials::compute(caps, &request, &secret).map_err(usage)?;
    drop(secret);
    emit(&match args.format.format {
        Format::Table => table::credentials(&creds),
        Format::Json => json::credentials(&creds),
        Format::Markdown => markdown::credentials(&creds),
        Format::Csv => return Err(super::csv_only()),
    })?;
    Ok(ExitCode::SUCCESS)
}

fn usage(e: credentials::CredentialsError) -> Error {
    Error::Usage(e.to_string())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The secret for a secure mode: `--secret-file`, else the mode's environment variable, else a
/// hidden prompt on a terminal.
pub fn read_secret(
    caps: &Capabilities,
    mode: &str,
    file: Option<&Path>,
    interactive: bool,
) -> Result<Secret> {
    let (what, env) = caps
        .secure_modes
        .get(mode)
        .map(|m| (m.secret.clone(), m.env.clone()))
        .unwrap_or_else(|| ("secret".into(), "ENOS_DEVICE_SECRET".into()));
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Usage(format!(
                "--secret-file {}: cannot read it: {e}\n  = help: the file holds the {what} on its first line",
                path.display()
            ))
        })?;
        let secret = Secret::new(text.lines().next().unwrap_or_default().trim().to_string());
        if secret.is_empty() {
            return Err(Error::Usage(format!(
                "--secret-file {}: the file is empty\n  = help: put the {what} on its first line",
                path.display()
            )));
        }
        return Ok(secret);
    }
    if let Some(value) = std::env::var_os(&env) {
        let secret = Secret::new(value.to_string_lossy().trim().to_string());
        if !secret.is_empty() {
            return Ok(secret);
        }
    }
    if interactive {
        let value = dialoguer::Password::new()
            .with_prompt(format!("{what} (input hidden)"))
            .interact()
            .map_err(super::prompt_error)?;
        return Ok(Secret::new(value));
    }
    Err(Error::Usage(format!(
        "no {what} given\n  = help: set {env}, or pass --secret-file FILE; a secret is never taken as a plain argument, because process lists and shell history keep it"
    )))
}
