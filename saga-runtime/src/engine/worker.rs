//! The I/O side of the engine: the one `process` path, workers, the timer loop and
//! recovery. The effects a commit leaves to a task of their own are in `local` (local
//! activities) and `children` (child workflows).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;
use tracing::Instrument;

use super::execution::{Env, Execution};
use super::inputs;
use super::machine::ErasedWorkflow;
use super::{ExecutionDescription, Inner, Slot};
use crate::activity::{ActivityContext, ActivityError};
use crate::codec::AnyCodec;
use crate::domain::{
    Error, ErrorKind, EventType, HistoryEvent, Result, SagaId, TimerKind, WorkflowStatus,
};
use crate::metrics::AttemptOutcome;
use crate::port::{
    Commit, Delivery, ExecutionFilter, Notification, Snapshot, Task, TaskKind, TimerRecord,
};
use crate::snapshot;

mod children;
mod local;

use children::ChildStart;
use local::LocalRun;
pub(super) use local::RunningLocals;

/// A new input event, built against the execution's current state.
#[derive(Clone)]
pub(super) struct Input {
    event_type: EventType,
    attributes: Value,
    at: DateTime<Utc>,
}

impl Input {
    pub(super) fn new(event_type: EventType, attributes: Value, at: DateTime<Utc>) -> Self {
        Input {
            event_type,
            attributes,
            at,
        }
    }
}

/// What `process` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Processed {
    /// New events were appended.
    Appended,
    /// The input no longer applies (its result is already in history); nothing written.
    Dropped,
}

/// One unit of work counted in [`Inner::busy`], for as long as it lives.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn new(busy: &'a AtomicUsize) -> Self {
        busy.fetch_add(1, Ordering::AcqRel);
        Busy(busy)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Who asks for a commit; it decides where the activities the commit schedules run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// A client call (start, signal, cancel): the tasks go to the queue, so that new
    /// executions spread over the workers.
    Client,
    /// This engine's own work on the execution (a task, a timer, a local activity, a
    /// child's result, or an eager start): the activities it schedules may run here
    /// at once.
    Worker,
}

/// Watching one execution for its close (see [`Inner::watch`]).
pub(super) struct Watch {
    local: super::outputs::OutputWaiter,
    sub: crate::port::SignalSubscription,
}

/// The body of an activity task.
#[derive(Debug, Serialize, Deserialize)]
struct ActivityTask {
    seq: u64,
    attempt: u32,
    activity_type: String,
    /// Kept as JSON text: the worker decodes it straight into the activity's type.
    input: Box<serde_json::value::RawValue>,
    timeout_ms: Option<u64>,
    /// The execution's trace id, so the activity's span joins its trace.
    trace_id: String,
    /// The execution's workflow type: a worker without its code runs the attempt and
    /// records the result without deciding what follows ([`Inner::record_observed_if`]).
    /// Empty in a task from before tasks named it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    workflow_type: String,
    /// The execution's whole history, when the commit that scheduled the task started
    /// the execution and the history is small: the first task of an execution usually
    /// goes to another worker, which builds the execution from these events and reads
    /// only its version to confirm them, instead of loading its snapshot and history
    /// (like a Temporal workflow task, which carries its history). Kept as JSON text
    /// (a list of events): written without cloning the events, and read only by a
    /// worker that does not have the execution already (the engine that started it
    /// has it in its cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    history: Option<Box<serde_json::value::RawValue>>,
}

/// The largest task payload that carries the execution's history
/// ([`ActivityTask::history`]); a larger one goes without it.
const CARRIED_HISTORY_MAX_BYTES: usize = 16 * 1024;

/// Something to do once new events are durable.
enum Effect {
    Publish(Task),
    /// An activity task this commit scheduled: run it here at once when this engine
    /// may (eager dispatch), or publish it.
    Dispatch {
        task: Task,
        activity_type: String,
    },
    /// Only for re-driving: timers normally commit with their events.
    CreateTimer(TimerRecord),
    /// Tell the waiters: those subscribed to the execution, and those at `inbox` (the
    /// one its start named, for its close).
    Notify {
        notification: Notification,
        inbox: Option<String>,
    },
    /// Run a local activity in this process.
    RunLocal(LocalRun),
    /// Start a child workflow.
    StartChild(ChildStart),
    /// Ask a child workflow to cancel; `redrive`: the child's task in the outbox that
    /// re-drives the request if this process dies first (`inputs::cancel_child_id`).
    CancelChild {
        child: SagaId,
        redrive: Option<String>,
    },
    /// This execution (a child) closed: tell its parent.
    NotifyParent,
    /// Re-drive: if this child has closed, tell its parent.
    CheckChild(SagaId),
}

/// Where an activity attempt's result is recorded.
enum RecordOn {
    /// On the execution folded with its workflow's code (this engine's cache).
    Folded,
    /// On the execution as recorded, folded without the code
    /// ([`Inner::record_observed_if`]): an activity-only worker. Read from the store
    /// before the attempt ran, and usually still current after it.
    Observed(Box<Execution>),
}

/// How often a conflicting append is retried before giving up.
const MAX_CONFLICT_RETRIES: u32 = 1000;

/// A JSON value as JSON text (`null` when absent).
fn raw(v: Option<&Value>) -> Box<serde_json::value::RawValue> {
    match serde_json::value::to_raw_value(v.unwrap_or(&Value::Null)) {
        Ok(r) => r,
        // A `Value` always serializes; keep the compiler and the reader honest anyway.
        Err(_) => serde_json::value::to_raw_value(&()).unwrap_or_default(),
    }
}

