//! The engine (manual section 4): `SagaEngine`, its builder, workers, timers, replay.
//!
//! Every change to an execution goes through one path, `Inner::process` (in
//! `worker.rs`): load the execution (from the per-engine cache, or snapshot +
//! history), fold the new input events and the decisions they owe, append everything
//! in one call with the version the fold started from (optimistic locking; a conflict
//! reloads and retries), then carry out the effects of the new events (publish tasks,
//! create timers, notify, snapshot). Activity workers, the timer loop, `start`,
//! `signal` and `cancel` all feed that path.

mod cache;
mod clock;
pub(crate) mod execution;
pub(crate) mod inputs;
mod machine;
mod outputs;
mod reconciler;
mod watchdog;
mod worker;

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use self::clock::Clock;
use self::execution::Execution;
use self::machine::{Erased, ErasedWorkflow};
use crate::activity::{Activity, ActivityRegistration, ActivityRegistry};
use crate::adapter::memory::{InMemorySignalDispatcher, InMemoryTaskQueue};
use crate::codec::AnyCodec;
use crate::domain::{Error, ErrorKind, EventType, HistoryEvent, Result, SagaId, WorkflowStatus};
use crate::port::{HistoryReplayer, SignalDispatcher, StoreReplayer, TaskQueue, WorkflowStore};
use crate::snapshot::SnapshotConfig;
use crate::watchdog::{Finding, WatchdogConfig};
use crate::workflow::Workflow;

/// Options for one start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartOptions {
    /// Fail (and compensate) the execution if it has not finished after this long;
    /// overrides the workflow's default.
    pub timeout: Option<Duration>,
    /// The trace id carried by every event; generated when absent.
    pub trace_id: Option<String>,
    /// The task queue of this execution: its workflow tasks and its activity tasks
    /// (but those of an activity that names its own queue) go there, and only workers
    /// serving it ([`SagaEngineBuilder::task_queue_name`]) run them. Default: the
    /// workflow type's ([`WorkflowOptions::task_queue`](crate::workflow::WorkflowOptions::task_queue)),
    /// else the starting engine's queue. Recorded in `WorkflowExecutionStarted`.
    pub task_queue: Option<String>,
    /// Eager start: the activities the first step schedules run on this engine right
    /// after the start commits, as a worker's own step's do
    /// ([`SagaEngineBuilder::eager_activities`]), instead of going through the task
    /// queue; the execution then stays on this engine. Lower latency for a caller
    /// that is itself a worker of the execution's queue (like Temporal's
    /// `request_eager_start`). Off by default, so that new executions spread over the
    /// workers; an idle engine starts eagerly anyway
    /// ([`SagaEngineBuilder::eager_start_when_idle`]). Where the engine cannot run
    /// them (no outbox, another queue, no free slot, activity not registered) they go
    /// to the queue as usual. Only an engine runs activities: a
    /// [`SagaClient`](crate::client::SagaClient) start ignores it.
    pub eager: bool,
}

/// Counters the engine keeps (exported as metrics by the operations layer).
#[derive(Debug, Default)]
struct Counters {
    workflow_tasks: AtomicU64,
    conflicts: AtomicU64,
    loads: AtomicU64,
    corrupt_snapshots: AtomicU64,
    snapshots_saved: AtomicU64,
    activity_attempts: AtomicU64,
    dropped_tasks: AtomicU64,
    workflow_task_failures: AtomicU64,
    store_errors: AtomicU64,
    outbox_redelivered: AtomicU64,
    watchdog_findings: AtomicU64,
    watchdog_actions: AtomicU64,
    eager_activities: AtomicU64,
    histories_carried: AtomicU64,
    inputs_handed_over: AtomicU64,
    /// Activity latencies and workflow lifecycle counts, by type.
    by_type: crate::metrics::Recorder,
}

