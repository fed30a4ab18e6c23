//! The workflow status machine (manual section 7).
//!
//! Only the transitions of the manual's table are legal; anything else is an error,
//! never a silent overwrite.

use serde::{Deserialize, Serialize};

use super::error::{Error, ErrorKind, Result};

/// The status of one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkflowStatus {
    /// The workflow code is running (or about to run) a segment.
    Running,
    /// Suspended at a checkpoint, waiting for an activity, timer or signal.
    Paused,
    /// Finished with an output.
    Completed,
    /// Failed; followed by `Compensating` when there is something to undo.
    Failed,
    /// Running compensations, last completed step first.
    Compensating,
    /// Ended by cancellation or after all compensations ran.
    Cancelled,
}

impl WorkflowStatus {
    /// All statuses.
    pub const ALL: [WorkflowStatus; 6] = [
        WorkflowStatus::Running,
        WorkflowStatus::Paused,
        WorkflowStatus::Completed,
        WorkflowStatus::Failed,
        WorkflowStatus::Compensating,
        WorkflowStatus::Cancelled,
    ];

    /// True if the manual's table allows `self -> to`.
    pub const fn can_transition_to(self, to: WorkflowStatus) -> bool {
        use WorkflowStatus::*;
        matches!(
            (self, to),
            (Running, Paused)
                | (Running, Completed)
                | (Running, Failed)
                | (Running, Cancelled)
                | (Paused, Running)
                | (Paused, Failed)
                | (Paused, Cancelled)
                | (Failed, Compensating)
                | (Compensating, Compensating)
                | (Compensating, Cancelled)
                | (Compensating, Failed)
        )
    }

    /// Moves to `to`, or fails with a `WorkflowExecution` error naming both states.
    pub fn transition(&mut self, to: WorkflowStatus) -> Result<()> {
        if self.can_transition_to(to) {
            *self = to;
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::WorkflowExecution,
                format!("illegal status transition {self:?} -> {to:?}"),
            )
            .with("from", format!("{self:?}"))
            .with("to", format!("{to:?}")))
        }
    }

    /// True once nothing more will happen on its own: Completed, Cancelled, or Failed
    /// (a Failed execution with compensations moves on to Compensating first).
    pub const fn is_closed(self) -> bool {
        matches!(
            self,
            WorkflowStatus::Completed | WorkflowStatus::Failed | WorkflowStatus::Cancelled
        )
    }

    /// The status as stored (`"Running"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            WorkflowStatus::Running => "Running",
            WorkflowStatus::Paused => "Paused",
            WorkflowStatus::Completed => "Completed",
            WorkflowStatus::Failed => "Failed",
            WorkflowStatus::Compensating => "Compensating",
            WorkflowStatus::Cancelled => "Cancelled",
        }
    }

    /// Parses a stored name.
    pub fn from_name(s: &str) -> Option<WorkflowStatus> {
        WorkflowStatus::ALL.into_iter().find(|st| st.name() == s)
    }
}

impl std::fmt::Display for WorkflowStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::WorkflowStatus::*;
    use super::*;

    #[test]
    fn exactly_the_manuals_transitions_are_legal() {
        let legal = [
            (Running, Paused),
            (Running, Completed),
            (Running, Failed),
            (Running, Cancelled),
            (Paused, Running),
            (Paused, Failed),
            (Paused, Cancelled),
            (Failed, Compensating),
            (Compensating, Compensating),
            (Compensating, Cancelled),
            (Compensating, Failed),
        ];
        for from in WorkflowStatus::ALL {
            for to in WorkflowStatus::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    legal.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn illegal_transition_is_an_error_and_changes_nothing() {
        let mut s = Completed;
        let err = s.transition(Running).unwrap_err();
        assert_eq!(err.kind, ErrorKind::WorkflowExecution);
        assert_eq!(s, Completed);
        let mut s = Paused;
        s.transition(Running).unwrap();
        assert_eq!(s, Running);
    }
}
