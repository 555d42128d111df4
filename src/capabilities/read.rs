//! Reading capabilities: the copy embedded at build time, or a file given by the user. A user's
//! file is validated before any command sees it; the shipped one is validated by `check` and
//! the tests, not again at every start.

use std::path::Path;

use super::Capabilities;
use super::validate;
use crate::source::{Located, SourceFile, locate_problems};

/// The capabilities shipped with the binary.
pub const EMBEDDED: &str = include_str!("../../capabilities.toml");
pub const EMBEDDED_NAME: &str = "capabilities.toml (embedded)";

#[derive(Debug, thiserror::Error)]
pub enum CapabilitiesError {
    #[error("cannot read capabilities file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(Located),
    #[error("{file}: {count} problem(s) in the capabilities data:\n{list}", count = .problems.len(), list = crate::source::bullet_list(.problems))]
    Invalid { file: String, problems: Vec<Located> },
}

impl crate::base::Help for CapabilitiesError {
    fn help(&self) -> Option<String> {
        match self {
            CapabilitiesError::Read { .. } => {
                Some("check the path given with --capabilities or ENOS_CONNECT_CAPABILITIES".into())
            }
            // Located problems render their own help.
            CapabilitiesError::Syntax(_) | CapabilitiesError::Invalid { .. } => None,
        }
    }
}

/// The embedded capabilities converted to JSON by build.rs (empty if they did not convert).
const EMBEDDED_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/capabilities.json"));
/// The same, with only the sections [`embedded_connection`] reads.
const EMBEDDED_CONNECTION_JSON: &str =
    include_str!(concat!(env!("OUT_DIR"), "/capabilities-connection.json"));

pub fn embedded() -> Result<Capabilities, CapabilitiesError> {
    // The shipped file is validated by the tests (`check` on it, and the JSON read here against
    // the TOML), so every command need not validate it again at start-up.
    if let Ok(caps) = serde_json::from_str::<Capabilities>(EMBEDDED_JSON) {
        return Ok(caps);
    }
    // The slow path exists for its error messages with line and column.
    parse(&SourceFile::new(EMBEDDED_NAME, EMBEDDED))
}

/// The parts of the embedded model that a probe reads: protocols (hosts, ports, schemes),
/// secure modes and credential recipes. The comparison table, the questions and the flow are
/// left empty. A probe is on every CI call, and reading the whole model was a quarter of a
/// probe's own work; a probe that needs a decision (`--plan`) reads all of it with
/// [`embedded`].
pub fn embedded_connection() -> Result<Capabilities, CapabilitiesError> {
    #[derive(serde::Deserialize)]
    struct Connection {
        meta: super::Meta,
        protocols: Vec<super::Protocol>,
        #[serde(default)]
        secure_modes: std::collections::BTreeMap<String, super::SecureMode>,
        #[serde(default)]
        credentials: std::collections::BTreeMap<String, super::CredentialRecipe>,
    }
    match serde_json::from_str::<Connection>(EMBEDDED_CONNECTION_JSON) {
        Ok(c) => Ok(Capabilities {
            meta: c.meta,
            protocols: c.protocols,
            features: Vec::new(),
            questions: Vec::new(),
            flow: super::Flow {
                start: String::new(),
                nodes: Vec::new(),
                edges: Vec::new(),
            },
            outcomes: Vec::new(),
            secure_modes: c.secure_modes,
            credentials: c.credentials,
            auth_modes: Vec::new(),
            exchanges: super::Exchanges::default(),
            caveats: Vec::new(),
        }),
        Err(_) => embedded(),
    }
}

/// The embedded capabilities read from their TOML and validated, as `check` reports them.
pub fn embedded_checked() -> Result<Capabilities, CapabilitiesError> {
    parse(&SourceFile::new(EMBEDDED_NAME, EMBEDDED))
}

pub fn from_file(path: &Path) -> Result<Capabilities, CapabilitiesError> {
    let text = std::fs::read_to_string(path).map_err(|source| CapabilitiesError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&SourceFile::new(path.display().to_string(), text))
}

/// Parse and validate capabilities text, reporting every semantic problem at once.
pub fn parse(src: &SourceFile) -> Result<Capabilities, CapabilitiesError> {
    let (caps, mut all) = match toml::from_str::<Capabilities>(&src.text) {
        Ok(c) => (c, Vec::new()),
        // A misspelled key is reported with every other problem of the file.
        Err(e) => {
            let schema = serde_json::to_value(schemars::schema_for!(Capabilities)).unwrap_or_default();
            crate::source::reread(src, &schema, &e).map_err(|mut all| match all.len() {
                1 => CapabilitiesError::Syntax(
                    all.remove(0)
                        .with_help("fix the file; `enos-connect check FILE` checks it again"),
                ),
                _ => CapabilitiesError::Invalid {
                    file: src.name.clone(),
                    problems: all,
                },
            })?
        }
    };
    let problems = validate::validate(&caps);
    if problems.is_empty() && all.is_empty() {
        return Ok(caps);
    }
    all.extend(locate_problems(src, &problems));
    all.sort_by_key(|p| (p.line, p.col));
    Err(CapabilitiesError::Invalid {
        file: src.name.clone(),
        problems: all,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's partial read holds exactly what the whole read holds for those sections.
    #[test]
    fn the_connection_sections_read_alone_match_the_whole_model() {
        let whole = embedded().expect("reads");
        let part = embedded_connection().expect("reads");
        assert_eq!(format!("{:?}", part.protocols), format!("{:?}", whole.protocols));
        assert_eq!(
            format!("{:?}", part.secure_modes),
            format!("{:?}", whole.secure_modes)
        );
        assert_eq!(
            format!("{:?}", part.credentials),
            format!("{:?}", whole.credentials)
        );
        assert_eq!(part.meta.version, whole.meta.version);
        assert!(!whole.protocols.is_empty() && !whole.credentials.is_empty());
    }

    #[test]
    fn the_shipped_capabilities_are_valid() {
        let caps = embedded().expect("the embedded JSON reads");
        assert_eq!(validate::validate(&caps), Vec::new());
    }

    #[test]
    fn the_fast_json_path_reads_the_same_model_as_the_toml_path() {
        let fast = serde_json::from_str::<Capabilities>(EMBEDDED_JSON).expect("build.rs embedded JSON");
        let slow = parse(&SourceFile::new(EMBEDDED_NAME, EMBEDDED)).expect("embedded TOML is valid");
        assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
    }
}