/// A copy of the engine's counters, its cache gauge, histograms and per-type counts (render it with
/// [`EngineMetrics::to_prometheus`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineMetrics {
    /// Batches of events appended by the engine.
    pub workflow_tasks: u64,
    /// Optimistic-locking conflicts that were reloaded and retried.
    pub conflicts: u64,
    /// Executions loaded from the store (cache misses: snapshot + replay).
    pub loads: u64,
    /// Snapshots that failed their checksum or did not decode.
    pub corrupt_snapshots: u64,
    /// Snapshots written.
    pub snapshots_saved: u64,
    /// Activity attempts executed by this engine's workers.
    pub activity_attempts: u64,
    /// Tasks dropped because their result was already in history.
    pub dropped_tasks: u64,
    /// Workflow tasks that failed (replay mismatch, fingerprint, decode).
    pub workflow_task_failures: u64,
    /// Calls to the event or timer store that failed (an outage shows here first).
    pub store_errors: u64,
    /// Outbox tasks the reconciler published again (their first publish was lost, or
    /// their result was not recorded in time).
    pub outbox_redelivered: u64,
    /// Findings the watchdog reported (see [`SagaEngine::watchdog_findings`]).
    pub watchdog_findings: u64,
    /// Actions the watchdog took: forced timeouts, cancellations, worker pauses and
    /// resumptions.
    pub watchdog_actions: u64,
    /// Activity attempts this engine ran eagerly, right after the commit that
    /// scheduled them, without the task queue (also counted in `activity_attempts`).
    pub eager_activities: u64,
    /// Executions this engine built from the history their task carried instead of
    /// loading them from the store (the first task of an execution started elsewhere).
    pub histories_carried: u64,
    /// Inputs this engine recorded on executions whose workflow it has no code for (an
    /// activity-only worker's results, timers, children's outcomes, signals), each
    /// handed with a workflow task to a worker that has the code.
    pub inputs_handed_over: u64,
    /// Executions with a place in the cache now (folded, or being loaded), at most
    /// [`SagaEngineBuilder::max_cached_executions`] at rest (a gauge, not a counter).
    pub cached_executions: u64,
    /// How long activity attempts (local ones included) took on this engine's
    /// workers, by activity type and outcome; sorted, types never run left out.
    pub activity_latency: Vec<crate::metrics::ActivityLatency>,
    /// Executions started and closed by this engine, by workflow type; sorted.
    pub workflows: Vec<crate::metrics::WorkflowCounts>,
}

/// What `describe` reports about one execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionDescription {
    /// The execution.
    pub saga_id: SagaId,
    /// Its workflow type.
    pub workflow_type: String,
    /// The fingerprint it started with.
    pub fingerprint: String,
    /// Its status.
    pub status: WorkflowStatus,
    /// The machine's current checkpoint (state variant).
    pub checkpoint: String,
    /// Events in its history.
    pub history_length: u64,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// Activities in flight: (type, attempt).
    pub pending_activities: Vec<(String, u32)>,
    /// Timers pending: ids.
    pub pending_timers: Vec<String>,
    /// Signals waited for.
    pub waiting_for_signals: Vec<String>,
    /// Child workflows awaited: their saga ids.
    pub pending_children: Vec<String>,
    /// Compensations that ran, in the order they ran (compensation activity types).
    pub compensations_done: Vec<String>,
    /// Compensations still to run, next first.
    pub compensations_pending: Vec<String>,
    /// Why it failed, if it did (the workflow's error, then any compensation failure).
    pub failure: Option<String>,
    /// The output, once completed.
    pub output: Option<Value>,
    /// The last workflow-task failure (replay mismatch, ...), if the execution is stuck.
    pub workflow_task_failure: Option<String>,
    /// The trace id.
    pub trace_id: String,
}

/// The result of [`SagaEngine::health`]: one entry per port.
#[derive(Debug)]
pub struct HealthReport {
    /// The event store answered.
    pub event_store: Result<()>,
    /// The timer store answered.
    pub timer_store: Result<()>,
    /// The task queue answered.
    pub task_queue: Result<()>,
    /// The signal dispatcher answered.
    pub signals: Result<()>,
}

impl HealthReport {
    /// True when every port answered.
    pub fn is_healthy(&self) -> bool {
        self.event_store.is_ok()
            && self.timer_store.is_ok()
            && self.task_queue.is_ok()
            && self.signals.is_ok()
    }

