//! What a detector reports.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::SagaId;

/// The detector that made a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// No progress for too long.
    Stall,
    /// Executions waiting on each other in a cycle.
    Deadlock,
    /// A port that does not answer.
    Health,
    /// Too many tasks waiting.
    Capacity,
}

impl Detector {
    /// Lower-case name (`stall`, `deadlock`, `health`, `capacity`).
    pub const fn name(self) -> &'static str {
        match self {
            Detector::Stall => "stall",
            Detector::Deadlock => "deadlock",
            Detector::Health => "health",
            Detector::Capacity => "capacity",
        }
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How urgent a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; nothing is stuck for sure (an execution waiting long for a signal).
    Info,
    /// Something is stuck and an action can move it.
    Warning,
    /// A port is down or executions can never finish on their own.
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// What was done (or is suggested) about a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Nothing to do but look.
    None,
    /// Record `ActivityTaskTimedOut` for this attempt of command `seq`, so that its
    /// retry policy decides what comes next.
    ForceActivityTimeout {
        /// The activity's command sequence number.
        seq: u64,
        /// The stuck attempt.
        attempt: u32,
    },
    /// Cancel this execution: it compensates its completed steps and ends Cancelled.
    Cancel {
        /// The execution to cancel.
        saga_id: SagaId,
    },
    /// Stop the workers fetching tasks until the port answers again.
    PauseWorkers,
    /// Let the workers fetch tasks again.
    ResumeWorkers,
    /// Add workers (or find why they are slow): the engine cannot do this itself.
    ScaleWorkers,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::None => f.write_str("none"),
            Action::ForceActivityTimeout { seq, attempt } => {
                write!(f, "force timeout of activity {seq} attempt {attempt}")
            }
            Action::Cancel { saga_id } => write!(f, "cancel and compensate `{saga_id}`"),
            Action::PauseWorkers => f.write_str("pause workers"),
            Action::ResumeWorkers => f.write_str("resume workers"),
            Action::ScaleWorkers => f.write_str("scale workers"),
        }
    }
}

/// One thing a detector found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Which detector.
    pub detector: Detector,
    /// How urgent.
    pub severity: Severity,
    /// The execution concerned, if the finding is about one.
    pub saga_id: Option<SagaId>,
    /// One line for a human.
    pub message: String,
    /// The action that fixes it.
    pub action: Action,
    /// Whether the engine took `action` (false when only suggested, or when it failed).
    pub action_taken: bool,
    /// When it was found.
    pub at: DateTime<Utc>,
    /// The numbers behind it (`idle_secs`, `backlog`, `cycle_length`, ...).
    pub detail: BTreeMap<String, f64>,
}

impl Finding {
    pub(crate) fn new(
        detector: Detector,
        severity: Severity,
        saga_id: Option<SagaId>,
        message: String,
        action: Action,
        at: DateTime<Utc>,
    ) -> Self {
        Finding {
            detector,
            severity,
            saga_id,
            message,
            action,
            action_taken: false,
            at,
            detail: BTreeMap::new(),
        }
    }

    pub(crate) fn with(mut self, key: &str, value: impl Into<f64>) -> Self {
        self.detail.insert(key.to_owned(), value.into());
        self
    }
}
