//! The single writer of a [`SqliteStore`](super::SqliteStore), and its group commit.
//!
//! SQLite serializes writers and has no group commit of its own: a commit costs an
//! fsync (two with `synchronous=FULL`). Every write of the store therefore goes through
//! one task that owns the write connection. It waits for a request, drains whatever
//! else is queued (up to `max_batch`), and runs the whole batch in one
//! `BEGIN IMMEDIATE .. COMMIT`: a hundred workflow tasks in flight share one fsync.
//!
//! Each request keeps its own outcome. A commit checks its expected version with the
//! first statement it runs (the conditional `UPDATE`/`INSERT` of its execution-index
//! row) and writes nothing else when the check fails, so a stale commit fails alone
//! without aborting the others. A statement that errors in the middle of a request
//! (disk full, a corrupted index, a unique violation the version check should have
//! prevented) may have written part of it: the batch is rolled back and every request
//! of the batch is retried alone, in its own transaction, so each gets its own answer.
//!
//! The task runs on its own thread with a current-thread runtime, so the store works
//! from any runtime (including tokio's paused test clock) and a busy application
//! runtime does not delay commits.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use saga_runtime::domain::{HistoryEvent, SagaId};
use saga_runtime::port::{Commit, Snapshot, Task, TimerRecord};
use saga_runtime::{Error, ErrorKind, Result};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnection, SqliteQueryResult, SqliteRow};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::program::{Program, Role};
use super::{from_us, to_us, Stats};
use crate::common::{
    category_name, db_error, exec_change, fold_summary, json_text, status_name, summary_from_row,
    timer_kind_name, validate_append, ExecChange, ROWS_PER_INSERT,
};

/// A write, as sent to the writer.
#[derive(Debug)]
pub(super) enum Op {
    Commit(Commit),
    SaveSnapshot(Snapshot, u32),
    CreateTimer(TimerRecord),
    Claim {
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    },
    Cancel(String),
    ClaimTasks {
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    },
    SettleTasks(SagaId, Vec<String>),
    DeferTasks(SagaId, Vec<String>, DateTime<Utc>),
}

impl Op {
    fn kind(&self) -> ErrorKind {
        match self {
            Op::Commit(_)
            | Op::SaveSnapshot(..)
            | Op::ClaimTasks { .. }
            | Op::SettleTasks(..)
            | Op::DeferTasks(..) => ErrorKind::EventStore,
            _ => ErrorKind::TimerStore,
        }
    }
}

/// What a write returns.
#[derive(Debug)]
pub(super) enum Reply {
    Version(u64),
    Done,
    Timers(Vec<TimerRecord>),
    Removed(bool),
    Tasks(Vec<Task>),
}

pub(super) struct Request {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<Reply>>,
}

/// How one request ended inside a transaction.
enum Failure {
    /// Refused before writing anything (stale version, bad input): the transaction
    /// stays usable for the other requests.
    Refused(Error),
    /// A statement failed, possibly after others of the same request: the transaction
    /// must be rolled back.
    Broken(Error),
}

type OpResult<T> = std::result::Result<T, Failure>;

/// Starts the writer thread over `conn`.
pub(super) fn spawn(
    conn: SqliteConnection,
    stats: Arc<Stats>,
    max_batch: usize,
) -> Result<mpsc::UnboundedSender<Request>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Error::new(ErrorKind::EventStore, "cannot start the SQLite writer").with_source(e)
        })?;
    std::thread::Builder::new()
        .name("saga-sqlite-writer".into())
        .spawn(move || {
            runtime.block_on(run(conn, rx, stats, max_batch.max(1)));
        })
        .map_err(|e| {
            Error::new(ErrorKind::EventStore, "cannot start the SQLite writer").with_source(e)
        })?;
    Ok(tx)
}

