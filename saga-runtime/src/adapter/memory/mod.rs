//! In-process adapters: every port backed by memory. The engine's default task queue
//! and signal dispatcher, and the store for tests and benchmarks.

mod definition_store;
mod event_store;
mod signal_dispatcher;
mod task_queue;
mod timer_store;

pub use definition_store::InMemoryDefinitionStore;
pub use event_store::InMemoryEventStore;
pub use signal_dispatcher::InMemorySignalDispatcher;
pub use task_queue::{InMemoryTaskQueue, QueueConfig};
pub use timer_store::InMemoryTimerStore;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{HistoryEvent, Result, SagaId};
use crate::port::{
    DefinitionStore, EventStore, ExecutionFilter, ExecutionSummary, Snapshot, TimerRecord,
    TimerStore, WorkflowDefinition,
};

/// Event store, timer store and workflow definitions in one value, like the durable
/// stores: `InMemoryStore` is to tests what `SqliteStore` is to a laptop. Clones share
/// the same data.
#[derive(Clone, Default)]
pub struct InMemoryStore {
    events: InMemoryEventStore,
    timers: InMemoryTimerStore,
    definitions: InMemoryDefinitionStore,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The event store half.
    pub fn events(&self) -> &InMemoryEventStore {
        &self.events
    }

    /// The timer store half.
    pub fn timers(&self) -> &InMemoryTimerStore {
        &self.timers
    }
}

#[async_trait]
impl EventStore for InMemoryStore {
    async fn append(
        &self,
        saga_id: &SagaId,
        expected_version: u64,
        events: Vec<HistoryEvent>,
    ) -> Result<u64> {
        self.events.append(saga_id, expected_version, events).await
    }
    async fn history_from(
        &self,
        saga_id: &SagaId,
        from_event_id: u64,
    ) -> Result<Vec<HistoryEvent>> {
        self.events.history_from(saga_id, from_event_id).await
    }
    async fn version(&self, saga_id: &SagaId) -> Result<u64> {
        self.events.version(saga_id).await
    }
    async fn save_snapshot(&self, snapshot: Snapshot, max_snapshots: u32) -> Result<()> {
        self.events.save_snapshot(snapshot, max_snapshots).await
    }
    async fn latest_snapshot(&self, saga_id: &SagaId) -> Result<Option<Snapshot>> {
        self.events.latest_snapshot(saga_id).await
    }
    async fn snapshots(&self, saga_id: &SagaId) -> Result<Vec<Snapshot>> {
        self.events.snapshots(saga_id).await
    }
    async fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        self.events.list_executions(filter).await
    }
}

#[async_trait]
impl DefinitionStore for InMemoryStore {
    async fn register_definition(&self, definition: WorkflowDefinition) -> Result<()> {
        self.definitions.register_definition(definition).await
    }
    async fn definitions(&self) -> Result<Vec<WorkflowDefinition>> {
        self.definitions.definitions().await
    }
    async fn definition(&self, workflow_type: &str) -> Result<Option<WorkflowDefinition>> {
        self.definitions.definition(workflow_type).await
    }
}

/// The default, step-by-step commit: in memory nothing can fail between the steps.
impl crate::port::WorkflowStore for InMemoryStore {}

#[async_trait]
impl TimerStore for InMemoryStore {
    async fn create(&self, timer: TimerRecord) -> Result<()> {
        self.timers.create(timer).await
    }
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<TimerRecord>> {
        self.timers.claim_due(now, limit, lease).await
    }
    async fn complete(&self, timer_id: &str) -> Result<()> {
        self.timers.complete(timer_id).await
    }
    async fn cancel(&self, timer_id: &str) -> Result<bool> {
        self.timers.cancel(timer_id).await
    }
    async fn next_fire_at(&self) -> Result<Option<DateTime<Utc>>> {
        self.timers.next_fire_at().await
    }
}
