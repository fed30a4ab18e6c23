//! Failures of an operation. On the command line: one line on stderr (`error: ...`)
//! and an exit code that says which kind, so scripts can tell a typo from an outage.
//! Over HTTP (`saga serve`): a JSON body with a stable `code` and the matching status.

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
    /// The store (or the NATS server) cannot be reached or opened: 4.
    Unreachable = 4,
}

/// Why an operation failed, finer than [`Exit`]: the `code` of the REST API's error
/// body. The names are part of the API: add new ones, never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// Malformed input: JSON, a filter, an option or parameter value.
    BadInput,
    /// No execution with this id.
    NotFound,
    /// No workflow definition of this type is registered.
    UnknownWorkflow,
    /// The workflow's definition carries no diagram.
    NoDiagram,
    /// An execution with this id exists already.
    AlreadyStarted,
    /// The execution is closed and takes no more input.
    Closed,
    /// Another writer won a race that did not resolve by retrying.
    Conflict,
    /// The store or the NATS server cannot be reached.
    Unavailable,
    /// Anything else.
    Failed,
}

impl Code {
    /// Every code, for the OpenAPI document.
    pub(crate) const ALL: [Code; 9] = [
        Code::BadInput,
        Code::NotFound,
        Code::UnknownWorkflow,
        Code::NoDiagram,
        Code::AlreadyStarted,
        Code::Closed,
        Code::Conflict,
        Code::Unavailable,
        Code::Failed,
    ];

    /// The code as the API spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Code::BadInput => "bad_input",
            Code::NotFound => "not_found",
            Code::UnknownWorkflow => "unknown_workflow",
            Code::NoDiagram => "no_diagram",
            Code::AlreadyStarted => "already_started",
            Code::Closed => "closed",
            Code::Conflict => "conflict",
            Code::Unavailable => "unavailable",
            Code::Failed => "failed",
        }
    }

    /// The HTTP status of the failure.
    pub(crate) fn http_status(self) -> u16 {
        match self {
            Code::BadInput => 400,
            Code::NotFound | Code::UnknownWorkflow | Code::NoDiagram => 404,
            Code::AlreadyStarted | Code::Closed | Code::Conflict => 409,
            Code::Unavailable => 503,
            Code::Failed => 500,
        }
    }

    /// The exit code of the failure on the command line (`no_diagram` is bad input
    /// there: the user named a type that cannot be drawn).
    fn exit(self) -> Exit {
        match self {
            Code::BadInput | Code::NoDiagram => Exit::BadInput,
            Code::NotFound | Code::UnknownWorkflow => Exit::NotFound,
            Code::Unavailable => Exit::Unreachable,
            Code::AlreadyStarted | Code::Closed | Code::Conflict | Code::Failed => Exit::Failed,
        }
    }
}

/// What an operation reports when it fails.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: Code,
    pub(crate) message: String,
}

impl CliError {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        CliError::new(Code::BadInput, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        CliError::new(Code::NotFound, message)
    }

    pub(crate) fn unreachable(message: impl Into<String>) -> Self {
        CliError::new(Code::Unavailable, message)
    }

    pub(crate) fn other(message: impl Into<String>) -> Self {
        CliError::new(Code::Failed, message)
    }

    /// The process exit code of this failure.
    pub(crate) fn exit(&self) -> Exit {
        self.code.exit()
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let code = match e.context("code") {
            Some("not_found") => Code::NotFound,
            Some("unknown_workflow") => Code::UnknownWorkflow,
            Some("no_diagram") => Code::NoDiagram,
            Some("already_started") => Code::AlreadyStarted,
            Some("closed") => Code::Closed,
            Some("unavailable") => Code::Unavailable,
            // A bad setting, or input the runtime refused (an empty id, a bad queue name).
            _ if matches!(e.kind, ErrorKind::Configuration | ErrorKind::Validation) => {
                Code::BadInput
            }
            _ if e.kind == ErrorKind::Concurrency => Code::Conflict,
            // The NATS adapter reports an unreachable server as a task-queue error.
            _ if e.kind == ErrorKind::TaskQueue => Code::Unavailable,
            _ => Code::Failed,
        };
        CliError::new(code, e.message)
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
    std::process::exit(e.exit() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_keep_their_code_exit_and_status() {
        let cases = [
            (Error::not_found("x"), Code::NotFound, Exit::NotFound, 404),
            (
                Error::already_started("x"),
                Code::AlreadyStarted,
                Exit::Failed,
                409,
            ),
            (
                Error::new(ErrorKind::Validation, "closed").with("code", "closed"),
                Code::Closed,
                Exit::Failed,
                409,
            ),
            (
                Error::new(ErrorKind::Validation, "t").with("code", "unknown_workflow"),
                Code::UnknownWorkflow,
                Exit::NotFound,
                404,
            ),
            (
                Error::new(ErrorKind::Validation, "d").with("code", "no_diagram"),
                Code::NoDiagram,
                Exit::BadInput,
                404,
            ),
            (
                Error::new(ErrorKind::EventStore, "down").with("code", "unavailable"),
                Code::Unavailable,
                Exit::Unreachable,
                503,
            ),
            (
                Error::conflict("x", 1, 2),
                Code::Conflict,
                Exit::Failed,
                409,
            ),
            (
                Error::new(ErrorKind::Configuration, "bad"),
                Code::BadInput,
                Exit::BadInput,
                400,
            ),
            (
                Error::new(ErrorKind::Validation, "empty id"),
                Code::BadInput,
                Exit::BadInput,
                400,
            ),
            (
                Error::new(ErrorKind::TaskQueue, "no NATS"),
                Code::Unavailable,
                Exit::Unreachable,
                503,
            ),
            (
                Error::new(ErrorKind::Codec, "?"),
                Code::Failed,
                Exit::Failed,
                500,
            ),
        ];
        for (error, code, exit, status) in cases {
            let e = CliError::from(error);
            assert_eq!(
                (e.code, e.exit(), e.code.http_status()),
                (code, exit, status)
            );
        }
    }

    #[test]
    fn codes_are_distinct_and_complete() {
        let names: std::collections::BTreeSet<&str> = Code::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Code::ALL.len());
    }
}