async fn run(
    mut conn: SqliteConnection,
    mut rx: mpsc::UnboundedReceiver<Request>,
    stats: Arc<Stats>,
    max_batch: usize,
) {
    // The markers of multi-part commits in a program (see `program.rs`).
    if let Err(e) =
        sqlx::query("CREATE TEMP TABLE IF NOT EXISTS saga_applied (i INTEGER PRIMARY KEY)")
            .execute(&mut conn)
            .await
    {
        tracing::error!(error = %e, "SQLite writer cannot create its temp table");
    }
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut w = Writer {
            conn: &mut conn,
            stats: &stats,
        };
        w.batch(std::mem::take(&mut batch)).await;
    }
    let _ = conn.close().await;
}

struct Writer<'a> {
    conn: &'a mut SqliteConnection,
    stats: &'a Stats,
}

impl Writer<'_> {
    /// Runs a statement, counting it.
    async fn exec<'q>(
        &mut self,
        q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> std::result::Result<SqliteQueryResult, sqlx::Error> {
        self.stats.statements.fetch_add(1, Ordering::Relaxed);
        q.execute(&mut *self.conn).await
    }

    async fn fetch_all<'q>(
        &mut self,
        q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> std::result::Result<Vec<SqliteRow>, sqlx::Error> {
        self.stats.statements.fetch_add(1, Ordering::Relaxed);
        q.fetch_all(&mut *self.conn).await
    }

    async fn fetch_optional<'q>(
        &mut self,
        q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> std::result::Result<Option<SqliteRow>, sqlx::Error> {
        self.stats.statements.fetch_add(1, Ordering::Relaxed);
        q.fetch_optional(&mut *self.conn).await
    }

    async fn begin(&mut self) -> Result<()> {
        self.stats.transactions.fetch_add(1, Ordering::Relaxed);
        self.exec(sqlx::query("BEGIN IMMEDIATE"))
            .await
            .map(|_| ())
            .map_err(|e| db_error(ErrorKind::EventStore, "begin a SQLite transaction", e))
    }

    async fn commit(&mut self) -> Result<()> {
        self.exec(sqlx::query("COMMIT"))
            .await
            .map(|_| ())
            .map_err(|e| db_error(ErrorKind::EventStore, "commit a SQLite transaction", e))
    }

    async fn rollback(&mut self) {
        if let Err(e) = self.exec(sqlx::query("ROLLBACK")).await {
            tracing::warn!(error = %e, "SQLite rollback failed");
        }
    }

    /// One request in its own transaction.
    async fn alone(&mut self, r: Request) {
        let result = match self.begin().await {
            Err(e) => Err(e),
            Ok(()) => match self.apply(&r.op).await {
                Ok(reply) => match self.commit().await {
                    Ok(()) => Ok(reply),
                    Err(e) => {
                        // A failed COMMIT leaves the transaction open.
                        self.rollback().await;
                        Err(e)
                    }
                },
                Err(Failure::Refused(e)) | Err(Failure::Broken(e)) => {
                    self.rollback().await;
                    Err(e)
                }
            },
        };
        let _ = r.reply.send(result);
    }

    /// Several requests in one transaction (the group commit): each commit as one
    /// program (one call), other requests statement by statement. If any statement
    /// fails, the transaction is rolled back and each request runs alone.
    async fn batch(&mut self, batch: Vec<Request>) {
        self.stats.transactions.fetch_add(1, Ordering::Relaxed);
        if batch.len() > 1 {
            self.stats
                .batched
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        let mut results: Vec<Option<Result<Reply>>> = batch.iter().map(|_| None).collect();
        let mut stale = Vec::new();
        if let Err(e) = self.exec(sqlx::query("BEGIN IMMEDIATE")).await {
            let e = db_error(ErrorKind::EventStore, "begin a SQLite transaction", e);
            return self.fall_back(batch, e).await;
        }
        for (i, r) in batch.iter().enumerate() {
            if let Op::Commit(c) = &r.op {
                if let Err(e) = validate_append(&c.saga_id, c.expected_version, &c.events) {
                    results[i] = Some(Err(e));
                    continue;
                }
                if Program::accepts(c) {
                    let mut program = Program::new();
                    program.add_commit(i, c);
                    program.finish();
                    let run = self.run_program(program, &batch, &mut results, &mut stale);
                    if let Err(e) = run.await {
                        return self.fall_back(batch, e).await;
                    }
                    continue;
                }
            }
            match self.apply(&r.op).await {
                Ok(reply) => results[i] = Some(Ok(reply)),
                Err(Failure::Refused(e)) => results[i] = Some(Err(e)),
                Err(Failure::Broken(e)) => return self.fall_back(batch, e).await,
            }
        }
        if let Err(e) = self.exec(sqlx::query("COMMIT")).await {
            let e = db_error(ErrorKind::EventStore, "commit a SQLite transaction", e);
            return self.fall_back(batch, e).await;
        }
        for i in stale {
            if let Op::Commit(c) = &batch[i].op {
                let actual = self.current_version(&c.saga_id).await.unwrap_or(0);
                results[i] = Some(Err(Error::conflict(
                    c.saga_id.as_str(),
                    c.expected_version,
                    actual,
                )));
            }
        }
        for (r, result) in batch.into_iter().zip(results) {
            let result = result.unwrap_or_else(|| {
                Err(Error::new(
                    ErrorKind::Unknown,
                    "a write got no answer: this is a bug in saga-adapters",
                ))
            });
            let _ = r.reply.send(result);
        }
    }

    /// Runs `program` in one call; records the outcome of each of its commits.
    async fn run_program(
        &mut self,
        p: Program,
        batch: &[Request],
        results: &mut [Option<Result<Reply>>],
        stale: &mut Vec<usize>,
    ) -> Result<()> {
        use futures_util::TryStreamExt;
        self.stats
            .statements
            .fetch_add(p.len() as u64, Ordering::Relaxed);
        let mut applied = vec![false; batch.len()];
        {
            // `Executor::fetch_many`: the SQLite driver runs every statement of the text,
            // binding the arguments in order, and reports each statement's end.
            let query = sqlx::query_with(&p.sql, p.args);
            let mut stream = sqlx::Executor::fetch_many(&mut *self.conn, query);
            let mut statement = 0;
            while let Some(item) = stream
                .try_next()
                .await
                .map_err(|e| db_error(ErrorKind::EventStore, "run a write batch", e))?
            {
                match item {
                    sqlx::Either::Right(_) => {
                        if let Some(Role::Check(i)) = p.roles.get(statement) {
                            applied[*i] = true;
                        }
                    }
                    sqlx::Either::Left(_) => statement += 1,
                }
            }
        }
        for i in p.commits {
            if applied[i] {
                if let Op::Commit(c) = &batch[i].op {
                    let v = c.expected_version + c.events.len() as u64;
                    results[i] = Some(Ok(Reply::Version(v)));
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                stale.push(i);
            }
        }
        Ok(())
    }

    /// A statement of the batch failed: roll back, then run each request alone so each
    /// gets its own answer.
    async fn fall_back(&mut self, batch: Vec<Request>, cause: Error) {
        tracing::debug!(error = %cause, "a write broke the batch; retrying each alone");
        let _ = self.exec(sqlx::query("ROLLBACK")).await;
        for r in batch {
            self.alone(r).await;
        }
    }

    async fn apply(&mut self, op: &Op) -> OpResult<Reply> {
        let kind = op.kind();
        let broken =
            |what: &'static str| move |e: sqlx::Error| Failure::Broken(db_error(kind, what, e));
        match op {
            Op::Commit(c) => self.apply_commit(c).await.map(Reply::Version),
            Op::SaveSnapshot(s, max) => {
                self.save_snapshot(s, *max).await?;
                Ok(Reply::Done)
            }
            Op::CreateTimer(t) => {
                self.create_timers(std::slice::from_ref(t), &[]).await?;
                Ok(Reply::Done)
            }
            Op::Cancel(id) => {
                let r = self
                    .exec(sqlx::query("DELETE FROM saga_timers WHERE timer_id = ?").bind(id))
                    .await
                    .map_err(broken("remove a timer"))?;
                Ok(Reply::Removed(r.rows_affected() > 0))
            }
            Op::ClaimTasks { now, limit, lease } => {
                let now_us = to_us(*now);
                let until = now_us.saturating_add(lease_us(*lease));
                let rows = self
                    .fetch_all(
                        sqlx::query(
                            "UPDATE saga_outbox SET due_at_us = ?1 \
                             WHERE (saga_id, dedup_id) IN (SELECT saga_id, dedup_id \
                                 FROM saga_outbox WHERE due_at_us <= ?2 \
                                 ORDER BY due_at_us LIMIT ?3) \
                             RETURNING saga_id, dedup_id, kind, queue, payload",
                        )
                        .bind(until)
                        .bind(now_us)
                        .bind(i64::try_from(*limit).unwrap_or(i64::MAX)),
                    )
                    .await
                    .map_err(broken("claim outbox tasks"))?;
                let tasks = rows
                    .iter()
                    .map(super::task_from_row)
                    .collect::<Result<Vec<_>>>()
                    .map_err(Failure::Broken)?;
                Ok(Reply::Tasks(tasks))
            }
            Op::SettleTasks(saga, ids) => {
                self.settle_tasks(saga, ids).await?;
                Ok(Reply::Done)
            }
            Op::DeferTasks(saga, ids, until) => {
                self.defer_tasks(saga, ids, to_us(*until)).await?;
                Ok(Reply::Done)
            }
            Op::Claim { now, limit, lease } => {
                let now_us = to_us(*now);
                let until = now_us.saturating_add(lease_us(*lease));
                let rows = self
                    .fetch_all(
                        sqlx::query(
                            "UPDATE saga_timers SET claimed_until_us = ?1 \
                             WHERE timer_id IN (SELECT timer_id FROM saga_timers \
                                 WHERE fire_at_us <= ?2 \
                                   AND (claimed_until_us IS NULL OR claimed_until_us <= ?2) \
                                 ORDER BY fire_at_us LIMIT ?3) \
                             RETURNING timer_id, saga_id, kind, fire_at_us, attributes",
                        )
                        .bind(until)
                        .bind(now_us)
                        .bind(i64::try_from(*limit).unwrap_or(i64::MAX)),
                    )
                    .await
                    .map_err(broken("claim due timers"))?;
                let mut timers = rows
                    .iter()
                    .map(super::timer_from_row)
                    .collect::<Result<Vec<_>>>()
                    .map_err(Failure::Broken)?;
                timers.sort_by(|a, b| {
                    a.fire_at
                        .cmp(&b.fire_at)
                        .then_with(|| a.timer_id.cmp(&b.timer_id))
                });
                Ok(Reply::Timers(timers))
            }
        }
    }

    async fn current_version(&mut self, saga_id: &SagaId) -> OpResult<u64> {
        let row = self
            .fetch_optional(
                sqlx::query("SELECT version FROM saga_executions WHERE saga_id = ?")
                    .bind(saga_id.as_str()),
            )
            .await
            .map_err(|e| Failure::Broken(db_error(ErrorKind::EventStore, "read a version", e)))?;
        Ok(row
            .map(|r| r.get::<i64, _>(0))
            .map_or(0, |v| u64::try_from(v).unwrap_or(0)))
    }

    async fn conflict(&mut self, saga_id: &SagaId, expected: u64) -> Failure {
        match self.current_version(saga_id).await {
            Ok(actual) => Failure::Refused(Error::conflict(saga_id.as_str(), expected, actual)),
            Err(f) => f,
        }
    }

    async fn apply_commit(&mut self, c: &Commit) -> OpResult<u64> {
        let broken = |what: &'static str| {
            move |e: sqlx::Error| Failure::Broken(db_error(ErrorKind::EventStore, what, e))
        };
        validate_append(&c.saga_id, c.expected_version, &c.events).map_err(Failure::Refused)?;
        let saga = c.saga_id.as_str();
        let expected = c.expected_version;
        let new_version = expected + c.events.len() as u64;
        if c.events.is_empty() {
            if self.current_version(&c.saga_id).await? != expected {
                return Err(self.conflict(&c.saga_id, expected).await);
            }
        } else {
            let last_us = c.events.last().map(|e| to_us(e.timestamp));
            match exec_change(expected, &c.events) {
                ExecChange::Insert(summary) => {
                    let r = self
                        .exec(
                            sqlx::query(
                                "INSERT INTO saga_executions (saga_id, version, workflow_type, \
                                 status, started_at_us, closed_at_us, search_attributes, \
                                 updated_at_us) \
                                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (saga_id) DO NOTHING",
                            )
                            .bind(saga)
                            .bind(new_version as i64)
                            .bind(summary.as_ref().map(|s| s.workflow_type.clone()))
                            .bind(summary.as_ref().map(|s| status_name(s.status)))
                            .bind(summary.as_ref().map(|s| to_us(s.started_at)))
                            .bind(summary.as_ref().and_then(|s| s.closed_at).map(to_us))
                            .bind(search_json(summary.as_ref().map(|s| &s.search_attributes)))
                            .bind(last_us),
                        )
                        .await
                        .map_err(broken("index an execution"))?;
                    if r.rows_affected() == 0 {
                        return Err(self.conflict(&c.saga_id, expected).await);
                    }
                    if let Some(s) = &summary {
                        self.set_search_rows(saga, &s.search_attributes).await?;
                    }
                }
                ExecChange::Update { status, search } => {
                    let r = self
                        .exec(
                            sqlx::query(
                                "UPDATE saga_executions SET version = ?1, \
                                 status = COALESCE(?2, status), \
                                 closed_at_us = CASE WHEN ?2 IS NULL THEN closed_at_us ELSE ?3 END, \
                                 updated_at_us = ?6 \
                                 WHERE saga_id = ?4 AND version = ?5",
                            )
                            .bind(new_version as i64)
                            .bind(status.map(|(s, _)| status_name(s)))
                            .bind(status.and_then(|(_, at)| at).map(to_us))
                            .bind(saga)
                            .bind(expected as i64)
                            .bind(last_us),
                        )
                        .await
                        .map_err(broken("index an execution"))?;
                    if r.rows_affected() == 0 {
                        return Err(self.conflict(&c.saga_id, expected).await);
                    }
                    if !search.is_empty() {
                        self.merge_search(saga, &search).await?;
                    }
                }
                ExecChange::Rebuild => self.rebuild(c, new_version).await?,
            }
            self.insert_events(&c.events).await?;
        }
        self.write_outbox(c).await?;
        self.create_timers(&c.create_timers, &c.cancel_timers)
            .await?;
        if !c.cancel_timers.is_empty() {
            let mut sql = String::from("DELETE FROM saga_timers WHERE timer_id IN (");
            push_placeholders(&mut sql, c.cancel_timers.len());
            sql.push(')');
            let mut q = sqlx::query(&sql);
            for id in &c.cancel_timers {
                q = q.bind(id.as_str());
            }
            self.exec(q).await.map_err(broken("cancel timers"))?;
        }
        if let Some(s) = &c.snapshot {
            self.save_snapshot(s, c.max_snapshots).await?;
        }
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(new_version)
    }

    /// The reference fold for a history whose `WorkflowExecutionStarted` comes late.
    async fn rebuild(&mut self, c: &Commit, new_version: u64) -> OpResult<()> {
        let broken = |what: &'static str| {
            move |e: sqlx::Error| Failure::Broken(db_error(ErrorKind::EventStore, what, e))
        };
        let row = self
            .fetch_optional(
                sqlx::query(
                    "SELECT version, workflow_type, status, started_at_us, closed_at_us, \
                     search_attributes FROM saga_executions WHERE saga_id = ?",
                )
                .bind(c.saga_id.as_str()),
            )
            .await
            .map_err(broken("read an execution"))?;
        let Some(row) = row else {
            return Err(self.conflict(&c.saga_id, c.expected_version).await);
        };
        let version: i64 = row.get(0);
        if version != c.expected_version as i64 {
            return Err(self.conflict(&c.saga_id, c.expected_version).await);
        }
        let before = match row.get::<Option<String>, _>(1) {
            None => None,
            Some(workflow_type) => Some(
                summary_from_row(
                    c.saga_id.to_string(),
                    version,
                    workflow_type,
                    row.get(2),
                    row.get::<Option<i64>, _>(3).map(from_us),
                    row.get::<Option<i64>, _>(4).map(from_us),
                    None,
                    row.get::<&str, _>(5),
                )
                .map_err(Failure::Broken)?,
            ),
        };
        let s = fold_summary(before, &c.events);
        self.exec(
            sqlx::query(
                "UPDATE saga_executions SET version = ?, workflow_type = ?, status = ?, \
                 started_at_us = ?, closed_at_us = ?, search_attributes = ?, \
                 updated_at_us = ? WHERE saga_id = ?",
            )
            .bind(new_version as i64)
            .bind(s.as_ref().map(|s| s.workflow_type.clone()))
            .bind(s.as_ref().map(|s| status_name(s.status)))
            .bind(s.as_ref().map(|s| to_us(s.started_at)))
            .bind(s.as_ref().and_then(|s| s.closed_at).map(to_us))
            .bind(search_json(s.as_ref().map(|s| &s.search_attributes)))
            .bind(s.as_ref().map(|s| to_us(s.updated_at)))
            .bind(c.saga_id.as_str()),
        )
        .await
        .map_err(broken("index an execution"))?;
        if let Some(s) = &s {
            self.set_search_rows(c.saga_id.as_str(), &s.search_attributes)
                .await?;
        }
        Ok(())
    }

    async fn merge_search(&mut self, saga: &str, patch: &BTreeMap<String, Value>) -> OpResult<()> {
        let broken = |what: &'static str| {
            move |e: sqlx::Error| Failure::Broken(db_error(ErrorKind::EventStore, what, e))
        };
        let current: String = self
            .fetch_optional(
                sqlx::query("SELECT search_attributes FROM saga_executions WHERE saga_id = ?")
                    .bind(saga),
            )
            .await
            .map_err(broken("read search attributes"))?
            .map(|r| r.get(0))
            .unwrap_or_else(|| "{}".to_owned());
        let mut merged: BTreeMap<String, Value> = serde_json::from_str(&current).map_err(|e| {
            Failure::Broken(
                Error::new(
                    ErrorKind::Codec,
                    format!("stored search attributes are not a JSON object: {e}"),
                )
                .with("saga_id", saga),
            )
        })?;
        merged.extend(patch.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.exec(
            sqlx::query("UPDATE saga_executions SET search_attributes = ? WHERE saga_id = ?")
                .bind(search_json(Some(&merged)))
                .bind(saga),
        )
        .await
        .map_err(broken("write search attributes"))?;
        self.set_search_rows(saga, patch).await
    }

    /// Upserts the indexed search-attribute rows.
    async fn set_search_rows(
        &mut self,
        saga: &str,
        attrs: &BTreeMap<String, Value>,
    ) -> OpResult<()> {
        let entries: Vec<_> = attrs.iter().collect();
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let mut sql =
                String::from("INSERT INTO saga_search_attributes (saga_id, name, value) VALUES ");
            push_rows(&mut sql, chunk.len(), 3);
            sql.push_str(" ON CONFLICT (saga_id, name) DO UPDATE SET value = excluded.value");
            let mut q = sqlx::query(&sql);
            for (k, v) in chunk {
                q = q.bind(saga).bind(k.as_str()).bind(v.to_string());
            }
            self.exec(q).await.map_err(|e| {
                Failure::Broken(db_error(
                    ErrorKind::EventStore,
                    "index search attributes",
                    e,
                ))
            })?;
        }
        Ok(())
    }

    async fn insert_events(&mut self, events: &[HistoryEvent]) -> OpResult<()> {
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO saga_events (saga_id, event_id, event_type, category, ts_us, \
                 attributes, event_version, is_reset_point, is_retry, trace_id) VALUES ",
            );
            push_rows(&mut sql, chunk.len(), 10);
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q
                    .bind(e.saga_id.as_str())
                    .bind(e.event_id as i64)
                    .bind(e.event_type.name())
                    .bind(category_name(e.category))
                    .bind(to_us(e.timestamp))
                    .bind(json_text(&e.attributes))
                    .bind(i64::from(e.event_version))
                    .bind(e.is_reset_point)
                    .bind(e.is_retry)
                    .bind(e.trace_id.as_str());
            }
            // A unique violation here means the index row and the events disagree
            // (someone wrote events without the index): a Concurrency error, after
            // the rollback.
            self.exec(q).await.map_err(|e| {
                Failure::Broken(db_error(ErrorKind::EventStore, "append events", e))
            })?;
        }
        Ok(())
    }

    /// The outbox part of a commit that passed its version check: settle (all of the
    /// saga's tasks if it closes), then add the new tasks.
    async fn write_outbox(&mut self, c: &Commit) -> OpResult<()> {
        let broken = |what: &'static str| {
            move |e: sqlx::Error| Failure::Broken(db_error(ErrorKind::EventStore, what, e))
        };
        if c.closes_execution() {
            self.exec(
                sqlx::query("DELETE FROM saga_outbox WHERE saga_id = ?").bind(c.saga_id.as_str()),
            )
            .await
            .map_err(broken("settle the tasks of a closed execution"))?;
        }
        self.settle_tasks(&c.saga_id, &c.settle_tasks).await?;
        for chunk in c.tasks.chunks(ROWS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO saga_outbox (saga_id, dedup_id, kind, queue, payload, due_at_us) \
                 VALUES ",
            );
            push_rows(&mut sql, chunk.len(), 6);
            sql.push_str(" ON CONFLICT (saga_id, dedup_id) DO NOTHING");
            let mut q = sqlx::query(&sql);
            for t in chunk {
                q = q
                    .bind(t.saga_id.as_str())
                    .bind(t.dedup_id.as_str())
                    .bind(t.kind.name())
                    .bind(t.queue.as_str())
                    .bind(t.payload.as_slice())
                    .bind(to_us(c.redeliver_at));
            }
            self.exec(q).await.map_err(broken("write outbox tasks"))?;
        }
        Ok(())
    }

    async fn settle_tasks(&mut self, saga: &SagaId, ids: &[String]) -> OpResult<()> {
        for chunk in ids.chunks(ROWS_PER_INSERT) {
            let mut sql =
                String::from("DELETE FROM saga_outbox WHERE saga_id = ? AND dedup_id IN (");
            push_placeholders(&mut sql, chunk.len());
            sql.push(')');
            let mut q = sqlx::query(&sql).bind(saga.as_str());
            for id in chunk {
                q = q.bind(id.as_str());
            }
            self.exec(q).await.map_err(|e| {
                Failure::Broken(db_error(ErrorKind::EventStore, "settle outbox tasks", e))
            })?;
        }
        Ok(())
    }

    async fn defer_tasks(&mut self, saga: &SagaId, ids: &[String], until_us: i64) -> OpResult<()> {
        for chunk in ids.chunks(ROWS_PER_INSERT) {
            let mut sql = String::from(
                "UPDATE saga_outbox SET due_at_us = ? \
                 WHERE saga_id = ? AND due_at_us < ? AND dedup_id IN (",
            );
            push_placeholders(&mut sql, chunk.len());
            sql.push(')');
            let mut q = sqlx::query(&sql)
                .bind(until_us)
                .bind(saga.as_str())
                .bind(until_us);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            self.exec(q).await.map_err(|e| {
                Failure::Broken(db_error(ErrorKind::EventStore, "defer outbox tasks", e))
            })?;
        }
        Ok(())
    }

    /// Creates timers (idempotent on id), skipping those also cancelled in the same
    /// write: created-then-cancelled leaves nothing, as the step-by-step commit would.
    async fn create_timers(
        &mut self,
        timers: &[TimerRecord],
        cancelled: &[String],
    ) -> OpResult<()> {
        let timers: Vec<&TimerRecord> = timers
            .iter()
            .filter(|t| !cancelled.contains(&t.timer_id))
            .collect();
        for chunk in timers.chunks(ROWS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO saga_timers (timer_id, saga_id, kind, fire_at_us, attributes) VALUES ",
            );
            push_rows(&mut sql, chunk.len(), 5);
            sql.push_str(" ON CONFLICT (timer_id) DO NOTHING");
            let mut q = sqlx::query(&sql);
            for t in chunk {
                q = q
                    .bind(t.timer_id.as_str())
                    .bind(t.saga_id.as_str())
                    .bind(timer_kind_name(t.kind))
                    .bind(to_us(t.fire_at))
                    .bind(json_text(&t.attributes));
            }
            self.exec(q).await.map_err(|e| {
                Failure::Broken(db_error(ErrorKind::TimerStore, "create timers", e))
            })?;
        }
        Ok(())
    }

    async fn save_snapshot(&mut self, s: &Snapshot, max_snapshots: u32) -> OpResult<()> {
        let broken = |what: &'static str| {
            move |e: sqlx::Error| Failure::Broken(db_error(ErrorKind::EventStore, what, e))
        };
        self.exec(
            sqlx::query(
                "INSERT INTO saga_snapshots (saga_id, last_event_id, codec, state, checksum, \
                 created_at_us) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (saga_id, last_event_id) DO UPDATE SET codec = excluded.codec, \
                 state = excluded.state, checksum = excluded.checksum, \
                 created_at_us = excluded.created_at_us",
            )
            .bind(s.saga_id.as_str())
            .bind(i64::try_from(s.last_event_id).unwrap_or(i64::MAX))
            .bind(s.codec.as_str())
            .bind(s.state.as_slice())
            .bind(s.checksum.as_deref())
            .bind(to_us(s.created_at)),
        )
        .await
        .map_err(broken("save a snapshot"))?;
        self.exec(
            sqlx::query(
                "DELETE FROM saga_snapshots WHERE saga_id = ?1 AND last_event_id NOT IN \
                 (SELECT last_event_id FROM saga_snapshots WHERE saga_id = ?1 \
                  ORDER BY last_event_id DESC LIMIT ?2)",
            )
            .bind(s.saga_id.as_str())
            .bind(i64::from(max_snapshots.max(1))),
        )
        .await
        .map_err(broken("prune snapshots"))?;
        Ok(())
    }
}

/// A lease in microseconds, saturating.
fn lease_us(lease: Duration) -> i64 {
    i64::try_from(lease.as_micros()).unwrap_or(i64::MAX)
}

fn search_json(attrs: Option<&BTreeMap<String, Value>>) -> String {
    match attrs {
        Some(a) => serde_json::to_string(a).unwrap_or_else(|_| "{}".to_owned()),
        None => "{}".to_owned(),
    }
}

use super::program::{push_placeholders, push_rows};

/// Sends `op` to the writer and waits for its outcome.
pub(super) async fn call(tx: &mpsc::UnboundedSender<Request>, op: Op) -> Result<Reply> {
    let kind = op.kind();
    let (reply, rx) = oneshot::channel();
    tx.send(Request { op, reply }).map_err(|_| stopped(kind))?;
    rx.await.map_err(|_| stopped(kind))?
}

fn stopped(kind: ErrorKind) -> Error {
    Error::new(kind, "the SQLite writer has stopped")
}
