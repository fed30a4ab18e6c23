//! [`SagaClient`]: starts, signals, cancels and describes executions over a store,
//! without the workflow code. The `saga` CLI is built on it.
//!
//! It writes what an engine that does not run the workflow writes: the same
//! `WorkflowExecutionStarted`, `SignalReceived` and `WorkflowExecutionCancelRequested`
//! events (built by the engine's own code), appended with optimistic locking, each
//! with a workflow task in the store's outbox. A worker that runs the workflow folds
//! them on that task: at once when the client has the engine's task queue
//! ([`SagaClient::queue`]), otherwise when an engine's outbox reconciler finds the task
//! (within its `reconcile_every`, one second by default) or re-drives the execution at
//! its start.
//!
//! It describes an execution from its history alone, with the engine's fold. What the
//! history does not record is inferred from the workflow's registered definition: the
//! current checkpoint (the state variant) is the checkpoint whose awaited activity,
//! timer, child or signal is pending. When several checkpoints await the same thing
//! (the same activity called at two places) all of them are reported, `A | B`.
//!
//! ```no_run
//! # async fn demo() -> saga_runtime::Result<()> {
//! use saga_runtime::adapter::memory::InMemoryStore;
//! use saga_runtime::client::SagaClient;
//! use saga_runtime::engine::StartOptions;
//!
//! let client = SagaClient::new(InMemoryStore::new());
//! client
//!     .start("order-saga", "order-42", serde_json::json!({"id": "42"}), StartOptions::default())
//!     .await?;
//! client.signal("order-42", "approval", serde_json::json!({"granted": true})).await?;
//! println!("{:?}", client.describe("order-42").await?.status);
//! # Ok(()) }
//! ```

use std::sync::Arc;

use serde_json::Value;

use crate::domain::{
    Error, ErrorKind, EventType, HistoryEvent, Result, SagaId, TimerKind, WorkflowStatus,
};
use crate::engine::execution::Execution;
use crate::engine::{inputs, ExecutionDescription, StartOptions};
use crate::port::{
    Commit, ExecutionFilter, ExecutionSummary, Notification, SignalDispatcher, TaskQueue,
    WorkflowDefinition, WorkflowStore,
};
use crate::workflow::CheckpointKind;

/// Operates executions in a store without their workflow code.
#[derive(Clone)]
pub struct SagaClient {
    store: Arc<dyn WorkflowStore>,
    signals: Option<Arc<dyn SignalDispatcher>>,
    queue: Option<(Arc<dyn TaskQueue>, String)>,
}

impl std::fmt::Debug for SagaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaClient")
            .field("signals", &self.signals.is_some())
            .field("queue", &self.queue.as_ref().map(|(_, name)| name))
            .finish_non_exhaustive()
    }
}

/// An execution as its history shows it, with its workflow's definition if registered.
struct Observed {
    history: Vec<HistoryEvent>,
    exec: Execution,
    definition: Option<WorkflowDefinition>,
}

impl SagaClient {
    /// A client over `store`.
    pub fn new<S: WorkflowStore>(store: S) -> Self {
        SagaClient {
            store: Arc::new(store),
            signals: None,
            queue: None,
        }
    }

    /// Notifies waiters (a `result()` in another process) as the engine does, e.g.
    /// through `PgSignalDispatcher`.
    #[must_use]
    pub fn signals<D: SignalDispatcher>(mut self, signals: D) -> Self {
        self.signals = Some(Arc::new(signals));
        self
    }

    /// Publishes a workflow task on `queue` of the engine's task queue after each write,
    /// so that a worker folds it at once.
    #[must_use]
    pub fn queue<Q: TaskQueue>(mut self, queue: Q, name: impl Into<String>) -> Self {
        self.queue = Some((Arc::new(queue), name.into()));
        self
    }

    /// The queue new executions are started on unless `StartOptions::task_queue` says
    /// otherwise: the one given to [`SagaClient::queue`], else the engine's default.
    fn queue_name(&self) -> &str {
        self.queue
            .as_ref()
            .map_or(inputs::DEFAULT_QUEUE, |(_, name)| name.as_str())
    }

    /// The store.
    pub fn store(&self) -> &dyn WorkflowStore {
        &*self.store
    }

    /// Executions matching `filter`, oldest start first.
    pub async fn list(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        self.store.list_executions(filter).await
    }

    /// The full history; a `not_found` error for an unknown id.
    pub async fn history(&self, saga_id: impl Into<SagaId>) -> Result<Vec<HistoryEvent>> {
        let saga_id = saga_id.into();
        let h = self.store.history(&saga_id).await?;
        if h.is_empty() {
            return Err(Error::not_found(saga_id.as_str()));
        }
        Ok(h)
    }

