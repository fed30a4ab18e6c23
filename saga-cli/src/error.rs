//! Failures of a command: one line on stderr (`error: ...`) and an exit code that says
//! which kind, so scripts can tell a typo from an outage.

use saga_runtime::{Error, ErrorKind};

/// The exit code of each kind of failure (clap's own usage errors exit 2 as well).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The operation failed or was refused (a closed execution, a taken id, ...): 1.
    Failed = 1,
    /// Bad input: malformed JSON, a bad URL, filter or option value: 2.
    BadInput = 2,
    /// No such execution or workflow type: 3.
    NotFound = 3,
    /// The store cannot be reached or opened: 4.
    Unreachable = 4,
}

/// What a command reports when it fails.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl CliError {
    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        CliError {
            exit: Exit::BadInput,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        CliError {
            exit: Exit::NotFound,
            message: message.into(),
        }
    }

    pub(crate) fn unreachable(message: impl Into<String>) -> Self {
        CliError {
            exit: Exit::Unreachable,
            message: message.into(),
        }
    }

    pub(crate) fn other(message: impl Into<String>) -> Self {
        CliError {
            exit: Exit::Failed,
            message: message.into(),
        }
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let code = e.context("code");
        let exit = if e.is_not_found() || code == Some("unknown_workflow") {
            Exit::NotFound
        } else if code == Some("unavailable") {
            Exit::Unreachable
        } else if e.kind == ErrorKind::Configuration || code == Some("no_diagram") {
            Exit::BadInput
        } else {
            Exit::Failed
        };
        CliError {
            exit,
            message: e.message,
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::other(format!("cannot write the output: {e}"))
    }
}

/// Prints `e` as one line and exits with its code.
pub(crate) fn exit(e: CliError) -> ! {
    // One line, whatever the message holds (a database error may span several).
    let line = e.message.split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!("error: {line}");
    std::process::exit(e.exit as i32)
}