    /// The failures, one per unhealthy port.
    pub fn failures(&self) -> Vec<&Error> {
        [
            &self.event_store,
            &self.timer_store,
            &self.task_queue,
            &self.signals,
        ]
        .into_iter()
        .filter_map(|r| r.as_ref().err())
        .collect()
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
struct Config {
    concurrency: usize,
    queue: String,
    codec: AnyCodec,
    snapshots: SnapshotConfig,
    timer_poll: Duration,
    timer_lease: Duration,
    run_workers: bool,
    /// `None`: exactly when the outbox is off
    /// ([`SagaEngineBuilder::recover_on_start`]).
    recover_on_start: Option<bool>,
    result_poll: Duration,
    outbox: OutboxConfig,
    progress_every: Duration,
    eager_activities: bool,
    eager_start_when_idle: bool,
    watchdog: Option<WatchdogConfig>,
    max_cached_executions: usize,
}

/// The transactional outbox and its reconciler (DESIGN.md section 6, [`Outbox`]).
///
/// [`Outbox`]: crate::port::Outbox
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxConfig {
    /// Write every task to the store's outbox with the events that cause it. `None`
    /// (the default): on exactly when the task queue is outside the process
    /// ([`TaskQueue::is_in_process`] is false), where a lost message would otherwise
    /// stall an execution.
    pub enabled: Option<bool>,
    /// How long a task may stay unsettled before the reconciler publishes it again
    /// (default 60 s), and again after each such period. A republished task whose
    /// result is recorded meanwhile is dropped by the worker that receives it, and the
    /// broker drops a republish whose original it still holds (NATS deduplicates by
    /// `Nats-Msg-Id` for two minutes); an activity attempt still running past both may
    /// be delivered a second time, which its idempotency key must absorb. So this
    /// trades latency after a lost message against duplicate deliveries: keep it above
    /// your usual activity duration.
    pub redeliver_after: Duration,
    /// How often the reconciler looks for due tasks (default 1 s).
    pub reconcile_every: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            enabled: None,
            redeliver_after: Duration::from_secs(60),
            reconcile_every: Duration::from_secs(1),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            concurrency: 32,
            queue: inputs::DEFAULT_QUEUE.into(),
            codec: AnyCodec::Json,
            snapshots: SnapshotConfig::default(),
            timer_poll: Duration::from_secs(1),
            timer_lease: Duration::from_secs(30),
            run_workers: true,
            recover_on_start: None,
            result_poll: Duration::from_secs(1),
            outbox: OutboxConfig::default(),
            progress_every: Duration::from_secs(10),
            eager_activities: true,
            eager_start_when_idle: true,
            watchdog: None,
            max_cached_executions: 10_000,
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Execution>>>;

pub(crate) struct Inner {
    store: Arc<dyn WorkflowStore>,
    queue: Arc<dyn TaskQueue>,
    signals: Arc<dyn SignalDispatcher>,
    replayer: Arc<dyn HistoryReplayer>,
    workflows: HashMap<&'static str, Arc<dyn ErasedWorkflow>>,
    activities: ActivityRegistry,
    config: Config,
    cache: cache::ExecutionCache,
    clock: Clock,
    counters: Counters,
    /// Whether commits write their tasks to the outbox ([`OutboxConfig::enabled`],
    /// resolved against the queue).
    outbox: bool,
    timer_wake: Notify,
    /// Waiters in this process for outputs this engine commits.
    outputs: Arc<outputs::Outputs>,
    shutdown: watch::Sender<bool>,
    /// True while the watchdog's circuit breaker holds the workers (a port is down).
    paused: watch::Sender<bool>,
    /// The watchdog's recent findings, newest last.
    findings: Mutex<std::collections::VecDeque<Finding>>,
    /// Activity attempts running eagerly (see [`SagaEngineBuilder::eager_activities`]):
    /// aborted with the engine, awaited by a graceful shutdown.
    eager: Mutex<tokio::task::JoinSet<()>>,
    /// Work that makes this engine busy for an idle start
    /// ([`SagaEngineBuilder::eager_start_when_idle`]): deliveries from the queue being
    /// handled, and the idle start being committed.
    busy: AtomicUsize,
    /// Local activities running in this process.
    locals: worker::RunningLocals,
    /// Itself, for effects that run as their own tasks (child starts, local
    /// activities): they call back into `process`.
    me: std::sync::Weak<Inner>,
}

/// Builds a [`SagaEngine`].
#[must_use]
pub struct SagaEngineBuilder {
    store: Option<Arc<dyn WorkflowStore>>,
    queue: Option<Arc<dyn TaskQueue>>,
    signals: Option<Arc<dyn SignalDispatcher>>,
    replayer: Option<Arc<dyn HistoryReplayer>>,
    workflows: HashMap<&'static str, Arc<dyn ErasedWorkflow>>,
    activities: ActivityRegistry,
    config: Config,
}

impl SagaEngineBuilder {
    /// The store for events, snapshots and timers (`InMemoryStore`, `SqliteStore`,
    /// `PostgresStore`). `build` registers the workflows' definitions in it too, for
    /// tools without the code (see [`DefinitionStore`](crate::port::DefinitionStore)).
    pub fn store<S: WorkflowStore>(mut self, store: S) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The task queue (default: a new in-process queue).
    pub fn queue<Q: TaskQueue>(mut self, queue: Q) -> Self {
        self.queue = Some(Arc::new(queue));
        self
    }

    /// The signal dispatcher (default: a new in-process dispatcher).
    pub fn signals<D: SignalDispatcher>(mut self, signals: D) -> Self {
        self.signals = Some(Arc::new(signals));
        self
    }

    /// The history replayer (default: [`StoreReplayer`] over the event store).
    pub fn replayer<R: HistoryReplayer>(mut self, replayer: R) -> Self {
        self.replayer = Some(Arc::new(replayer));
        self
    }

    /// Registers workflow `W`.
    pub fn workflow<W: Workflow>(mut self) -> Self {
        self.workflows
            .insert(W::TYPE_ID, Arc::new(Erased::<W>::new()));
        self
    }

    /// Registers activity `A`.
    pub fn activity<A: Activity>(mut self) -> Self {
        self.activities.register_activity::<A>();
        self
    }

    /// Registers activities: `.activities([activity::<a>(), activity::<b>()])`.
    pub fn activities(mut self, regs: impl IntoIterator<Item = ActivityRegistration>) -> Self {
        self.activities.register_all(regs);
        self
    }

    /// Worker tasks pulling from the queue (default 32).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }

    /// The queue this engine serves (default `"default"`), and where the executions it
    /// starts send their tasks unless [`StartOptions::task_queue`] says otherwise: run
    /// workers with different queues to give workflows workers of their own.
    pub fn task_queue_name(mut self, name: impl Into<String>) -> Self {
        self.config.queue = name.into();
        self
    }

    /// The codec for snapshots (default JSON).
    pub fn codec(mut self, codec: AnyCodec) -> Self {
        self.config.codec = codec;
        self
    }

    /// Snapshot interval, retention and checksums.
    pub fn snapshots(mut self, config: SnapshotConfig) -> Self {
        self.config.snapshots = config;
        self
    }

    /// How often the timer loop looks for due timers at most (default 1 s; it also
    /// wakes for timers this engine creates).
    pub fn timer_poll_interval(mut self, d: Duration) -> Self {
        self.config.timer_poll = d;
        self
    }

    /// How long a caller waiting for a result (`execute`, `RunHandle::result`) waits
    /// for a notification before it reads the store anyway (default 1 s): what a lost
    /// notification (a dispatcher reconnecting, a process that closed the execution
    /// and died before it notified) costs at most.
    pub fn result_poll_interval(mut self, d: Duration) -> Self {
        self.config.result_poll = d;
        self
    }

    /// Run no workers or timer loop: a client that only starts, signals and reads.
    pub fn client_only(mut self) -> Self {
        self.config.run_workers = false;
        self
    }

    /// Whether a new engine re-drives every open execution of its workflow types that
    /// it finds in the store, publishing a workflow task for each to this engine's
    /// queue. Default: exactly when the outbox is off ([`OutboxConfig::enabled`]).
    ///
    /// Without the outbox this is how work survives a crash of the process that held
    /// it: an in-process queue dies with the process. With the outbox on, every task
    /// and every effect still owed is a row the reconciler publishes again once due,
    /// so recovery would only add, on every restart of every worker, one task per open
    /// execution (a load spike where many executions wait for signals or timers).
    ///
    /// Turn it on once, on one worker, when moving executions that an engine without
    /// the outbox wrote onto workers with it, or after upgrading from a build whose
    /// outbox held no rows for local activities, child starts, a child's news to its
    /// parent and a parent's cancellation of its children.
    pub fn recover_on_start(mut self, yes: bool) -> Self {
        self.config.recover_on_start = Some(yes);
        self
    }

    /// How often a worker reports progress on the delivery of an activity that is
    /// still running (default 10 s): keep it well under the task queue's ack wait
    /// (30 s by default for the in-memory and NATS queues).
    pub fn progress_every(mut self, d: Duration) -> Self {
        self.config.progress_every = d.max(Duration::from_millis(1));
        self
    }

    /// Eager activity dispatch (default on; like Temporal's eager activities): with
    /// the outbox on, an activity that this engine's own work schedules on this
    /// engine's queue runs here at once, while a slot is free (at most
    /// [`concurrency`](Self::concurrency) such runs), instead of going through the
    /// task queue. The task is still in the outbox, written with the events that
    /// schedule it, and the running attempt keeps deferring it there; if this process
    /// dies, the reconciler publishes it after [`OutboxConfig::redeliver_after`] and
    /// another worker runs it. A saga thus stays on the worker that took its first task,
    /// which saves each step a publish and a delivery, and keeps its state in that
    /// worker's cache. Starts and signals from clients go through the queue, so new
    /// sagas spread over the workers, unless a start asks for an eager start
    /// ([`StartOptions::eager`]) or finds this engine idle
    /// ([`eager_start_when_idle`](Self::eager_start_when_idle)).
    pub fn eager_activities(mut self, yes: bool) -> Self {
        self.config.eager_activities = yes;
        self
    }

    /// Eager start while idle (default on): a start on this engine that finds it
    /// running nothing (no task from the queue being handled, no eager attempt, no
    /// other such start) is an eager start ([`StartOptions::eager`]): its first
    /// activities run here, and so, by eager dispatch, does the rest of the execution.
    /// A lightly loaded system thus runs a workflow without the broker, as DBOS runs
    /// every workflow in the process that starts it; under load, starts find the
    /// engine busy and go through the queue, spreading over the workers. One start at
    /// a time takes the idle engine, so a burst of starts spreads too. The outbox
    /// keeps the first task as it keeps any eager one: should this process die, the
    /// reconciler hands it to another worker. Acts only where eager dispatch does
    /// ([`eager_activities`](Self::eager_activities), the outbox on, the execution on
    /// this engine's queue).
    pub fn eager_start_when_idle(mut self, yes: bool) -> Self {
        self.config.eager_start_when_idle = yes;
        self
    }

    /// How many folded executions the engine keeps between tasks (default 10 000; like
    /// Temporal's `max_cached_workflows`). Past it the least recently used go, and a
    /// later task for one loads it again (snapshot and history). An execution leaves
    /// the cache when this engine closes it; one another worker closes stays until
    /// pushed out, so the bound is what keeps a long-running worker's memory flat.
    pub fn max_cached_executions(mut self, n: usize) -> Self {
        self.config.max_cached_executions = n.max(1);
        self
    }

    /// The transactional outbox and its reconciler (default: on when the task queue is
    /// outside the process).
    pub fn outbox(mut self, config: OutboxConfig) -> Self {
        self.config.outbox = config;
        self
    }

    /// Runs the watchdog (manual section 15; [`crate::watchdog`]) on this engine's
    /// workers: its detectors every [`WatchdogConfig::every`], their actions, the
    /// findings in [`SagaEngine::watchdog_findings`] and the metrics. Off by default.
    pub fn watchdog(mut self, config: WatchdogConfig) -> Self {
        self.config.watchdog = Some(config);
        self
    }

    /// Validates the configuration, registers each workflow's definition in the store
    /// (when it keeps them), and starts the workers.
    pub async fn build(self) -> Result<SagaEngine> {
        let store = self
            .store
            .ok_or_else(|| Error::new(ErrorKind::Configuration, "no store: call `.store(..)`"))?;
        self.activities.validate()?;
        if self.config.snapshots.interval == 0 {
            return Err(Error::new(
                ErrorKind::Configuration,
                "snapshot interval must be at least 1",
            ));
        }
        // Before any worker runs, so that tools without the code (the `saga` CLI) find
        // the definition of every execution they see.
        for wf in self.workflows.values() {
            match store.register_definition(wf.definition(Utc::now())).await {
                Err(e) if e.context("code") == Some("unsupported") => break,
                r => r?,
            }
        }
        let replayer = self
            .replayer
            .unwrap_or_else(|| Arc::new(StoreReplayer::new(store.clone())));
        let (shutdown, _) = watch::channel(false);
        let queue: Arc<dyn TaskQueue> = self
            .queue
            .unwrap_or_else(|| Arc::new(InMemoryTaskQueue::new()));
        let outbox = self
            .config
            .outbox
            .enabled
            .unwrap_or_else(|| !queue.is_in_process());
        let cache = cache::ExecutionCache::new(self.config.max_cached_executions);
        let inner = Arc::new_cyclic(|me| Inner {
            store,
            queue,
            signals: self
                .signals
                .unwrap_or_else(|| Arc::new(InMemorySignalDispatcher::new())),
            replayer,
            workflows: self.workflows,
            activities: self.activities,
            config: self.config,
            cache,
            clock: Clock::new(),
            counters: Counters::default(),
            outbox,
            timer_wake: Notify::new(),
            outputs: Arc::default(),
            shutdown,
            paused: watch::channel(false).0,
            findings: Mutex::new(std::collections::VecDeque::new()),
            eager: Mutex::new(tokio::task::JoinSet::new()),
            busy: AtomicUsize::new(0),
            locals: worker::RunningLocals::default(),
            me: me.clone(),
        });
        let mut tasks = Vec::new();
        if inner.config.run_workers {
            if inner.config.recover_on_start.unwrap_or(!inner.outbox) {
                inner.recover().await?;
            }
            for _ in 0..inner.config.concurrency {
                tasks.push(tokio::spawn(inner.clone().worker_loop()));
            }
            tasks.push(tokio::spawn(inner.clone().timer_loop()));
            // Always: besides this engine's own tasks (when its outbox is on), the
            // outbox holds the workflow tasks of starts and signals written by clients
            // without a queue (the `saga` CLI).
            tasks.push(tokio::spawn(inner.clone().reconcile_loop()));
            if let Some(config) = inner.config.watchdog.clone() {
                tasks.push(tokio::spawn(inner.clone().watchdog_loop(config)));
            }
        }
        Ok(SagaEngine {
            inner,
            tasks: Mutex::new(tasks),
        })
    }
}

/// The saga engine: starts, signals, cancels and reads executions, and runs workers.
///
/// Dropping the engine stops its workers at once (as a crash would); use
/// [`SagaEngine::shutdown`] to stop them between tasks.
pub struct SagaEngine {
    inner: Arc<Inner>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for SagaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut workflows: Vec<_> = self.inner.workflows.keys().collect();
        workflows.sort();
        f.debug_struct("SagaEngine")
            .field("workflows", &workflows)
            .field("activities", &self.inner.activities)
            .field("queue", &self.inner.config.queue)
            .finish_non_exhaustive()
    }
}

impl Drop for SagaEngine {
    fn drop(&mut self) {
        let _ = self.inner.shutdown.send(true);
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        self.inner.eager_runs().abort_all();
    }
}

/// Reads an engine's metrics (see [`SagaEngine::metrics_handle`]); cheap to clone.
///
/// ```
/// # async fn demo(engine: saga_runtime::engine::SagaEngine) {
/// let metrics = engine.metrics_handle();
/// let render = move || metrics.metrics().to_prometheus();
/// assert!(render().contains("saga_engine_activity_attempts_total"));
/// # }
/// ```
#[derive(Clone)]
pub struct MetricsHandle(Arc<Inner>);

impl MetricsHandle {
    /// The engine's counters, histograms and per-type counts now.
    pub fn metrics(&self) -> EngineMetrics {
        self.0.metrics()
    }
}

impl std::fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsHandle").finish_non_exhaustive()
    }
}

