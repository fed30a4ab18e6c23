//! Test doubles and harness shared by the engine's integration tests (each test binary
//! uses a part of it).
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use saga_runtime::activity::ActivityError;
use saga_runtime::adapter::memory::{InMemorySignalDispatcher, InMemoryStore, InMemoryTaskQueue};
use saga_runtime::client::SagaClient;
use saga_runtime::domain::{Error, ErrorKind, EventType, HistoryEvent, SagaId};
use saga_runtime::engine::{
    ExecutionDescription, OutboxConfig, SagaEngine, SagaEngineBuilder, StartOptions,
};
use saga_runtime::port::{
    Commit, DeadLetter, DefinitionStore, Delivery, DeliveryTag, EventStore, ExecutionFilter,
    ExecutionSummary, Outbox, Snapshot, Task, TaskKind, TaskQueue, TimerRecord, TimerStore,
    WorkflowDefinition, WorkflowStore,
};
use saga_runtime::workflow::Workflow;
use saga_runtime::Result;

/// Workers sharing one store, queue and signals, as processes share PostgreSQL and
/// NATS.
#[derive(Default)]
pub struct Cluster {
    pub store: InMemoryStore,
    pub queue: InMemoryTaskQueue,
    pub signals: InMemorySignalDispatcher,
}

impl Cluster {
    /// `builder` (its store set) on the cluster's queue and signals, with the outbox
    /// on, as with a broker's queue, re-publishing after `redeliver_after`. So no
    /// re-drive of its own as it starts (the default with the outbox on): only the
    /// outbox brings back what a dead worker left.
    pub fn outboxed(
        &self,
        builder: SagaEngineBuilder,
        redeliver_after: Duration,
    ) -> SagaEngineBuilder {
        builder
            .queue(self.queue.clone())
            .signals(self.signals.clone())
            .outbox(OutboxConfig {
                enabled: Some(true),
                redeliver_after,
                reconcile_every: Duration::from_millis(50),
            })
    }
}

