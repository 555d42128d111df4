//! The top-level error and the exit-code table.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | a probe failed: refused, TLS, authentication, protocol or I/O error |
//! | 2    | usage or input error: bad flag, bad answers, bad capabilities file, missing answers |
//! | 3    | a probe timed out |
//! | 130  | interrupted (Ctrl-C or Esc in a prompt) |

use std::process::ExitCode;

use crate::answers::AnswersError;
use crate::capabilities::CapabilitiesError;
use crate::engine::EngineError;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_TIMEOUT: u8 = 3;
pub const EXIT_INTERRUPTED: u8 = 130;

/// The exit codes as shown in `--help` and the README.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    a probe failed (refused, TLS, authentication, protocol or I/O error)
  2    usage or input error (bad flag, answers, capabilities file; missing answers)
  3    a probe timed out
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
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
    #[error("interrupted at the prompt; nothing was saved")]
    Interrupted,
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
            Error::Output(_) => EXIT_FAILED,
            Error::Interrupted => EXIT_INTERRUPTED,
            Error::Capabilities(_)
            | Error::Answers(_)
            | Error::Engine(_)
            | Error::Config(_)
            | Error::Usage(_) => EXIT_USAGE,
        })
    }

    /// Whether the error should be printed (a closed pipe or an interrupt is not news).
    pub fn is_quiet(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
