//! In-process adapters: every port backed by memory. The engine's default task queue
//! and signal dispatcher, and the store for tests and benchmarks.

mod definition_store;
mod event_store;
mod outbox;
mod signal_dispatcher;
mod task_queue;
mod timer_store;

pub use definition_store::InMemoryDefinitionStore;
pub use event_store::InMemoryEventStore;
pub use outbox::InMemoryOutbox;
pub use signal_dispatcher::InMemorySignalDispatcher;
pub use task_queue::{InMemoryTaskQueue, QueueConfig};
pub use timer_store::InMemoryTimerStore;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{HistoryEvent, Result, SagaId};
use crate::port::{
    Commit, DefinitionStore, EventStore, ExecutionFilter, ExecutionSummary, Outbox, Snapshot, Task,
    TimerRecord, TimerStore, WorkflowDefinition, WorkflowStore,
};

/// Event store, timer store and workflow definitions in one value, like the durable
/// stores: `InMemoryStore` is to tests what `SqliteStore` is to a laptop. Clones share
/// the same data.
#[derive(Clone, Default)]
pub struct InMemoryStore {
    events: InMemoryEventStore,
    timers: InMemoryTimerStore,
    outbox: InMemoryOutbox,
    definitions: InMemoryDefinitionStore,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The event store part.
    pub fn events(&self) -> &InMemoryEventStore {
        &self.events
    }

    /// The timer store part.
    pub fn timers(&self) -> &InMemoryTimerStore {
        &self.timers
    }

    /// The outbox part.
    pub fn outbox(&self) -> &InMemoryOutbox {
        &self.outbox
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

/// Step by step: in memory nothing can fail between the steps once the append passed.
#[async_trait]
impl WorkflowStore for InMemoryStore {
    async fn commit(&self, mut c: Commit) -> Result<u64> {
        let closes = c.closes_execution();
        let events = std::mem::take(&mut c.events);
        let version = self
            .events
            .append(&c.saga_id, c.expected_version, events)
            .await?;
        for t in &c.create_timers {
            self.timers.create(t.clone()).await?;
        }
        for id in &c.cancel_timers {
            self.timers.cancel(id).await?;
        }
        self.outbox.apply(&c, closes);
        if let Some(s) = c.snapshot {
            self.events.save_snapshot(s, c.max_snapshots).await?;
        }
        Ok(version)
    }
}

#[async_trait]
impl Outbox for InMemoryStore {
    async fn claim_tasks(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Task>> {
        self.outbox.claim_tasks(now, lease, limit).await
    }
    async fn settle_tasks(&self, saga_id: &SagaId, dedup_ids: &[String]) -> Result<()> {
        self.outbox.settle_tasks(saga_id, dedup_ids).await
    }
    async fn defer_tasks(
        &self,
        saga_id: &SagaId,
        dedup_ids: &[String],
        until: DateTime<Utc>,
    ) -> Result<()> {
        self.outbox.defer_tasks(saga_id, dedup_ids, until).await
    }
    async fn outbox_len(&self) -> Result<u64> {
        self.outbox.outbox_len().await
    }
    async fn unsettled_tasks(&self, saga_id: &SagaId) -> Result<Vec<String>> {
        self.outbox.unsettled_tasks(saga_id).await
    }
}

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
