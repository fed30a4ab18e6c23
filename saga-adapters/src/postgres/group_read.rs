//! Group read: version reads that arrive while another is running go to PostgreSQL
//! together, as one statement.
//!
//! Why: a worker that takes the first task of a saga started elsewhere reads the
//! saga's version before it runs the activity (the task carries the history; the read
//! says whether the saga moved on meanwhile). With three worker processes that is one
//! read for two sagas in three, a statement and a round trip each, and under load they
//! pile up: a process saw about three in flight on average when one began (19 % of
//! them with five or more). PostgreSQL's cost of such a read is nearly all the
//! statement's, not the row's, as with commits (`group_commit.rs`).
//!
//! How: one read statement at a time per store. A read that finds none running runs
//! its own at once (no hand-off, no added latency at one in flight); one that finds a
//! statement running joins a queue, and the queue goes as one
//! `saga_id = ANY($1)` statement as soon as the running one is done, run by a spawned
//! task so that a caller that gives up waiting cannot strand the others.

use std::collections::HashMap;
use std::sync::Mutex;

use saga_runtime::domain::SagaId;
use saga_runtime::{Error, ErrorKind, Result};
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
    /// A read statement runs (a caller's own or a spawned reader's).
    reading: bool,
    waiting: Vec<(SagaId, oneshot::Sender<Result<u64>>)>,
}

impl GroupRead {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Holds the store's one read slot; given up when dropped (also by a caller cancelled
/// half-way), handing whatever queued meanwhile to a spawned reader.
struct ReadSlot {
    store: PostgresStore,
}

impl Drop for ReadSlot {
    fn drop(&mut self) {
        let mut q = self.store.group_read.lock();
        if q.waiting.is_empty() {
            q.reading = false;
        } else {
            // Still `reading`: the slot passes to the reader.
            drop(q);
            let store = self.store.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(store.read_queued());
            } else {
                // No runtime (it is shutting down): the waiters get no answer.
                let mut q = self.store.group_read.lock();
                q.waiting.clear();
                q.reading = false;
            }
        }
    }
}

/// The answer when the reader went away without one (its runtime shut down).
fn no_answer() -> Error {
    Error::new(
        ErrorKind::EventStore,
        "read a version: the group read stopped before answering",
    )
}

impl PostgresStore {
    /// The version of `saga_id` (0: none), read alone when no other read runs, else
    /// together with the reads queued behind the running one.
    pub(super) async fn version_grouped(&self, saga_id: &SagaId) -> Result<u64> {
        let answer = {
            let mut q = self.group_read.lock();
            if q.reading {
                let (reply, answer) = oneshot::channel();
                q.waiting.push((saga_id.clone(), reply));
                Some(answer)
            } else {
                q.reading = true;
                None
            }
        };
        match answer {
            Some(answer) => answer.await.unwrap_or_else(|_| Err(no_answer())),
            None => {
                let _slot = ReadSlot {
                    store: self.clone(),
                };
                let mut found = self.read_versions(std::slice::from_ref(saga_id)).await?;
                Ok(found.remove(saga_id.as_str()).unwrap_or(0))
            }
        }
    }

    /// A reader: answers the queued reads, a statement per [`MAX_BATCH`], until none
    /// is left; then gives the slot up.
    async fn read_queued(self) {
        let _slot = ReadSlot {
            store: self.clone(),
        };
        loop {
            let batch: Vec<_> = {
                let mut q = self.group_read.lock();
                let n = q.waiting.len().min(MAX_BATCH);
                q.waiting.drain(..n).collect()
            };
            if batch.is_empty() {
                return;
            }
            let ids: Vec<SagaId> = batch.iter().map(|(id, _)| id.clone()).collect();
            match self.read_versions(&ids).await {
                Ok(found) => {
                    for (id, reply) in batch {
                        let _ = reply.send(Ok(found.get(id.as_str()).copied().unwrap_or(0)));
                    }
                }
                Err(e) => {
                    for (_, reply) in batch {
                        let _ = reply.send(Err(same_error(&e)));
                    }
                }
            }
        }
    }

    /// One statement: the versions of those of `ids` that exist.
    async fn read_versions(&self, ids: &[SagaId]) -> Result<HashMap<String, u64>> {
        self.count(1);
        let names: Vec<&str> = ids.iter().map(SagaId::as_str).collect();
        let mut conn = self.reader().await?;
        let rows: Result<Vec<(String, i64)>> = sqlx::query_as(
            "SELECT saga_id, version FROM saga_executions WHERE saga_id = ANY($1::text[])",
        )
        .bind(&names)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| unavailable("read a version", e));
        conn.give_back(&rows);
        rows?
            .into_iter()
            .map(|(id, v)| Ok((id.clone(), crate::common::to_u64("version", &id, v)?)))
            .collect()
    }
}
