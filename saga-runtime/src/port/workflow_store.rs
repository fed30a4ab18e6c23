//! The store a workflow task commits to: events, timers and snapshots together.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::definition_store::DefinitionStore;
use super::event_store::{EventStore, Snapshot};
use super::outbox::Outbox;
use super::task_queue::Task;
use super::timer_store::{TimerRecord, TimerStore};
use crate::domain::{EventType, HistoryEvent, Result, SagaId};

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
    /// Tasks the events caused, written to the [`Outbox`] with the events. The engine
    /// fills it only when its task queue is outside the process (an in-process queue
    /// dies with the engine, whose recovery re-derives its tasks from history).
    pub tasks: Vec<Task>,
    /// When the reconciler may publish `tasks` again if they are still unsettled
    /// (the Unix epoch when there are none).
    pub redeliver_at: DateTime<Utc>,
    /// Dedup ids of this saga's outbox tasks whose results the events record.
    pub settle_tasks: Vec<String>,
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
            redeliver_at: DateTime::<Utc>::UNIX_EPOCH,
            settle_tasks: Vec::new(),
        }
    }

    /// True if the execution is closed after these events (its last lifecycle event
    /// completes, fails, times out or cancels it): the store then settles every outbox
    /// task of the saga.
    pub fn closes_execution(&self) -> bool {
        self.events
            .iter()
            .rev()
            .find_map(|e| match e.event_type {
                EventType::WorkflowExecutionCompleted
                | EventType::WorkflowExecutionFailed
                | EventType::WorkflowExecutionTimedOut
                | EventType::WorkflowExecutionCanceled => Some(true),
                EventType::WorkflowExecutionCompensating | EventType::WorkflowExecutionStarted => {
                    Some(false)
                }
                _ => None,
            })
            .unwrap_or(false)
    }
}

/// An [`EventStore`], [`TimerStore`] and [`Outbox`] that commits a workflow task as a
/// unit.
///
/// Contract: `commit` appends `events` exactly as [`EventStore::append`] (a stale
/// `expected_version` is a `Concurrency` error and writes nothing), and only if the
/// append succeeds creates and cancels the timers, saves the snapshot, and writes and
/// settles the outbox tasks ([`Outbox`] has the rules). A database adapter does all of
/// it in one transaction.
///
/// The engine registers its workflows' definitions in the same store
/// ([`DefinitionStore`]), so tools without the workflow code can read them; a store
/// that keeps none implements `DefinitionStore` with its defaults.
#[async_trait]
pub trait WorkflowStore: EventStore + TimerStore + Outbox + DefinitionStore {
    /// Commits one workflow task; returns the new version.
    async fn commit(&self, commit: Commit) -> Result<u64>;
}
