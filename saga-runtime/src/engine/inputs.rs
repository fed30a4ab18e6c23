//! The events that reach an execution from outside its workers: a start, a signal, a
//! cancellation request. The engine and [`SagaClient`](crate::client::SagaClient)
//! build them here, so a client without the workflow code writes exactly what the
//! engine writes.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::execution::Execution;
use crate::domain::{EventType, HistoryEvent, SagaId};
use crate::port::{Task, TaskKind};

/// Wall time truncated to milliseconds, as the engine's clock stores it (replay
/// recomputes deadlines from stored timestamps and must agree).
pub(crate) fn now_ms() -> DateTime<Utc> {
    let t = Utc::now();
    t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
}

/// A trace id for a new execution: the start time and a hash of the id, unique enough
/// to correlate logs.
pub(crate) fn new_trace_id(saga_id: &SagaId, now: DateTime<Utc>) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    saga_id.hash(&mut h);
    now.timestamp_nanos_opt().unwrap_or_default().hash(&mut h);
    format!("trace-{:016x}", h.finish())
}

/// The attributes of `WorkflowExecutionStarted` (a child's start adds `parent`).
pub(crate) fn started_attributes(
    workflow_type: &str,
    fingerprint: &str,
    input: Value,
    timeout_ms: Option<u64>,
    task_queue: &str,
) -> Value {
    json!({
        "workflow_type": workflow_type,
        "fingerprint": fingerprint,
        "input": input,
        "timeout_ms": timeout_ms,
        "task_queue": task_queue,
    })
}

/// Event 0 of a new execution, as the engine's fold builds it.
pub(crate) fn started_event(
    saga_id: &SagaId,
    attributes: Value,
    trace_id: &str,
    at: DateTime<Utc>,
) -> HistoryEvent {
    let mut exec = Execution::new(saga_id.clone());
    exec.s.trace_id = trace_id.to_owned();
    exec.event(EventType::WorkflowExecutionStarted, attributes, false, at)
}

/// The attributes of `SignalReceived`.
pub(crate) fn signal_attributes(name: &str, payload: Value) -> Value {
    json!({"name": name, "payload": payload})
}

/// The attributes of `WorkflowExecutionCancelRequested` from an operator.
pub(crate) fn cancel_attributes() -> Value {
    json!({"reason": "cancelled"})
}

/// An input appended by a process that cannot fold it (it lacks the workflow's code):
/// the next event of a history whose last event is `last`, carrying its trace id.
pub(crate) fn outside_event(
    last: &HistoryEvent,
    event_type: EventType,
    attributes: Value,
    at: DateTime<Utc>,
) -> HistoryEvent {
    HistoryEvent::new(
        last.saga_id.clone(),
        last.event_id + 1,
        event_type,
        at,
        attributes,
        last.trace_id.clone(),
    )
}

/// The task queue an engine serves unless told otherwise.
pub(crate) const DEFAULT_QUEUE: &str = "default";

/// The workflow task that asks a worker to fold what an outside input appended, the
/// event `event_id`. Its dedup id is `<saga_id>:<event_id>`, like every task's: the
/// id of the event that caused it. (Not the history's next event id: that is the id
/// of the event the worker appends next, often an activity's scheduled event, whose
/// task carries the same dedup id, so the two would be taken for one task, in the
/// outbox and by the broker.)
pub(crate) fn workflow_task(saga_id: &SagaId, queue: &str, event_id: u64) -> Task {
    workflow_task_named(saga_id, queue, dedup_id(saga_id, event_id))
}

/// A workflow task with the dedup id `dedup_id`.
pub(crate) fn workflow_task_named(saga_id: &SagaId, queue: &str, dedup_id: String) -> Task {
    Task {
        kind: TaskKind::Workflow,
        saga_id: saga_id.clone(),
        queue: queue.to_owned(),
        dedup_id,
        payload: Vec::new(),
    }
}

/// The dedup id of the task caused by event `event_id` (`Nats-Msg-Id`, outbox key).
pub(crate) fn dedup_id(saga_id: &SagaId, event_id: u64) -> String {
    format!("{saga_id}:{event_id}")
}

/// The dedup id of a parent's workflow task that the outbox holds until the start of
/// its child `seq` is recorded: due, it re-drives the start.
pub(crate) fn child_start_id(parent: &SagaId, seq: u64) -> String {
    format!("{parent}:{seq}:child")
}

/// The dedup id of a child's task, written by its parent's commit that gives up on it,
/// that the outbox holds until the child's cancellation is recorded.
pub(crate) fn cancel_child_id(child: &SagaId) -> String {
    format!("{child}:cancel")
}

/// What a workflow task with a payload re-drives instead of a fold: an effect of
/// another execution's commit on this one, which the worker that committed it may
/// have died before carrying out. (A plain workflow task has no payload.)
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "redrive", rename_all = "snake_case")]
pub(crate) enum Redrive {
    /// Record a cancellation request: the parent gave up on this child.
    Cancel,
}

impl Redrive {
    /// The task that re-drives `self` on `saga_id`.
    pub(crate) fn task(&self, saga_id: &SagaId, queue: &str, dedup_id: String) -> Task {
        let mut task = workflow_task_named(saga_id, queue, dedup_id);
        task.payload = serde_json::to_vec(self).expect("a unit variant encodes");
        task
    }
}

/// The dedup id of the workflow task that start-time recovery publishes for an open
/// execution at `version`. Caused by no event: its own kind of id, so that it is never
/// taken for the task of the history's last or next event, yet the same for every
/// engine recovering at once.
pub(crate) fn recovery_id(saga_id: &SagaId, version: u64) -> String {
    format!("{saga_id}:{version}:recover")
}

/// Whether `dedup_id` is a [`recovery_id`].
pub(crate) fn is_recovery_id(dedup_id: &str) -> bool {
    dedup_id.ends_with(":recover")
}

/// The dedup id of a closed child's workflow task that the outbox holds until its
/// parent has its outcome: due, it re-drives the news.
pub(crate) fn notify_parent_id(child: &SagaId) -> String {
    format!("{child}:parent")
}
