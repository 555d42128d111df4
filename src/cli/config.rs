//! The config file: defaults for flags a team sets once (environment, domain, host, keys, CA
//! paths, timeout, capabilities file). Never secrets: a key that looks like one is refused.
//!
//! Found at `--config FILE`, `ENOS_CONNECT_CONFIG`, or `enos-connect/config.toml` in the
//! platform's config directory (`$XDG_CONFIG_HOME`, else `~/.config`; `%APPDATA%` on Windows).
//! Flags and their environment variables win over it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::args::{Cli, Command, DeploymentArgs, DeviceArgs};
use crate::source_text::{Located, SourceFile};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    pub env: Option<String>,
    pub domain: Option<String>,
    pub host: Option<String>,
    pub product_key: Option<String>,
    pub device_key: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub timeout: Option<f64>,
    pub capabilities: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Located),
}

impl crate::help::Help for ConfigError {
    fn help(&self) -> Option<String> {
        match self {
            ConfigError::Read { .. } => Some("check --config or ENOS_CONNECT_CONFIG".into()),
            // A located error renders its own help.
            ConfigError::Invalid(_) => None,
        }
    }
}

const SECRET_WORDS: [&str; 4] = ["secret", "password", "psk", "token"];

/// The keys a config file may hold: the fields of [`Config`].
const KEYS: [&str; 10] = [
    "env",
    "domain",
    "host",
    "product_key",
    "device_key",
    "ca",
    "cert",
    "key",
    "timeout",
    "capabilities",
];

/// The default location, whether or not a file is there.
pub(crate) fn default_path() -> Option<PathBuf> {
    let base = if cfg!(windows) {
        std::env::var_os("APPDATA").map(PathBuf::from)
    } else {
        std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
    };
    base.map(|b| b.join("enos-connect").join("config.toml"))
}

/// Load the config: an explicit path must exist; the default one may be absent.
pub(crate) fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match default_path() {
            Some(p) if p.is_file() => p,
            _ => return Ok(Config::default()),
        },
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&SourceFile::new(path.display().to_string(), text))
}

pub(crate) fn parse(src: &SourceFile) -> Result<Config, ConfigError> {
    let raw: BTreeMap<Spanned<String>, Spanned<toml::Value>> = toml::from_str(&src.text)
        .map_err(|e| ConfigError::Invalid(src.locate(e.span(), e.message()).without_snippet()))?;
    for key in raw.keys() {
        let lower = key.get_ref().to_ascii_lowercase();
        if SECRET_WORDS.iter().any(|w| lower.contains(w)) {
            return Err(ConfigError::Invalid(
                src.locate(Some(key.span()), format!("`{}` looks like a secret, and config files never hold secrets", key.get_ref()))
                    .without_snippet()
                    .with_help("remove it; give secrets with ENOS_DEVICE_SECRET, ENOS_PRODUCT_SECRET, ENOS_CONNECT_PASSWORD, ENOS_CONNECT_PSK or --secret-file"),
            ));
        }
    }
    let keys_help = format!("config keys: {}", KEYS.join(", "));
    let unknown = raw
        .keys()
        .filter(|k| !KEYS.contains(&k.get_ref().as_str()))
        .min_by_key(|k| k.span().start);
    if let Some(key) = unknown {
        let hint = crate::source_text::nearest(key.get_ref(), KEYS)
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        return Err(ConfigError::Invalid(
            src.locate(Some(key.span()), format!("unknown key `{}`{hint}", key.get_ref()))
                .without_snippet()
                .with_help(keys_help),
        ));
    }
    let config: Config = toml::from_str(&src.text).map_err(|e| {
        ConfigError::Invalid(
            src.locate(e.span(), e.message())
                .without_snippet()
                .with_help(keys_help),
        )
    })?;
    if let Some(t) = config.timeout
        && let Err(why) = super::args::timeout_seconds(&t.to_string())
    {
        let span = raw
            .iter()
            .find(|(k, _)| k.get_ref() == "timeout")
            .map(|(_, v)| v.span());
        return Err(ConfigError::Invalid(
            src.locate(span, format!("timeout = {t}: {why}"))
                .without_snippet(),
        ));
    }
    Ok(config)
}

/// Take the config's value for a flag that neither the command line nor its environment
/// variable set.
fn inherit<T: Clone>(slot: &mut Option<T>, from: &Option<T>) {
    if slot.is_none() {
        slot.clone_from(from);
    }
}

fn inherit_deployment(d: &mut DeploymentArgs, c: &Config) {
    // A host given on the command line replaces env/domain: do not mix the config's in.
    if d.host.is_none() {
        inherit(&mut d.env, &c.env);
        inherit(&mut d.domain, &c.domain);
        if d.env.is_none() && d.domain.is_none() {
            inherit(&mut d.host, &c.host);
        }
    }
}

fn inherit_device(d: &mut DeviceArgs, c: &Config) {
    inherit(&mut d.product_key, &c.product_key);
    inherit(&mut d.device_key, &c.device_key);
}

/// Whether the config file holds defaults for this command's flags (besides the capabilities
/// file, which [`super::Context::capabilities`] looks up when the model is read).
pub(crate) fn fills(command: &Command) -> bool {
    matches!(
        command,
        Command::Plan(_) | Command::Probe(_) | Command::Credentials(_)
    )
}

impl Config {
    /// Fill what neither a flag nor its environment variable gave from the config file; the
    /// commands it fills are those of [`fills`].
    pub(crate) fn apply(&self, cli: &mut Cli) {
        inherit(&mut cli.global.capabilities, &self.capabilities);
        match &mut cli.command {
            Command::Plan(a) => {
                inherit_deployment(&mut a.deployment, self);
                inherit_device(&mut a.device, self);
            }
            Command::Probe(a) => {
                inherit_deployment(&mut a.plan.deployment, self);
                inherit_device(&mut a.login.keys.device, self);
                inherit(&mut a.tls.ca, &self.ca);
                inherit(&mut a.tls.cert, &self.cert);
                inherit(&mut a.tls.key, &self.key);
                inherit(&mut a.login.timeout, &self.timeout);
            }
            Command::Credentials(a) => inherit_device(&mut a.keys.device, self),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_refused_without_echoing_them() {
        let src = SourceFile::new("c.toml", "env = \"eu2\"\ndevice_secret = \"hunter2\"\n");
        let err = parse(&src).expect_err("refused").to_string();
        assert!(
            err.starts_with("c.toml:2:1:") && err.contains("never hold secrets"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "the value is not echoed: {err}");
    }

    #[test]
    fn known_keys_parse_and_unknown_ones_say_which_are_allowed() {
        let src = SourceFile::new("c.toml", "env = \"eu2\"\ntimeout = 3.5\n");
        let c = parse(&src).expect("parses");
        assert_eq!((c.env.as_deref(), c.timeout), (Some("eu2"), Some(3.5)));
        let err = parse(&SourceFile::new("c.toml", "region = \"x\"\n"))
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("config keys: env, domain"), "{err}");
    }
}
