//! Dead letters of the NATS task queue: list them, with what the store says of each
//! (`annotate`), and re-drive them to their queue.

use std::collections::{BTreeMap, BTreeSet};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// As its [`TaskState::name`], in JSON too.
impl Serialize for TaskState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
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
/// history and one of the outbox rows per saga.
pub(crate) async fn annotate(
    client: &SagaClient,
    letters: &mut [DeadLetterView],
) -> Result<(), CliError> {
    let sagas: BTreeSet<SagaId> = letters
        .iter()
        .map(|d| SagaId::new(d.saga_id.clone()))
        .collect();
    let mut status: BTreeMap<String, String> = BTreeMap::new();
    let mut known = Vec::new();
    for saga in &sagas {
        match client.status(saga.clone()).await {
            Ok(s) => {
                status.insert(saga.to_string(), s.name().to_owned());
                known.push(saga);
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let open = open_tasks(client, known).await?;
    for d in letters.iter_mut() {
        d.saga_status = status.get(&d.saga_id).cloned();
        d.task = Some(match d.saga_status {
            None => TaskState::UnknownSaga,
            Some(_) if open.contains(&(d.saga_id.clone(), d.dedup_id.clone())) => TaskState::Open,
            Some(_) => TaskState::Settled,
        });
    }
    Ok(())
}

/// `(saga id, dedup id)` of every unsettled outbox task of `sagas`: one read per saga.
pub(crate) async fn open_tasks<'a>(
    client: &SagaClient,
    sagas: impl IntoIterator<Item = &'a SagaId>,
) -> Result<BTreeSet<(String, String)>, CliError> {
    let mut open = BTreeSet::new();
    for saga in sagas {
        for id in client.store().unsettled_tasks(saga).await? {
            open.insert((saga.to_string(), id));
        }
    }
    Ok(open)
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
