//! The aggregate error of the CLI edge, one variant per failure class, and the exit-code table.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | a probe failed: refused, TLS, authentication, protocol, EnOS reply code or I/O error; a `device-test` case failed or errored; `recommend --fail-on-unmet`/`--fail-on-caveat` |
//! | 2    | usage or input error: bad flag, bad answers, capabilities, registry or config file, missing answers (also `ask` without a terminal), a listener that cannot bind, a `serve --data` file that is not serve's, is from a newer version, is damaged or is used by another serve |
//! | 3    | a probe timed out |
//! | 74   | an I/O error of enos-connect's own: cannot write the output or a file (serve's `--record` and `--data` too, at start or while serving), a prompt that failed, cannot start the runtime |
//! | 130  | interrupted (Ctrl-C or Esc in a prompt) |
//!
//! Every library error says what went wrong in its `Display` (one line, or a list of located
//! problems) and what to do in [`Help::help`]; the CLI prints both once, at the edge.

use std::process::ExitCode;

use super::config::ConfigError;
use crate::answers::AnswersError;
use crate::base::Help;
use crate::batch::BatchError;
use crate::capabilities::CapabilitiesError;
use crate::credentials::CredentialsError;
use crate::device_test::DeviceTestError;
use crate::engine::EngineError;
use crate::probe::load::MergeError;
use crate::registry::RegistryError;
use crate::serve::store::StoreError;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_TIMEOUT: u8 = 3;
pub const EXIT_IO: u8 = 74;
pub const EXIT_INTERRUPTED: u8 = 130;

/// The exit codes as shown in `--help` and the README.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    a probe failed (refused, TLS, authentication, protocol, EnOS reply code or I/O error);
       a device-test case failed or errored; recommend --fail-on-unmet or --fail-on-caveat:
       the advice has an unmet need or a caveat
  2    usage or input error (bad flag, answers, capabilities, registry or config file;
       missing answers, also `ask` without a terminal; a listener that cannot bind; a serve
       --data file that is not serve's, newer, damaged or in use)
  3    a probe timed out
  74   cannot write the output or a file (serve's --record and --data too), or a prompt
       failed
  130  interrupted (Ctrl-C or Esc at a prompt)";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Capabilities(#[from] CapabilitiesError),
    #[error(transparent)]
    Answers(#[from] AnswersError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error(transparent)]
    DeviceTest(#[from] DeviceTestError),
    /// `serve --data`: a file serve cannot use (exit 2) or cannot write (exit 74).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `serve --data`: a write failed while serving; serve stopped without acknowledging it.
    #[error("{0}")]
    Saving(String),
    /// A flag, or a combination of flags, that cannot work.
    #[error("{message}")]
    Usage { message: String, help: Option<String> },
    /// A file or device enos-connect had to read or write and could not.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Writing the command's output failed (a closed pipe is not news).
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
    #[error("interrupted at the prompt; nothing was saved")]
    Interrupted,
}

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            help: None,
        }
    }

    pub fn usage_with_help(message: impl Into<String>, help: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            help: Some(help.into()),
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
            Error::Output(_) | Error::Io { .. } | Error::Saving(_) => EXIT_IO,
            Error::Store(e) if e.is_io() => EXIT_IO,
            Error::Batch(BatchError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
            Error::Batch(BatchError::Write(_)) => EXIT_IO,
            Error::Interrupted => EXIT_INTERRUPTED,
            Error::DeviceTest(
                DeviceTestError::Record { .. }
                | DeviceTestError::DeviceLog { .. }
                | DeviceTestError::Run { .. },
            ) => EXIT_IO,
            Error::Capabilities(_)
            | Error::Answers(_)
            | Error::Engine(_)
            | Error::Config(_)
            | Error::Credentials(_)
            | Error::Batch(_)
            | Error::Registry(_)
            | Error::Merge(_)
            | Error::DeviceTest(_)
            | Error::Store(_)
            | Error::Usage { .. } => EXIT_USAGE,
        })
    }

    /// Whether the error is left unprinted: a closed pipe is the reader's choice, not a
    /// failure to report.
    pub fn is_quiet(&self) -> bool {
        match self {
            Error::Output(e) | Error::Batch(BatchError::Write(e)) => {
                e.kind() == std::io::ErrorKind::BrokenPipe
            }
            _ => false,
        }
    }
}

impl Help for Error {
    fn help(&self) -> Option<String> {
        match self {
            Error::Capabilities(e) => e.help(),
            Error::Answers(e) => e.help(),
            Error::Engine(e) => e.help(),
            Error::Config(e) => e.help(),
            Error::Credentials(e) => e.help(),
            Error::Batch(e) => e.help(),
            Error::Registry(e) => e.help(),
            Error::Merge(e) => e.help(),
            Error::DeviceTest(e) => e.help(),
            Error::Store(e) => e.help(),
            Error::Saving(_) => Some(
                "serve stopped before acknowledging anything it could not save, and what it acknowledged is in the file: free space or fix the file's permissions, then start serve again with the same --data".into(),
            ),
            Error::Usage { help, .. } => help.clone(),
            Error::Io { .. } | Error::Output(_) | Error::Interrupted => None,
        }
    }
}

impl From<dialoguer::Error> for Error {
    /// A prompt that failed: Ctrl-C or Esc is an interrupt, anything else an I/O problem.
    fn from(e: dialoguer::Error) -> Self {
        match e {
            dialoguer::Error::IO(io) if io.kind() == std::io::ErrorKind::Interrupted => Error::Interrupted,
            dialoguer::Error::IO(io) => Error::io("cannot prompt", io),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
