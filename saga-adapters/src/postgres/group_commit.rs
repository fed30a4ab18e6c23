//! Group commit: workflow-task commits that arrive while others are being written go to
//! PostgreSQL together, as one statement.
//!
//! Why: with many workflows in flight the database, not the engine, is the limit, and
//! most of its work per commit is fixed cost of the statement (opening and locking six
//! tables and their indexes, setting up the executor, one WAL flush), not the rows. One
//! statement for N commits pays that once. Each commit in a batch still stands alone:
//! its version check decides, row by row, whether its events, timer changes and outbox
//! changes are written, so a stale writer in a batch fails alone and writes nothing,
//! exactly as it would on its own.
//!
//! How: a commit joins a queue. If no flusher runs, it starts one (a spawned task, so a
//! caller that gives up waiting cannot abandon the others' commits half-way), and
//! another, up to `max_flushers`, only once half a batch waits
//! ([`GroupCommit::another_flusher`]); when nothing is queued or being written at all,
//! the caller writes its commit itself, saving the hand-off (one workflow in flight).
//! A flusher takes up to `max_batch` queued commits, for distinct sagas, writes them in
//! one statement ([`super::commit_sql`]), answers each, and goes on until the queue is
//! empty. Nothing waits for a batch to fill: one workflow in flight is one commit per
//! statement, with no added latency; only after a batch of several does a flusher
//! yield to the runtime a few times before the next, while commits keep arriving
//! ([`LINGER_AFTER`]). Commits go over connections kept for them, out of the pool (see
//! [`super::kept`]).
//!
//! When the statement fails with a database error (a deadlock between two processes'
//! batches, a value one commit carries that the database refuses) every commit of the
//! batch is retried alone, so that only the one at fault fails. A lost connection fails
//! them all with `code=unavailable`, as a single commit would.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use saga_runtime::domain::SagaId;
use saga_runtime::port::Commit;
use saga_runtime::{Error, ErrorKind, Result};
use sqlx::Row;
use tokio::sync::oneshot;

use super::commit_sql::{self, Parts};
use super::kept::{Connection, KeptConnections};
use super::{IndexValues, PostgresStore};
use crate::common::{category_name, json_text, timer_kind_name};

/// The answer to one commit: the new version, or (version check failed, nothing
/// written) the version found.
type Outcome = Result<std::result::Result<u64, u64>>;

/// A commit that can share a statement: it has events, no snapshot, and its listing
/// row's new values are known without reading it.
pub(in crate::postgres) struct Grouped {
    pub(in crate::postgres) commit: Commit,
    pub(in crate::postgres) insert: bool,
    pub(in crate::postgres) index: IndexValues,
}

/// A commit waiting for its batch.
struct Pending {
    commit: Commit,
    insert: bool,
    index: IndexValues,
    reply: oneshot::Sender<Outcome>,
}

/// What a commit that timed out was doing.
const WRITE: &str = "commit a workflow task";

/// The answer when a flusher went away without one (its runtime shut down, or its
/// statement got no reply within the store's `reply_timeout`).
pub(super) fn no_answer() -> Error {
    Error::new(
        ErrorKind::EventStore,
        "commit a workflow task: the group commit stopped before answering; \
         whether the commit was written is unknown",
    )
}

/// The queue and the flushers draining it (shared by the store's clones).
pub(super) struct GroupCommit {
    state: Mutex<Queue>,
    max_batch: usize,
    max_flushers: usize,
    /// The connections commits are written on, kept out of the pool, one per
    /// flusher ([`super::kept`]).
    connections: Arc<KeptConnections>,
}

/// A flusher that just wrote a batch of at least this many commits lingers before
/// taking the next (`PostgresStore::linger`).
///
/// Why: commits arrive in bulk then, from the workflows whose commits were just
/// answered and that run their next step on this runtime. Yielding a few times lets
/// them queue, so the next statement carries more commits and its fixed costs (starting
/// the executor, the commit and its WAL flush, the round trip) are shared by more. It
/// matters most with several worker processes, where each batches only its own
/// commits: paired runs of three processes, 5 308 / 5 932 / 5 957 steps/s without,
/// 6 259 / 6 268 / 6 702 with (BENCHMARKS.md). A batch of fewer (one workflow in
/// flight) never waits, and no timer is involved: a yield costs microseconds.
const LINGER_AFTER: usize = 4;

/// Yields of a lingering flusher, at most.
const LINGER_YIELDS: usize = 10;

#[derive(Default)]
struct Queue {
    pending: VecDeque<Pending>,
    /// Sagas whose commit a flusher is writing: their next commit waits for it, so that
    /// two commits of one saga are written in the order they were queued.
    writing: HashSet<SagaId>,
    /// Flushers running; never above `max_flushers`.
    flushers: usize,
}

