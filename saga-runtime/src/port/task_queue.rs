//! The task queue: at-least-once delivery of workflow and activity tasks (manual 11).
//!
//! The queue is delivery, not truth: the event store decides what has happened, and a
//! worker that receives a task whose result is already in history drops it.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{Result, SagaId};

/// What a task asks a worker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskKind {
    /// Run the workflow's machine over new history (a workflow task).
    Workflow,
    /// Run one attempt of an activity.
    Activity,
}

impl TaskKind {
    /// Lower-case name used in subjects (`workflow`, `activity`).
    pub const fn name(self) -> &'static str {
        match self {
            TaskKind::Workflow => "workflow",
            TaskKind::Activity => "activity",
        }
    }
}

/// A unit of work on a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Workflow or activity task.
    pub kind: TaskKind,
    /// The execution it belongs to.
    pub saga_id: SagaId,
    /// The queue name workers subscribe to.
    pub queue: String,
    /// Idempotency id, `<saga_id>:<event_id>` of the event that caused the task.
    pub dedup_id: String,
    /// The encoded task body.
    pub payload: Vec<u8>,
}

/// Identifies one delivery of a task, for ack / nak / terminate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryTag {
    /// Adapter-assigned delivery number.
    pub seq: u64,
    /// Adapter-specific handle (for example a reply subject).
    pub handle: Option<String>,
}

/// A task handed to a worker.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The task.
    pub task: Task,
    /// Use it to ack, nak or terminate this delivery.
    pub tag: DeliveryTag,
    /// 1 on first delivery, incremented on each redelivery.
    pub delivery_count: u32,
}

/// A task that was terminated or exceeded its delivery limit.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The task.
    pub task: Task,
    /// Why it was dead-lettered.
    pub reason: String,
    /// How many times it had been delivered.
    pub delivery_count: u32,
}

/// At-least-once task delivery.
///
/// Contract:
/// - a fetched task that is neither acked nor nak'ed within the adapter's ack-wait is
///   delivered again, with a higher `delivery_count`;
/// - `nak(delay)` redelivers no earlier than `delay` from now;
/// - `progress` restarts a delivery's ack wait: a delivery kept alive with `progress`
///   is not redelivered however long its work takes, while one whose worker died is
///   redelivered once its ack wait runs out;
/// - `terminate` moves the task to the dead-letter list with the reason, as does
///   exceeding the adapter's maximum deliveries;
/// - `fetch` waits up to `wait` for at least one task, then returns what it has.
///
/// ```no_run
/// use std::time::Duration;
/// use saga_runtime::port::TaskQueue;
///
/// async fn serve(queue: &impl TaskQueue) -> saga_runtime::Result<()> {
///     for delivery in queue.fetch("orders", 16, Duration::from_secs(5)).await? {
///         // A long activity reports progress more often than the ack wait...
///         queue.progress(&delivery.tag).await?;
///         // ...and acks when done (or naks to retry later, or terminates).
///         queue.ack(&delivery.tag).await?;
///     }
///     Ok(())
/// }
/// ```
#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// Enqueues a task.
    async fn publish(&self, task: Task) -> Result<()>;
    /// Takes up to `max` tasks from `queue`, waiting up to `wait` for the first.
    async fn fetch(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>>;
    /// The task is done; it will not be delivered again. (An adapter may send it
    /// without waiting for the broker's confirmation, as NATS's does: an ack lost with
    /// the connection then costs one redelivery, which the engine drops, the result
    /// being in history.)
    async fn ack(&self, tag: &DeliveryTag) -> Result<()>;
    /// The task failed; deliver it again after `delay`.
    async fn nak(&self, tag: &DeliveryTag, delay: Duration) -> Result<()>;
    /// The task is still being worked on: restart this delivery's ack wait so it is not
    /// delivered again meanwhile. Call it well within the ack wait (say every third of
    /// it) while a long activity runs; a worker that dies stops calling it, and its
    /// task is redelivered.
    async fn progress(&self, tag: &DeliveryTag) -> Result<()>;
    /// The task can never succeed; move it to the dead-letter list.
    async fn terminate(&self, tag: &DeliveryTag, reason: &str) -> Result<()>;
    /// The dead-lettered tasks of `queue`.
    async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>>;
    /// True for a queue that lives and dies with the process (the in-memory one): the
    /// engine's recovery at start re-derives its tasks from history, so they need no
    /// outbox. A broker's queue is shared and outlives a worker, so a lost message is
    /// only found again through the outbox (the default, false).
    fn is_in_process(&self) -> bool {
        false
    }
    /// How many tasks of `queue` wait to be fetched (ready or delayed, not in flight),
    /// or `None` when the adapter cannot tell cheaply (the default). The watchdog's
    /// capacity detector reads it.
    async fn depth(&self, _queue: &str) -> Result<Option<u64>> {
        Ok(None)
    }
}
