//! The event store: append-only histories with optimistic locking, plus snapshots and
//! the execution index used for listing.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{EventType, HistoryEvent, Result, SagaId, WorkflowStatus};

/// A point-in-time encoding of an execution's state (manual section 9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The execution.
    pub saga_id: SagaId,
    /// The last event folded into `state`; replay continues at `last_event_id + 1`.
    pub last_event_id: u64,
    /// The codec that encoded `state` (`"json"`, `"bincode"`, `"postcard"`).
    pub codec: String,
    /// The encoded state.
    pub state: Vec<u8>,
    /// Hex SHA-256 of `state`, when checksums are enabled.
    pub checksum: Option<String>,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
}

/// One row of the execution index: what listing and filtering see without replaying.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionSummary {
    /// The execution.
    pub saga_id: SagaId,
    /// Its workflow type.
    pub workflow_type: String,
    /// Lifecycle status, from the lifecycle events (`Paused` is only known to replay).
    pub status: WorkflowStatus,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it closed, if it has.
    pub closed_at: Option<DateTime<Utc>>,
    /// Number of events in its history (the next event id).
    pub version: u64,
    /// The time of its last event: when it last made progress (the watchdog's stall
    /// detector asks for open executions idle since before a time).
    #[serde(default)]
    pub updated_at: DateTime<Utc>,
    /// Search attributes set by `UpsertSearchAttributes` events.
    pub search_attributes: BTreeMap<String, serde_json::Value>,
}

impl ExecutionSummary {
    /// Starts a summary from the `WorkflowExecutionStarted` event; `None` for any other.
    pub fn from_started(event: &HistoryEvent) -> Option<Self> {
        (event.event_type == EventType::WorkflowExecutionStarted).then(|| ExecutionSummary {
            saga_id: event.saga_id.clone(),
            workflow_type: event
                .attr_str("workflow_type")
                .unwrap_or_default()
                .to_owned(),
            status: WorkflowStatus::Running,
            started_at: event.timestamp,
            closed_at: None,
            version: event.event_id + 1,
            updated_at: event.timestamp,
            search_attributes: BTreeMap::new(),
        })
    }

    /// Folds one appended event into the summary.
    pub fn apply(&mut self, event: &HistoryEvent) {
        if event.event_id + 1 >= self.version {
            self.version = event.event_id + 1;
            self.updated_at = event.timestamp;
        }
        let closed = |s: &mut Self, st| {
            s.status = st;
            s.closed_at = Some(event.timestamp);
        };
        match event.event_type {
            EventType::WorkflowExecutionCompleted => closed(self, WorkflowStatus::Completed),
            EventType::WorkflowExecutionFailed | EventType::WorkflowExecutionTimedOut => {
                closed(self, WorkflowStatus::Failed)
            }
            EventType::WorkflowExecutionCanceled => closed(self, WorkflowStatus::Cancelled),
            EventType::WorkflowExecutionCompensating => {
                self.status = WorkflowStatus::Compensating;
                self.closed_at = None;
            }
            EventType::UpsertSearchAttributes => {
                if let Some(map) = event
                    .attributes
                    .get("search_attributes")
                    .and_then(|v| v.as_object())
                {
                    for (k, v) in map {
                        self.search_attributes.insert(k.clone(), v.clone());
                    }
                }
            }
            _ => {}
        }
    }
}

/// Which executions to list. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionFilter {
    /// Only this workflow type.
    pub workflow_type: Option<String>,
    /// Only this status.
    pub status: Option<WorkflowStatus>,
    /// Started at or after.
    pub started_after: Option<DateTime<Utc>>,
    /// Started before.
    pub started_before: Option<DateTime<Utc>>,
    /// Last event before ([`ExecutionSummary::updated_at`]): idle since then.
    pub updated_before: Option<DateTime<Utc>>,
    /// Search attributes that must be equal.
    pub search_attributes: BTreeMap<String, serde_json::Value>,
    /// At most this many, oldest first.
    pub limit: Option<usize>,
}

impl ExecutionFilter {
    /// True if `s` passes the filter (the reference semantics every adapter follows).
    pub fn matches(&self, s: &ExecutionSummary) -> bool {
        self.workflow_type
            .as_ref()
            .is_none_or(|t| *t == s.workflow_type)
            && self.status.is_none_or(|st| st == s.status)
            && self.started_after.is_none_or(|t| s.started_at >= t)
            && self.started_before.is_none_or(|t| s.started_at < t)
            && self.updated_before.is_none_or(|t| s.updated_at < t)
            && self
                .search_attributes
                .iter()
                .all(|(k, v)| s.search_attributes.get(k) == Some(v))
    }
}

/// Durable, append-only histories with optimistic locking (manual sections 5 and 8).
///
/// Contract:
/// - `append` writes `events` only if the history currently holds exactly
///   `expected_version` events; the events' ids must be `expected_version,
///   expected_version + 1, ..` and their `saga_id` the given one. A stale
///   `expected_version` is a `Concurrency` error and writes nothing.
/// - Event ids are dense and ordered from 0.
/// - `save_snapshot` keeps at most `max_snapshots` per saga, pruning the oldest.
///
/// ```
/// # use saga_runtime::prelude::*;
/// # use saga_runtime::port::EventStore;
/// # use saga_runtime::adapter::memory::InMemoryEventStore;
/// # tokio_test_block_on(async {
/// let store = InMemoryEventStore::new();
/// let id = SagaId::new("order-1");
/// assert_eq!(store.version(&id).await.unwrap(), 0);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends events at `expected_version`; returns the new version (history length).
    async fn append(
        &self,
        saga_id: &SagaId,
        expected_version: u64,
        events: Vec<HistoryEvent>,
    ) -> Result<u64>;

    /// The whole history.
    async fn history(&self, saga_id: &SagaId) -> Result<Vec<HistoryEvent>> {
        self.history_from(saga_id, 0).await
    }

    /// Events with `event_id >= from_event_id`, in order.
    async fn history_from(&self, saga_id: &SagaId, from_event_id: u64)
        -> Result<Vec<HistoryEvent>>;

    /// The number of events in the history (0 if the saga does not exist).
    async fn version(&self, saga_id: &SagaId) -> Result<u64>;

    /// Stores a snapshot, then prunes the saga's snapshots to the newest `max_snapshots`.
    async fn save_snapshot(&self, snapshot: Snapshot, max_snapshots: u32) -> Result<()>;

    /// The newest snapshot (highest `last_event_id`), if any.
    async fn latest_snapshot(&self, saga_id: &SagaId) -> Result<Option<Snapshot>>;

    /// All kept snapshots, newest first.
    async fn snapshots(&self, saga_id: &SagaId) -> Result<Vec<Snapshot>>;

    /// Executions matching `filter`, oldest start first.
    async fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>>;
}
