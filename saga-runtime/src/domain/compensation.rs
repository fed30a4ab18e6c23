//! The compensation data model (manual section 6.3), derived from history.
//!
//! The history is the truth; the [`CompensationTracker`] is a fold over it. A step is
//! recorded when an activity that declared a compensation completes; a step is undone
//! when the compensation scheduled for it completes. The actions still to run come out
//! last-completed first (LIFO).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::{EventType, HistoryEvent};

/// One completed step that knows how to undo itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletedStep {
    /// Stable id of the step: `<activity_type>#<seq>`.
    pub step_id: String,
    /// The command sequence number of the activity in its execution.
    pub seq: u64,
    /// The activity that completed.
    pub activity_type: String,
    /// The activity that undoes it.
    pub compensation_activity_type: String,
    /// The activity's input.
    pub input: serde_json::Value,
    /// The activity's output: this is what the compensation receives.
    pub output: serde_json::Value,
    /// 1-based order of completion among compensable steps.
    pub step_order: u32,
    /// When the step completed.
    pub completed_at: DateTime<Utc>,
}

/// What must run to undo one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompensationAction {
    /// The step being undone.
    pub step_id: String,
    /// The step's command sequence number.
    pub step_seq: u64,
    /// The activity that completed.
    pub activity_type: String,
    /// The compensating activity.
    pub compensation_type: String,
    /// Its input: the output of the step.
    pub input: serde_json::Value,
    /// Failed attempts so far.
    pub retry_count: u32,
    /// Attempts allowed before the compensation counts as failed.
    pub max_retries: u32,
}

/// Attributes of an `ActivityTaskScheduled` event that the tracker needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Scheduled {
    activity_type: String,
    input: serde_json::Value,
    compensation: Option<String>,
    compensates: Option<u64>,
    max_attempts: u32,
}

/// Tracks compensable steps and compensation progress by folding history events.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CompensationTracker {
    /// Compensable steps in completion order.
    pub steps: Vec<CompletedStep>,
    /// Whether failures trigger compensation automatically (the engine's default).
    pub auto_compensate: bool,
    scheduled: BTreeMap<u64, Scheduled>,
    compensated: BTreeSet<u64>,
    failed_attempts: BTreeMap<u64, u32>,
}

impl CompensationTracker {
    /// An empty tracker with automatic compensation on.
    pub fn new() -> Self {
        CompensationTracker {
            auto_compensate: true,
            ..Default::default()
        }
    }

