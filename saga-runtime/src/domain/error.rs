//! The one error type of the runtime (manual section 13).
//!
//! Every port and engine call returns [`Error`]. Its [`ErrorKind`] says which part of
//! the system failed and so what a caller can do about it; `context` carries the
//! identifiers a person needs to find the execution; `source` keeps the chain.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

/// Result alias used throughout the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which part of the system an [`Error`] comes from (the manual's 17 kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    /// The event store failed or refused a read or write (retry with backoff).
    EventStore,
    /// A payload could not be encoded or decoded.
    Codec,
    /// The workflow itself failed (its code returned an error or could not run).
    WorkflowExecution,
    /// A step of a workflow (one checkpoint's command) could not be carried out.
    StepExecution,
    /// An activity failed for good (retries exhausted or non-retryable).
    ActivityExecution,
    /// The timer store failed.
    TimerStore,
    /// The signal dispatcher failed.
    SignalDispatcher,
    /// The task queue failed.
    TaskQueue,
    /// A snapshot was missing, corrupt or unreadable.
    Snapshot,
    /// Replay found a history the workflow code does not reproduce (nondeterminism).
    Replay,
    /// The engine was built or called with an inconsistent configuration.
    Configuration,
    /// Input was rejected (unknown type, duplicate id, malformed payload, ...).
    Validation,
    /// Something took longer than allowed.
    Timeout,
    /// The execution was cancelled.
    Cancelled,
    /// An optimistic-locking conflict: someone else appended first.
    Concurrency,
    /// A compensation failed; manual intervention is needed.
    Compensation,
    /// Anything not covered above.
    Unknown,
}

impl ErrorKind {
    /// All kinds, in declaration order.
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::EventStore,
        ErrorKind::Codec,
        ErrorKind::WorkflowExecution,
        ErrorKind::StepExecution,
        ErrorKind::ActivityExecution,
        ErrorKind::TimerStore,
        ErrorKind::SignalDispatcher,
        ErrorKind::TaskQueue,
        ErrorKind::Snapshot,
        ErrorKind::Replay,
        ErrorKind::Configuration,
        ErrorKind::Validation,
        ErrorKind::Timeout,
        ErrorKind::Cancelled,
        ErrorKind::Concurrency,
        ErrorKind::Compensation,
        ErrorKind::Unknown,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The central error: a kind, a message, context, an optional source and a timestamp.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}{}", ContextDisplay(.context))]
pub struct Error {
    /// Which part of the system failed.
    pub kind: ErrorKind,
    /// What happened, for a person.
    pub message: String,
    /// Identifiers that locate the failure (`saga_id`, `event_id`, `activity_type`, ...).
    pub context: BTreeMap<String, String>,
    /// The underlying cause, if any.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// When the error was created.
    pub timestamp: SystemTime,
}

struct ContextDisplay<'a>(&'a BTreeMap<String, String>);

impl fmt::Display for ContextDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str(" (")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={v}")?;
        }
        f.write_str(")")
    }
}

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            context: BTreeMap::new(),
            source: None,
            timestamp: SystemTime::now(),
        }
    }

    /// Adds one context entry.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl fmt::Display) -> Self {
        self.context.insert(key.into(), value.to_string());
        self
    }

    /// Attaches the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The context value under `key`, if any.
    pub fn context(&self, key: &str) -> Option<&str> {
        self.context.get(key).map(String::as_str)
    }

    /// An optimistic-locking conflict on `saga_id`: `expected` was not the current version.
    pub fn conflict(saga_id: &str, expected: u64, actual: u64) -> Self {
        Error::new(
            ErrorKind::Concurrency,
            format!("stale append: expected version {expected}, store is at {actual}"),
        )
        .with("saga_id", saga_id)
        .with("expected_version", expected)
        .with("actual_version", actual)
    }

    /// True when this is an optimistic-locking conflict.
    pub fn is_conflict(&self) -> bool {
        self.kind == ErrorKind::Concurrency
    }

    /// A start with an id that already has an execution.
    pub fn already_started(saga_id: &str) -> Self {
        Error::new(
            ErrorKind::Validation,
            format!("an execution with id `{saga_id}` already exists"),
        )
        .with("saga_id", saga_id)
        .with("code", "already_started")
    }

    /// True for [`Error::already_started`].
    pub fn is_already_started(&self) -> bool {
        self.kind == ErrorKind::Validation && self.context("code") == Some("already_started")
    }

    /// No execution with this id.
    pub fn not_found(saga_id: &str) -> Self {
        Error::new(
            ErrorKind::Validation,
            format!("no execution with id `{saga_id}`"),
        )
        .with("saga_id", saga_id)
        .with("code", "not_found")
    }

    /// True for [`Error::not_found`].
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::Validation && self.context("code") == Some("not_found")
    }

    /// A codec failure.
    pub fn codec(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Codec, message)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(ErrorKind::Codec, format!("json: {e}")).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_carries_kind_message_and_context() {
        let e = Error::conflict("saga-1", 3, 5);
        let text = e.to_string();
        assert!(text.starts_with("Concurrency: stale append"), "{text}");
        assert!(text.contains("saga_id=saga-1"), "{text}");
        assert!(e.is_conflict());
    }

    #[test]
    fn source_chain_is_kept() {
        let io = std::io::Error::other("disk gone");
        let e = Error::new(ErrorKind::EventStore, "append failed").with_source(io);
        let src = std::error::Error::source(&e).expect("source");
        assert_eq!(src.to_string(), "disk gone");
    }

    #[test]
    fn there_are_seventeen_distinct_kinds() {
        let set: std::collections::HashSet<_> = ErrorKind::ALL.iter().collect();
        assert_eq!(set.len(), 17);
    }
}
