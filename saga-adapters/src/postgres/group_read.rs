//! Group read: version reads that arrive while another is running go to PostgreSQL
//! together, as one statement.
//!
//! Why: a worker that takes the first task of a saga started elsewhere reads the
//! saga's version before it runs the activity (the task carries the history; the read
//! says whether the saga moved on meanwhile). With three worker processes that is one
//! read for two sagas in three, a statement and a round trip each, and under load they
//! pile up: in a worker process, more than a quarter of the reads began with five or
//! more already in flight, and only a quarter with none (BENCHMARKS.md). PostgreSQL's
//! cost of such a read is nearly all the statement's, not the row's, as with commits
//! (`group_commit.rs`).
//!
//! How: one read statement at a time per store, run by a caller. A read that finds
//! none running runs its own at once (no hand-off, no added latency at one in flight);
//! one that finds a statement running joins a queue. When the running read is done,
//! the first caller in the queue is woken to lead the next statement, for itself and
//! whatever queued behind it (`saga_id = ANY($1)`). No task is spawned: a caller that
//! gives up while it leads passes the lead on as it drops (`ReadSlot`), and a queued
//! caller whose leader went away without answering queues again.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use saga_runtime::domain::SagaId;
use saga_runtime::{ErrorKind, Result};
use tokio::sync::oneshot;

use super::group_commit::same_error;
use super::{unavailable, PostgresStore};

/// The most sagas one read statement asks for; more wait for the next.
const MAX_BATCH: usize = 256;

/// The queue of version reads and whether a statement runs (shared by the store's
/// clones).
#[derive(Default)]
pub(super) struct GroupRead {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    /// A caller holds the read slot: its statement runs, or is about to.
    reading: bool,
    waiting: VecDeque<(SagaId, oneshot::Sender<Reply>)>,
}

/// What a queued caller is told.
enum Reply {
    /// Its saga's version, read by the leader's statement.
    Version(Result<u64>),
    /// The slot is its own now: it leads the next statement.
    Lead,
}

impl GroupRead {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The store's one read slot, held by the caller leading a statement; when dropped
/// (done, or cancelled half-way) it goes to the first queued caller still waiting.
struct ReadSlot<'a> {
    group: &'a GroupRead,
}

impl Drop for ReadSlot<'_> {
    fn drop(&mut self) {
        let mut q = self.group.lock();
        while let Some((saga_id, lead)) = q.waiting.pop_front() {
            match lead.send(Reply::Lead) {
                Ok(()) => return,
                // That caller gave up: the next one.
                Err(_) => tracing::trace!(saga_id = %saga_id, "a queued version read gave up"),
            }
        }
        q.reading = false;
    }
}

impl PostgresStore {
    /// The version of `saga_id` (0: none), read alone when no other read runs, else
    /// together with the reads queued behind the running one.
    pub(super) async fn version_grouped(&self, saga_id: &SagaId) -> Result<u64> {
        let group = &*self.group_read;
        let slot = loop {
            let answer = {
                let mut q = group.lock();
                if !q.reading {
                    q.reading = true;
                    break ReadSlot { group };
                }
                let (reply, answer) = oneshot::channel();
                q.waiting.push_back((saga_id.clone(), reply));
                answer
            };
            match answer.await {
                Ok(Reply::Version(v)) => return v,
                Ok(Reply::Lead) => break ReadSlot { group },
                // The leader that took this read along went away without an answer
                // (cancelled half-way): ask again.
                Err(_) => continue,
            }
        };
        let along: Vec<(SagaId, oneshot::Sender<Reply>)> = {
            let mut q = group.lock();
            let n = q.waiting.len().min(MAX_BATCH - 1);
            q.waiting.drain(..n).collect()
        };
        let mut ids = Vec::with_capacity(along.len() + 1);
        ids.push(saga_id.as_str());
        ids.extend(along.iter().map(|(id, _)| id.as_str()));
        let found = self.read_versions(&ids).await;
        // The statement is done: the next one may start while the answers go out.
        drop(slot);
        let version = |id: &str| -> Result<u64> {
            match &found {
                Ok(found) => Ok(found.get(id).copied().unwrap_or(0)),
                Err(e) => Err(same_error(e)),
            }
        };
        for (id, reply) in along {
            // A caller that gave up meanwhile needs no answer.
            let _ = reply.send(Reply::Version(version(id.as_str())));
        }
        found.map(|mut found| found.remove(saga_id.as_str()).unwrap_or(0))
    }

    /// One statement: the versions of those of `ids` that exist.
    async fn read_versions(&self, ids: &[&str]) -> Result<HashMap<String, u64>> {
        self.count(1);
        let mut conn = self.reader().await?;
        let rows: Result<Vec<(String, i64)>> = self
            .bounded(ErrorKind::EventStore, "read a version", async {
                sqlx::query_as(
                    "SELECT saga_id, version FROM saga_executions WHERE saga_id = ANY($1::text[])",
                )
                .bind(ids)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| unavailable("read a version", e))
            })
            .await;
        conn.give_back(&rows);
        rows?
            .into_iter()
            .map(|(id, v)| Ok((id.clone(), crate::common::to_u64("version", &id, v)?)))
            .collect()
    }
}