    /// Folds a whole history.
    pub fn from_history<'a>(events: impl IntoIterator<Item = &'a HistoryEvent>) -> Self {
        let mut t = CompensationTracker::new();
        for e in events {
            t.track_step(e);
        }
        t
    }

    /// Folds one event. Events that do not concern activities are ignored.
    pub fn track_step(&mut self, event: &HistoryEvent) {
        let Some(seq) = event.attr_u64("seq") else {
            return;
        };
        match event.event_type {
            EventType::ActivityTaskScheduled if !event.is_retry => {
                let compensation = event.attr_str("compensation");
                let compensates = event.attr_u64("compensates");
                if compensation.is_none() && compensates.is_none() {
                    return; // nothing to undo, nothing undoing: not tracked
                }
                let a = &event.attributes;
                self.scheduled.insert(
                    seq,
                    Scheduled {
                        activity_type: event
                            .attr_str("activity_type")
                            .unwrap_or_default()
                            .to_owned(),
                        input: a.get("input").cloned().unwrap_or_default(),
                        compensation: compensation.map(str::to_owned),
                        compensates,
                        max_attempts: event.attr_u64("max_attempts").unwrap_or(1) as u32,
                    },
                );
            }
            EventType::ActivityTaskCompleted => {
                let Some(s) = self.scheduled.get(&seq) else {
                    return;
                };
                if let Some(step_seq) = s.compensates {
                    self.compensated.insert(step_seq);
                } else if let Some(comp) = &s.compensation {
                    if self.steps.iter().any(|st| st.seq == seq) {
                        return; // a duplicate completion never adds a second step
                    }
                    self.steps.push(CompletedStep {
                        step_id: format!("{}#{seq}", s.activity_type),
                        seq,
                        activity_type: s.activity_type.clone(),
                        compensation_activity_type: comp.clone(),
                        input: s.input.clone(),
                        output: event.attributes.get("output").cloned().unwrap_or_default(),
                        step_order: self.steps.len() as u32 + 1,
                        completed_at: event.timestamp,
                    });
                }
            }
            EventType::ActivityTaskFailed | EventType::ActivityTaskTimedOut => {
                if let Some(step_seq) = self.scheduled.get(&seq).and_then(|s| s.compensates) {
                    *self.failed_attempts.entry(step_seq).or_default() += 1;
                }
            }
            _ => {}
        }
    }

    /// Whether the step scheduled as `seq` names a compensation: once it completes,
    /// its effect is something to undo.
    pub fn is_compensable(&self, seq: u64) -> bool {
        self.scheduled
            .get(&seq)
            .is_some_and(|s| s.compensation.is_some())
    }

    /// The compensations still to run, last completed step first (LIFO).
    pub fn get_compensation_actions(&self) -> Vec<CompensationAction> {
        self.steps
            .iter()
            .rev()
            .filter(|s| !self.compensated.contains(&s.seq))
            .map(|s| CompensationAction {
                step_id: s.step_id.clone(),
                step_seq: s.seq,
                activity_type: s.activity_type.clone(),
                compensation_type: s.compensation_activity_type.clone(),
                input: s.output.clone(),
                retry_count: self.failed_attempts.get(&s.seq).copied().unwrap_or(0),
                max_retries: self
                    .scheduled
                    .values()
                    .find(|sc| sc.compensates == Some(s.seq))
                    .map(|sc| sc.max_attempts)
                    .unwrap_or(0),
            })
            .collect()
    }

    /// Steps whose compensation has completed, in the order they were undone.
    pub fn compensated_steps(&self) -> Vec<&CompletedStep> {
        let mut done: Vec<_> = self
            .steps
            .iter()
            .filter(|s| self.compensated.contains(&s.seq))
            .collect();
        done.reverse();
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::SagaId;
    use serde_json::json;

    fn ev(id: u64, t: EventType, attrs: serde_json::Value) -> HistoryEvent {
        HistoryEvent::new(SagaId::new("s"), id, t, Utc::now(), attrs, String::new())
    }

    #[test]
    fn steps_fold_in_order_and_actions_come_out_lifo() {
        let mut h = vec![];
        for (i, name) in ["reserve", "charge", "ship"].iter().enumerate() {
            let seq = i as u64;
            h.push(ev(0, EventType::ActivityTaskScheduled, json!({"seq": seq, "activity_type": name, "input": {"n": seq}, "compensation": format!("undo-{name}")})));
            h.push(ev(
                0,
                EventType::ActivityTaskCompleted,
                json!({"seq": seq, "output": format!("out-{name}")}),
            ));
        }
        // A step without compensation is not tracked.
        h.push(ev(
            0,
            EventType::ActivityTaskScheduled,
            json!({"seq": 9, "activity_type": "log", "input": null}),
        ));
        h.push(ev(
            0,
            EventType::ActivityTaskCompleted,
            json!({"seq": 9, "output": null}),
        ));
        let t = CompensationTracker::from_history(&h);
        assert_eq!(t.steps.len(), 3);
        assert_eq!(t.steps[2].step_order, 3);
        let actions = t.get_compensation_actions();
        let order: Vec<_> = actions
            .iter()
            .map(|a| a.compensation_type.as_str())
            .collect();
        assert_eq!(order, ["undo-ship", "undo-charge", "undo-reserve"]);
        assert_eq!(actions[0].input, json!("out-ship"));
    }

    #[test]
    fn completed_compensations_leave_the_pending_list() {
        let h = vec![
            ev(
                0,
                EventType::ActivityTaskScheduled,
                json!({"seq": 0, "activity_type": "a", "input": 1, "compensation": "undo-a"}),
            ),
            ev(
                1,
                EventType::ActivityTaskCompleted,
                json!({"seq": 0, "output": 2}),
            ),
            ev(
                2,
                EventType::ActivityTaskScheduled,
                json!({"seq": 1, "activity_type": "undo-a", "input": 2, "compensates": 0, "max_attempts": 3}),
            ),
            ev(3, EventType::ActivityTaskFailed, json!({"seq": 1})),
        ];
        let t = CompensationTracker::from_history(&h);
        let a = t.get_compensation_actions();
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].retry_count, a[0].max_retries), (1, 3));
        let mut t = t;
        t.track_step(&ev(
            4,
            EventType::ActivityTaskCompleted,
            json!({"seq": 1, "output": null}),
        ));
        assert!(t.get_compensation_actions().is_empty());
        assert_eq!(t.compensated_steps().len(), 1);
    }
}
