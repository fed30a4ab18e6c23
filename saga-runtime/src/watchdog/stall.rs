//! The stall detector: open executions with no new event for longer than a threshold.
//!
//! An execution makes progress by appending events; one whose last event is older
//! than `stall_after` is stuck on something that does not report back. When it waits
//! for an activity attempt (not one backing off before its retry), that attempt is the
//! suspect: a worker died or hangs with the task and no start-to-close timeout will
//! ever fire. The action forces the attempt's timeout (`ActivityTaskTimedOut`), so the
//! activity's retry policy decides, as it would for a timeout it had declared.
//!
//! Executions sleeping on a timer that is not yet due are not stalled: the timer
//! moves them. An execution waiting only for a signal or a child is reported for
//! information, with nothing to force.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Action, Detector, Finding, OpenExecution, OpenExecutions, Severity};

/// The stalled executions among `open` at `now`.
pub fn detect(open: &OpenExecutions, now: DateTime<Utc>, stall_after: Duration) -> Vec<Finding> {
    let mut out: Vec<Finding> = open
        .iter()
        .filter_map(|x| check(x, now, stall_after))
        .collect();
    out.sort_by(|a, b| a.saga_id.cmp(&b.saga_id));
    out
}

/// The finding for one execution, if it is stalled.
pub fn check(x: &OpenExecution, now: DateTime<Utc>, stall_after: Duration) -> Option<Finding> {
    let idle = (now - x.last_event_at).to_std().ok()?;
    if idle < stall_after || x.next_timer.is_some_and(|t| t > now) {
        return None;
    }
    let idle_secs = idle.as_secs_f64();
    // The oldest attempt the queue should have delivered: local activities run in the
    // recording process and retry there, so only queued ones can be forced.
    let stuck = x
        .pending_activities
        .iter()
        .filter(|p| !p.backing_off && !p.local)
        .min_by_key(|p| p.seq);
    let waits = if let Some(e) = &x.fold_error {
        format!("something this tool cannot tell (its history does not fold: {e})")
    } else if let Some(p) = stuck {
        format!("activity `{}` (attempt {})", p.activity_type, p.attempt)
    } else if !x.pending_children.is_empty() {
        let ids: Vec<&str> = x.pending_children.iter().map(|c| c.as_str()).collect();
        format!("child workflow(s) {}", ids.join(", "))
    } else if x.next_timer.is_some() {
        "a timer that is overdue".to_owned()
    } else {
        "a signal or an outside input".to_owned()
    };
    let message = format!(
        "`{}` ({}) has made no progress for {}s; it waits for {waits}",
        x.saga_id, x.workflow_type, idle_secs as u64
    );
    let (severity, action) = match stuck {
        Some(p) => (
            Severity::Warning,
            Action::ForceActivityTimeout {
                seq: p.seq,
                attempt: p.attempt,
            },
        ),
        // An unreadable history is stuck for sure, with nothing this detector can force.
        None if x.fold_error.is_some() => (Severity::Warning, Action::None),
        None => (Severity::Info, Action::None),
    };
    let mut f = Finding::new(
        Detector::Stall,
        severity,
        Some(x.saga_id.clone()),
        message,
        action,
        now,
    )
    .with("idle_secs", idle_secs)
    .with("version", x.version as f64);
    if let Some(p) = stuck {
        f = f.with("seq", p.seq as f64).with("attempt", p.attempt);
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::domain::{SagaId, WorkflowStatus};
    use crate::watchdog::PendingAttempt;

    fn idle_since(at: DateTime<Utc>) -> OpenExecution {
        OpenExecution {
            saga_id: SagaId::new("s"),
            workflow_type: "w".into(),
            status: WorkflowStatus::Running,
            version: 3,
            last_event_at: at,
            started_at: Some(at),
            pending_activities: Vec::new(),
            pending_children: Vec::new(),
            next_timer: None,
            fold_error: None,
        }
    }

    fn attempt(seq: u64, backing_off: bool, local: bool) -> PendingAttempt {
        PendingAttempt {
            seq,
            attempt: 2,
            activity_type: "charge".into(),
            backing_off,
            local,
        }
    }

    const AFTER: Duration = Duration::from_secs(60);

    #[test]
    fn idle_shorter_than_the_threshold_is_not_a_stall() {
        let now = Utc::now();
        let x = idle_since(now - TimeDelta::seconds(59));
        assert_eq!(check(&x, now, AFTER), None);
    }

    #[test]
    fn a_pending_queued_attempt_is_forced() {
        let now = Utc::now();
        let mut x = idle_since(now - TimeDelta::seconds(61));
        x.pending_activities = vec![attempt(4, true, false), attempt(7, false, false)];
        let f = check(&x, now, AFTER).expect("stalled");
        assert_eq!(f.severity, Severity::Warning);
        // Seq 4 backs off before its retry (its timer moves it): 7 is the stuck one.
        assert_eq!(
            f.action,
            Action::ForceActivityTimeout { seq: 7, attempt: 2 }
        );
        assert_eq!(f.detail["idle_secs"], 61.0);
    }

    #[test]
    fn local_attempts_and_signal_waits_are_reported_without_action() {
        let now = Utc::now();
        let mut x = idle_since(now - TimeDelta::seconds(600));
        x.pending_activities = vec![attempt(1, false, true)];
        let f = check(&x, now, AFTER).expect("stalled");
        assert_eq!((f.severity, f.action), (Severity::Info, Action::None));
    }

    #[test]
    fn a_timer_due_later_means_not_stalled_but_an_overdue_one_does() {
        let now = Utc::now();
        let mut x = idle_since(now - TimeDelta::hours(2));
        x.next_timer = Some(now + TimeDelta::minutes(5));
        assert_eq!(check(&x, now, AFTER), None, "a sleep is not a stall");
        x.next_timer = Some(now - TimeDelta::minutes(5));
        let f = check(&x, now, AFTER).expect("an overdue timer is");
        assert!(f.message.contains("overdue"), "{}", f.message);
    }
}
