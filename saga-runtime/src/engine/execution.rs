//! The execution fold: history in, state and owed events out. Sans-IO.
//!
//! Events are of two sorts:
//! - *inputs*, facts from outside the workflow code: the start, activity results,
//!   fired timers, signals, cancellation requests;
//! - *decisions*, what the engine and the workflow's machine decide in response:
//!   scheduling activities and timers, lifecycle changes, compensations.
//!
//! Folding an input may owe decisions (queued in `decisions`). Folding a recorded
//! decision must match the head of that queue exactly, otherwise the code no longer
//! reproduces the history and the fold fails with a `Replay` error naming both sides.
//! Live processing and replay are the same fold: live, the owed decisions are turned
//! into new events and folded at once; on replay, they are met by recorded ones.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::machine::{ErasedWorkflow, Machine, Step};
use super::ExecutionDescription;
use crate::activity::{ActivityError, ActivityRegistry, RetryPolicy};
use crate::codec::{AnyCodec, Codec};
use crate::domain::{
    CompensationTracker, Error, ErrorKind, EventType, HistoryEvent, Result, SagaId, TimerKind,
    WorkflowStatus,
};
use crate::workflow::{ChildError, Command, RecordedValue, Wake, WorkflowContext};

/// What the fold needs from the engine: the workflow's code and the activity registry.
pub(crate) struct Env<'a> {
    /// The workflow's code; `None` when observing a history without it
    /// ([`Execution::observe`]): recorded decisions are then taken as they are.
    pub(crate) workflow: Option<&'a dyn ErasedWorkflow>,
    pub(crate) activities: &'a ActivityRegistry,
}

/// An event the fold owes to history.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    pub(crate) event_type: EventType,
    pub(crate) attributes: Value,
    pub(crate) is_retry: bool,
    /// For a scheduled activity, the typed state its event folds into: live, the fold
    /// takes it as is instead of parsing it back out of `attributes`.
    pub(crate) scheduled: Option<Box<PendingActivity>>,
}

/// An activity attempt scheduled and not yet finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PendingActivity {
    pub(crate) seq: u64,
    pub(crate) slot: u32,
    pub(crate) activity_type: String,
    pub(crate) input: Value,
    pub(crate) attempt: u32,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) compensates: Option<u64>,
    /// The task queue its attempts go to ([`ActivityOptions::task_queue`]); `None`: the
    /// execution's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) task_queue: Option<String>,
    /// The attempt failed and waits for its backoff timer: no result is accepted
    /// until the next attempt is scheduled.
    #[serde(default)]
    pub(crate) backing_off: bool,
    /// A local activity: run by the worker that recorded it, not through the queue.
    #[serde(default)]
    pub(crate) local: bool,
    /// The id of the attempt's `ActivityTaskScheduled` event: its task's dedup id
    /// (`<saga_id>:<event_id>`) when recovery publishes the task again.
    #[serde(default)]
    pub(crate) scheduled_event_id: u64,
    /// The workflow was cancelled or failed while this compensable attempt was out:
    /// it may be running on a worker, so its outcome is awaited (no retry, no wake)
    /// to learn whether its effect needs undoing before compensation begins.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) draining: bool,
}

/// How an execution whose workflow was cancelled, failed or timed out ends once the
/// compensable attempts still out ([`PendingActivity::draining`]) have reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Ending {
    /// Cancelled: compensate what completed, or close as Cancelled if nothing did.
    Cancel { reason: String },
    /// This lifecycle decision (`WorkflowExecutionFailed` or `...TimedOut`).
    Decide {
        event_type: EventType,
        attributes: Value,
    },
}

/// A child workflow started by this execution and not yet closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PendingChild {
    pub(crate) seq: u64,
    pub(crate) slot: u32,
    pub(crate) child_id: SagaId,
    pub(crate) workflow_type: String,
    pub(crate) input: Value,
    /// `ChildWorkflowExecutionStarted` was recorded.
    pub(crate) started: bool,
}

/// A durable timer started and not yet fired or cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PendingTimer {
    pub(crate) timer_id: String,
    pub(crate) kind: TimerKind,
    pub(crate) seq: Option<u64>,
    pub(crate) slot: u32,
    pub(crate) fire_at: DateTime<Utc>,
}

/// The machine waits for a signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SignalWait {
    pub(crate) seq: u64,
    pub(crate) slot: u32,
    pub(crate) name: String,
    pub(crate) timer_id: Option<String>,
}

/// The serializable part of an execution (everything but the machine).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ExecState {
    pub(crate) saga_id: SagaId,
    pub(crate) workflow_type: String,
    pub(crate) fingerprint: String,
    pub(crate) trace_id: String,
    /// Where its tasks go (`WorkflowExecutionStarted.task_queue`); empty for a history
    /// that predates the attribute: the engine's own queue.
    #[serde(default)]
    pub(crate) task_queue: String,
    /// Where its close is sent besides its subscribers
    /// (`WorkflowExecutionStarted.result_inbox`: the inbox of the engine that started
    /// it and awaits it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) result_inbox: Option<String>,
    pub(crate) status: Option<WorkflowStatus>,
    /// Events folded so far (the next event id).
    pub(crate) version: u64,
    pub(crate) next_seq: u64,
    pub(crate) activities: BTreeMap<u64, PendingActivity>,
    pub(crate) timers: BTreeMap<String, PendingTimer>,
    pub(crate) waits: Vec<SignalWait>,
    pub(crate) buffered_signals: VecDeque<(String, Value)>,
    pub(crate) tracker: CompensationTracker,
    pub(crate) failure: Option<String>,
    pub(crate) output: Option<Value>,
    /// Time of the last input: what `ctx.now()` returns and deadlines start from.
    pub(crate) now: DateTime<Utc>,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) closed_at: Option<DateTime<Utc>>,
    pub(crate) last_snapshot_version: u64,
    pub(crate) workflow_task_failure: Option<String>,
    #[serde(default)]
    pub(crate) children: BTreeMap<u64, PendingChild>,
    /// The parent execution and its command seq, for a child workflow.
    #[serde(default)]
    pub(crate) parent: Option<(SagaId, u64)>,
    /// Set while the workflow's end waits for draining attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ending: Option<Ending>,
}

