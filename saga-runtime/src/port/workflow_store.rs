//! The store a workflow task commits to: events, timers and snapshots together.

use async_trait::async_trait;

use super::definition_store::DefinitionStore;
use super::event_store::{EventStore, Snapshot};
use super::task_queue::Task;
use super::timer_store::{TimerRecord, TimerStore};
use crate::domain::{HistoryEvent, Result, SagaId};

/// Everything one workflow task writes.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The execution.
    pub saga_id: SagaId,
    /// The history length the task read: the append is rejected if it moved.
    pub expected_version: u64,
    /// The new events, ids from `expected_version` on.
    pub events: Vec<HistoryEvent>,
    /// Timers to create.
    pub create_timers: Vec<TimerRecord>,
    /// Timer ids to cancel.
    pub cancel_timers: Vec<String>,
    /// A snapshot of the state after `events`, if one is due.
    pub snapshot: Option<Snapshot>,
    /// Snapshots to keep per saga.
    pub max_snapshots: u32,
    /// Tasks the events caused. The engine publishes them after the commit; a store
    /// with an outbox writes them in the same transaction so none is ever lost.
    pub tasks: Vec<Task>,
}

impl Commit {
    /// A commit of events alone: what [`EventStore::append`] is, for a store whose
    /// append and commit share one path.
    pub fn events_only(saga_id: &SagaId, expected_version: u64, events: Vec<HistoryEvent>) -> Self {
        Commit {
            saga_id: saga_id.clone(),
            expected_version,
            events,
            create_timers: Vec::new(),
            cancel_timers: Vec::new(),
            snapshot: None,
            max_snapshots: 0,
            tasks: Vec::new(),
        }
    }
}

/// An [`EventStore`] and [`TimerStore`] that commits a workflow task as a unit.
///
/// Contract: `commit` appends `events` exactly as [`EventStore::append`] (a stale
/// `expected_version` is a `Concurrency` error and writes nothing), and only if the
/// append succeeds creates and cancels the timers and saves the snapshot. A database
/// adapter does all of it in one transaction. The default runs the steps one after the
/// other: still safe, because everything after the append can be rebuilt from history
/// (the engine's recovery re-creates timers), but not atomic.
///
/// The engine registers its workflows' definitions in the same store
/// ([`DefinitionStore`]), so tools without the workflow code can read them; a store
/// that keeps none implements `DefinitionStore` with its defaults.
#[async_trait]
pub trait WorkflowStore: EventStore + TimerStore + DefinitionStore {
    /// Commits one workflow task; returns the new version.
    async fn commit(&self, commit: Commit) -> Result<u64> {
        let version = self
            .append(&commit.saga_id, commit.expected_version, commit.events)
            .await?;
        for t in commit.create_timers {
            self.create(t).await?;
        }
        for id in &commit.cancel_timers {
            self.cancel(id).await?;
        }
        if let Some(s) = commit.snapshot {
            self.save_snapshot(s, commit.max_snapshots).await?;
        }
        Ok(version)
    }
}