    /// Every registered workflow definition.
    pub async fn definitions(&self) -> Result<Vec<WorkflowDefinition>> {
        self.store.definitions().await
    }

    /// The newest definition of `workflow_type`; a `Validation` error
    /// (`code=unknown_workflow`) naming the known types if none is registered.
    pub async fn definition(&self, workflow_type: &str) -> Result<WorkflowDefinition> {
        match self.store.definition(workflow_type).await? {
            Some(d) => Ok(d),
            None => Err(self.unknown_workflow(workflow_type).await),
        }
    }

    async fn unknown_workflow(&self, workflow_type: &str) -> Error {
        let mut known: Vec<String> = self
            .store
            .definitions()
            .await
            .map(|ds| ds.into_iter().map(|d| d.workflow_type).collect())
            .unwrap_or_default();
        known.dedup();
        let known = if known.is_empty() {
            "none is registered".to_owned()
        } else {
            format!("registered: {}", known.join(", "))
        };
        Error::new(
            ErrorKind::Validation,
            format!("workflow type `{workflow_type}` is not registered in this store ({known})"),
        )
        .with("workflow_type", workflow_type)
        .with("code", "unknown_workflow")
    }

    /// Starts an execution of `workflow_type` with `input`, as `SagaEngine::start` would:
    /// the newest registered fingerprint, the workflow's default timeout unless
    /// `options` sets one. A taken id is a `Validation` error (`is_already_started`)
    /// and the existing execution is untouched. Returns the recorded start event.
    ///
    /// The input's shape is checked by the worker that runs it (the client has no
    /// types): a mismatch shows as the execution's `workflow_task_failure`.
    pub async fn start(
        &self,
        workflow_type: &str,
        saga_id: impl Into<SagaId>,
        input: Value,
        options: StartOptions,
    ) -> Result<HistoryEvent> {
        let saga_id = saga_id.into();
        if saga_id.as_str().trim().is_empty() {
            return Err(Error::new(
                ErrorKind::Validation,
                "an execution id cannot be empty",
            ));
        }
        let definition = self.definition(workflow_type).await?;
        let timeout_ms = options
            .timeout
            .map(|d| d.as_millis().min(u64::MAX as u128) as u64)
            .or(definition.timeout_ms);
        let now = inputs::now_ms();
        let trace_id = options
            .trace_id
            .unwrap_or_else(|| inputs::new_trace_id(&saga_id, now));
        let queue = options
            .task_queue
            .or(definition.task_queue)
            .unwrap_or_else(|| self.queue_name().to_owned());
        let attributes = inputs::started_attributes(
            workflow_type,
            &definition.fingerprint,
            input,
            timeout_ms,
            &queue,
        );
        let event = inputs::started_event(&saga_id, attributes, &trace_id, now);
        match self.append(&saga_id, 0, event.clone(), &queue).await {
            Ok(()) => Ok(event),
            Err(e) if e.is_conflict() => Err(Error::already_started(saga_id.as_str())),
            Err(e) => Err(e),
        }
    }

    /// Delivers signal `name` with `payload` (recorded as `SignalReceived`); a closed
    /// execution refuses it (`Validation`, `code=closed`), as the engine does.
    pub async fn signal(
        &self,
        saga_id: impl Into<SagaId>,
        name: &str,
        payload: Value,
    ) -> Result<()> {
        let saga_id = saga_id.into();
        let attributes = inputs::signal_attributes(name, payload);
        self.input(&saga_id, EventType::SignalReceived, attributes)
            .await?;
        if let Some(signals) = &self.signals {
            let n = Notification::SignalReceived {
                name: name.to_owned(),
            };
            if let Err(e) = signals.notify(&saga_id, n).await {
                // The signal is recorded; a waiter that misses the wake-up re-reads the
                // store on its own poll.
                tracing::warn!(saga_id = %saga_id, error = %e, "signal recorded but not notified");
            }
        }
        Ok(())
    }

    /// Requests cancellation (recorded as `WorkflowExecutionCancelRequested`): a worker
    /// abandons pending work, compensates completed steps and ends it `Cancelled`.
    pub async fn cancel(&self, saga_id: impl Into<SagaId>) -> Result<()> {
        let saga_id = saga_id.into();
        self.input(
            &saga_id,
            EventType::WorkflowExecutionCancelRequested,
            inputs::cancel_attributes(),
        )
        .await
    }