/// One execution being folded.
pub(crate) struct Execution {
    pub(crate) s: ExecState,
    machine: Option<Box<dyn Machine>>,
    decisions: VecDeque<Decision>,
    /// Values recorded in the history still to be folded, handed back to the
    /// machine's recorded calls in order (replay of `now`/`random`/`uuid`/`side_effect`).
    replay_records: VecDeque<RecordedValue>,
}

/// How a snapshot body is laid out: the execution as JSON text, the machine in the
/// engine's codec (text for JSON so it stays readable).
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    exec: String,
    machine: Option<MachineBytes>,
}

#[derive(Serialize, Deserialize)]
enum MachineBytes {
    Text(String),
    Binary(Vec<u8>),
}

fn replay_error(saga_id: &SagaId, message: String) -> Error {
    Error::new(ErrorKind::Replay, message).with("saga_id", saga_id)
}

/// Attributes that describe policy rather than identity: changing a retry policy or
/// an activity's task queue in code must not make old histories unreplayable (the
/// recorded values stay in force for what they scheduled).
const POLICY_KEYS: [&str; 5] = [
    "max_attempts",
    "retry",
    "timeout_ms",
    "compensation",
    "task_queue",
];

fn same_decision(decided: &Decision, recorded: &HistoryEvent) -> bool {
    if decided.event_type != recorded.event_type || decided.is_retry != recorded.is_retry {
        return false;
    }
    if decided.event_type == EventType::ActivityTaskScheduled {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                for k in POLICY_KEYS {
                    o.remove(k);
                }
            }
            v
        };
        strip(&decided.attributes) == strip(&recorded.attributes)
    } else {
        decided.attributes == recorded.attributes
    }
}