fn plus_ms(t: DateTime<Utc>, ms: u64) -> DateTime<Utc> {
    let d = TimeDelta::try_milliseconds(ms.min(i64::MAX as u64) as i64).unwrap_or(TimeDelta::MAX);
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The task that runs one attempt of the activity `scheduled` schedules, on `queue`.
fn activity_task(scheduled: &HistoryEvent, task: &mut ActivityTask, queue: &str) -> Task {
    let mut payload = serde_json::to_vec(&*task).unwrap_or_default();
    if task.history.is_some() && payload.len() > CARRIED_HISTORY_MAX_BYTES {
        task.history = None;
        payload = serde_json::to_vec(&*task).unwrap_or_default();
    }
    Task {
        kind: TaskKind::Activity,
        saga_id: scheduled.saga_id.clone(),
        queue: queue.to_owned(),
        dedup_id: format!("{}:{}", scheduled.saga_id, scheduled.event_id),
        payload,
    }
}

fn unregistered(workflow_type: &str) -> Error {
    Error::new(
        ErrorKind::Validation,
        format!("workflow type `{workflow_type}` is not registered on this engine"),
    )
    .with("workflow_type", workflow_type)
    .with("code", "unregistered_workflow")
}

/// Whether `e` says this engine lacks the workflow's code.
fn is_unregistered(e: &Error) -> bool {
    e.context("code") == Some("unregistered_workflow")
}

/// The error of an input from outside sent to a closed execution.
fn closed(saga_id: &SagaId, exec: &Execution) -> Error {
    Error::new(
        ErrorKind::Validation,
        format!("execution `{saga_id}` is closed ({:?})", exec.status()),
    )
    .with("saga_id", saga_id)
    .with("code", "closed")
}

/// Whether `e` is [`closed`]'s.
fn is_closed(e: &Error) -> bool {
    e.context("code") == Some("closed")
}

impl Inner {
    pub(super) fn counter(&self, c: &std::sync::atomic::AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn workflow(&self, workflow_type: &str) -> Result<&dyn ErasedWorkflow> {
        self.workflows
            .get(workflow_type)
            .map(|w| &**w)
            .ok_or_else(|| unregistered(workflow_type))
    }

    fn env(&self, workflow_type: &str) -> Result<Env<'_>> {
        Ok(Env {
            workflow: Some(self.workflow(workflow_type)?),
            activities: &self.activities,
        })
    }

    fn slot(&self, saga_id: &SagaId) -> Slot {
        self.cache.slot(saga_id)
    }

    fn evict(&self, saga_id: &SagaId) {
        self.cache.evict(saga_id);
    }

    /// Folds `events` onto `start` (or a new execution).
    pub(super) fn fold(
        &self,
        saga_id: &SagaId,
        start: Option<Execution>,
        events: &[HistoryEvent],
    ) -> Result<Execution> {
        let mut exec = start.unwrap_or_else(|| Execution::new(saga_id.clone()));
        let workflow_type = if exec.status().is_some() {
            exec.s.workflow_type.clone()
        } else {
            let first = events
                .first()
                .ok_or_else(|| Error::not_found(saga_id.as_str()))?;
            if first.event_type != EventType::WorkflowExecutionStarted {
                return Err(Error::new(
                    ErrorKind::Replay,
                    format!(
                        "history starts with {} instead of WorkflowExecutionStarted",
                        first.event_type
                    ),
                )
                .with("saga_id", saga_id));
            }
            first
                .attr_str("workflow_type")
                .unwrap_or_default()
                .to_owned()
        };
        let env = self.env(&workflow_type)?;
        exec.expect_records(events);
        for e in events {
            exec.apply(&env, e)?;
        }
        Ok(exec)
    }

    /// Loads an execution: newest valid snapshot, then the events after it.
    async fn load(&self, saga_id: &SagaId) -> Result<Execution> {
        self.counter(&self.counters.loads);
        let loaded = self.replayer.load(saga_id).await?;
        self.counters
            .corrupt_snapshots
            .fetch_add(loaded.corrupt_snapshots as u64, Ordering::Relaxed);
        if let Some(snap) = &loaded.snapshot {
            let restored = AnyCodec::from_name(&snap.codec)
                .and_then(|codec| Execution::decode(codec, &snap.state, |t| self.workflow(t)));
            match restored {
                Ok(exec) => return self.fold(saga_id, Some(exec), &loaded.events),
                Err(e) if e.kind == ErrorKind::Replay || is_unregistered(&e) => return Err(e),
                Err(e) => {
                    tracing::warn!(saga_id = %saga_id, error = %e, "snapshot does not decode; replaying the full history");
                    self.counter(&self.counters.corrupt_snapshots);
                    let events = self.store.history(saga_id).await?;
                    return self.fold(saga_id, None, &events);
                }
            }
        }
        if loaded.events.is_empty() {
            return Err(Error::not_found(saga_id.as_str()));
        }
        self.fold(saga_id, None, &loaded.events)
    }

    /// Counts a failed store call (event or timer store): the outage metric.
    pub(super) fn note(&self, e: &Error) {
        if matches!(e.kind, ErrorKind::EventStore | ErrorKind::TimerStore) {
            self.counter(&self.counters.store_errors);
        }
    }

    /// The one path by which an execution changes. `make` builds the inputs from the
    /// current state, or returns `None` when the input no longer applies.
    pub(super) async fn process<F>(
        &self,
        saga_id: &SagaId,
        create: bool,
        origin: Origin,
        make: F,
    ) -> Result<Processed>
    where
        F: FnMut(&mut Execution) -> Result<Option<Vec<Input>>>,
    {
        self.process_settling(saga_id, create, origin, None, make)
            .await
    }

    /// [`Self::process`], settling the outbox task `settle` (the delivery whose result
    /// the inputs record) in the same commit.
    async fn process_settling<F>(
        &self,
        saga_id: &SagaId,
        create: bool,
        origin: Origin,
        settle: Option<&str>,
        make: F,
    ) -> Result<Processed>
    where
        F: FnMut(&mut Execution) -> Result<Option<Vec<Input>>>,
    {
        let r = self
            .process_once(saga_id, create, origin, settle, make)
            .await;
        if let Err(e) = &r {
            self.note(e);
        }
        r
    }

    async fn process_once<F>(
        &self,
        saga_id: &SagaId,
        create: bool,
        origin: Origin,
        settle: Option<&str>,
        mut make: F,
    ) -> Result<Processed>
    where
        F: FnMut(&mut Execution) -> Result<Option<Vec<Input>>>,
    {
        let mut conflicts = 0;
        loop {
            let slot = self.slot(saga_id);
            let mut guard = slot.lock().await;
            let fresh = guard.is_none();
            if fresh {
                let exec = if create {
                    // No read first: the commit at version 0 conflicts if the id is taken.
                    Execution::new(saga_id.clone())
                } else {
                    self.load(saga_id).await?
                };
                *guard = Some(exec);
            }
            let Some(exec) = guard.as_mut() else { continue };
            if create && exec.status().is_some() {
                return Err(Error::already_started(saga_id.as_str()));
            }
            let inputs = match make(exec)? {
                Some(inputs) => inputs,
                None if fresh || self.store.version(saga_id).await? == exec.version() => {
                    return Ok(Processed::Dropped)
                }
                None => {
                    // The cache was behind another engine's appends: decide on fresh state.
                    *guard = None;
                    continue;
                }
            };
            let workflow_type = match inputs.first() {
                Some(i) if i.event_type == EventType::WorkflowExecutionStarted => i.attributes
                    ["workflow_type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                _ => exec.s.workflow_type.clone(),
            };
            let env = self.env(&workflow_type)?;
            let expected = exec.version();
            let mut events = Vec::with_capacity(inputs.len() + 2);
            let folded = (|| -> Result<()> {
                for i in inputs {
                    let e = exec.event(i.event_type, i.attributes, false, i.at);
                    exec.record(&env, e, &mut events)?;
                }
                if exec.owes_decisions() {
                    exec.drain(&env, self.clock.now(), &mut events)?;
                }
                Ok(())
            })();
            if let Err(e) = folded {
                *guard = None;
                drop(guard);
                self.record_task_failure(saga_id, &e).await;
                return Err(e);
            }
            if events.is_empty() {
                return Ok(Processed::Dropped);
            }
            let output = self.outputs.wanted(saga_id, &events);
            let snapshot = self.maybe_snapshot(&env, exec, &mut events)?;
            let snapshotted = snapshot.is_some();
            let (started, closes) = crate::metrics::lifecycle(expected, &events);
            let (mut commit, after) = self.plan_commit(exec, expected, events, snapshot);
            if self.outbox {
                commit.settle_tasks.extend(settle.map(str::to_owned));
            }
            let timers_changed = !commit.create_timers.is_empty();
            let closed = exec.is_closed();
            let span = tracing::debug_span!("workflow_task", saga_id = %saga_id, trace_id = %exec.s.trace_id, version = expected);
            let span = super::in_trace(span, &exec.s.trace_id);
            match self.store.commit(commit).instrument(span).await {
                Ok(_) => {
                    self.counter(&self.counters.workflow_tasks);
                    self.counters
                        .by_type
                        .workflow(&workflow_type, started, closes);
                    if snapshotted {
                        self.counter(&self.counters.snapshots_saved);
                    }
                    drop(guard);
                    if closed {
                        self.evict(saga_id);
                    }
                    if timers_changed {
                        self.timer_wake.notify_one();
                    }
                    self.run_effects(saga_id, after, origin).await;
                    // After the effects (a close's are its notifications, sent at once),
                    // so that a caller here, once woken, finds the attempt that closed
                    // its execution ended, and its next start the engine idle
                    // (`claim_idle_start`): woken before, 3 in 10 of its starts at one
                    // in flight found that attempt still running.
                    if let Some(output) = output {
                        self.outputs.deliver(saga_id, output);
                    }
                    return Ok(Processed::Appended);
                }
                Err(e) if e.is_conflict() => {
                    *guard = None;
                    self.counter(&self.counters.conflicts);
                    if create {
                        return Err(Error::already_started(saga_id.as_str()));
                    }
                    conflicts += 1;
                    if conflicts > MAX_CONFLICT_RETRIES {
                        return Err(e);
                    }
                    tracing::debug!(saga_id = %saga_id, "append conflict; reloading");
                }
                Err(e) => {
                    *guard = None;
                    return Err(e);
                }
            }
        }
    }

    /// Records `inputs` if `wanted` still holds on the execution's current state;
    /// otherwise they are stale (a duplicate delivery, a late timer) and dropped.
    pub(super) async fn record_if(
        &self,
        saga_id: &SagaId,
        wanted: impl Fn(&Execution) -> bool,
        inputs: Vec<Input>,
    ) -> Result<Processed> {
        self.record_settling_if(saga_id, None, wanted, inputs).await
    }

    /// [`Self::record_if`] for the result of the outbox task `settle`.
    async fn record_settling_if(
        &self,
        saga_id: &SagaId,
        settle: Option<&str>,
        wanted: impl Fn(&Execution) -> bool,
        inputs: Vec<Input>,
    ) -> Result<Processed> {
        let r = self
            .process_settling(saga_id, false, Origin::Worker, settle, |exec| {
                Ok(wanted(exec).then(|| inputs.clone()))
            })
            .await;
        match r {
            Err(e) if is_unregistered(&e) => {
                self.record_observed_if(saga_id, settle, None, wanted, inputs)
                    .await
            }
            other => other,
        }
    }

    /// Appends `SnapshotCreated` and seals the state when the interval is reached.
    fn maybe_snapshot(
        &self,
        env: &Env<'_>,
        exec: &mut Execution,
        events: &mut Vec<HistoryEvent>,
    ) -> Result<Option<Snapshot>> {
        let cfg = &self.config.snapshots;
        if exec.is_closed() || exec.version() - exec.s.last_snapshot_version < cfg.interval {
            return Ok(None);
        }
        let codec = self.config.codec;
        let at = events
            .last()
            .map_or_else(|| self.clock.now(), |e| e.timestamp);
        let e = exec.event(
            EventType::SnapshotCreated,
            json!({"codec": codec_name(codec)}),
            false,
            at,
        );
        exec.apply(env, &e)?;
        events.push(e);
        let state = exec.encode(codec)?;
        Ok(Some(snapshot::seal(
            exec.s.saga_id.clone(),
            exec.version() - 1,
            codec_name(codec),
            state,
            cfg.enable_checksum,
            at,
        )))
    }

    /// Records a `WorkflowTaskFailed` marker (once per distinct error) so operators see
    /// why an execution is stuck; the execution itself is left as it was.
    async fn record_task_failure(&self, saga_id: &SagaId, err: &Error) {
        self.counter(&self.counters.workflow_task_failures);
        tracing::error!(saga_id = %saga_id, error = %err, "workflow task failed");
        if !matches!(
            err.kind,
            ErrorKind::Replay
                | ErrorKind::Codec
                | ErrorKind::WorkflowExecution
                | ErrorKind::Unknown
        ) {
            return;
        }
        let Ok(version) = self.store.version(saga_id).await else {
            return;
        };
        if version == 0 {
            return;
        }
        let Ok(last) = self.store.history_from(saga_id, version - 1).await else {
            return;
        };
        let message = err.to_string();
        let last = last.first();
        if last.is_some_and(|e| {
            e.event_type == EventType::WorkflowTaskFailed && e.attr_str("error") == Some(&message)
        }) {
            return;
        }
        let trace_id = last.map(|e| e.trace_id.clone()).unwrap_or_default();
        let event = HistoryEvent::new(
            saga_id.clone(),
            version,
            EventType::WorkflowTaskFailed,
            self.clock.now(),
            json!({"error": message, "kind": err.kind}),
            trace_id,
        );
        if let Err(e) = self.store.append(saga_id, version, vec![event]).await {
            tracing::debug!(saga_id = %saga_id, error = %e, "could not record WorkflowTaskFailed");
        }
    }

    /// Splits what the new events of `exec` (already folded into it) cause into what
    /// commits with them (timers, the snapshot, the outbox) and what happens after
    /// (publishing, notifying).
    fn plan_commit(
        &self,
        exec: &Execution,
        expected_version: u64,
        events: Vec<HistoryEvent>,
        snapshot: Option<Snapshot>,
    ) -> (Commit, Vec<Effect>) {
        let saga_id = &exec.s.saga_id;
        let is_child = exec.s.parent.is_some();
        let queue = self.queue_of(exec);
        let mut commit = Commit {
            saga_id: saga_id.clone(),
            expected_version,
            events: Vec::new(),
            create_timers: Vec::new(),
            cancel_timers: Vec::new(),
            snapshot,
            max_snapshots: self.config.snapshots.max_snapshots,
            tasks: Vec::new(),
            redeliver_at: DateTime::<Utc>::UNIX_EPOCH,
            settle_tasks: Vec::new(),
        };
        let mut out = Vec::new();
        // The history a first task carries (`ActivityTask::history`), written once for
        // all of the commit's tasks, and only if it schedules one.
        let carried = std::cell::OnceCell::new();
        for e in &events {
            match e.event_type {
                EventType::ActivityTaskScheduled => {
                    let history = if expected_version == 0 {
                        carried
                            .get_or_init(|| serde_json::value::to_raw_value(&events).ok())
                            .clone()
                    } else {
                        None
                    };
                    let mut task = ActivityTask {
                        seq: e.attr_u64("seq").unwrap_or_default(),
                        attempt: e.attr_u64("attempt").unwrap_or(1) as u32,
                        activity_type: e.attr_str("activity_type").unwrap_or_default().to_owned(),
                        input: raw(e.attributes.get("input")),
                        timeout_ms: e.attr_u64("timeout_ms"),
                        trace_id: e.trace_id.clone(),
                        workflow_type: exec.s.workflow_type.clone(),
                        history,
                    };
                    if let Some(ms) = task.timeout_ms {
                        commit.create_timers.push(TimerRecord {
                            timer_id: format!(
                                "{}/activity-timeout/{}/{}",
                                e.saga_id, task.seq, task.attempt
                            ),
                            saga_id: e.saga_id.clone(),
                            kind: TimerKind::ActivityTimeout,
                            fire_at: plus_ms(e.timestamp, ms),
                            attributes: json!({"seq": task.seq, "attempt": task.attempt}),
                        });
                    }
                    let activity_type = task.activity_type.clone();
                    // The activity's own queue, if its options name one.
                    let queue = e.attr_str("task_queue").unwrap_or(queue);
                    let task = activity_task(e, &mut task, queue);
                    if self.outbox {
                        commit.tasks.push(task.clone());
                    }
                    out.push(Effect::Dispatch {
                        task,
                        activity_type,
                    });
                }
                EventType::TimerStarted => {
                    let (Some(id), Ok(kind), Ok(fire_at)) = (
                        e.attr_str("timer_id"),
                        serde_json::from_value::<TimerKind>(e.attributes["kind"].clone()),
                        serde_json::from_value::<DateTime<Utc>>(e.attributes["fire_at"].clone()),
                    ) else {
                        continue;
                    };
                    commit.create_timers.push(TimerRecord {
                        timer_id: id.to_owned(),
                        saga_id: e.saga_id.clone(),
                        kind,
                        fire_at,
                        attributes: e.attributes.clone(),
                    });
                }
                EventType::TimerCanceled => {
                    if let Some(id) = e.attr_str("timer_id") {
                        commit.cancel_timers.push(id.to_owned());
                    }
                }
                EventType::LocalActivityScheduled => {
                    let redrive = self.redrive_row(&mut commit, || {
                        inputs::workflow_task(saga_id, queue, e.event_id)
                    });
                    out.push(Effect::RunLocal(LocalRun {
                        seq: e.attr_u64("seq").unwrap_or_default(),
                        activity_type: e.attr_str("activity_type").unwrap_or_default().to_owned(),
                        input: e.attributes.get("input").cloned().unwrap_or(Value::Null),
                        retry: serde_json::from_value(e.attributes["retry"].clone())
                            .unwrap_or_else(|_| crate::activity::RetryPolicy::none()),
                        timeout_ms: e.attr_u64("timeout_ms"),
                        redrive,
                    }))
                }
                EventType::StartChildWorkflowExecutionInitiated => {
                    let seq = e.attr_u64("seq").unwrap_or_default();
                    // As for a local activity: no message carries the start, so this
                    // task re-drives it if this process dies first.
                    let redrive = self.redrive_row(&mut commit, || {
                        let id = inputs::child_start_id(saga_id, seq);
                        inputs::workflow_task_named(saga_id, queue, id)
                    });
                    out.push(Effect::StartChild(ChildStart {
                        seq,
                        child_id: SagaId::new(e.attr_str("child_id").unwrap_or_default()),
                        workflow_type: e.attr_str("workflow_type").unwrap_or_default().to_owned(),
                        input: e.attributes.get("input").cloned().unwrap_or(Value::Null),
                        trace_id: e.trace_id.clone(),
                        task_queue: self.child_queue(e.attr_str("workflow_type"), queue),
                        redrive,
                    }))
                }
                EventType::RequestCancelChildWorkflowExecutionInitiated => {
                    let child = SagaId::new(e.attr_str("child_id").unwrap_or_default());
                    // A task of the child's, so that the parent's close (which settles
                    // all of the parent's) does not take it; on the parent's queue, as
                    // the child's own is not known here, and any worker can record
                    // the request, with or without the child's code.
                    let redrive = self.redrive_row(&mut commit, || {
                        let id = inputs::cancel_child_id(&child);
                        inputs::Redrive::Cancel.task(&child, queue, id)
                    });
                    out.push(Effect::CancelChild { child, redrive })
                }
                EventType::SignalReceived => out.push(Effect::Notify {
                    notification: Notification::SignalReceived {
                        name: e.attr_str("name").unwrap_or_default().to_owned(),
                    },
                    inbox: None,
                }),
                EventType::TimerFired => out.push(Effect::Notify {
                    notification: Notification::TimerFired {
                        timer_id: e.attr_str("timer_id").unwrap_or_default().to_owned(),
                    },
                    inbox: None,
                }),
                t => {
                    let status = match t {
                        EventType::WorkflowExecutionCompleted => WorkflowStatus::Completed,
                        EventType::WorkflowExecutionFailed
                        | EventType::WorkflowExecutionTimedOut => WorkflowStatus::Failed,
                        EventType::WorkflowExecutionCompensating => WorkflowStatus::Compensating,
                        EventType::WorkflowExecutionCanceled => WorkflowStatus::Cancelled,
                        _ => continue,
                    };
                    if is_child && status != WorkflowStatus::Compensating {
                        out.push(Effect::NotifyParent);
                        // The news goes by no message of its own: if this process
                        // dies before the parent has it, this task re-drives it.
                        self.redrive_row(&mut commit, || {
                            let id = inputs::notify_parent_id(saga_id);
                            inputs::workflow_task_named(saga_id, queue, id)
                        });
                    }
                    // A waiter in another process takes a completion's output from
                    // the notification instead of reading it back.
                    let output = match t {
                        EventType::WorkflowExecutionCompleted => {
                            Some(e.attributes.get("output").cloned().unwrap_or(Value::Null))
                        }
                        _ => None,
                    };
                    // The starter's inbox waits only for the close.
                    let inbox = (status != WorkflowStatus::Compensating)
                        .then(|| exec.s.result_inbox.clone())
                        .flatten();
                    out.push(Effect::Notify {
                        notification: Notification::StatusChanged { status, output },
                        inbox,
                    });
                }
            }
        }
        if !commit.tasks.is_empty() {
            let at = events
                .last()
                .map_or_else(|| self.clock.now(), |e| e.timestamp);
            let after_ms = self.config.outbox.redeliver_after.as_millis() as u64;
            commit.redeliver_at = plus_ms(at, after_ms);
        }
        commit.events = events;
        (commit, out)
    }

    /// With the outbox on, adds `task()` to `commit`: the task that re-drives an effect
    /// no message carries if this process dies before carrying it out. Its dedup id,
    /// which the effect settles once done.
    fn redrive_row(&self, commit: &mut Commit, task: impl FnOnce() -> Task) -> Option<String> {
        self.outbox.then(|| {
            let task = task();
            let id = task.dedup_id.clone();
            commit.tasks.push(task);
            id
        })
    }

    /// The task queue of a child of type `workflow_type`: the type's own, if it names
    /// one (and is registered here), else its parent's (`parent_queue`).
    fn child_queue(&self, workflow_type: Option<&str>, parent_queue: &str) -> String {
        workflow_type
            .and_then(|t| self.workflows.get(t))
            .and_then(|w| w.task_queue())
            .unwrap_or_else(|| parent_queue.to_owned())
    }

    /// The task queue of an execution (the engine's own for a history from before
    /// executions recorded theirs).
    pub(super) fn queue_of<'a>(&'a self, exec: &'a Execution) -> &'a str {
        if exec.s.task_queue.is_empty() {
            &self.config.queue
        } else {
            &exec.s.task_queue
        }
    }

    async fn run_effects(&self, saga_id: &SagaId, effects: Vec<Effect>, origin: Origin) {
        let mut timers_changed = false;
        for effect in effects {
            let r = match effect {
                Effect::Publish(task) => self.queue.publish(task).await,
                Effect::Dispatch {
                    task,
                    activity_type,
                } => match self.run_eagerly(task, &activity_type, origin) {
                    None => Ok(()),
                    Some(task) => self.queue.publish(task).await,
                },
                Effect::CreateTimer(t) => {
                    timers_changed = true;
                    self.store.create(t).await
                }
                Effect::Notify {
                    notification,
                    inbox: None,
                } => self.signals.notify(saga_id, notification).await,
                Effect::Notify {
                    notification,
                    inbox: Some(inbox),
                } => {
                    self.signals
                        .notify_inbox(saga_id, &inbox, notification)
                        .await
                }
                // These call back into `process` for other executions (or later for
                // this one): they run as their own tasks.
                Effect::RunLocal(run) => {
                    if let Some(me) = self.me.upgrade() {
                        // Marked before the task starts, so that no workflow task in
                        // between takes it for a run that died.
                        self.locals.enter(saga_id, run.seq);
                        tokio::spawn(me.run_local_task(saga_id.clone(), run));
                    }
                    Ok(())
                }
                Effect::StartChild(start) => {
                    if let Some(me) = self.me.upgrade() {
                        tokio::spawn(me.start_child_task(saga_id.clone(), start));
                    }
                    Ok(())
                }
                Effect::CancelChild { child, redrive } => {
                    if let Some(me) = self.me.upgrade() {
                        tokio::spawn(me.cancel_child_task(child, redrive));
                    }
                    Ok(())
                }
                Effect::NotifyParent => {
                    if let Some(me) = self.me.upgrade() {
                        tokio::spawn(me.deliver_to_parent_task(saga_id.clone()));
                    }
                    Ok(())
                }
                Effect::CheckChild(child) => {
                    if let Some(me) = self.me.upgrade() {
                        tokio::spawn(me.deliver_to_parent_task(child));
                    }
                    Ok(())
                }
            };

            if let Err(e) = r {
                // The events are durable; recovery re-drives what this step missed.
                self.note(&e);
                tracing::warn!(saga_id = %saga_id, error = %e, "effect failed after append");
            }
        }
        if timers_changed {
            self.timer_wake.notify_one();
        }
    }

    /// Starts a new execution (`options.timeout`: the workflow's default already
    /// applied; `result_inbox`: where its close is to be sent, recorded in the start).
    pub(super) async fn start(
        &self,
        saga_id: &SagaId,
        workflow_type: &'static str,
        input: Value,
        options: super::StartOptions,
        result_inbox: Option<String>,
    ) -> Result<()> {
        let fingerprint = self.workflow(workflow_type)?.fingerprint();
        let task_queue = options
            .task_queue
            .unwrap_or_else(|| self.config.queue.clone());
        let now = self.clock.now();
        let trace_id = options
            .trace_id
            .unwrap_or_else(|| inputs::new_trace_id(saga_id, now));
        let timeout_ms = options.timeout.map(|d| d.as_millis() as u64);
        // Held until the start commits, so a second start finds the engine busy.
        let idle = if options.eager {
            None
        } else {
            self.claim_idle_start(&task_queue)
        };
        let eager = options.eager || idle.is_some();
        let mut attributes =
            inputs::started_attributes(workflow_type, fingerprint, input, timeout_ms, &task_queue);
        if let Some(inbox) = result_inbox {
            attributes["result_inbox"] = Value::String(inbox);
        }
        let span =
            tracing::info_span!("start", saga_id = %saga_id, trace_id = %trace_id, workflow_type);
        let span = super::in_trace(span, &trace_id);
        // An eager start dispatches its first activities as this engine's own step.
        let origin = if eager {
            Origin::Worker
        } else {
            Origin::Client
        };
        let started = self
            .process(saga_id, true, origin, |exec| {
                exec.s.trace_id = trace_id.clone();
                Ok(Some(vec![Input {
                    event_type: EventType::WorkflowExecutionStarted,
                    attributes: attributes.clone(),
                    at: now,
                }]))
            })
            .instrument(span)
            .await
            .map(|_| ());
        drop(idle);
        started
    }

    /// A signal or cancellation from outside.
    pub(super) async fn input_from_outside(
        &self,
        saga_id: &SagaId,
        event_type: EventType,
        attributes: Value,
    ) -> Result<()> {
        let input = Input::new(event_type, attributes, self.clock.now());
        let result = self
            .process(saga_id, false, Origin::Client, |exec| {
                if !exec.is_open() {
                    return Err(closed(saga_id, exec));
                }
                Ok(Some(vec![input.clone()]))
            })
            .await;
        match result {
            // This engine cannot run the workflow: record the input and let a worker
            // that can fold it.
            Err(e) if is_unregistered(&e) => {
                match self
                    .record_observed_if(saga_id, None, None, Execution::is_open, vec![input])
                    .await?
                {
                    Processed::Appended => Ok(()),
                    Processed::Dropped => Err(closed(saga_id, &self.observe(saga_id).await?)),
                }
            }
            other => other.map(|_| ()),
        }
    }

    /// An execution as recorded, folded without its workflow's code
    /// ([`Execution::observe`]), from its whole history.
    async fn observe(&self, saga_id: &SagaId) -> Result<Execution> {
        let history = self.store.history(saga_id).await?;
        Execution::observe(saga_id, &history)
    }

    /// Records `inputs` on an execution whose workflow this engine has no code for, if
    /// `wanted` holds on its recorded state, and hands the rest to a worker that has
    /// the code: the commit carries a workflow task to the execution's queue, and that
    /// worker folds the inputs and decides what follows. So a worker needs only what it
    /// runs: an activity-only worker records its attempts' results, and any engine
    /// fires any timer and delivers any child's outcome (the split between workflow and
    /// activity workers that Temporal makes).
    ///
    /// `known`: the execution as just observed, if the caller has it (read again on a
    /// conflict); `settle`: the outbox task the inputs settle (the attempt's own).
    ///
    /// The state is folded from the whole history each time: the machine's snapshots
    /// need its code. Nothing is cached, so nothing goes stale.
    async fn record_observed_if(
        &self,
        saga_id: &SagaId,
        settle: Option<&str>,
        mut known: Option<Execution>,
        wanted: impl Fn(&Execution) -> bool,
        inputs: Vec<Input>,
    ) -> Result<Processed> {
        let mut conflicts = 0;
        loop {
            let mut exec = match known.take() {
                Some(exec) => exec,
                None => self.observe(saga_id).await?,
            };
            if !wanted(&exec) {
                return Ok(Processed::Dropped);
            }
            let expected = exec.version();
            let env = Env {
                workflow: None,
                activities: &self.activities,
            };
            let mut events = Vec::with_capacity(inputs.len());
            for i in &inputs {
                let e = exec.event(i.event_type, i.attributes.clone(), false, i.at);
                // Checks the event follows the history; what it owes is left to the
                // worker with the code, which decides it again on its fold.
                exec.apply(&env, &e)?;
                events.push(e);
            }
            let Some(last) = events.last() else {
                return Ok(Processed::Dropped);
            };
            let task = inputs::workflow_task(saga_id, self.queue_of(&exec), last.event_id);
            let mut commit = Commit::events_only(saga_id, expected, events);
            if self.outbox {
                let after_ms = self.config.outbox.redeliver_after.as_millis() as u64;
                commit.redeliver_at = plus_ms(self.clock.now(), after_ms);
                commit.tasks.push(task.clone());
                commit.settle_tasks.extend(settle.map(str::to_owned));
            }
            match self.store.commit(commit).await {
                Ok(_) => {
                    self.counter(&self.counters.inputs_handed_over);
                    if let Err(e) = self.queue.publish(task).await {
                        // With the outbox on, it re-publishes the task; without it,
                        // recovery finds the execution owing a decision.
                        tracing::warn!(saga_id = %saga_id, error = %e, "workflow task not published");
                    }
                    return Ok(Processed::Appended);
                }
                Err(e) if e.is_conflict() => {
                    // The execution moved on meanwhile: decide again on what it is now.
                    self.counter(&self.counters.conflicts);
                    conflicts += 1;
                    if conflicts > MAX_CONFLICT_RETRIES {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the execution closes.
    pub(super) async fn wait_closed(&self, saga_id: &SagaId) -> Result<Value> {
        let watch = self.watch(saga_id).await?;
        self.wait_watched(saga_id, watch, true).await
    }

    /// Starts watching for the execution's close: from now on a completion committed
    /// by this engine comes straight from the commit, and one written elsewhere is
    /// notified (the subscription is confirmed before this returns).
    pub(super) async fn watch(&self, saga_id: &SagaId) -> Result<Watch> {
        let local = self.outputs.wait(saga_id);
        let sub = self.signals.subscribe(saga_id).await?;
        Ok(Watch { local, sub })
    }

    /// [`Self::watch`] around `start` (which starts the execution): the subscription's
    /// round trip overlaps the start's commit. A close cannot be notified before the
    /// start is written and a step has run after it, so the subscription is in place
    /// first in every case but a reconnecting dispatcher, which the periodic read of
    /// the store covers; a failed subscription falls back to that read alone.
    /// `at_inbox`: `start` names the dispatcher's inbox for the close, so the watch
    /// waits there instead of subscribing.
    pub(super) async fn watch_around<T>(
        &self,
        saga_id: &SagaId,
        at_inbox: bool,
        start: impl std::future::Future<Output = Result<T>>,
    ) -> Result<(T, Watch)> {
        let local = self.outputs.wait(saga_id);
        let subscribe = async {
            if at_inbox {
                self.signals.watch_inbox(saga_id).await
            } else {
                self.signals.subscribe(saga_id).await
            }
        };
        let (sub, started) = tokio::join!(subscribe, start);
        let started = started?;
        let sub = sub.unwrap_or_else(|e| {
            tracing::warn!(saga_id = %saga_id, error = %e, "no subscription; reading the store for the result");
            tokio::sync::mpsc::unbounded_channel().1
        });
        Ok((started, Watch { local, sub }))
    }

    /// Waits until the execution closes. `check_first`: read the store before the
    /// first wait, for a close that may have come before `watch` (two reads; skipped
    /// only when the execution started after the watch began).
    pub(super) async fn wait_watched(
        &self,
        saga_id: &SagaId,
        watch: Watch,
        check_first: bool,
    ) -> Result<Value> {
        let Watch { mut local, mut sub } = watch;
        let mut check = check_first;
        loop {
            if check {
                if let Some(outcome) = self.outcome(saga_id).await? {
                    return outcome;
                }
            }
            check = true;
            tokio::select! {
                // Local first: a completion committed here is notified too, and the
                // notification must not win the race and cost a read of the store.
                biased;
                output = local.output() => return Ok(output),
                n = sub.recv() => match n {
                    Some(Notification::StatusChanged {
                        status: WorkflowStatus::Completed,
                        output: Some(output),
                    }) => return Ok(output),
                    Some(_) => {}
                    None => tokio::time::sleep(self.config.result_poll).await,
                },
                _ = tokio::time::sleep(self.config.result_poll) => {}
            }
        }
    }

    /// `Some` once closed: the output, or the error saying why not.
    async fn outcome(&self, saga_id: &SagaId) -> Result<Option<Result<Value>>> {
        let version = self.store.version(saga_id).await?;
        if version == 0 {
            return Err(Error::not_found(saga_id.as_str()));
        }
        let last = self.store.history_from(saga_id, version - 1).await?;
        let Some(last) = last.into_iter().next() else {
            return Ok(None);
        };
        match last.event_type {
            EventType::WorkflowExecutionCompleted => Ok(Some(Ok(last
                .attributes
                .get("output")
                .cloned()
                .unwrap_or(Value::Null)))),
            EventType::WorkflowExecutionFailed
            | EventType::WorkflowExecutionTimedOut
            | EventType::WorkflowExecutionCanceled => {
                Ok(Some(Err(self.closed_error(saga_id).await?)))
            }
            _ => Ok(None),
        }
    }

    async fn closed_error(&self, saga_id: &SagaId) -> Result<Error> {
        let history = self.store.history(saga_id).await?;
        let has = |t: EventType| history.iter().any(|e| e.event_type == t);
        let compensation_failed = history.iter().any(|e| {
            e.event_type == EventType::WorkflowExecutionFailed
                && e.attr_str("phase") == Some("compensation")
        });
        let failure: Vec<&str> = history
            .iter()
            .filter(|e| {
                matches!(
                    e.event_type,
                    EventType::WorkflowExecutionFailed | EventType::WorkflowExecutionTimedOut
                )
            })
            .filter_map(|e| e.attr_str("reason"))
            .collect();
        let compensated = has(EventType::WorkflowExecutionCompensating);
        let cause = history
            .iter()
            .find(|e| e.event_type == EventType::WorkflowExecutionFailed)
            .and_then(|e| e.attr_str("cause"));
        let kind = if compensation_failed {
            ErrorKind::Compensation
        } else if has(EventType::WorkflowExecutionCancelRequested) {
            ErrorKind::Cancelled
        } else if has(EventType::WorkflowExecutionTimedOut) {
            ErrorKind::Timeout
        } else {
            match cause {
                Some("activity") => ErrorKind::ActivityExecution,
                Some("step") => ErrorKind::StepExecution,
                _ => ErrorKind::WorkflowExecution,
            }
        };
        // Manual 7.2: after all compensations the saga is Cancelled; a failed
        // compensation, or nothing to compensate, leaves it Failed.
        let status = if has(EventType::WorkflowExecutionCanceled) {
            WorkflowStatus::Cancelled
        } else {
            WorkflowStatus::Failed
        };
        let message = if failure.is_empty() {
            "cancelled".to_owned()
        } else {
            failure.join("; then ")
        };
        Ok(Error::new(kind, message)
            .with("saga_id", saga_id)
            .with("status", status)
            .with("compensated", compensated))
    }

    /// Describes an execution (from the cache when it is there).
    pub(super) async fn describe(&self, saga_id: &SagaId) -> Result<ExecutionDescription> {
        let slot = self.cache.get(saga_id);
        let loaded;
        let guard;
        let exec = match &slot {
            Some(slot) => {
                guard = slot.lock().await;
                match guard.as_ref() {
                    Some(e) if self.store.version(saga_id).await? == e.version() => e,
                    _ => {
                        loaded = self.load(saga_id).await?;
                        &loaded
                    }
                }
            }
            None => {
                loaded = self.load(saga_id).await?;
                &loaded
            }
        };
        Ok(exec.description())
    }

    /// Publishes a workflow task for every open execution this engine can run.
    pub(super) async fn recover(&self) -> Result<()> {
        for status in [WorkflowStatus::Running, WorkflowStatus::Compensating] {
            let filter = ExecutionFilter {
                status: Some(status),
                ..Default::default()
            };
            for s in self.store.list_executions(&filter).await? {
                if !self.workflows.contains_key(s.workflow_type.as_str()) {
                    continue;
                }
                self.queue
                    .publish(Task {
                        kind: TaskKind::Workflow,
                        saga_id: s.saga_id.clone(),
                        queue: self.config.queue.clone(),
                        dedup_id: inputs::recovery_id(&s.saga_id, s.version),
                        payload: Vec::new(),
                    })
                    .await?;
            }
        }
        Ok(())
    }

    pub(super) async fn worker_loop(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        let mut paused = self.paused.subscribe();
        loop {
            if *shutdown.borrow() {
                break;
            }
            // The watchdog's circuit breaker: fetch nothing while a port is down.
            if *paused.borrow() {
                tokio::select! {
                    _ = paused.wait_for(|p| !*p) => continue,
                    _ = shutdown.changed() => break,
                }
            }
            let fetched = tokio::select! {
                r = self.queue.fetch(&self.config.queue, 1, Duration::from_secs(1)) => r,
                _ = shutdown.changed() => break,
            };
            match fetched {
                Ok(deliveries) => {
                    let _busy = (!deliveries.is_empty()).then(|| Busy::new(&self.busy));
                    for d in deliveries {
                        self.handle(d).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fetch failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn handle(&self, d: Delivery) {
        let saga_id = d.task.saga_id.clone();
        let mut keep_row = false;
        let outcome = match d.task.kind {
            TaskKind::Activity => {
                self.run_activity(&d.task, d.delivery_count, Some(&d.tag))
                    .await
            }
            TaskKind::Workflow if !d.task.payload.is_empty() => self.redrive(&d.task).await,
            TaskKind::Workflow => match self.run_workflow_task(&saga_id, &d.task.dedup_id).await {
                Ok((processed, redriven)) => {
                    keep_row = redriven.contains(&d.task.dedup_id);
                    Ok(processed)
                }
                Err(e) => Err(e),
            },
        };
        // Settle the outbox row of a task that needs no redelivery: a workflow task once
        // processed (unless it is the row of something it re-drives, a local activity
        // say, which that settles when done), any task dropped as stale. (An activity's
        // result settles its row in the commit that records it.)
        let settle = match (&outcome, d.task.kind) {
            (Ok(Processed::Dropped), _) | (Ok(_), TaskKind::Workflow) => self.outbox && !keep_row,
            _ => false,
        };
        if settle {
            self.settle_task(&d.task).await;
        }
        let settled = match outcome {
            Ok(Processed::Appended) => self.queue.ack(&d.tag).await,
            Ok(Processed::Dropped) => {
                self.counter(&self.counters.dropped_tasks);
                self.queue.ack(&d.tag).await
            }
            Err(e)
                if e.is_not_found()
                    || e.kind == ErrorKind::Codec
                        && (d.task.kind == TaskKind::Activity || !d.task.payload.is_empty()) =>
            {
                self.queue.terminate(&d.tag, &e.to_string()).await
            }
            Err(e) => {
                tracing::warn!(saga_id = %saga_id, error = %e, "task failed; redelivering later");
                self.queue.nak(&d.tag, Duration::from_secs(1)).await
            }
        };
        if let Err(e) = settled {
            tracing::debug!(saga_id = %saga_id, error = %e, "could not settle delivery");
        }
    }

    /// A workflow task with a payload: the effect it names, carried out here (its
    /// delivery's row is settled as any processed workflow task's).
    async fn redrive(&self, task: &Task) -> Result<Processed> {
        let redrive: inputs::Redrive = serde_json::from_slice(&task.payload)
            .map_err(|e| Error::codec(format!("workflow task payload does not decode: {e}")))?;
        match redrive {
            inputs::Redrive::Cancel => self.cancel_child(&task.saga_id, None).await?,
        }
        Ok(Processed::Appended)
    }

    /// Removes the outbox row `row` of `saga_id`, if any: what it re-drives is done.
    async fn settle_row(&self, saga_id: &SagaId, row: Option<&str>) {
        let Some(row) = row else {
            return;
        };
        if let Err(e) = self.store.settle_tasks(saga_id, &[row.to_owned()]).await {
            self.note(&e);
            tracing::debug!(saga_id = %saga_id, error = %e, "could not settle a task");
        }
    }

    /// Removes a task's outbox row: it needs no redelivery.
    async fn settle_task(&self, task: &Task) {
        let ids = std::slice::from_ref(&task.dedup_id);
        if let Err(e) = self.store.settle_tasks(&task.saga_id, ids).await {
            self.note(&e);
            tracing::debug!(saga_id = %task.saga_id, error = %e, "could not settle a task");
        }
    }

    /// Eager dispatch ([`SagaEngineBuilder::eager_activities`]): runs an activity task
    /// that this engine's own work just scheduled here and now, when it may. Returns
    /// the task when it must go to the queue instead.
    ///
    /// [`SagaEngineBuilder::eager_activities`]: super::SagaEngineBuilder::eager_activities
    fn run_eagerly(&self, task: Task, activity_type: &str, origin: Origin) -> Option<Task> {
        let may = origin == Origin::Worker
            && self.runs_eagerly_on(&task.queue)
            && self.activities.get_activity(activity_type).is_some();
        let me = self.me.upgrade().filter(|_| may);
        let Some(me) = me else {
            return Some(task);
        };
        let mut running = self.eager_runs();
        if running.len() >= self.config.concurrency {
            return Some(task);
        }
        self.counter(&self.counters.eager_activities);
        running.spawn(me.eager_task(task));
        None
    }

    /// Whether eager dispatch may run work of `queue` here: only where the outbox
    /// keeps the task (it is never published, so nothing else would), for this
    /// engine's own queue, and not while the engine stops or its workers are paused.
    fn runs_eagerly_on(&self, queue: &str) -> bool {
        self.config.eager_activities
            && self.outbox
            && self.config.run_workers
            && queue == self.config.queue
            && !*self.shutdown.borrow()
            && !*self.paused.borrow()
    }

    /// An idle start ([`SagaEngineBuilder::eager_start_when_idle`]) of an execution on
    /// `queue`: the claim, if this engine runs nothing and no other start holds it.
    ///
    /// [`SagaEngineBuilder::eager_start_when_idle`]: super::SagaEngineBuilder::eager_start_when_idle
    fn claim_idle_start(&self, queue: &str) -> Option<Busy<'_>> {
        if !self.config.eager_start_when_idle || !self.runs_eagerly_on(queue) {
            return None;
        }
        if !self.eager_runs().is_empty() {
            return None;
        }
        self.busy
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Busy(&self.busy))
    }

    /// One eagerly dispatched attempt, settled as a delivery from the queue would be.
    async fn run_eager(&self, task: Task) {
        match self.run_activity(&task, 1, None).await {
            // The commit that recorded the result settled the outbox row.
            Ok(Processed::Appended) => {}
            Ok(Processed::Dropped) => {
                self.counter(&self.counters.dropped_tasks);
                self.settle_task(&task).await;
            }
            Err(e) => {
                // As a delivery from the queue is nak'ed: after a pause, the queue's
                // redelivery, retries and dead-lettering take over. Should the publish
                // fail too, the outbox row is still there for the reconciler.
                tracing::warn!(saga_id = %task.saga_id, error = %e, "eager activity failed; handing it to the queue");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = self.queue.publish(task).await {
                    tracing::debug!(error = %e, "could not publish; the outbox re-drives it");
                }
            }
        }
    }

    /// Runs one attempt: `Ok(output)`, `Err(Some(error))`, or `Err(None)` when it ran
    /// past `timeout_ms`. The attempt runs on its own task, so a panicking activity
    /// fails its attempt instead of the worker.
    async fn execute(
        &self,
        ctx: ActivityContext,
        input: Box<serde_json::value::RawValue>,
        timeout_ms: Option<u64>,
        span: Option<tracing::Span>,
    ) -> std::result::Result<Value, Option<ActivityError>> {
        let Some(a) = self.activities.get_activity(&ctx.activity_type) else {
            return Err(Some(
                ActivityError::non_retryable(format!(
                    "unknown activity type `{}`",
                    ctx.activity_type
                ))
                .with_kind("unknown-activity"),
            ));
        };
        let fut = a
            .execute_dyn(ctx, input)
            .instrument(span.unwrap_or_else(tracing::Span::none));
        let handle = tokio::spawn(fut);
        let joined = match timeout_ms {
            Some(ms) => {
                let abort = handle.abort_handle();
                match tokio::time::timeout(Duration::from_millis(ms), handle).await {
                    Ok(j) => Some(j),
                    Err(_) => {
                        abort.abort();
                        None
                    }
                }
            }
            None => Some(handle.await),
        };
        match joined {
            None => Err(None),
            Some(Ok(r)) => r.map_err(Some),
            Some(Err(join)) => Err(Some(
                ActivityError::retryable(format!("activity panicked: {join}")).with_kind("panic"),
            )),
        }
    }

    /// Runs the attempt `queued` asks for, unless its result is recorded, and records
    /// the result. `delivery`: where the task came from the queue (`None` for an eager
    /// run), on which to report progress.
    async fn run_activity(
        &self,
        queued: &Task,
        delivery_count: u32,
        delivery: Option<&crate::port::DeliveryTag>,
    ) -> Result<Processed> {
        let saga_id = &queued.saga_id;
        let mut task: ActivityTask = serde_json::from_slice(&queued.payload)
            .map_err(|e| Error::codec(format!("activity task payload does not decode: {e}")))?;
        let history = task.history.take();
        let coded = task.workflow_type.is_empty()
            || self.workflows.contains_key(task.workflow_type.as_str());
        let awaited = if coded {
            self.awaits_attempt(saga_id, task.seq, task.attempt, delivery_count, history)
                .await
        } else {
            Err(unregistered(&task.workflow_type))
        };
        let record_on = match awaited {
            Ok(true) => Some(RecordOn::Folded),
            Ok(false) => None,
            // (A task from before tasks named their workflow type finds out here.)
            Err(e) if is_unregistered(&e) => {
                let exec = self.observe(saga_id).await?;
                exec.accepts_result(task.seq, task.attempt)
                    .then(|| RecordOn::Observed(Box::new(exec)))
            }
            Err(e) => return Err(e),
        };
        // A duplicate delivery (broker redelivery, outbox re-publish) of an attempt whose
        // result is recorded, or that was superseded: not run again. (Which deliveries
        // are checked against the store: see `awaits_attempt`.)
        let Some(record_on) = record_on else {
            return Ok(Processed::Dropped);
        };
        let started_at = self.clock.now();
        self.counter(&self.counters.activity_attempts);
        let ctx = ActivityContext {
            saga_id: saga_id.clone(),
            seq: task.seq,
            attempt: task.attempt,
            activity_type: task.activity_type.clone(),
        };
        let span = tracing::info_span!(
            "activity",
            saga_id = %saga_id,
            trace_id = %task.trace_id,
            activity_type = %task.activity_type,
            attempt = task.attempt
        );
        let span = super::in_trace(span, &task.trace_id);
        let began = Instant::now();
        let attempt = self.execute(ctx, task.input, task.timeout_ms, Some(span));
        let row = self.outbox.then_some(queued.dedup_id.as_str());
        let result = self.keeping_alive(saga_id, attempt, delivery, row).await;
        self.counters.by_type.activity_attempt(
            &task.activity_type,
            attempt_outcome(&result),
            began.elapsed(),
        );
        let finished = self.clock.now();
        let (event_type, attributes) = match result {
            Ok(output) => (
                EventType::ActivityTaskCompleted,
                json!({"seq": task.seq, "attempt": task.attempt, "activity_type": task.activity_type, "output": output}),
            ),
            Err(None) => (
                EventType::ActivityTaskTimedOut,
                json!({"seq": task.seq, "attempt": task.attempt, "activity_type": task.activity_type, "timeout_ms": task.timeout_ms}),
            ),
            Err(Some(error)) => (
                EventType::ActivityTaskFailed,
                json!({"seq": task.seq, "attempt": task.attempt, "activity_type": task.activity_type, "error": error}),
            ),
        };
        let started = json!({"seq": task.seq, "attempt": task.attempt, "activity_type": task.activity_type, "delivery": delivery_count});
        let inputs = vec![
            Input::new(EventType::ActivityTaskStarted, started, started_at),
            Input::new(event_type, attributes, finished),
        ];
        let settle = Some(queued.dedup_id.as_str());
        let wanted = |exec: &Execution| exec.accepts_result(task.seq, task.attempt);
        match record_on {
            RecordOn::Observed(exec) => {
                self.record_observed_if(saga_id, settle, Some(*exec), wanted, inputs)
                    .await
            }
            RecordOn::Folded => {
                self.record_settling_if(saga_id, settle, wanted, inputs)
                    .await
            }
        }
    }

    /// Runs `work` (an activity's attempts) and, while it lasts, tells the queue that
    /// `delivery` is alive and keeps the outbox row `row` from coming due, so that a
    /// slow activity is not handed out again the way a dead worker's task is.
    async fn keeping_alive<T>(
        &self,
        saga_id: &SagaId,
        work: impl Future<Output = T>,
        delivery: Option<&crate::port::DeliveryTag>,
        row: Option<&str>,
    ) -> T {
        tokio::pin!(work);
        let redeliver_after = self.config.outbox.redeliver_after;
        let every = match row {
            Some(_) => {
                let third = (redeliver_after / 3).max(Duration::from_millis(1));
                self.config.progress_every.min(third)
            }
            None => self.config.progress_every,
        };
        // A sleep, not an `Interval`: an interval's first tick is "immediate" only at
        // the timer's 1 ms resolution, which cost every attempt about a millisecond
        // before it started (BENCHMARKS.md).
        let beat = tokio::time::sleep(every);
        tokio::pin!(beat);
        loop {
            tokio::select! {
                r = &mut work => break r,
                _ = &mut beat => {
                    if let Some(tag) = delivery {
                        if let Err(e) = self.queue.progress(tag).await {
                            tracing::debug!(saga_id = %saga_id, error = %e, "progress not reported");
                        }
                    }
                    if let Some(row) = row {
                        // Not published again by a reconciler while it runs.
                        let until = plus_ms(self.clock.now(), redeliver_after.as_millis() as u64);
                        let ids = [row.to_owned()];
                        if let Err(e) = self.store.defer_tasks(saga_id, &ids, until).await {
                            tracing::debug!(saga_id = %saga_id, error = %e, "outbox task not deferred");
                        }
                    }
                    beat.as_mut().reset(tokio::time::Instant::now() + every);
                }
            }
        }
    }

    /// Whether the execution still waits for this attempt's result (loading it into
    /// the cache if needed, where recording the result will find it). `history`: the
    /// execution's history as the task carried it, if it did.
    async fn awaits_attempt(
        &self,
        saga_id: &SagaId,
        seq: u64,
        attempt: u32,
        delivery_count: u32,
        history: Option<Box<serde_json::value::RawValue>>,
    ) -> Result<bool> {
        let slot = self.slot(saga_id);
        let mut guard = slot.lock().await;
        let cached = guard.is_some();
        let mut carried = false;
        if !cached {
            // Decoded only here, where the execution is not at hand.
            let seeded = history.and_then(|raw| {
                let folded = serde_json::from_str::<Vec<HistoryEvent>>(raw.get())
                    .map_err(|e| Error::codec(format!("carried history does not decode: {e}")))
                    .and_then(|events| self.fold(saga_id, None, &events));
                match folded {
                    Ok(exec) => Some(exec),
                    Err(e) => {
                        tracing::debug!(saga_id = %saga_id, error = %e, "carried history does not fold; reading the store");
                        None
                    }
                }
            });
            carried = seeded.is_some();
            *guard = Some(match seeded {
                Some(exec) => {
                    self.counter(&self.counters.histories_carried);
                    exec
                }
                None => self.load(saga_id).await?,
            });
        }
        let awaits = guard
            .as_ref()
            .is_some_and(|e| e.accepts_result(seq, attempt));
        // A stale "no" is always re-checked; a state just loaded is current. With a
        // shared queue (the outbox is on) a redelivery may be of an attempt another
        // worker finished after the cache was filled (its ack was lost): the store
        // decides. A first delivery is not re-checked: its result is recorded only in
        // the commit that settles its outbox row, and the reconciler re-publishes only
        // unsettled rows, so the read would nearly always confirm the cache; in the rare
        // race it loses, the attempt runs (activities are idempotency-keyed) and its
        // commit fails the version check.
        // A carried history is always checked: the task may be a late duplicate of one
        // whose execution has moved on, or closed and left every cache (one read, of
        // the version, instead of loading the history).
        let check = carried || (cached && ((self.outbox && delivery_count > 1) || !awaits));
        if check
            && self.store.version(saga_id).await? != guard.as_ref().map_or(0, Execution::version)
        {
            // The cache is behind another engine's appends: decide on fresh state.
            let exec = self.load(saga_id).await?;
            let awaits = exec.accepts_result(seq, attempt);
            *guard = Some(exec);
            return Ok(awaits);
        }
        Ok(awaits)
    }

    /// A workflow task (`delivered`, its dedup id): reload the execution from the
    /// store, record what it owes, and re-drive its timers, children and pending
    /// activities (recovery after a crash), but no activity attempt that may still be
    /// running: not one the outbox re-drives itself, nor, on an in-process queue, one
    /// whose task that queue still holds. Also returns the outbox ids of what it
    /// re-drives that no message carries (local activities, child starts, a closed
    /// child's news to its parent): their rows must outlive the task, and what they
    /// re-drive settles them.
    async fn run_workflow_task(
        &self,
        saga_id: &SagaId,
        delivered: &str,
    ) -> Result<(Processed, Vec<String>)> {
        self.evict(saga_id);
        // The version the decisions were made on: an attempt scheduled at or after it
        // was scheduled by this very task, and its task published with the commit.
        let mut decided_on = 0;
        let processed = self
            .process(saga_id, false, Origin::Worker, |exec| {
                decided_on = exec.version();
                Ok(Some(Vec::new()))
            })
            .await?;
        let slot = self.slot(saga_id);
        let guard = slot.lock().await;
        let Some(exec) = guard.as_ref() else {
            return Ok((processed, Vec::new()));
        };
        let mut effects = Vec::new();
        let mut redriven = Vec::new();
        for pa in exec.s.activities.values() {
            if pa.backing_off {
                continue; // its retry timer re-schedules it
            }
            if pa.scheduled_event_id >= decided_on {
                continue; // just scheduled: published (or run) with its commit
            }
            if pa.local {
                // Its outbox row, as its scheduling commit wrote it (it may be the very
                // task being processed).
                let row = inputs::dedup_id(saga_id, pa.scheduled_event_id);
                // Run it again only where no run of it is alive. This task may be for
                // something else (a signal, a timer) that arrived while it runs, here
                // or, with the outbox on, on another worker, which keeps its row from
                // coming due: so there, only its own row, due, or a recovery says the
                // run died with its worker.
                let orphaned = !self.locals.running(saga_id, pa.seq)
                    && (!self.outbox || delivered == row || inputs::is_recovery_id(delivered));
                if !orphaned {
                    if delivered == row {
                        // Its row, due while it still runs here: the run settles it.
                        redriven.push(row);
                    }
                    continue;
                }
                let redrive = self.outbox.then_some(row);
                redriven.extend(redrive.clone());
                effects.push(Effect::RunLocal(LocalRun {
                    seq: pa.seq,
                    activity_type: pa.activity_type.clone(),
                    input: pa.input.clone(),
                    retry: pa.retry.clone(),
                    timeout_ms: pa.timeout_ms,
                    redrive,
                }));
                continue;
            }
            if self.outbox {
                // The outbox holds its task and re-publishes it when it comes due. A
                // publish now could hand out an attempt still running eagerly on
                // another worker (never published, so the broker cannot drop it).
                continue;
            }
            if self.queue.is_in_process() && !inputs::is_recovery_id(delivered) {
                // An in-process queue holds the task until it is done and loses it
                // only with the process, whose tasks recovery re-drives; and it
                // drops no duplicate, so a publish now would hand out a second copy
                // of an attempt that may be running. (A broker drops a re-publish
                // whose original it still holds: there this is a second chance for
                // a task it lost.)
                continue;
            }
            let mut task = ActivityTask {
                seq: pa.seq,
                attempt: pa.attempt,
                activity_type: pa.activity_type.clone(),
                input: raw(Some(&pa.input)),
                timeout_ms: pa.timeout_ms,
                trace_id: exec.s.trace_id.clone(),
                workflow_type: exec.s.workflow_type.clone(),
                history: None,
            };
            // The task as first published: same dedup id (the broker drops it if it
            // still holds the original), same outbox row.
            let scheduled = HistoryEvent::new(
                saga_id.clone(),
                pa.scheduled_event_id,
                EventType::ActivityTaskScheduled,
                exec.s.now,
                Value::Null,
                exec.s.trace_id.clone(),
            );
            let queue = pa.task_queue.as_deref().unwrap_or(self.queue_of(exec));
            effects.push(Effect::Publish(activity_task(&scheduled, &mut task, queue)));
        }
        for t in exec.s.timers.values() {
            effects.push(Effect::CreateTimer(TimerRecord {
                timer_id: t.timer_id.clone(),
                saga_id: saga_id.clone(),
                kind: t.kind,
                fire_at: t.fire_at,
                attributes: json!({"seq": t.seq, "slot": t.slot}),
            }));
        }
        for c in exec.s.children.values() {
            effects.push(if c.started {
                Effect::CheckChild(c.child_id.clone())
            } else {
                let redrive = self.outbox.then(|| inputs::child_start_id(saga_id, c.seq));
                redriven.extend(redrive.clone());
                Effect::StartChild(ChildStart {
                    seq: c.seq,
                    child_id: c.child_id.clone(),
                    workflow_type: c.workflow_type.clone(),
                    input: c.input.clone(),
                    trace_id: exec.s.trace_id.clone(),
                    task_queue: self.child_queue(Some(&c.workflow_type), self.queue_of(exec)),
                    redrive,
                })
            });
        }
        if exec.is_closed() && exec.s.parent.is_some() {
            // A closed child whose parent may not have the news yet.
            effects.push(Effect::NotifyParent);
            if self.outbox {
                redriven.push(inputs::notify_parent_id(saga_id));
            }
        }
        drop(guard);
        self.run_effects(saga_id, effects, Origin::Worker).await;
        Ok((Processed::Appended, redriven))
    }

    pub(super) async fn timer_loop(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = self.clock.now();
            let claimed = match self
                .store
                .claim_due(now, 256, self.config.timer_lease)
                .await
            {
                Ok(ts) => ts,
                Err(e) => {
                    self.note(&e);
                    tracing::warn!(error = %e, "timer claim failed");
                    Vec::new()
                }
            };
            let fired_any = !claimed.is_empty();
            for t in claimed {
                self.fire(t).await;
            }
            let mut deadline = Instant::now() + self.config.timer_poll;
            if let Ok(Some(next)) = self.store.next_fire_at().await {
                // +1 ms: the clock is truncated to milliseconds, so sleeping to the
                // exact instant could wake a hair before the timer is due.
                let at = self.clock.instant_at(next) + Duration::from_millis(1);
                let floor = Instant::now()
                    + if fired_any {
                        Duration::ZERO
                    } else {
                        Duration::from_millis(20)
                    };
                deadline = deadline.min(at.max(floor));
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.timer_wake.notified() => {}
                _ = shutdown.changed() => break,
            }
        }
    }

    async fn fire(&self, t: TimerRecord) {
        let now = self.clock.now();
        let r = if t.kind == TimerKind::ActivityTimeout {
            let seq = t.attributes["seq"].as_u64().unwrap_or_default();
            let attempt = t.attributes["attempt"].as_u64().unwrap_or_default() as u32;
            let attrs = json!({"seq": seq, "attempt": attempt, "source": "timer"});
            let input = Input::new(EventType::ActivityTaskTimedOut, attrs, now);
            self.record_if(
                &t.saga_id,
                |exec| exec.accepts_result(seq, attempt),
                vec![input],
            )
            .await
        } else {
            let attrs = json!({"timer_id": t.timer_id, "kind": t.kind});
            let input = Input::new(EventType::TimerFired, attrs, now);
            self.record_if(
                &t.saga_id,
                |exec| exec.s.timers.contains_key(&t.timer_id),
                vec![input],
            )
            .await
        };
        match r {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                // Leave the claim to expire: another attempt will fire it.
                tracing::warn!(timer_id = %t.timer_id, error = %e, "timer not fired");
                return;
            }
        }
        if let Err(e) = self.store.complete(&t.timer_id).await {
            tracing::warn!(timer_id = %t.timer_id, error = %e, "timer not completed");
        }
    }
}

/// The latency label of an attempt's result (see [`Inner::execute`]).
fn attempt_outcome<T>(r: &std::result::Result<T, Option<ActivityError>>) -> AttemptOutcome {
    match r {
        Ok(_) => AttemptOutcome::Completed,
        Err(Some(_)) => AttemptOutcome::Failed,
        Err(None) => AttemptOutcome::TimedOut,
    }
}

/// What an effect that runs as its own task returns. Such effects call back into
/// `process`, whose future spawns them: a named, boxed `Send` future breaks that cycle
/// for the compiler's `Send` check. (Eager attempts here; local activities and child
/// workflows in `local` and `children`.)
type BoxedTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Inner {
    fn eager_task(self: Arc<Self>, task: Task) -> BoxedTask {
        Box::pin(async move { self.run_eager(task).await })
    }
}

fn codec_name(codec: AnyCodec) -> &'static str {
    use crate::codec::Codec;
    codec.name()
}