/// A runtime of its own for a worker: dropping it stops the worker's every task, as a
/// process killed with SIGKILL stops.
pub fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Stops a worker as SIGKILL would: none of its tasks runs another step (the engine's
/// own drop would still run on the dead runtime, so it is leaked with it).
pub fn kill(engine: SagaEngine, runtime: tokio::runtime::Runtime) {
    std::mem::forget(engine);
    runtime.shutdown_background();
}

/// Waits (up to 5 s) for `store`'s outbox to empty; what is left then. A task can be
/// settled just after the commit a waiter wakes on (a child's news is settled on the
/// child after the parent's commit records it).
pub async fn outbox_left(store: &impl Outbox) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = store.outbox_len().await.expect("outbox_len");
        if left == 0 || tokio::time::Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many events of type `t` `history` has.
pub fn count(history: &[HistoryEvent], t: EventType) -> usize {
    history.iter().filter(|e| e.event_type == t).count()
}

/// A store that can be switched off: every call fails with an `EventStore` error
/// while it is down, as an unreachable database's would.
#[derive(Clone, Default)]
pub struct Switch {
    pub inner: InMemoryStore,
    pub down: Arc<AtomicBool>,
    /// Calls that read history.
    pub reads: Arc<AtomicU64>,
    /// Whose history each of those calls read, in order.
    pub read_ids: Arc<std::sync::Mutex<Vec<SagaId>>>,
    /// Takes the store down right after a commit it matches is written: the process
    /// that wrote it goes silent at that exact point.
    pub trip: Option<Trip>,
    /// Holds back a commit it matches until the semaphore gives a permit: that commit
    /// is in flight, its writer alive, while the test does what races with it.
    pub gate: Option<(Trip, Arc<tokio::sync::Semaphore>)>,
}

/// Which commit takes a [`Switch`] down once written.
pub type Trip = Arc<dyn Fn(&Commit) -> bool + Send + Sync>;

impl Switch {
    /// Whether a call through this store has read `id`'s history.
    pub fn has_read(&self, id: &str) -> bool {
        self.read_ids
            .lock()
            .unwrap()
            .iter()
            .any(|read| read.as_str() == id)
    }

    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(Error::new(ErrorKind::EventStore, "connection refused"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl EventStore for Switch {
    async fn append(&self, id: &SagaId, v: u64, events: Vec<HistoryEvent>) -> Result<u64> {
        self.check()?;
        self.inner.append(id, v, events).await
    }
    async fn history_from(&self, id: &SagaId, from: u64) -> Result<Vec<HistoryEvent>> {
        self.check()?;
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.read_ids.lock().unwrap().push(id.clone());
        self.inner.history_from(id, from).await
    }
    async fn version(&self, id: &SagaId) -> Result<u64> {
        self.check()?;
        self.inner.version(id).await
    }
    async fn save_snapshot(&self, s: Snapshot, max: u32) -> Result<()> {
        self.check()?;
        self.inner.save_snapshot(s, max).await
    }
    async fn latest_snapshot(&self, id: &SagaId) -> Result<Option<Snapshot>> {
        self.check()?;
        self.inner.latest_snapshot(id).await
    }
    async fn snapshots(&self, id: &SagaId) -> Result<Vec<Snapshot>> {
        self.check()?;
        self.inner.snapshots(id).await
    }
    async fn list_executions(&self, f: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        self.check()?;
        self.inner.list_executions(f).await
    }
}

#[async_trait]
impl TimerStore for Switch {
    async fn create(&self, t: TimerRecord) -> Result<()> {
        self.check()?;
        self.inner.create(t).await
    }
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<TimerRecord>> {
        self.check()?;
        self.inner.claim_due(now, limit, lease).await
    }
    async fn complete(&self, id: &str) -> Result<()> {
        self.check()?;
        self.inner.complete(id).await
    }
    async fn cancel(&self, id: &str) -> Result<bool> {
        self.check()?;
        self.inner.cancel(id).await
    }
    async fn next_fire_at(&self) -> Result<Option<DateTime<Utc>>> {
        self.check()?;
        self.inner.next_fire_at().await
    }
}

#[async_trait]
impl DefinitionStore for Switch {
    async fn register_definition(&self, d: WorkflowDefinition) -> Result<()> {
        self.check()?;
        self.inner.register_definition(d).await
    }
    async fn definitions(&self) -> Result<Vec<WorkflowDefinition>> {
        self.check()?;
        self.inner.definitions().await
    }
    async fn definition(&self, workflow_type: &str) -> Result<Option<WorkflowDefinition>> {
        self.check()?;
        self.inner.definition(workflow_type).await
    }
}

#[async_trait]
impl Outbox for Switch {
    async fn claim_tasks(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Task>> {
        self.check()?;
        self.inner.claim_tasks(now, lease, limit).await
    }
    async fn settle_tasks(&self, saga_id: &SagaId, ids: &[String]) -> Result<()> {
        self.check()?;
        self.inner.settle_tasks(saga_id, ids).await
    }
    async fn defer_tasks(
        &self,
        saga_id: &SagaId,
        ids: &[String],
        until: DateTime<Utc>,
    ) -> Result<()> {
        self.check()?;
        self.inner.defer_tasks(saga_id, ids, until).await
    }
    async fn outbox_len(&self) -> Result<u64> {
        self.check()?;
        self.inner.outbox_len().await
    }
    async fn unsettled_tasks(&self, saga_id: &SagaId) -> Result<Vec<String>> {
        self.check()?;
        self.inner.unsettled_tasks(saga_id).await
    }
}

#[async_trait]
impl WorkflowStore for Switch {
    async fn commit(&self, c: Commit) -> Result<u64> {
        self.check()?;
        if let Some((held, open)) = &self.gate {
            if held(&c) {
                let _pass = open.acquire().await.expect("gate");
            }
        }
        let trips = self.trip.as_ref().is_some_and(|t| t(&c));
        let r = self.inner.commit(c).await;
        if trips && r.is_ok() {
            self.down.store(true, Ordering::SeqCst);
        }
        r
    }
}

/// The in-memory queue, counting the tasks published to it and the fetches from it.
#[derive(Clone, Default)]
pub struct Counted {
    pub inner: InMemoryTaskQueue,
    pub tasks: Arc<AtomicU64>,
    pub workflow_tasks: Arc<AtomicU64>,
    pub fetches: Arc<AtomicU64>,
}

impl Counted {
    pub fn tasks(&self) -> u64 {
        self.tasks.load(Ordering::SeqCst)
    }
    pub fn workflow_tasks(&self) -> u64 {
        self.workflow_tasks.load(Ordering::SeqCst)
    }
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl TaskQueue for Counted {
    async fn publish(&self, task: Task) -> Result<()> {
        self.tasks.fetch_add(1, Ordering::SeqCst);
        if task.kind == TaskKind::Workflow {
            self.workflow_tasks.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.publish(task).await
    }
    async fn fetch(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch(queue, max, wait).await
    }
    async fn ack(&self, tag: &DeliveryTag) -> Result<()> {
        self.inner.ack(tag).await
    }
    async fn nak(&self, tag: &DeliveryTag, delay: Duration) -> Result<()> {
        self.inner.nak(tag, delay).await
    }
    async fn progress(&self, tag: &DeliveryTag) -> Result<()> {
        self.inner.progress(tag).await
    }
    async fn terminate(&self, tag: &DeliveryTag, reason: &str) -> Result<()> {
        self.inner.terminate(tag, reason).await
    }
    async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>> {
        self.inner.dead_letters(queue).await
    }
    fn is_in_process(&self) -> bool {
        true
    }
}

/// Counts a run in `runs`, then takes `d`: the body of a slow test activity.
pub async fn slow_run(runs: &AtomicU32, n: u32, d: Duration) -> Result<u32, ActivityError> {
    runs.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(d).await;
    Ok(n)
}

/// A step still running when a workflow task comes for something else: starts `W`
/// (one step that returns its input) as `id` on `engine` with `options`, has
/// `client` signal it while the step runs (`runs` shows that), and checks, `settle`
/// after the result (past the point where a second run would have started and
/// finished), that the step ran once and its `started` event was recorded once. A
/// client without the workflow's code (the `saga` CLI, a split worker) records the
/// signal and sends the execution a workflow task, which any worker may take.
pub async fn nudge_while_running<W: Workflow<Input = u32, Output = u32>>(
    engine: &SagaEngine,
    client: &SagaClient,
    (id, options): (&str, StartOptions),
    runs: &AtomicU32,
    started: EventType,
    settle: Duration,
) {
    let run = engine.start_with::<W>(id, 4, options).await.unwrap();
    while runs.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client
        .signal(id, "nudge", serde_json::json!("meanwhile"))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), 4);
    tokio::time::sleep(settle).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "run once");
    let h = engine.history(id).await.unwrap();
    assert_eq!(count(&h, EventType::SignalReceived), 1);
    assert_eq!(count(&h, started), 1);
}

/// `id` as `engine` describes it once closed, or as it is after `limit` (an execution
/// not created yet counts as open).
pub async fn closed_within(engine: &SagaEngine, id: &str, limit: Duration) -> ExecutionDescription {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let d = engine.describe(id).await;
        if d.as_ref().is_ok_and(|d| d.status.is_closed()) || tokio::time::Instant::now() > deadline
        {
            return d.expect("describe");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
