//! The event model (manual section 5): every change to an execution is one
//! [`HistoryEvent`] appended to its history. The history is the truth; everything else
//! (status, compensation stack, the workflow's machine state) is a fold over it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::ids::SagaId;

/// The 13 event categories of the manual's taxonomy (section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventCategory {
    /// Workflow lifecycle.
    Workflow,
    /// Activity execution.
    Activity,
    /// Timers.
    Timer,
    /// External signals.
    Signal,
    /// Special marks.
    Marker,
    /// State snapshots.
    Snapshot,
    /// Workflow tasks: the unit in which the machine's commands are decided.
    Command,
    /// Child workflows.
    ChildWorkflow,
    /// Local activities (run inside the workflow task).
    LocalActivity,
    /// Recorded side effects.
    SideEffect,
    /// Workflow updates.
    Update,
    /// Search attributes.
    SearchAttribute,
    /// Nexus operations.
    Nexus,
}

impl EventCategory {
    /// All categories, in the manual's order.
    pub const ALL: [EventCategory; 13] = [
        EventCategory::Workflow,
        EventCategory::Activity,
        EventCategory::Timer,
        EventCategory::Signal,
        EventCategory::Marker,
        EventCategory::Snapshot,
        EventCategory::Command,
        EventCategory::ChildWorkflow,
        EventCategory::LocalActivity,
        EventCategory::SideEffect,
        EventCategory::Update,
        EventCategory::SearchAttribute,
        EventCategory::Nexus,
    ];
}

