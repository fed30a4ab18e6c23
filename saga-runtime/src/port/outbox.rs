//! The transactional outbox (DESIGN.md section 6): the store's copy of every task the
//! engine hands to an external task queue.
//!
//! A broker may lose a message it acknowledged (NATS acknowledges publishes before they
//! reach disk). So a workflow task's [`Commit`](super::Commit) also writes the tasks its
//! events cause, in the same transaction, as outbox rows; the commit that records a
//! task's result settles its row; a reconciler claims the rows that stayed unsettled
//! past their redelivery time and publishes them again. A lost message then costs
//! latency, never correctness: the event store stays the only source of truth.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::task_queue::Task;
use crate::domain::{Result, SagaId};

/// Unsettled tasks, kept by the store.
///
/// Contract (checked by [`crate::conformance::workflow_store`]):
/// - a commit's `tasks` become rows only if the commit succeeds, first due for
///   re-publishing at its `redeliver_at`; a row with the same `(saga_id, dedup_id)`
///   is kept once;
/// - a commit's `settle_tasks` removes those rows of its saga, in the same transaction;
///   a commit that closes its execution (completed, failed, cancelled, terminated,
///   timed out) removes every row of the saga;
/// - `claim_tasks` returns due rows, oldest due first, and moves each one's due time to
///   `now + lease`, so concurrent reconcilers do not publish the same row at once;
/// - `defer_tasks` moves the due time of those rows of its saga to `until`, never
///   earlier than it was;
/// - `unsettled_tasks` lists the dedup ids of a saga's rows, in order.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Claims up to `limit` unsettled tasks due at `now`; each is due again at
    /// `now + lease` unless settled before.
    async fn claim_tasks(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Task>>;
    /// Settles the tasks of `saga_id` with these dedup ids: they are never published
    /// again. Unknown ids are ignored.
    async fn settle_tasks(&self, saga_id: &SagaId, dedup_ids: &[String]) -> Result<()>;
    /// Keeps the tasks of `saga_id` with these dedup ids from being claimed before
    /// `until` (a row already due later keeps its time). The engine calls it while an
    /// activity attempt runs, as it reports progress on a delivery: for an attempt run
    /// eagerly, never published, it is all that keeps the task from being handed out
    /// again. Unknown ids are ignored.
    async fn defer_tasks(
        &self,
        saga_id: &SagaId,
        dedup_ids: &[String],
        until: DateTime<Utc>,
    ) -> Result<()>;
    /// How many tasks are unsettled.
    async fn outbox_len(&self) -> Result<u64>;
    /// The dedup ids of `saga_id`'s unsettled tasks, in ascending order.
    ///
    /// Tools ask it whether a task that a broker gave up on (a dead letter) still
    /// matters: a row settled since means the saga recorded the task's result anyway
    /// (the reconciler published it again, and a worker ran it).
    async fn unsettled_tasks(&self, saga_id: &SagaId) -> Result<Vec<String>>;
}