impl Inner {
    /// The eager attempts, those that have finished already reaped (so `len` counts
    /// the running ones; a poisoned lock is still a valid set).
    fn eager_runs(&self) -> std::sync::MutexGuard<'_, tokio::task::JoinSet<()>> {
        let mut runs = self.eager.lock().unwrap_or_else(|p| p.into_inner());
        while runs.try_join_next().is_some() {}
        runs
    }

    fn metrics(&self) -> EngineMetrics {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (activity_latency, workflows) = c.by_type.snapshot();
        EngineMetrics {
            workflow_tasks: get(&c.workflow_tasks),
            conflicts: get(&c.conflicts),
            loads: get(&c.loads),
            corrupt_snapshots: get(&c.corrupt_snapshots),
            snapshots_saved: get(&c.snapshots_saved),
            activity_attempts: get(&c.activity_attempts),
            dropped_tasks: get(&c.dropped_tasks),
            workflow_task_failures: get(&c.workflow_task_failures),
            store_errors: get(&c.store_errors),
            outbox_redelivered: get(&c.outbox_redelivered),
            watchdog_findings: get(&c.watchdog_findings),
            watchdog_actions: get(&c.watchdog_actions),
            eager_activities: get(&c.eager_activities),
            histories_carried: get(&c.histories_carried),
            inputs_handed_over: get(&c.inputs_handed_over),
            cached_executions: self.cache.len() as u64,
            activity_latency,
            workflows,
        }
    }
}