macro_rules! event_types {
    ($( $category:ident => [ $( $(#[$doc:meta])* $name:ident ),* $(,)? ] )*) => {
        /// Every event type of the manual's taxonomy, grouped by [`EventCategory`].
        ///
        /// Serialized as its name (`"ActivityTaskCompleted"`), as in the manual's JSON.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventType {
            $( $( $(#[$doc])* $name, )* )*
        }

        impl EventType {
            /// Every event type, grouped by category in the manual's order.
            pub const ALL: &'static [EventType] = &[ $( $( EventType::$name, )* )* ];

            /// The category of this event type (total: every type has one).
            pub const fn category(self) -> EventCategory {
                match self {
                    $( $( EventType::$name => EventCategory::$category, )* )*
                }
            }

            /// The type's name, as stored.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $( EventType::$name => stringify!($name), )* )*
                }
            }

            /// Parses a stored name; `None` for an unknown type.
            pub fn from_name(name: &str) -> Option<EventType> {
                match name {
                    $( $( stringify!($name) => Some(EventType::$name), )* )*
                    _ => None,
                }
            }
        }
    };
}

event_types! {
    Workflow => [
        /// The execution was created with its input (always event 0).
        WorkflowExecutionStarted,
        /// The workflow returned its output.
        WorkflowExecutionCompleted,
        /// The workflow failed (its error, a cancellation, or a failed compensation).
        WorkflowExecutionFailed,
        /// The workflow-level timeout fired.
        WorkflowExecutionTimedOut,
        /// Someone asked for the execution to be cancelled.
        WorkflowExecutionCancelRequested,
        /// The execution ended cancelled (after its compensations, if any).
        WorkflowExecutionCanceled,
        /// The execution started to run its compensations (LIFO).
        WorkflowExecutionCompensating,
    ]
    Activity => [
        /// An activity (or a compensation) was scheduled.
        ActivityTaskScheduled,
        /// A worker started an attempt.
        ActivityTaskStarted,
        /// An attempt returned its output.
        ActivityTaskCompleted,
        /// An attempt failed.
        ActivityTaskFailed,
        /// An attempt exceeded its start-to-close timeout.
        ActivityTaskTimedOut,
        /// A pending activity was abandoned because the execution was cancelled.
        ActivityTaskCanceled,
    ]
    Timer => [
        /// A durable timer was created.
        TimerStarted,
        /// A durable timer fired.
        TimerFired,
        /// A durable timer was cancelled before firing.
        TimerCanceled,
    ]
    Signal => [
        /// An external signal arrived.
        SignalReceived,
    ]
    Marker => [
        /// A marker (recorded value) was recorded.
        MarkerRecorded,
    ]
    Snapshot => [
        /// A snapshot of the execution state was taken at this point.
        SnapshotCreated,
    ]
    Command => [
        /// A workflow task was scheduled for the execution.
        WorkflowTaskScheduled,
        /// A workflow task decided the commands that follow it.
        WorkflowTaskCompleted,
        /// A workflow task could not run (replay mismatch, fingerprint, decode failure).
        WorkflowTaskFailed,
    ]
    ChildWorkflow => [
        /// A child workflow start was requested.
        StartChildWorkflowExecutionInitiated,
        /// A child workflow could not be started.
        StartChildWorkflowExecutionFailed,
        /// A child workflow started.
        ChildWorkflowExecutionStarted,
        /// A child workflow completed.
        ChildWorkflowExecutionCompleted,
        /// A child workflow failed.
        ChildWorkflowExecutionFailed,
        /// A child workflow was cancelled.
        ChildWorkflowExecutionCanceled,
        /// A child workflow timed out.
        ChildWorkflowExecutionTimedOut,
        /// A child workflow was terminated.
        ChildWorkflowExecutionTerminated,
        /// Cancellation of a child workflow was requested.
        RequestCancelChildWorkflowExecutionInitiated,
    ]
    LocalActivity => [
        /// A local activity was scheduled.
        LocalActivityScheduled,
        /// A local activity attempt started.
        LocalActivityStarted,
        /// A local activity completed.
        LocalActivityCompleted,
        /// A local activity failed.
        LocalActivityFailed,
        /// A local activity timed out.
        LocalActivityTimedOut,
        /// A local activity was cancelled.
        LocalActivityCanceled,
    ]
    SideEffect => [
        /// The result of a side effect was recorded.
        SideEffectRecorded,
    ]
    Update => [
        /// An update request was admitted.
        WorkflowUpdateAdmitted,
        /// An update was accepted by its validator.
        WorkflowUpdateAccepted,
        /// An update was rejected by its validator.
        WorkflowUpdateRejected,
        /// An update completed with its result.
        WorkflowUpdateCompleted,
        /// An update was aborted (the execution closed first).
        WorkflowUpdateAborted,
    ]
    SearchAttribute => [
        /// Search attributes were set or changed.
        UpsertSearchAttributes,
    ]
    Nexus => [
        /// A Nexus operation was scheduled.
        NexusOperationScheduled,
        /// A Nexus operation started.
        NexusOperationStarted,
        /// A Nexus operation completed.
        NexusOperationCompleted,
        /// A Nexus operation failed.
        NexusOperationFailed,
        /// A Nexus operation was cancelled.
        NexusOperationCanceled,
        /// A Nexus operation timed out.
        NexusOperationTimedOut,
        /// Cancellation of a Nexus operation was requested.
        NexusOperationCancelRequested,
    ]
}

impl EventType {
    /// True for a *decision*: an event the engine and the workflow's machine decide
    /// (scheduling activities and timers, recorded values, lifecycle changes,
    /// compensations), as opposed to an *input* from outside the workflow code (the
    /// start, activity results, fired timers, signals). Replay checks that the code
    /// decides again exactly the decisions in history; two runs of the same workflow
    /// on the same inputs record the same decisions.
    ///
    /// ```
    /// use saga_runtime::domain::EventType;
    /// assert!(EventType::ActivityTaskScheduled.is_decision());
    /// assert!(!EventType::ActivityTaskCompleted.is_decision());
    /// assert!(!EventType::SnapshotCreated.is_decision());
    /// ```
    pub fn is_decision(self) -> bool {
        matches!(
            self,
            EventType::ActivityTaskScheduled
                | EventType::ActivityTaskCanceled
                | EventType::TimerStarted
                | EventType::TimerCanceled
                | EventType::WorkflowExecutionCompleted
                | EventType::WorkflowExecutionFailed
                | EventType::WorkflowExecutionTimedOut
                | EventType::WorkflowExecutionCompensating
                | EventType::WorkflowExecutionCanceled
                | EventType::MarkerRecorded
                | EventType::SideEffectRecorded
                | EventType::LocalActivityScheduled
                | EventType::LocalActivityCanceled
                | EventType::StartChildWorkflowExecutionInitiated
                | EventType::RequestCancelChildWorkflowExecutionInitiated
        )
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a durable timer is for (manual section 10.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimerKind {
    /// Saga-level timeout.
    WorkflowTimeout,
    /// Per-activity start-to-close timeout.
    ActivityTimeout,
    /// A user delay (`ctx.sleep`).
    Sleep,
    /// The delay before the next attempt of a failed activity.
    RetryBackoff,
    /// The deadline of a signal wait (`ctx.signal(..).timeout(d)`).
    SignalTimeout,
    /// Cron-style scheduled start.
    Scheduled,
}

/// One entry of an execution's history, exactly as the manual's JSON (section 5.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// Position in the history: starts at 0, dense per saga.
    pub event_id: u64,
    /// The execution this event belongs to.
    pub saga_id: SagaId,
    /// What happened.
    pub event_type: EventType,
    /// The category of `event_type` (stored for querying).
    pub category: EventCategory,
    /// When it was recorded (UTC, millisecond precision).
    #[serde(with = "millis_rfc3339")]
    pub timestamp: DateTime<Utc>,
    /// The event's payload, always JSON so that histories stay readable with SQL
    /// (binary codecs carry it as JSON text).
    #[serde(with = "crate::codec::json_value")]
    pub attributes: serde_json::Value,
    /// Schema version of `attributes`.
    pub event_version: u32,
    /// A point from which the execution may be reset.
    pub is_reset_point: bool,
    /// The event belongs to a retry (a later attempt of an activity).
    pub is_retry: bool,
    /// The trace that caused the execution (carried from start through every event).
    pub trace_id: String,
}

/// The current attribute schema version.
pub const EVENT_VERSION: u32 = 1;

impl HistoryEvent {
    /// A new event; `event_id` is assigned when it is appended.
    pub fn new(
        saga_id: SagaId,
        event_id: u64,
        event_type: EventType,
        timestamp: DateTime<Utc>,
        attributes: serde_json::Value,
        trace_id: String,
    ) -> Self {
        HistoryEvent {
            event_id,
            saga_id,
            event_type,
            category: event_type.category(),
            timestamp,
            attributes,
            event_version: EVENT_VERSION,
            is_reset_point: false,
            is_retry: false,
            trace_id,
        }
    }

    /// An attribute as a string, if present.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(|v| v.as_str())
    }

    /// An attribute as an unsigned integer, if present.
    pub fn attr_u64(&self, key: &str) -> Option<u64> {
        self.attributes.get(key).and_then(|v| v.as_u64())
    }
}

/// Timestamps as `2024-01-15T10:30:00.000Z`.
mod millis_rfc3339 {
    use super::*;

    pub(super) fn serialize<S: serde::Serializer>(
        t: &DateTime<Utc>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_counts_match_the_manual() {
        let expected = [
            (EventCategory::Workflow, 7),
            (EventCategory::Activity, 6),
            (EventCategory::Timer, 3),
            (EventCategory::Signal, 1),
            (EventCategory::Marker, 1),
            (EventCategory::Snapshot, 1),
            (EventCategory::Command, 3),
            (EventCategory::ChildWorkflow, 9),
            (EventCategory::LocalActivity, 6),
            (EventCategory::SideEffect, 1),
            (EventCategory::Update, 5),
            (EventCategory::SearchAttribute, 1),
            (EventCategory::Nexus, 7),
        ];
        for (cat, n) in expected {
            let count = EventType::ALL
                .iter()
                .filter(|t| t.category() == cat)
                .count();
            assert_eq!(count, n, "{cat:?}");
        }
        assert_eq!(EventType::ALL.len(), 51);
    }

    #[test]
    fn every_codec_round_trips_an_event() {
        use crate::codec::{AnyCodec, Codec};
        let e = HistoryEvent::new(
            SagaId::new("s-1"),
            3,
            EventType::ActivityTaskCompleted,
            DateTime::parse_from_rfc3339("2024-01-15T10:30:00.123Z")
                .unwrap()
                .with_timezone(&Utc),
            serde_json::json!({"seq": 1, "output": {"ok": true}}),
            "t".into(),
        );
        for c in AnyCodec::ALL {
            let back: HistoryEvent = c.decode(&c.encode(&e).unwrap()).unwrap();
            assert_eq!(back, e, "{}", c.name());
        }
    }

    #[test]
    fn names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::from_name(t.name()), Some(*t));
        }
        assert_eq!(EventType::from_name("NoSuchEvent"), None);
    }

    #[test]
    fn json_matches_the_manuals_example() {
        let manual = serde_json::json!({
          "event_id": 15,
          "saga_id": "saga-123e4567-e89b-12d3-a456-426614174000",
          "event_type": "ActivityTaskCompleted",
          "category": "Activity",
          "timestamp": "2024-01-15T10:30:00.000Z",
          "attributes": {
            "activity_type": "ProcessPayment",
            "input": { "order_id": "order-456", "amount": 99.99 },
            "output": { "transaction_id": "txn-abc123" }
          },
          "event_version": 1,
          "is_reset_point": false,
          "is_retry": false,
          "trace_id": "span-abc123def456"
        });
        let event: HistoryEvent = serde_json::from_value(manual.clone()).unwrap();
        assert_eq!(event.event_type, EventType::ActivityTaskCompleted);
        assert_eq!(event.category, EventCategory::Activity);
        assert_eq!(serde_json::to_value(&event).unwrap(), manual);
    }
}
