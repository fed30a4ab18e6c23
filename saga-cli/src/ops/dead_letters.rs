//! Dead letters of the NATS task queue: list them, with what the store says of each
//! (`annotate`), and re-drive them to their queue.

use std::collections::BTreeMap;

use saga_adapters::NatsTaskQueue;
use saga_runtime::client::SagaClient;
use saga_runtime::domain::SagaId;
use saga_runtime::port::DeadLetter;
use serde::Serialize;

use crate::error::CliError;

/// What the store says of a dead letter's task.
///
/// Why: the broker's dead letter and the store's outbox row are separate records. A
/// task dead-lettered after `max_deliver` failed deliveries (say, while the store was
/// down) keeps its outbox row, so the reconciler publishes it again later and a worker
/// runs it: the saga moves on, while the dead letter stays listed. Only the store can
/// tell such a letter from one that still needs an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum TaskState {
    /// Its outbox row is still there: the saga has not recorded the task's result.
    Open,
    /// Its outbox row is gone: the saga recorded the task's result since (or closed).
    /// Re-driving it changes nothing but the dead-letter stream: a worker drops it.
    Settled,
    /// The store has no execution of that id (another store, or the wrong schema).
    UnknownSaga,
}

impl TaskState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TaskState::Open => "open",
            TaskState::Settled => "settled",
            TaskState::UnknownSaga => "unknown-saga",
        }
    }
}

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
    /// The execution's status in the store (null: the store was not read, or has no
    /// such execution).
    pub(crate) saga_status: Option<String>,
    /// Whether the task still matters ([`TaskState`]; null: the store was not read).
    pub(crate) task: Option<TaskState>,
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
            saga_status: None,
            task: None,
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

/// Fills in `saga_status` and `task` of each letter from the store: one read of the
/// execution and one of its outbox rows per saga.
pub(crate) async fn annotate(
    client: &SagaClient,
    letters: &mut [DeadLetterView],
) -> Result<(), CliError> {
    let mut by_saga: BTreeMap<String, Option<(String, Vec<String>)>> = BTreeMap::new();
    for d in letters.iter() {
        if by_saga.contains_key(&d.saga_id) {
            continue;
        }
        let saga = SagaId::new(d.saga_id.clone());
        let found = match client.describe(saga.clone()).await {
            Ok(e) => {
                let open = client.store().unsettled_tasks(&saga).await?;
                Some((e.status.name().to_owned(), open))
            }
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        by_saga.insert(d.saga_id.clone(), found);
    }
    for d in letters.iter_mut() {
        match &by_saga[&d.saga_id] {
            Some((status, open)) => {
                d.saga_status = Some(status.clone());
                d.task = Some(if open.contains(&d.dedup_id) {
                    TaskState::Open
                } else {
                    TaskState::Settled
                });
            }
            None => d.task = Some(TaskState::UnknownSaga),
        }
    }
    Ok(())
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