/// `span`, in the OpenTelemetry trace of the saga whose trace id is `trace_id` (feature
/// `otel`; without it, unchanged).
fn in_trace(span: tracing::Span, trace_id: &str) -> tracing::Span {
    #[cfg(feature = "otel")]
    crate::telemetry::adopt(&span, trace_id);
    #[cfg(not(feature = "otel"))]
    let _ = trace_id;
    span
}

/// A started execution of `W`.
pub struct RunHandle<W: Workflow> {
    inner: Arc<Inner>,
    saga_id: SagaId,
    _w: PhantomData<fn() -> W>,
}

impl<W: Workflow> std::fmt::Debug for RunHandle<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle")
            .field("workflow_type", &W::TYPE_ID)
            .field("saga_id", &self.saga_id)
            .finish()
    }
}

impl<W: Workflow> RunHandle<W> {
    /// The execution's id.
    pub fn saga_id(&self) -> &SagaId {
        &self.saga_id
    }

    /// Waits until the execution closes; its output, or why it did not complete.
    pub async fn result(&self) -> Result<W::Output> {
        let value = self.inner.wait_closed(&self.saga_id).await?;
        self.decode(value)
    }

    fn decode(&self, value: serde_json::Value) -> Result<W::Output> {
        serde_json::from_value(value).map_err(|e| {
            Error::codec(format!("output of `{}` does not decode: {e}", W::TYPE_ID))
                .with("saga_id", &self.saga_id)
        })
    }
}