/// The recorded value an event carries, if it is a record of a synchronous call.
pub(crate) fn recorded_value(e: &HistoryEvent) -> Option<RecordedValue> {
    matches!(
        e.event_type,
        EventType::MarkerRecorded | EventType::SideEffectRecorded
    )
    .then(|| RecordedValue {
        kind: e.attr_str("kind").unwrap_or_default().to_owned(),
        value: e.attributes.get("value").cloned().unwrap_or(Value::Null),
    })
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

fn plus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn attr<T: serde::de::DeserializeOwned>(e: &HistoryEvent, key: &str) -> Result<T> {
    // Deserialized straight from the borrowed tree: no clone of the attribute.
    let v = e.attributes.get(key).unwrap_or(&Value::Null);
    T::deserialize(v).map_err(|err| {
        Error::new(
            ErrorKind::Codec,
            format!(
                "event {} ({}) has a malformed `{key}`: {err}",
                e.event_id, e.event_type
            ),
        )
        .with("saga_id", &e.saga_id)
        .with("event_id", e.event_id)
    })
}

impl Execution {
    /// A new, empty execution (before its `WorkflowExecutionStarted`).
    pub(crate) fn new(saga_id: SagaId) -> Self {
        Execution {
            s: ExecState {
                saga_id,
                workflow_type: String::new(),
                fingerprint: String::new(),
                trace_id: String::new(),
                task_queue: String::new(),
                result_inbox: None,
                status: None,
                version: 0,
                next_seq: 0,
                activities: BTreeMap::new(),
                timers: BTreeMap::new(),
                waits: Vec::new(),
                buffered_signals: VecDeque::new(),
                tracker: CompensationTracker::new(),
                failure: None,
                output: None,
                now: DateTime::<Utc>::UNIX_EPOCH,
                started_at: None,
                closed_at: None,
                last_snapshot_version: 0,
                workflow_task_failure: None,
                children: BTreeMap::new(),
                parent: None,
                ending: None,
            },
            machine: None,
            decisions: VecDeque::new(),
            replay_records: VecDeque::new(),
        }
    }

    pub(crate) fn version(&self) -> u64 {
        self.s.version
    }

    pub(crate) fn status(&self) -> Option<WorkflowStatus> {
        self.s.status
    }

    /// True once nothing more will happen: completed, cancelled, or failed with nothing
    /// left to compensate.
    pub(crate) fn is_closed(&self) -> bool {
        self.s.closed_at.is_some()
    }

    /// Accepts new inputs (signals, cancellation): started and not closed.
    pub(crate) fn is_open(&self) -> bool {
        self.s.status.is_some() && !self.is_closed()
    }

    /// Folds a recorded history without the workflow's code: status, pending work and
    /// compensations as the engine's fold has them, but no machine, so no checkpoint
    /// (it reads `Finished`) and no signal waits without a timeout (they leave no
    /// event). Used by tools that hold no workflow code, and by an engine recording an
    /// input on an execution whose code it lacks (`Inner::record_observed_if`).
    pub(crate) fn observe(saga_id: &SagaId, events: &[HistoryEvent]) -> Result<Self> {
        let first = events
            .first()
            .ok_or_else(|| Error::not_found(saga_id.as_str()))?;
        if first.event_type != EventType::WorkflowExecutionStarted {
            return Err(replay_error(
                saga_id,
                format!(
                    "history starts with {} instead of WorkflowExecutionStarted",
                    first.event_type
                ),
            ));
        }
        let activities = ActivityRegistry::new();
        let env = Env {
            workflow: None,
            activities: &activities,
        };
        let mut exec = Execution::new(saga_id.clone());
        for e in events {
            exec.apply(&env, e)?;
        }
        // With the code, the machine goes to Paused when its workflow task ends waiting.
        // A task ends with what it decided (or its snapshot); a history that ends with
        // an input still owes a worker the task that folds it.
        let last = events.last().map(|e| e.event_type);
        if exec.s.status == Some(WorkflowStatus::Running)
            && last.is_some_and(|t| t.is_decision() || t == EventType::SnapshotCreated)
        {
            exec.s.status = Some(WorkflowStatus::Paused);
        }
        Ok(exec)
    }

    /// What `describe` reports.
    pub(crate) fn description(&self) -> ExecutionDescription {
        let s = &self.s;
        ExecutionDescription {
            saga_id: s.saga_id.clone(),
            workflow_type: s.workflow_type.clone(),
            fingerprint: s.fingerprint.clone(),
            status: self.status().unwrap_or(WorkflowStatus::Running),
            checkpoint: self.checkpoint(),
            history_length: self.version(),
            started_at: s.started_at,
            closed_at: s.closed_at,
            pending_activities: s
                .activities
                .values()
                .map(|a| (a.activity_type.clone(), a.attempt))
                .collect(),
            pending_timers: s.timers.keys().cloned().collect(),
            waiting_for_signals: s.waits.iter().map(|w| w.name.clone()).collect(),
            pending_children: s
                .children
                .values()
                .map(|c| c.child_id.to_string())
                .collect(),
            compensations_done: s
                .tracker
                .compensated_steps()
                .iter()
                .map(|st| st.compensation_activity_type.clone())
                .collect(),
            compensations_pending: if self.status() == Some(WorkflowStatus::Compensating) {
                s.tracker
                    .get_compensation_actions()
                    .iter()
                    .map(|a| a.compensation_type.clone())
                    .collect()
            } else {
                Vec::new()
            },
            failure: s.failure.clone(),
            output: s.output.clone(),
            workflow_task_failure: s.workflow_task_failure.clone(),
            trace_id: s.trace_id.clone(),
        }
    }

    pub(crate) fn checkpoint(&self) -> String {
        match &self.machine {
            Some(m) => m.checkpoint(),
            // The machine has ended; the execution waits for draining attempts.
            None if self.s.ending.is_some() => "Ending".to_owned(),
            None => "Finished".to_owned(),
        }
    }

    /// Replay: the recorded values among `events` (about to be folded), in order.
    pub(crate) fn expect_records(&mut self, events: &[HistoryEvent]) {
        self.replay_records
            .extend(events.iter().filter_map(recorded_value));
    }

    pub(crate) fn owes_decisions(&self) -> bool {
        !self.decisions.is_empty()
    }

    /// Encodes a snapshot body.
    pub(crate) fn encode(&self, codec: AnyCodec) -> Result<Vec<u8>> {
        let exec = serde_json::to_string(&self.s)?;
        let machine = match &self.machine {
            None => None,
            Some(m) => {
                let bytes = m.encode(codec)?;
                Some(match codec {
                    AnyCodec::Json => MachineBytes::Text(
                        String::from_utf8(bytes).map_err(|e| Error::codec(e.to_string()))?,
                    ),
                    _ => MachineBytes::Binary(bytes),
                })
            }
        };
        codec.encode(&SnapshotBody { exec, machine })
    }

    /// Restores an execution from a snapshot body; `workflow` finds the code for the
    /// recorded workflow type.
    pub(crate) fn decode<'w>(
        codec: AnyCodec,
        bytes: &[u8],
        workflow: impl FnOnce(&str) -> Result<&'w dyn ErasedWorkflow>,
    ) -> Result<Self> {
        let body: SnapshotBody = codec.decode(bytes)?;
        let s: ExecState = serde_json::from_str(&body.exec)?;
        let wf = workflow(&s.workflow_type)?;
        if wf.fingerprint() != s.fingerprint {
            return Err(replay_error(
                &s.saga_id,
                format!(
                    "workflow `{}` changed: the execution started with fingerprint {} but this worker has {}",
                    s.workflow_type,
                    s.fingerprint,
                    wf.fingerprint()
                ),
            ));
        }
        let machine = match body.machine {
            None => None,
            Some(MachineBytes::Text(t)) => Some(wf.restore(codec, t.as_bytes())?),
            Some(MachineBytes::Binary(b)) => Some(wf.restore(codec, &b)?),
        };
        Ok(Execution {
            s,
            machine,
            decisions: VecDeque::new(),
            replay_records: VecDeque::new(),
        })
    }

    /// Builds the event for `event_type` at the next id.
    pub(crate) fn event(
        &self,
        event_type: EventType,
        attributes: Value,
        is_retry: bool,
        at: DateTime<Utc>,
    ) -> HistoryEvent {
        let mut e = HistoryEvent::new(
            self.s.saga_id.clone(),
            self.s.version,
            event_type,
            at,
            attributes,
            self.s.trace_id.clone(),
        );
        e.is_retry = is_retry;
        e.is_reset_point = event_type == EventType::WorkflowExecutionStarted;
        e
    }

    /// Live: folds a new input and every decision it owes; returns the new events in
    /// history order.
    pub(crate) fn record(
        &mut self,
        env: &Env<'_>,
        input: HistoryEvent,
        out: &mut Vec<HistoryEvent>,
    ) -> Result<()> {
        let at = input.timestamp;
        self.apply(env, &input)?;
        out.push(input);
        self.drain(env, at, out)
    }

    /// Live: turns owed decisions into events.
    pub(crate) fn drain(
        &mut self,
        env: &Env<'_>,
        at: DateTime<Utc>,
        out: &mut Vec<HistoryEvent>,
    ) -> Result<()> {
        // Live, the event is made from the decision itself: no need to compare the two
        // as replay does.
        while let Some(d) = self.decisions.pop_front() {
            let e = self.event(d.event_type, d.attributes, d.is_retry, at);
            self.s.version += 1;
            match d.scheduled {
                Some(mut pa) => {
                    // What `apply_decision` does for this event, without re-parsing it.
                    self.s.tracker.track_step(&e);
                    self.s.next_seq = self.s.next_seq.max(pa.seq + 1);
                    pa.scheduled_event_id = e.event_id;
                    self.s.activities.insert(pa.seq, *pa);
                }
                None => self.apply_decision(env, &e)?,
            }
            out.push(e);
        }
        Ok(())
    }

    /// Folds one event (recorded or new).
    pub(crate) fn apply(&mut self, env: &Env<'_>, e: &HistoryEvent) -> Result<()> {
        if e.event_id != self.s.version {
            return Err(replay_error(
                &self.s.saga_id,
                format!(
                    "event {} follows version {}: the history has a gap",
                    e.event_id, self.s.version
                ),
            ));
        }
        if e.event_type.is_decision() && env.workflow.is_none() {
            // Observing without the code: the recorded decision is the truth, and what
            // the inputs before it owed is settled by it.
            self.decisions.clear();
            self.s.version += 1;
            self.apply_decision(env, e)
        } else if e.event_type == EventType::ActivityTaskCanceled && self.draining(e) {
            // A history from before the end waited for draining attempts: that engine
            // cancelled the attempt outright. Taken as recorded, so that what it wrote
            // still replays; the ending follows as it did then.
            self.s.version += 1;
            self.s.activities.remove(&attr::<u64>(e, "seq")?);
            self.drained();
            Ok(())
        } else if e.event_type.is_decision() {
            let expected = self.decisions.pop_front().ok_or_else(|| {
                replay_error(
                    &self.s.saga_id,
                    format!(
                        "at checkpoint `{}` history records {} {} but the workflow code issued nothing",
                        self.checkpoint(),
                        e.event_type,
                        e.attributes
                    ),
                )
                .with("event_id", e.event_id)
            })?;
            if !same_decision(&expected, e) {
                return Err(replay_error(
                    &self.s.saga_id,
                    format!(
                        "at checkpoint `{}` history records {} {} but the workflow code issued {} {}",
                        self.checkpoint(),
                        e.event_type,
                        e.attributes,
                        expected.event_type,
                        expected.attributes
                    ),
                )
                .with("event_id", e.event_id));
            }
            self.s.version += 1;
            self.apply_decision(env, e)
        } else {
            self.s.version += 1;
            self.apply_input(env, e)
        }
    }

    fn decide(&mut self, event_type: EventType, attributes: Value) {
        self.decisions.push_back(Decision {
            event_type,
            attributes,
            is_retry: false,
            scheduled: None,
        });
    }

    /// Decides `ActivityTaskScheduled` for attempt `pa.attempt` of `pa`.
    fn decide_schedule(
        &mut self,
        pa: PendingActivity,
        compensation: Option<&str>,
        retry_of: Option<u32>,
    ) {
        let mut attributes = scheduled_attrs(&pa);
        if let Some(c) = compensation {
            attributes["compensation"] = json!(c);
        }
        if let Some(previous) = retry_of {
            attributes["retry_of"] = json!(previous);
        }
        self.decisions.push_back(Decision {
            event_type: EventType::ActivityTaskScheduled,
            attributes,
            is_retry: retry_of.is_some(),
            scheduled: Some(Box::new(pa)),
        });
    }

    fn transition(&mut self, to: WorkflowStatus) -> Result<()> {
        match &mut self.s.status {
            Some(s) => s
                .transition(to)
                .map_err(|e| e.with("saga_id", &self.s.saga_id)),
            None => Err(Error::new(
                ErrorKind::WorkflowExecution,
                "execution has not started",
            )),
        }
    }

    fn apply_input(&mut self, env: &Env<'_>, e: &HistoryEvent) -> Result<()> {
        self.s.tracker.track_step(e);
        match e.event_type {
            EventType::WorkflowExecutionStarted => {
                self.s.now = e.timestamp;
                self.s.workflow_type = attr(e, "workflow_type")?;
                self.s.fingerprint = attr(e, "fingerprint")?;
                self.s.trace_id = e.trace_id.clone();
                self.s.task_queue = e.attr_str("task_queue").unwrap_or_default().to_owned();
                self.s.result_inbox = e.attr_str("result_inbox").map(str::to_owned);
                self.s.started_at = Some(e.timestamp);
                self.s.parent = e.attributes.get("parent").and_then(|p| {
                    Some((
                        SagaId::new(p.get("saga_id")?.as_str()?),
                        p.get("seq")?.as_u64()?,
                    ))
                });
                if let Some(wf) = env
                    .workflow
                    .filter(|wf| wf.fingerprint() != self.s.fingerprint)
                {
                    return Err(replay_error(
                        &self.s.saga_id,
                        format!(
                            "workflow `{}` changed: the execution started with fingerprint {} but this worker has {}",
                            self.s.workflow_type,
                            self.s.fingerprint,
                            wf.fingerprint()
                        ),
                    )
                    .with("recorded_fingerprint", &self.s.fingerprint)
                    .with("worker_fingerprint", wf.fingerprint()));
                }
                self.s.status = Some(WorkflowStatus::Running);
                if let Some(wf) = env.workflow {
                    let input: Value = e.attributes.get("input").cloned().unwrap_or(Value::Null);
                    self.machine = Some(wf.start(&input)?);
                }
                if let Some(ms) = e.attr_u64("timeout_ms") {
                    let timer_id = format!("{}/workflow-timeout", self.s.saga_id);
                    self.decide(
                        EventType::TimerStarted,
                        json!({"timer_id": timer_id, "kind": TimerKind::WorkflowTimeout, "slot": 0,
                               "duration_ms": ms, "fire_at": plus(e.timestamp, Duration::from_millis(ms))}),
                    );
                }
                self.wake(env, Wake::Start)
            }
            EventType::ActivityTaskStarted => Ok(()),
            EventType::ActivityTaskCompleted => {
                self.s.now = e.timestamp;
                let Some(pa) = self.take_attempt(e) else {
                    return Ok(());
                };
                let output = e.attributes.get("output").cloned().unwrap_or(Value::Null);
                if pa.draining {
                    // The tracker took the completed step: compensation will undo it.
                    self.drained();
                    Ok(())
                } else if pa.compensates.is_some() {
                    self.next_compensation(env)
                } else if self.machine_waits() {
                    self.wake(
                        env,
                        Wake::Activity {
                            slot: pa.slot,
                            result: Ok(output),
                        },
                    )
                } else {
                    Ok(())
                }
            }
            EventType::ActivityTaskFailed | EventType::ActivityTaskTimedOut => {
                self.s.now = e.timestamp;
                let seq: u64 = attr(e, "seq")?;
                let attempt: u32 = attr(e, "attempt")?;
                if !self.accepts_result(seq, attempt) {
                    return Ok(());
                }
                let Some(pa) = self.s.activities.get(&seq).cloned() else {
                    return Ok(());
                };
                if pa.draining {
                    // No effect to undo, and the workflow wants no retry.
                    self.s.activities.remove(&seq);
                    self.drained();
                    return Ok(());
                }
                let error: ActivityError = if e.event_type == EventType::ActivityTaskTimedOut {
                    ActivityError::timeout(Duration::from_millis(pa.timeout_ms.unwrap_or(0)))
                } else {
                    attr(e, "error")?
                };
                if pa.retry.should_retry(attempt, &error) {
                    if let Some(p) = self.s.activities.get_mut(&seq) {
                        p.backing_off = true;
                    }
                    let delay = pa.retry.delay_before(attempt + 1);
                    let timer_id = format!("{}/retry/{seq}/{}", self.s.saga_id, attempt + 1);
                    self.decide(
                        EventType::TimerStarted,
                        json!({"timer_id": timer_id, "kind": TimerKind::RetryBackoff, "seq": seq, "slot": pa.slot,
                               "attempt": attempt + 1, "duration_ms": millis(delay), "fire_at": plus(e.timestamp, delay)}),
                    );
                    return Ok(());
                }
                self.s.activities.remove(&seq);
                if pa.compensates.is_some() {
                    let reason = format!(
                        "compensation `{}` failed after {attempt} attempt(s): {}",
                        pa.activity_type, error.message
                    );
                    self.decide(
                        EventType::WorkflowExecutionFailed,
                        json!({"phase": "compensation", "reason": reason, "step_seq": pa.compensates}),
                    );
                    Ok(())
                } else if self.machine_waits() {
                    self.wake(
                        env,
                        Wake::Activity {
                            slot: pa.slot,
                            result: Err(error),
                        },
                    )
                } else {
                    Ok(())
                }
            }
            EventType::TimerFired => {
                self.s.now = e.timestamp;
                let timer_id: String = attr(e, "timer_id")?;
                let Some(t) = self.s.timers.remove(&timer_id) else {
                    return Ok(());
                };
                match t.kind {
                    TimerKind::Sleep if self.machine_waits() => {
                        self.wake(env, Wake::Timer { slot: t.slot })
                    }
                    TimerKind::RetryBackoff => {
                        let Some(seq) = t.seq else { return Ok(()) };
                        let Some(pa) = self.s.activities.get(&seq).cloned() else {
                            return Ok(());
                        };
                        let previous = pa.attempt;
                        let next = PendingActivity {
                            attempt: previous + 1,
                            backing_off: false,
                            ..pa
                        };
                        self.decide_schedule(next, None, Some(previous));
                        Ok(())
                    }
                    TimerKind::SignalTimeout => {
                        let Some(pos) = self
                            .s
                            .waits
                            .iter()
                            .position(|w| w.timer_id.as_deref() == Some(&timer_id))
                        else {
                            return Ok(());
                        };
                        let w = self.s.waits.remove(pos);
                        self.wake(
                            env,
                            Wake::Signal {
                                slot: w.slot,
                                name: w.name,
                                payload: None,
                            },
                        )
                    }
                    TimerKind::WorkflowTimeout if self.machine_waits() => {
                        self.abort(Ending::Decide {
                            event_type: EventType::WorkflowExecutionTimedOut,
                            attributes: json!({"reason": "workflow timed out"}),
                        })
                    }
                    _ => Ok(()),
                }
            }
            EventType::SignalReceived => {
                self.s.now = e.timestamp;
                let name: String = attr(e, "name")?;
                let payload = e.attributes.get("payload").cloned().unwrap_or(Value::Null);
                if !self.machine_waits() && self.s.status != Some(WorkflowStatus::Running) {
                    return Ok(()); // compensating or closed: nobody will read it
                }
                match self.s.waits.iter().position(|w| w.name == name) {
                    Some(pos) => {
                        let w = self.s.waits.remove(pos);
                        if let Some(timer_id) = &w.timer_id {
                            self.decide(EventType::TimerCanceled, json!({"timer_id": timer_id}));
                        }
                        self.wake(
                            env,
                            Wake::Signal {
                                slot: w.slot,
                                name,
                                payload: Some(payload),
                            },
                        )
                    }
                    None => {
                        self.s.buffered_signals.push_back((name, payload));
                        Ok(())
                    }
                }
            }
            EventType::WorkflowExecutionCancelRequested => {
                self.s.now = e.timestamp;
                if self.machine_waits() {
                    let reason = e.attr_str("reason").unwrap_or("cancelled").to_owned();
                    return self.abort(Ending::Cancel { reason });
                }
                Ok(())
            }
            EventType::LocalActivityStarted => Ok(()),
            EventType::LocalActivityCompleted
            | EventType::LocalActivityFailed
            | EventType::LocalActivityTimedOut => {
                self.s.now = e.timestamp;
                let seq: u64 = attr(e, "seq")?;
                if !self.s.activities.get(&seq).is_some_and(|p| p.local) {
                    return Ok(());
                }
                let Some(pa) = self.s.activities.remove(&seq) else {
                    return Ok(());
                };
                let result = match e.event_type {
                    EventType::LocalActivityCompleted => {
                        Ok(e.attributes.get("output").cloned().unwrap_or(Value::Null))
                    }
                    EventType::LocalActivityTimedOut => Err(ActivityError::timeout(
                        Duration::from_millis(pa.timeout_ms.unwrap_or(0)),
                    )),
                    _ => Err(attr(e, "error")?),
                };
                if self.machine_waits() {
                    self.wake(
                        env,
                        Wake::Activity {
                            slot: pa.slot,
                            result,
                        },
                    )
                } else {
                    Ok(())
                }
            }
            EventType::ChildWorkflowExecutionStarted => {
                let seq: u64 = attr(e, "seq")?;
                if let Some(c) = self.s.children.get_mut(&seq) {
                    c.started = true;
                }
                Ok(())
            }
            EventType::StartChildWorkflowExecutionFailed
            | EventType::ChildWorkflowExecutionCompleted
            | EventType::ChildWorkflowExecutionFailed
            | EventType::ChildWorkflowExecutionCanceled
            | EventType::ChildWorkflowExecutionTimedOut => {
                self.s.now = e.timestamp;
                let seq: u64 = attr(e, "seq")?;
                let Some(child) = self.s.children.remove(&seq) else {
                    return Ok(());
                };
                let result = if e.event_type == EventType::ChildWorkflowExecutionCompleted {
                    Ok(e.attributes.get("output").cloned().unwrap_or(Value::Null))
                } else {
                    Err(ChildError {
                        child_id: child.child_id.to_string(),
                        status: e.attr_str("status").unwrap_or("Failed").to_owned(),
                        message: e.attr_str("reason").unwrap_or("failed").to_owned(),
                    })
                };
                if self.machine_waits() {
                    self.wake(
                        env,
                        Wake::Child {
                            slot: child.slot,
                            result,
                        },
                    )
                } else {
                    Ok(())
                }
            }
            EventType::SnapshotCreated => {
                self.s.last_snapshot_version = self.s.version;
                Ok(())
            }
            EventType::WorkflowTaskFailed => {
                self.s.workflow_task_failure = e.attr_str("error").map(str::to_owned);
                Ok(())
            }
            other => Err(Error::new(
                ErrorKind::Validation,
                format!("event type {other} is not produced by this engine version"),
            )
            .with("saga_id", &self.s.saga_id)
            .with("event_id", e.event_id)),
        }
    }

    fn apply_decision(&mut self, env: &Env<'_>, e: &HistoryEvent) -> Result<()> {
        self.s.tracker.track_step(e);
        match e.event_type {
            EventType::ActivityTaskScheduled => {
                let pa = PendingActivity {
                    seq: attr(e, "seq")?,
                    slot: attr(e, "slot")?,
                    activity_type: attr(e, "activity_type")?,
                    input: e.attributes.get("input").cloned().unwrap_or(Value::Null),
                    attempt: attr(e, "attempt")?,
                    retry: attr(e, "retry")?,
                    timeout_ms: attr(e, "timeout_ms")?,
                    compensates: attr(e, "compensates")?,
                    task_queue: attr(e, "task_queue")?,
                    backing_off: false,
                    local: false,
                    scheduled_event_id: e.event_id,
                    draining: false,
                };
                self.s.next_seq = self.s.next_seq.max(pa.seq + 1);
                self.s.activities.insert(pa.seq, pa);
                Ok(())
            }
            EventType::ActivityTaskCanceled | EventType::LocalActivityCanceled => {
                let seq: u64 = attr(e, "seq")?;
                self.s.activities.remove(&seq);
                Ok(())
            }
            EventType::LocalActivityScheduled => {
                let pa = PendingActivity {
                    seq: attr(e, "seq")?,
                    slot: attr(e, "slot")?,
                    activity_type: attr(e, "activity_type")?,
                    input: e.attributes.get("input").cloned().unwrap_or(Value::Null),
                    attempt: 1,
                    retry: attr(e, "retry")?,
                    timeout_ms: attr(e, "timeout_ms")?,
                    compensates: None,
                    task_queue: None,
                    backing_off: false,
                    local: true,
                    scheduled_event_id: e.event_id,
                    draining: false,
                };
                self.s.next_seq = self.s.next_seq.max(pa.seq + 1);
                self.s.activities.insert(pa.seq, pa);
                Ok(())
            }
            EventType::StartChildWorkflowExecutionInitiated => {
                let c = PendingChild {
                    seq: attr(e, "seq")?,
                    slot: attr(e, "slot")?,
                    child_id: SagaId::new(attr::<String>(e, "child_id")?),
                    workflow_type: attr(e, "workflow_type")?,
                    input: e.attributes.get("input").cloned().unwrap_or(Value::Null),
                    started: false,
                };
                self.s.next_seq = self.s.next_seq.max(c.seq + 1);
                self.s.children.insert(c.seq, c);
                Ok(())
            }
            EventType::RequestCancelChildWorkflowExecutionInitiated => {
                let seq: u64 = attr(e, "seq")?;
                self.s.children.remove(&seq);
                Ok(())
            }
            EventType::MarkerRecorded | EventType::SideEffectRecorded => Ok(()),
            EventType::TimerStarted => {
                let t = PendingTimer {
                    timer_id: attr(e, "timer_id")?,
                    kind: attr(e, "kind")?,
                    seq: attr(e, "seq")?,
                    slot: attr(e, "slot")?,
                    fire_at: attr(e, "fire_at")?,
                };
                self.s.timers.insert(t.timer_id.clone(), t);
                Ok(())
            }
            EventType::TimerCanceled => {
                let timer_id: String = attr(e, "timer_id")?;
                self.s.timers.remove(&timer_id);
                Ok(())
            }
            EventType::WorkflowExecutionCompleted => {
                self.transition(WorkflowStatus::Completed)?;
                self.s.output = Some(e.attributes.get("output").cloned().unwrap_or(Value::Null));
                self.close(e.timestamp);
                Ok(())
            }
            EventType::WorkflowExecutionFailed | EventType::WorkflowExecutionTimedOut => {
                let phase = e.attr_str("phase").unwrap_or("workflow");
                let reason = e.attr_str("reason").unwrap_or("failed").to_owned();
                self.s.failure = Some(match self.s.failure.take() {
                    Some(first) if phase == "compensation" => format!("{first}; then {reason}"),
                    _ => reason,
                });
                self.transition(WorkflowStatus::Failed)?;
                self.machine = None;
                if phase != "compensation" && !self.s.tracker.get_compensation_actions().is_empty()
                {
                    self.decide(
                        EventType::WorkflowExecutionCompensating,
                        json!({"reason": self.s.failure}),
                    );
                } else {
                    self.close(e.timestamp);
                }
                Ok(())
            }
            EventType::WorkflowExecutionCompensating => {
                self.transition(WorkflowStatus::Compensating)?;
                self.next_compensation(env)
            }
            EventType::WorkflowExecutionCanceled => {
                self.transition(WorkflowStatus::Cancelled)?;
                self.machine = None;
                self.close(e.timestamp);
                Ok(())
            }
            other => Err(Error::new(
                ErrorKind::Unknown,
                format!("{other} is not a decision"),
            )),
        }
    }

    fn close(&mut self, at: DateTime<Utc>) {
        self.s.closed_at = Some(at);
        self.s.waits.clear();
        self.s.buffered_signals.clear();
    }

    fn machine_waits(&self) -> bool {
        self.machine.is_some()
            && matches!(
                self.s.status,
                Some(WorkflowStatus::Running | WorkflowStatus::Paused)
            )
    }

    /// True if a result for attempt `attempt` of command `seq` is still wanted: the
    /// attempt is the current one and has not already failed or timed out.
    pub(crate) fn accepts_result(&self, seq: u64, attempt: u32) -> bool {
        self.s
            .activities
            .get(&seq)
            .is_some_and(|p| p.attempt == attempt && !p.backing_off)
    }

    fn take_attempt(&mut self, e: &HistoryEvent) -> Option<PendingActivity> {
        let seq = e.attr_u64("seq")?;
        let attempt = e.attr_u64("attempt")? as u32;
        if !self.accepts_result(seq, attempt) {
            return None;
        }
        self.s.activities.remove(&seq)
    }

    /// Ends the workflow's run early (cancelled, failed, timed out): stops its machine,
    /// cancels what is in flight, and decides `ending` now or, while compensable
    /// attempts are still out, once they have reported ([`Self::drained`]).
    ///
    /// Why wait: an attempt handed to a worker may be running, and its effect happens
    /// whether or not history wants it. Dropping it (recording `ActivityTaskCanceled`
    /// and refusing its result) would leave a completed step with nobody to undo it;
    /// awaiting its outcome puts a completed step on the compensation stack like any
    /// other. (Temporal's `WAIT_CANCELLATION_COMPLETED`, for the steps a saga undoes.)
    fn abort(&mut self, ending: Ending) -> Result<()> {
        self.machine = None;
        if !self.abort_pending(true) {
            self.end(ending);
            return Ok(());
        }
        if self.s.status == Some(WorkflowStatus::Running) {
            // Suspended, as at any checkpoint, until the draining attempts report.
            self.transition(WorkflowStatus::Paused)?;
        }
        self.s.ending = Some(ending);
        Ok(())
    }

    /// Decides how the workflow ends.
    fn end(&mut self, ending: Ending) {
        match ending {
            Ending::Cancel { reason } => self.fail_or_cancel("cancel", reason),
            Ending::Decide {
                event_type,
                attributes,
            } => self.decide(event_type, attributes),
        }
    }

    /// Whether `e` names an attempt that is draining.
    fn draining(&self, e: &HistoryEvent) -> bool {
        e.attr_u64("seq")
            .and_then(|seq| self.s.activities.get(&seq))
            .is_some_and(|p| p.draining)
    }

    /// A draining attempt reported: when it was the last, the workflow ends as decided
    /// in [`Self::abort`], with every completed step on the compensation stack.
    fn drained(&mut self) {
        if self.s.activities.values().any(|p| p.draining) {
            return;
        }
        if let Some(ending) = self.s.ending.take() {
            self.end(ending);
        }
    }

    /// Cancels everything in flight (activities, timers, signal waits). With `drain`,
    /// an attempt of a compensable step that may be running is left out and flagged
    /// [`PendingActivity::draining`] instead; returns whether any was.
    fn abort_pending(&mut self, drain: bool) -> bool {
        let tracker = &self.s.tracker;
        let mut draining = false;
        for p in self.s.activities.values_mut() {
            // Not a local attempt (this worker runs it inside the task that recorded
            // it) nor one waiting for its retry timer: neither can be running now.
            if drain
                && !p.local
                && !p.backing_off
                && p.compensates.is_none()
                && tracker.is_compensable(p.seq)
            {
                p.draining = true;
                draining = true;
            }
        }
        let activities: Vec<(u64, bool)> = self
            .s
            .activities
            .values()
            .filter(|p| !p.draining)
            .map(|p| (p.seq, p.local))
            .collect();
        for (seq, local) in activities {
            let t = if local {
                EventType::LocalActivityCanceled
            } else {
                EventType::ActivityTaskCanceled
            };
            self.decide(t, json!({"seq": seq}));
        }
        let children: Vec<(u64, SagaId)> = self
            .s
            .children
            .values()
            .map(|c| (c.seq, c.child_id.clone()))
            .collect();
        for (seq, child_id) in children {
            self.decide(
                EventType::RequestCancelChildWorkflowExecutionInitiated,
                json!({"seq": seq, "child_id": child_id}),
            );
        }
        let timers: Vec<String> = self.s.timers.keys().cloned().collect();
        for timer_id in timers {
            self.decide(EventType::TimerCanceled, json!({"timer_id": timer_id}));
        }
        self.s.waits.clear();
        draining
    }

    fn fail_or_cancel(&mut self, phase: &str, reason: String) {
        let compensate = !self.s.tracker.get_compensation_actions().is_empty();
        if phase == "cancel" && !compensate {
            self.decide(
                EventType::WorkflowExecutionCanceled,
                json!({"reason": reason}),
            );
        } else {
            self.decide(
                EventType::WorkflowExecutionFailed,
                json!({"phase": phase, "reason": reason}),
            );
        }
    }

    /// Schedules the next compensation (LIFO), or closes as Cancelled when none is left.
    fn next_compensation(&mut self, env: &Env<'_>) -> Result<()> {
        match self.s.tracker.get_compensation_actions().into_iter().next() {
            Some(action) => {
                if self.s.status == Some(WorkflowStatus::Compensating) {
                    // Compensating -> Compensating: "execute next compensation".
                    self.transition(WorkflowStatus::Compensating)?;
                }
                if self
                    .s
                    .activities
                    .values()
                    .any(|p| p.compensates == Some(action.step_seq))
                {
                    return Ok(()); // already scheduled
                }
                let Policy {
                    retry,
                    timeout_ms,
                    task_queue,
                } = policy(env, &action.compensation_type);
                let pa = PendingActivity {
                    seq: self.s.next_seq,
                    slot: 0,
                    activity_type: action.compensation_type,
                    input: action.input,
                    attempt: 1,
                    retry,
                    timeout_ms,
                    compensates: Some(action.step_seq),
                    task_queue,
                    backing_off: false,
                    local: false,
                    scheduled_event_id: 0, // set when the decision is applied
                    draining: false,
                };
                self.s.next_seq += 1;
                self.decide_schedule(pa, None, None);
                Ok(())
            }
            None => {
                self.decide(
                    EventType::WorkflowExecutionCanceled,
                    json!({"reason": "compensated"}),
                );
                Ok(())
            }
        }
    }

    /// Runs the machine from `wake` until it suspends or ends, carrying out its commands.
    fn wake(&mut self, env: &Env<'_>, wake: Wake) -> Result<()> {
        let mut wakes = VecDeque::from([wake]);
        while let Some(wake) = wakes.pop_front() {
            if self.machine.is_none() {
                // Ended (or ending, waiting for draining attempts) by an earlier wake.
                return Ok(());
            }
            if self.s.status == Some(WorkflowStatus::Paused) {
                self.transition(WorkflowStatus::Running)?;
            }
            let Some(machine) = self.machine.as_mut() else {
                return Ok(());
            };
            let records = std::mem::take(&mut self.replay_records);
            let mut ctx = WorkflowContext::replaying(self.s.saga_id.clone(), self.s.now, records);
            let after_activity_error = matches!(wake, Wake::Activity { result: Err(_), .. });
            let step = machine.resume(&mut ctx, wake)?;
            self.replay_records = ctx.take_unused();
            let (produced, mismatch) = ctx.take_recorded();
            if let Some(m) = mismatch {
                return Err(replay_error(
                    &self.s.saga_id,
                    format!("at checkpoint `{}`: {m}", self.checkpoint()),
                ));
            }
            for r in produced {
                let t = if r.kind == "side_effect" {
                    EventType::SideEffectRecorded
                } else {
                    EventType::MarkerRecorded
                };
                self.decide(t, json!({"kind": r.kind, "value": r.value}));
            }
            match step {
                Step::Suspend(commands) => {
                    for (slot, command) in commands.into_iter().enumerate() {
                        if let Some(w) = self.command(env, slot as u32, command) {
                            wakes.push_back(w);
                        }
                        if self.machine.is_none() {
                            return Ok(()); // an invalid command failed the workflow
                        }
                    }
                    if wakes.is_empty() {
                        self.transition(WorkflowStatus::Paused)?;
                    }
                }
                Step::Complete(output) => {
                    self.machine = None;
                    self.abort_pending(false);
                    self.decide(
                        EventType::WorkflowExecutionCompleted,
                        json!({"output": output}),
                    );
                }
                Step::Fail { message, error } => {
                    // `cause` tells operators (and `result()`) whether an activity's
                    // final error ended the workflow, or its own logic did.
                    let cause = if after_activity_error {
                        "activity"
                    } else {
                        "workflow"
                    };
                    return self.abort(Ending::Decide {
                        event_type: EventType::WorkflowExecutionFailed,
                        attributes: json!({"phase": "workflow", "cause": cause, "reason": message, "error": error}),
                    });
                }
            }
        }
        Ok(())
    }

    /// Carries out one command; returns a wake if it is already satisfied (a buffered
    /// signal).
    fn command(&mut self, env: &Env<'_>, slot: u32, command: Command) -> Option<Wake> {
        let seq = self.s.next_seq;
        self.s.next_seq += 1;
        match command {
            Command::ScheduleActivity {
                activity_type,
                input,
            } => {
                let Policy {
                    retry,
                    timeout_ms,
                    task_queue,
                } = policy(env, &activity_type);
                let compensation = env
                    .activities
                    .get_activity(&activity_type)
                    .and_then(|a| a.compensation());
                let pa = PendingActivity {
                    seq,
                    slot,
                    activity_type,
                    input,
                    attempt: 1,
                    retry,
                    timeout_ms,
                    compensates: None,
                    task_queue,
                    backing_off: false,
                    local: false,
                    scheduled_event_id: 0, // set when the decision is applied
                    draining: false,
                };
                self.decide_schedule(pa, compensation, None);
                None
            }
            Command::StartTimer { duration } => {
                let timer_id = format!("{}/sleep/{seq}", self.s.saga_id);
                self.decide(
                    EventType::TimerStarted,
                    json!({"timer_id": timer_id, "kind": TimerKind::Sleep, "seq": seq, "slot": slot,
                           "duration_ms": millis(duration), "fire_at": plus(self.s.now, duration)}),
                );
                None
            }
            Command::WaitSignal { name, timeout } => {
                if let Some(pos) = self.s.buffered_signals.iter().position(|(n, _)| *n == name) {
                    let (name, payload) = self.s.buffered_signals.remove(pos)?;
                    return Some(Wake::Signal {
                        slot,
                        name,
                        payload: Some(payload),
                    });
                }
                let timer_id = timeout.map(|d| {
                    let timer_id = format!("{}/signal/{seq}", self.s.saga_id);
                    self.decide(
                        EventType::TimerStarted,
                        json!({"timer_id": timer_id, "kind": TimerKind::SignalTimeout, "seq": seq, "slot": slot,
                               "signal": name, "duration_ms": millis(d), "fire_at": plus(self.s.now, d)}),
                    );
                    timer_id
                });
                self.s.waits.push(SignalWait {
                    seq,
                    slot,
                    name,
                    timer_id,
                });
                None
            }
            Command::ScheduleLocalActivity {
                activity_type,
                input,
            } => {
                // Local: run by the worker that records it, whatever its queue.
                let Policy {
                    retry, timeout_ms, ..
                } = policy(env, &activity_type);
                self.decide(
                    EventType::LocalActivityScheduled,
                    json!({"seq": seq, "slot": slot, "activity_type": activity_type, "input": input,
                           "retry": retry, "timeout_ms": timeout_ms}),
                );
                None
            }
            Command::StartChild {
                workflow_type,
                child_id,
                input,
            } => {
                let child_id =
                    child_id.unwrap_or_else(|| format!("{}/child-{seq}", self.s.saga_id));
                self.decide(
                    EventType::StartChildWorkflowExecutionInitiated,
                    json!({"seq": seq, "slot": slot, "workflow_type": workflow_type, "child_id": child_id, "input": input}),
                );
                None
            }
            Command::Invalid { reason } => {
                let ending = Ending::Decide {
                    event_type: EventType::WorkflowExecutionFailed,
                    attributes: json!({"phase": "workflow", "cause": "step", "reason": format!("invalid command: {reason}")}),
                };
                if let Err(e) = self.abort(ending) {
                    tracing::warn!(saga_id = %self.s.saga_id, error = %e, "could not end the workflow");
                }
                None
            }
        }
    }
}