impl GroupCommit {
    pub(super) fn new(max_batch: usize, max_flushers: usize) -> Self {
        GroupCommit {
            state: Mutex::new(Queue::default()),
            max_batch: max_batch.max(1),
            max_flushers: max_flushers.max(1),
            connections: KeptConnections::new(max_flushers.max(1)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Up to `max_batch` queued commits for distinct sagas none of which is being
    /// written, oldest first (marked as being written). A second commit of a saga waits
    /// for the first: both would pass the same version check inside one statement.
    fn take_batch(&self, q: &mut Queue) -> Vec<Pending> {
        let mut batch: Vec<Pending> = Vec::with_capacity(q.pending.len().min(self.max_batch));
        let mut kept = VecDeque::with_capacity(q.pending.len());
        while let Some(p) = q.pending.pop_front() {
            if batch.len() < self.max_batch && q.writing.insert(p.commit.saga_id.clone()) {
                batch.push(p);
            } else {
                kept.push_back(p);
            }
        }
        q.pending = kept;
        batch
    }

    /// Whether a commit just queued should start a flusher: if none runs, or if the
    /// queue holds enough for another batch of at least half the largest size.
    ///
    /// Why not whenever a slot is free: a second statement at once pays off when the
    /// database waits (fsync) and there are commits enough for two good batches, as
    /// with many workflows in flight in one process. With fewer, it splits what one
    /// statement would carry into two, each paying the statement's fixed cost, which
    /// is what several worker processes on one database server cannot afford: three
    /// processes, 100 workflows in flight in all, did 6 195 / 7 098 steps/s with two
    /// flushers each against 7 539 / 7 709 with one (paired, BENCHMARKS.md).
    fn another_flusher(&self, q: &Queue) -> bool {
        q.flushers == 0
            || (q.flushers < self.max_flushers && q.pending.len() >= self.max_batch.div_ceil(2))
    }

    /// Whether nothing is queued or being written: if so, takes a flusher's slot and
    /// marks `saga` as being written, for a caller that writes its one commit itself.
    fn idle(&self, saga: &SagaId) -> bool {
        let mut q = self.lock();
        let idle = q.flushers == 0 && q.pending.is_empty() && q.writing.is_empty();
        if idle {
            q.flushers += 1;
            q.writing.insert(saga.clone());
        }
        idle
    }

    /// The batch of `sagas` is written: their next commits may go.
    fn written(&self, q: &mut Queue, sagas: &[SagaId]) {
        for s in sagas {
            q.writing.remove(s);
        }
    }
}

impl PostgresStore {
    /// Queues `commits` (together, so that a flusher finds them in one batch) and
    /// waits for each to be written; the results are in the order of `commits`.
    pub(super) async fn commit_grouped(&self, mut commits: Vec<Grouped>) -> Vec<Result<u64>> {
        if commits.len() == 1 && self.group.idle(&commits[0].commit.saga_id) {
            if let Some(g) = commits.pop() {
                return vec![self.commit_inline(g).await];
            }
        }
        let mut waiting = Vec::with_capacity(commits.len());
        let start = {
            let mut q = self.group.lock();
            for g in commits {
                let (reply, answer) = oneshot::channel();
                waiting.push((g.commit.saga_id.clone(), g.commit.expected_version, answer));
                q.pending.push_back(Pending {
                    commit: g.commit,
                    insert: g.insert,
                    index: g.index,
                    reply,
                });
            }
            let start = self.group.another_flusher(&q);
            if start {
                q.flushers += 1;
            }
            start
        };
        if start {
            tokio::spawn(self.clone().flush());
        }
        let mut results = Vec::with_capacity(waiting.len());
        for (saga_id, expected, answer) in waiting {
            results.push(match answer.await {
                Ok(outcome) => self.answer(&saga_id, expected, outcome),
                Err(_) => Err(no_answer()),
            });
        }
        results
    }

    /// One commit while no flusher runs and none waits (one workflow in flight): the
    /// caller writes it itself, as a flusher whose batch is its own commit, and saves
    /// the hand-off to a flusher task. Never anyone else's commit, so a caller that
    /// gives up waiting abandons only its own.
    async fn commit_inline(&self, g: Grouped) -> Result<u64> {
        let saga_id = g.commit.saga_id.clone();
        let expected = g.commit.expected_version;
        // Gives the slot back when done (or dropped half-way); a commit queued
        // meanwhile gets a flusher.
        let _slot = FlusherSlot {
            store: Some(self.clone()),
            writing: vec![saga_id.clone()],
        };
        let outcome = match self.commit_connection().await {
            Ok(mut conn) => {
                let r = self
                    .bounded(ErrorKind::EventStore, WRITE, async {
                        self.run_commit(&mut conn, &g.commit, g.insert, g.index)
                            .await
                    })
                    .await;
                conn.give_back(&r);
                r
            }
            Err(e) => Err(e),
        };
        self.answer(&saga_id, expected, outcome)
    }

    /// A commit's outcome as the caller sees it.
    fn answer(&self, saga_id: &SagaId, expected: u64, outcome: Outcome) -> Result<u64> {
        match outcome {
            Ok(Ok(v)) => {
                self.stats
                    .commits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(v)
            }
            Ok(Err(actual)) => Err(Error::conflict(saga_id.as_str(), expected, actual)),
            Err(e) => Err(e),
        }
    }

    /// A connection for commits ([`super::kept`]).
    async fn commit_connection(&self) -> Result<Connection> {
        // Bounded too: a new kept connection's setup is a statement.
        self.bounded(
            ErrorKind::EventStore,
            "set up a connection",
            self.group
                .connections
                .get(&self.pool, &self.options, || self.count(1)),
        )
        .await
    }

    /// A flusher: writes batches until no queued commit can go. (One that waits for
    /// its saga's commit in another flusher's batch is taken by that flusher next.)
    async fn flush(self) {
        let mut slot = FlusherSlot {
            store: Some(self.clone()),
            writing: Vec::new(),
        };
        loop {
            let batch = {
                let mut q = self.group.lock();
                self.group.written(&mut q, &slot.writing);
                let batch = self.group.take_batch(&mut q);
                if batch.is_empty() {
                    // Decided under the lock a commit joins the queue under: a commit
                    // queued after this finds the slot free and starts a flusher.
                    q.flushers -= 1;
                    slot.store = None;
                    return;
                }
                batch
            };
            slot.writing = batch.iter().map(|p| p.commit.saga_id.clone()).collect();
            let written = batch.len();
            self.write_batch(batch).await;
            if written >= LINGER_AFTER {
                self.linger(written).await;
            }
        }
    }

    /// After a batch of `written` commits: lets the queue fill again, by yielding to
    /// the runtime up to [`LINGER_YIELDS`] times, until as many commits are queued.
    async fn linger(&self, written: usize) {
        for _ in 0..LINGER_YIELDS {
            if self.group.lock().pending.len() >= written {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Writes one batch and answers every commit in it.
    async fn write_batch(&self, batch: Vec<Pending>) {
        let mut conn = match self.commit_connection().await {
            Ok(c) => c,
            Err(e) => {
                for p in batch {
                    let _ = p.reply.send(Err(same_error(&e)));
                }
                return;
            }
        };
        // Timed out, the batch's commits are dropped unanswered: their callers learn
        // that whether they were written is unknown (`no_answer`), which is the truth.
        let outcome = self
            .bounded(
                ErrorKind::EventStore,
                WRITE,
                self.write_batch_on(&mut conn, batch),
            )
            .await;
        conn.give_back(&outcome);
    }

    /// [`Self::write_batch`] on `conn`; an error if a statement failed (the
    /// connection may be broken; the commits have their answers).
    async fn write_batch_on(
        &self,
        conn: &mut sqlx::PgConnection,
        batch: Vec<Pending>,
    ) -> Result<()> {
        if batch.len() == 1 {
            // The common case with few workflows in flight: the single-commit statement.
            let Some(p) = batch.into_iter().next() else {
                return Ok(());
            };
            let r = self.run_commit(conn, &p.commit, p.insert, p.index).await;
            let failed = r.as_ref().err().map(same_error);
            let _ = p.reply.send(r);
            return failed.map_or(Ok(()), Err);
        }
        match self.run_batch(conn, &batch).await {
            Ok(outcomes) => {
                self.stats
                    .batched
                    .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
                for (p, o) in batch.into_iter().zip(outcomes) {
                    let _ = p.reply.send(Ok(o));
                }
                Ok(())
            }
            Err(e) if e.context("code") == Some("unavailable") => {
                for p in batch {
                    let _ = p.reply.send(Err(same_error(&e)));
                }
                Err(e)
            }
            Err(e) => {
                tracing::debug!(error = %e, commits = batch.len(), "group commit refused; committing one by one");
                let mut failed = None;
                for p in batch {
                    let r = self.run_commit(conn, &p.commit, p.insert, p.index).await;
                    if let Err(e) = &r {
                        failed = Some(same_error(e));
                    }
                    let _ = p.reply.send(r);
                }
                failed.map_or(Ok(()), Err)
            }
        }
    }

    /// The batch statement; per commit (in order) the new version or the version found.
    async fn run_batch(
        &self,
        conn: &mut sqlx::PgConnection,
        batch: &[Pending],
    ) -> Result<Vec<std::result::Result<u64, u64>>> {
        let cols = Columns::of(batch);
        self.count(1);
        let rows = sqlx::query(commit_sql::batch(cols.parts, cols.inserts))
            .bind(&cols.saga)
            .bind(&cols.expected)
            .bind(&cols.new_version)
            .bind(&cols.insert)
            .bind(&cols.status)
            .bind(&cols.closed_at)
            .bind(&cols.search)
            .bind(&cols.workflow_type)
            .bind(&cols.started_at)
            .bind(&cols.updated_at)
            .bind(&cols.closes)
            .bind(&cols.ev_end)
            .bind(&cols.ev_id)
            .bind(&cols.ev_type)
            .bind(&cols.ev_category)
            .bind(&cols.ev_ts)
            .bind(&cols.ev_attrs)
            .bind(&cols.ev_version)
            .bind(&cols.ev_reset)
            .bind(&cols.ev_retry)
            .bind(&cols.ev_trace)
            .bind(&cols.tc_owner)
            .bind(&cols.tc_id)
            .bind(&cols.tc_saga)
            .bind(&cols.tc_kind)
            .bind(&cols.tc_at)
            .bind(&cols.tc_attrs)
            .bind(&cols.td_owner)
            .bind(&cols.td_id)
            .bind(&cols.settle_owner)
            .bind(&cols.settle_id)
            .bind(&cols.task_owner)
            .bind(&cols.task_saga)
            .bind(&cols.task_id)
            .bind(&cols.task_kind)
            .bind(&cols.task_queue)
            .bind(&cols.task_payload)
            .bind(&cols.task_due)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| super::unavailable("commit a batch of workflow tasks", e))?;
        let mut out = vec![Err(0); batch.len()];
        let mut seen = 0;
        for row in rows {
            let ord: i64 = row.get(0);
            let ok: bool = row.get(1);
            let actual: Option<i64> = row.get(2);
            let i = usize::try_from(ord - 1).ok().filter(|&i| i < batch.len());
            let Some(i) = i else { continue };
            seen += 1;
            out[i] = if ok {
                Ok(cols.new_version[i] as u64)
            } else {
                Err(actual.map_or(0, |v| v.max(0) as u64))
            };
        }
        if seen != batch.len() {
            return Err(Error::new(
                ErrorKind::EventStore,
                format!(
                    "commit a batch of workflow tasks: {seen} answers for {} commits",
                    batch.len()
                ),
            ));
        }
        Ok(out)
    }
}

/// Gives the flusher's slot back if the flusher ends without doing so itself (a panic
/// in a batch, or its runtime shutting down), releases the sagas it was writing, and
/// starts a new flusher for commits still queued.
struct FlusherSlot {
    store: Option<PostgresStore>,
    writing: Vec<SagaId>,
}

impl Drop for FlusherSlot {
    fn drop(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        let restart = {
            let mut q = store.group.lock();
            store.group.written(&mut q, &self.writing);
            if q.pending.is_empty() {
                q.flushers -= 1;
                false
            } else {
                true
            }
        };
        if restart {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => drop(handle.spawn(store.flush())),
                Err(_) => store.group.lock().flushers -= 1,
            }
        }
    }
}

/// The same error for every commit of a batch (errors are not `Clone`).
pub(super) fn same_error(e: &Error) -> Error {
    let mut copy = Error::new(e.kind, e.message.clone());
    if let Some(code) = e.context("code") {
        copy = copy.with("code", code);
    }
    copy
}

/// The batch as one array per column, in the order of the statement's parameters.
/// `owner` columns name the commit a row belongs to: it is written only if that
/// commit's version check passed.
#[derive(Default)]
struct Columns<'a> {
    /// The statement's optional parts: those any commit of the batch needs.
    parts: Parts,
    /// Whether any commit of the batch starts a saga.
    inserts: bool,
    saga: Vec<&'a str>,
    expected: Vec<i64>,
    new_version: Vec<i64>,
    insert: Vec<bool>,
    status: Vec<Option<&'a str>>,
    closed_at: Vec<Option<DateTime<Utc>>>,
    search: Vec<String>,
    workflow_type: Vec<Option<&'a str>>,
    started_at: Vec<Option<DateTime<Utc>>>,
    updated_at: Vec<Option<DateTime<Utc>>>,
    closes: Vec<bool>,
    /// Per commit: where its events end in the `ev_` arrays (1-based, inclusive).
    ev_end: Vec<i32>,
    ev_id: Vec<i64>,
    ev_type: Vec<&'a str>,
    ev_category: Vec<&'static str>,
    ev_ts: Vec<DateTime<Utc>>,
    ev_attrs: Vec<String>,
    ev_version: Vec<i32>,
    ev_reset: Vec<bool>,
    ev_retry: Vec<bool>,
    ev_trace: Vec<&'a str>,
    tc_owner: Vec<&'a str>,
    tc_id: Vec<&'a str>,
    tc_saga: Vec<&'a str>,
    tc_kind: Vec<&'static str>,
    tc_at: Vec<DateTime<Utc>>,
    tc_attrs: Vec<String>,
    td_owner: Vec<&'a str>,
    td_id: Vec<&'a str>,
    settle_owner: Vec<&'a str>,
    settle_id: Vec<&'a str>,
    task_owner: Vec<&'a str>,
    task_saga: Vec<&'a str>,
    task_id: Vec<&'a str>,
    task_kind: Vec<&'static str>,
    task_queue: Vec<&'a str>,
    task_payload: Vec<&'a [u8]>,
    task_due: Vec<DateTime<Utc>>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a [Pending]) -> Self {
        let mut c = Columns::default();
        for p in batch {
            let k = &p.commit;
            let owner = k.saga_id.as_str();
            c.parts = c.parts.and(Parts::of(k));
            c.saga.push(owner);
            c.expected.push(k.expected_version as i64);
            c.new_version
                .push((k.expected_version + k.events.len() as u64) as i64);
            c.insert.push(p.insert);
            c.inserts |= p.insert;
            c.status.push(p.index.status.as_deref());
            c.closed_at.push(p.index.closed_at);
            c.search.push(json_text(&p.index.search));
            c.workflow_type.push(p.index.workflow_type.as_deref());
            c.started_at.push(p.index.started_at);
            c.updated_at.push(k.events.last().map(|e| e.timestamp));
            c.closes.push(k.closes_execution());
            for e in &k.events {
                c.ev_id.push(e.event_id as i64);
                c.ev_type.push(e.event_type.name());
                c.ev_category.push(category_name(e.category));
                c.ev_ts.push(e.timestamp);
                c.ev_attrs.push(json_text(&e.attributes));
                c.ev_version.push(e.event_version as i32);
                c.ev_reset.push(e.is_reset_point);
                c.ev_retry.push(e.is_retry);
                c.ev_trace.push(e.trace_id.as_str());
            }
            c.ev_end
                .push(i32::try_from(c.ev_id.len()).unwrap_or(i32::MAX));
            for t in &k.create_timers {
                if k.cancel_timers.contains(&t.timer_id) {
                    continue;
                }
                c.tc_owner.push(owner);
                c.tc_id.push(t.timer_id.as_str());
                c.tc_saga.push(t.saga_id.as_str());
                c.tc_kind.push(timer_kind_name(t.kind));
                c.tc_at.push(t.fire_at);
                c.tc_attrs.push(json_text(&t.attributes));
            }
            for id in &k.cancel_timers {
                c.td_owner.push(owner);
                c.td_id.push(id.as_str());
            }
            for id in &k.settle_tasks {
                c.settle_owner.push(owner);
                c.settle_id.push(id.as_str());
            }
            for t in &k.tasks {
                c.task_owner.push(owner);
                c.task_saga.push(t.saga_id.as_str());
                c.task_id.push(t.dedup_id.as_str());
                c.task_kind.push(t.kind.name());
                c.task_queue.push(t.queue.as_str());
                c.task_payload.push(t.payload.as_slice());
                c.task_due.push(k.redeliver_at);
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(i: usize) -> Pending {
        Pending {
            commit: Commit::events_only(&SagaId::new(format!("s-{i}")), 0, Vec::new()),
            insert: false,
            index: IndexValues::from_summary(None),
            reply: oneshot::channel().0,
        }
    }

    #[test]
    fn another_flusher_starts_only_for_another_half_batch() {
        let group = GroupCommit::new(64, 2);
        let mut q = Queue::default();
        assert!(group.another_flusher(&q), "the first one, always");
        q.flushers = 1;
        q.pending.extend((0..31).map(pending));
        assert!(
            !group.another_flusher(&q),
            "31 queued: the running one takes them"
        );
        q.pending.push_back(pending(31));
        assert!(group.another_flusher(&q), "32 queued: half a batch more");
        q.flushers = 2;
        assert!(!group.another_flusher(&q), "never above the maximum");
    }
}