impl SagaEngine {
    /// A builder.
    pub fn builder() -> SagaEngineBuilder {
        SagaEngineBuilder {
            store: None,
            queue: None,
            signals: None,
            replayer: None,
            workflows: HashMap::new(),
            activities: ActivityRegistry::new(),
            config: Config::default(),
        }
    }

    /// Starts an execution of `W` with id `saga_id`. A second start with the same id is
    /// a `Validation` error (`is_already_started`), and the first execution is untouched.
    pub async fn start<W: Workflow>(
        &self,
        saga_id: impl Into<SagaId>,
        input: W::Input,
    ) -> Result<RunHandle<W>> {
        self.start_with::<W>(saga_id, input, StartOptions::default())
            .await
    }

    /// Starts an execution of `W` and waits for its result: [`SagaEngine::start`] then
    /// [`RunHandle::result`], but watching for the close while the start is written,
    /// so that no close can slip in between and the first look at the store is not
    /// needed (two statements fewer per execution; like Temporal's
    /// `execute_workflow`).
    pub async fn execute<W: Workflow>(
        &self,
        saga_id: impl Into<SagaId>,
        input: W::Input,
    ) -> Result<W::Output> {
        self.execute_with::<W>(saga_id, input, StartOptions::default())
            .await
    }

    /// [`SagaEngine::execute`] with options.
    pub async fn execute_with<W: Workflow>(
        &self,
        saga_id: impl Into<SagaId>,
        input: W::Input,
        options: StartOptions,
    ) -> Result<W::Output> {
        let saga_id = saga_id.into();
        self.registered::<W>()?;
        // The close comes back to this process's inbox, where the dispatcher has one:
        // no subscription of the execution's own (`SignalDispatcher::inbox`).
        let inbox = self.inner.signals.inbox();
        let at_inbox = inbox.is_some();
        let start = self.start_recording::<W>(saga_id.clone(), input, options, inbox);
        let (handle, watch) = self.inner.watch_around(&saga_id, at_inbox, start).await?;
        let value = self
            .inner
            .wait_watched(&handle.saga_id, watch, false)
            .await?;
        handle.decode(value)
    }