/// What an activity's registered options decide for a new attempt.
struct Policy {
    retry: RetryPolicy,
    timeout_ms: Option<u64>,
    task_queue: Option<String>,
}

fn policy(env: &Env<'_>, activity_type: &str) -> Policy {
    match env.activities.get_activity(activity_type) {
        Some(a) => {
            let o = a.options();
            Policy {
                retry: o.retry,
                timeout_ms: o.start_to_close_timeout.map(millis),
                task_queue: o.task_queue,
            }
        }
        // The worker will fail it as unknown; one attempt is enough to say so.
        None => Policy {
            retry: RetryPolicy::none(),
            timeout_ms: None,
            task_queue: None,
        },
    }
}

fn scheduled_attrs(pa: &PendingActivity) -> Value {
    let mut attrs = json!({
        "seq": pa.seq,
        "slot": pa.slot,
        "activity_type": pa.activity_type,
        "input": pa.input,
        "attempt": pa.attempt,
        "max_attempts": pa.retry.max_attempts,
        "retry": pa.retry,
    });
    // Absent rather than null: smaller histories, same meaning when read back.
    if let Some(ms) = pa.timeout_ms {
        attrs["timeout_ms"] = json!(ms);
    }
    if let Some(step) = pa.compensates {
        attrs["compensates"] = json!(step);
    }
    if let Some(queue) = &pa.task_queue {
        attrs["task_queue"] = json!(queue);
    }
    attrs
}
