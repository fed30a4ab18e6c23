//! Dead letters of the NATS task queue: list them, re-drive them to their queue.

use saga_adapters::NatsTaskQueue;
use saga_runtime::port::DeadLetter;
use serde::Serialize;

use crate::error::CliError;

/// A dead letter as shown to people and programs.
#[derive(Debug, Serialize)]
pub(crate) struct DeadLetterView {
    pub(crate) queue: String,
    /// `workflow` or `activity`.
    pub(crate) kind: &'static str,
    pub(crate) saga_id: String,
    /// The task's dedup id: what `redrive --id` takes.
    pub(crate) dedup_id: String,
    pub(crate) reason: String,
    pub(crate) delivery_count: u32,
    /// The payload as text when it is UTF-8 (the engine's tasks are JSON), else null.
    pub(crate) payload: Option<String>,
    pub(crate) payload_bytes: usize,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(d: DeadLetter) -> Self {
        let t = d.task;
        DeadLetterView {
            kind: t.kind.name(),
            saga_id: t.saga_id.to_string(),
            dedup_id: t.dedup_id,
            reason: d.reason,
            delivery_count: d.delivery_count,
            payload_bytes: t.payload.len(),
            payload: String::from_utf8(t.payload).ok(),
            queue: t.queue,
        }
    }
}

/// `queue`'s dead letters, oldest first.
pub(crate) async fn list(
    nats: &NatsTaskQueue,
    queue: &str,
) -> Result<Vec<DeadLetterView>, CliError> {
    use saga_runtime::port::TaskQueue;
    let dead = nats.dead_letters(queue).await?;
    Ok(dead.into_iter().map(DeadLetterView::from).collect())
}

/// Publishes `queue`'s dead letters (or the one of task `id`) to the queue again and
/// removes them from the dead-letter stream; returns those re-driven.
pub(crate) async fn redrive(
    nats: &NatsTaskQueue,
    queue: &str,
    id: Option<&str>,
) -> Result<Vec<DeadLetterView>, CliError> {
    let redriven = nats.redrive(queue, id).await?;
    Ok(redriven.into_iter().map(DeadLetterView::from).collect())
}