    fn registered<W: Workflow>(&self) -> Result<()> {
        if self.inner.workflows.contains_key(W::TYPE_ID) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Configuration,
            format!("workflow `{}` is not registered on this engine", W::TYPE_ID),
        ))
    }

    /// [`SagaEngine::start`] with options.
    pub async fn start_with<W: Workflow>(
        &self,
        saga_id: impl Into<SagaId>,
        input: W::Input,
        options: StartOptions,
    ) -> Result<RunHandle<W>> {
        self.start_recording::<W>(saga_id, input, options, None)
            .await
    }

    /// [`SagaEngine::start_with`], naming in the start the inbox the execution's close
    /// is sent to (`result_inbox`).
    async fn start_recording<W: Workflow>(
        &self,
        saga_id: impl Into<SagaId>,
        input: W::Input,
        options: StartOptions,
        result_inbox: Option<String>,
    ) -> Result<RunHandle<W>> {
        let saga_id = saga_id.into();
        self.registered::<W>()?;
        let input = serde_json::to_value(&input)?;
        let defaults = W::options();
        let options = StartOptions {
            timeout: options.timeout.or(defaults.timeout),
            task_queue: options.task_queue.or(defaults.task_queue),
            ..options
        };
        self.inner
            .start(&saga_id, W::TYPE_ID, input, options, result_inbox)
            .await?;
        Ok(RunHandle {
            inner: self.inner.clone(),
            saga_id,
            _w: PhantomData,
        })
    }

    /// A handle on an existing execution of `W`.
    pub fn handle<W: Workflow>(&self, saga_id: impl Into<SagaId>) -> RunHandle<W> {
        RunHandle {
            inner: self.inner.clone(),
            saga_id: saga_id.into(),
            _w: PhantomData,
        }
    }

    /// Waits for the output of execution `saga_id` of `W`.
    pub async fn result<W: Workflow>(&self, saga_id: impl Into<SagaId>) -> Result<W::Output> {
        self.handle::<W>(saga_id).result().await
    }

    /// Delivers signal `name` with `payload`. Recorded as `SignalReceived`; a signal
    /// that arrives before the workflow waits for it is kept until it does.
    pub async fn signal(
        &self,
        saga_id: impl Into<SagaId>,
        name: &str,
        payload: impl Serialize,
    ) -> Result<()> {
        let saga_id = saga_id.into();
        let payload = serde_json::to_value(payload)?;
        self.inner
            .input_from_outside(
                &saga_id,
                EventType::SignalReceived,
                inputs::signal_attributes(name, payload),
            )
            .await
    }

    /// Cancels an execution: pending work is abandoned, completed steps are
    /// compensated (LIFO), and it ends `Cancelled`.
    pub async fn cancel(&self, saga_id: impl Into<SagaId>) -> Result<()> {
        let saga_id = saga_id.into();
        self.inner
            .input_from_outside(
                &saga_id,
                EventType::WorkflowExecutionCancelRequested,
                inputs::cancel_attributes(),
            )
            .await
    }

    /// What the execution is doing now.
    pub async fn describe(&self, saga_id: impl Into<SagaId>) -> Result<ExecutionDescription> {
        self.inner.describe(&saga_id.into()).await
    }

    /// The execution's full history.
    pub async fn history(&self, saga_id: impl Into<SagaId>) -> Result<Vec<HistoryEvent>> {
        let saga_id = saga_id.into();
        let h = self.inner.store.history(&saga_id).await?;
        if h.is_empty() {
            return Err(Error::not_found(saga_id.as_str()));
        }
        Ok(h)
    }

    /// Replays the whole history (no snapshot, no cache) through the registered code;
    /// a `Replay` error means the code no longer reproduces it.
    pub async fn verify_replay(&self, saga_id: impl Into<SagaId>) -> Result<()> {
        let saga_id = saga_id.into();
        let events = self.history(saga_id.clone()).await?;
        self.inner.fold(&saga_id, None, &events).map(|_| ())
    }

    /// Pings every port once (the watchdog's health detector builds on this). Each
    /// failure is reported with the kind of the port that failed, its cause kept as the
    /// source.
    pub async fn health(&self) -> HealthReport {
        self.inner.health().await
    }

    /// The watchdog's recent findings, oldest first (empty without
    /// [`SagaEngineBuilder::watchdog`]).
    pub fn watchdog_findings(&self) -> Vec<Finding> {
        self.inner
            .findings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// True while the watchdog's circuit breaker holds the workers.
    pub fn workers_paused(&self) -> bool {
        *self.inner.paused.borrow()
    }

    /// The engine's counters, histograms and per-type counts.
    pub fn metrics(&self) -> EngineMetrics {
        self.inner.metrics()
    }

    /// A handle that reads [`Self::metrics`] from elsewhere (a `/metrics` server's
    /// task), without borrowing the engine; it outlives a shutdown (the numbers then
    /// stay as they were).
    pub fn metrics_handle(&self) -> MetricsHandle {
        MetricsHandle(self.inner.clone())
    }

    /// Forgets cached executions, so the next task for each replays from the store.
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    /// Stops the workers after their current task.
    pub async fn shutdown(self) {
        let _ = self.inner.shutdown.send(true);
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        // Then the attempts running eagerly: each records its result (and starts no
        // new eager run, the engine being shut down).
        loop {
            let mut running = std::mem::take(&mut *self.inner.eager_runs());
            if running.is_empty() {
                break;
            }
            while running.join_next().await.is_some() {}
        }
    }
}