    /// Appends an outside input to an open execution, at the version it was checked at.
    async fn input(
        &self,
        saga_id: &SagaId,
        event_type: EventType,
        attributes: Value,
    ) -> Result<()> {
        loop {
            let history = self.history(saga_id.clone()).await?;
            let exec = Execution::observe(saga_id, &history)?;
            if !exec.is_open() {
                let status = exec.status().map_or("not started", WorkflowStatus::name);
                return Err(Error::new(
                    ErrorKind::Validation,
                    format!("execution `{saga_id}` is closed ({status})"),
                )
                .with("saga_id", saga_id)
                .with("code", "closed"));
            }
            let Some(last) = history.last() else {
                return Err(Error::not_found(saga_id.as_str()));
            };
            let event =
                inputs::outside_event(last, event_type, attributes.clone(), inputs::now_ms());
            let queue = history
                .first()
                .and_then(|e| e.attr_str("task_queue"))
                .unwrap_or(self.queue_name())
                .to_owned();
            match self
                .append(saga_id, history.len() as u64, event, &queue)
                .await
            {
                Ok(()) => return Ok(()),
                // Another writer appended meanwhile: check again on the new history.
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends `event` at `version` with the workflow task that asks a worker to fold
    /// it, in the outbox: due at once when this client has no queue to publish it on
    /// (an engine's reconciler publishes it), a minute later when it has one (the
    /// reconciler publishes it again only if the worker has not taken it by then).
    /// The write is durable before the publish: a failed publish costs latency, so it
    /// is logged, not reported as a failed start or signal.
    async fn append(
        &self,
        saga_id: &SagaId,
        version: u64,
        event: HistoryEvent,
        queue: &str,
    ) -> Result<()> {
        let task = inputs::workflow_task(saga_id, queue, version);
        let now = inputs::now_ms();
        let mut commit = Commit::events_only(saga_id, version, vec![event]);
        commit.tasks.push(task.clone());
        commit.redeliver_at = match self.queue {
            Some(_) => now + chrono::TimeDelta::minutes(1),
            None => now,
        };
        self.store.commit(commit).await?;
        if let Some((queue, _)) = &self.queue {
            if let Err(e) = queue.publish(task).await {
                tracing::warn!(saga_id = %saga_id, error = %e, "recorded, but no workflow task published");
            }
        }
        Ok(())
    }

    async fn observe(&self, saga_id: &SagaId) -> Result<Observed> {
        let history = self.history(saga_id.clone()).await?;
        let exec = Execution::observe(saga_id, &history)?;
        // The definition the execution started with; the newest if that one is gone.
        let definitions = self.store.definitions().await?;
        let mut of_type = definitions
            .into_iter()
            .filter(|d| d.workflow_type == exec.s.workflow_type);
        let definition = match of_type
            .clone()
            .find(|d| d.fingerprint == exec.s.fingerprint)
        {
            Some(d) => Some(d),
            None => of_type.next_back(),
        };
        Ok(Observed {
            history,
            exec,
            definition,
        })
    }

    /// The execution's status, from its history alone (as [`Self::describe`]'s, without
    /// reading the workflow definitions); a `not_found` error for an unknown id.
    pub async fn status(&self, saga_id: impl Into<SagaId>) -> Result<WorkflowStatus> {
        let saga_id = saga_id.into();
        let history = self.history(saga_id.clone()).await?;
        Ok(Execution::observe(&saga_id, &history)?
            .status()
            .unwrap_or(WorkflowStatus::Running))
    }

    /// What the execution is doing now, from its history alone: as
    /// `SagaEngine::describe`, with the checkpoint inferred from the definition (see
    /// the module docs) and signal waits known only when they have a timeout.
    pub async fn describe(&self, saga_id: impl Into<SagaId>) -> Result<ExecutionDescription> {
        let o = self.observe(&saga_id.into()).await?;
        let mut d = o.exec.description();
        d.checkpoint = current_checkpoints(&o).join(" | ");
        if d.waiting_for_signals.is_empty() {
            d.waiting_for_signals = signal_timeouts(&o).into_iter().map(|(_, n)| n).collect();
        }
        Ok(d)
    }

    /// The Mermaid diagram of `workflow_type`'s newest definition.
    pub async fn workflow_diagram(&self, workflow_type: &str) -> Result<String> {
        let d = self.definition(workflow_type).await?;
        if d.diagram.is_empty() {
            return Err(no_diagram(&d));
        }
        Ok(d.diagram)
    }

    /// The Mermaid diagram of the execution's workflow with where it is now
    /// highlighted: its current checkpoint(s) while it runs, `Failed` / `Compensating`
    /// while it compensates.
    pub async fn execution_diagram(&self, saga_id: impl Into<SagaId>) -> Result<String> {
        let saga_id = saga_id.into();
        let o = self.observe(&saga_id).await?;
        let d = match &o.definition {
            Some(d) => d,
            None => return Err(self.unknown_workflow(&o.exec.s.workflow_type).await),
        };
        if d.diagram.is_empty() {
            return Err(no_diagram(d));
        }
        let nodes = match o.exec.status() {
            Some(WorkflowStatus::Compensating) => vec!["Compensating".to_owned()],
            Some(WorkflowStatus::Failed) if !o.exec.is_closed() => vec!["Failed".to_owned()],
            _ if o.exec.is_closed() => Vec::new(),
            _ => current_checkpoints(&o),
        };
        Ok(highlight(&d.diagram, &nodes))
    }
}

fn no_diagram(d: &WorkflowDefinition) -> Error {
    Error::new(
        ErrorKind::Validation,
        format!(
            "workflow `{}` (fingerprint {}) has no diagram: it is not written with #[workflow]",
            d.workflow_type, d.fingerprint
        ),
    )
    .with("code", "no_diagram")
}

/// `diagram` with `nodes` styled as the current state (a `classDef` and a `class` line,
/// which Mermaid's `stateDiagram-v2` supports).
pub fn highlight(diagram: &str, nodes: &[String]) -> String {
    let mut out = diagram.trim_end().to_owned();
    out.push('\n');
    if !nodes.is_empty() {
        out.push_str("    classDef current fill:#fff59d,stroke:#f57f17,stroke-width:3px\n");
        out.push_str(&format!("    class {} current\n", nodes.join(",")));
    }
    out
}

/// `crate::steps::reserve_inventory` and `reserve-inventory` name the same activity:
/// checkpoint tables hold the handle's path, history the kebab-case type id.
fn same_name(awaits: &str, type_id: &str) -> bool {
    let last = awaits.rsplit("::").next().unwrap_or(awaits).trim();
    last.replace('_', "-").eq_ignore_ascii_case(type_id)
}

/// Signal waits with a timeout: (timer id, signal name), from their `TimerStarted`.
fn signal_timeouts(o: &Observed) -> Vec<(String, String)> {
    o.history
        .iter()
        .filter(|e| e.event_type == EventType::TimerStarted)
        .filter_map(|e| {
            let id = e.attr_str("timer_id")?;
            let t = o.exec.s.timers.get(id)?;
            (t.kind == TimerKind::SignalTimeout).then(|| {
                (
                    id.to_owned(),
                    e.attr_str("signal").unwrap_or_default().to_owned(),
                )
            })
        })
        .collect()
}

/// The checkpoint variants the execution may be at (see the module docs):
/// `Finished` once its machine has ended (as the engine reports it), `Start` before
/// a worker ran it, else the checkpoints awaiting its pending work.
fn current_checkpoints(o: &Observed) -> Vec<String> {
    let exec = &o.exec;
    if !matches!(
        exec.status(),
        Some(WorkflowStatus::Running | WorkflowStatus::Paused)
    ) {
        return vec!["Finished".to_owned()];
    }
    if o.history.len() == 1 {
        return vec!["Start".to_owned()];
    }
    let Some(def) = &o.definition else {
        return vec!["unknown".to_owned()];
    };
    // What the machine waits for: (kind, name), name empty for a sleep.
    let mut pending: Vec<(CheckpointKind, String)> = Vec::new();
    for a in exec
        .s
        .activities
        .values()
        .filter(|a| a.compensates.is_none())
    {
        let kind = if a.local {
            CheckpointKind::LocalActivity
        } else {
            CheckpointKind::Activity
        };
        pending.push((kind, a.activity_type.clone()));
    }
    for c in exec.s.children.values() {
        pending.push((CheckpointKind::Child, c.workflow_type.clone()));
    }
    for t in exec
        .s
        .timers
        .values()
        .filter(|t| t.kind == TimerKind::Sleep)
    {
        pending.push((CheckpointKind::Sleep, t.timer_id.clone()));
    }
    for (_, name) in signal_timeouts(o) {
        pending.push((CheckpointKind::Signal, name));
    }
    let matches_one = |awaits: &str, kind: CheckpointKind| {
        pending.iter().any(|(k, name)| {
            *k == kind && (kind == CheckpointKind::Sleep || same_name(awaits, name))
        })
    };
    let mut found: Vec<String> = def
        .checkpoints
        .iter()
        .filter(|row| match row.kind {
            CheckpointKind::Join | CheckpointKind::JoinAll => {
                // A join's parts: `a, b, Duration::from_secs(5)` or `[a]`.
                row.awaits
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(", ")
                    .any(|part| pending.iter().any(|(_, name)| same_name(part, name)))
            }
            kind => matches_one(&row.awaits, kind),
        })
        .map(|row| row.variant.clone())
        .collect();
    if found.is_empty() && pending.is_empty() {
        // Nothing pending in history: a signal wait without a timeout.
        found = def
            .checkpoints
            .iter()
            .filter(|row| row.kind == CheckpointKind::Signal)
            .map(|row| row.variant.clone())
            .collect();
    }
    if found.is_empty() {
        found.push("unknown".to_owned());
    }
    found
}
