//! The SQLite store: the embedded default. One file in WAL mode holds histories,
//! snapshots, timers and the execution index; a newcomer needs no server.
//!
//! ```no_run
//! # async fn demo() -> saga_runtime::Result<()> {
//! use saga_adapters::SqliteStore;
//! let store = SqliteStore::open("saga.db").await?; // created on first run
//! # let _ = store; Ok(()) }
//! ```
//!
//! # Schema
//!
//! Embedded migrations (`migrations/sqlite/`, applied by [`SqliteStore::open`]):
//!
//! | table | key | holds |
//! |---|---|---|
//! | `saga_events` | `seq` (rowid), unique `(saga_id, event_id)` | one row per event; attributes as JSON text |
//! | `saga_executions` | `saga_id` | the history's version and its listing summary (type, status, start/close time, search attributes), indexed by type, status and start time |
//! | `saga_search_attributes` | `(saga_id, name)`, index `(name, value)` | search attributes, so that equality filters use an index |
//! | `saga_snapshots` | `(saga_id, last_event_id)` | snapshots, pruned to `max_snapshots` per saga |
//! | `saga_timers` | `timer_id`, index `fire_at_us` | durable timers and their claims |
//!
//! Timestamps are integer microseconds since the epoch (`datetime(ts_us / 1e6,
//! 'unixepoch')` reads them). Event rows are clustered by an append-ordered rowid,
//! not by `(saga_id, event_id)`: every insert goes to the end of the table's B-tree
//! (measured 10x faster here than a random key), and the unique index on
//! `(saga_id, event_id)` serves reads and is the backstop against a duplicate event.
//!
//! # Optimistic locking
//!
//! An append first runs the conditional update of its `saga_executions` row
//! (`.. WHERE saga_id = ? AND version = ?`, or an insert that does nothing if the row
//! exists, for a new saga). No row changed means another writer appended first: a
//! `Concurrency` error, and nothing of that append is written. Events, timers and the
//! snapshot of one workflow task are written in the same transaction.
//!
//! # Group commit
//!
//! All writes go through one writer task (see `writer.rs`): it takes every request
//! queued while the previous transaction was committing and runs them in one
//! `BEGIN IMMEDIATE .. COMMIT`, each request keeping its own outcome. With a hundred
//! workflow tasks in flight they share one fsync. A workflow-task commit costs two
//! statements (the version check, the event insert), sent to SQLite as one program
//! (`program.rs`), plus a marker and one statement per kind of timer change or
//! snapshot when it has them, plus its share of the batch's `BEGIN`/`COMMIT`;
//! [`SqliteStore::stats`] counts them. Reads use a small pool of read connections,
//! which WAL lets run beside the writer.
//!
//! The file can be shared with other processes (the CLI, a second engine): writers
//! take SQLite's write lock with `BEGIN IMMEDIATE` and wait up to `busy_timeout` for it.

mod definitions;
mod program;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use saga_runtime::domain::{HistoryEvent, SagaId};
use saga_runtime::port::{
    Commit, EventStore, ExecutionFilter, ExecutionSummary, Outbox, Snapshot, Task, TimerRecord,
    TimerStore, WorkflowStore,
};
use saga_runtime::{Error, ErrorKind, Result};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, QueryBuilder, Row, Sqlite};
use tokio::sync::{mpsc, Semaphore, SemaphorePermit};

use self::writer::{Op, Reply, Request};
use crate::common::{
    check_dense, db_error, decode_event, migrate_error, parse_json, parse_task_kind,
    parse_timer_kind, status_name, summary_from_row, RawEvent,
};
use crate::{Stats, StoreStats};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// When SQLite flushes to disk (`PRAGMA synchronous`, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync the WAL at every commit: a committed step survives power loss (default).
    #[default]
    Full,
    /// fsync only at checkpoints: a committed step survives a crash of the process,
    /// the last ones may be lost with power.
    Normal,
}

/// Settings of a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Durability of commits (default [`Synchronous::Full`]).
    pub synchronous: Synchronous,
    /// Read connections (default 4).
    pub read_connections: usize,
    /// Most writes committed in one transaction (default 512).
    pub max_batch: usize,
    /// How long a writer waits for the file's write lock held by another process
    /// (default 5 s).
    pub busy_timeout: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            synchronous: Synchronous::Full,
            read_connections: 4,
            max_batch: 512,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Event store, timer store and snapshots in one SQLite file. Clones share the file,
/// the writer and the read connections.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    writer: mpsc::UnboundedSender<Request>,
    readers: ReadPool,
    stats: Arc<Stats>,
    path: PathBuf,
    // Dropped last: removes a temporary store's directory.
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the store at `path` with the default settings,
    /// and brings its schema up to date.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteConfig::default()).await
    }

    /// Opens the store at `path` with `config`.
    ///
    /// Fails with a `Configuration` error, changing nothing, when the file's schema is
    /// newer than this build (it was written by a later version).
    pub async fn open_with(path: impl AsRef<Path>, config: SqliteConfig) -> Result<Self> {
        Self::open_inner(path.as_ref().to_path_buf(), config, None).await
    }

    /// A store in a new temporary directory, removed when the last clone is dropped
    /// (for tests and examples).
    pub async fn open_temporary() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("saga-sqlite-")
            .tempdir()
            .map_err(|e| {
                Error::new(ErrorKind::EventStore, "cannot create a temporary directory")
                    .with_source(e)
            })?;
        let path = dir.path().join("saga.db");
        Self::open_inner(path, SqliteConfig::default(), Some(dir)).await
    }

    async fn open_inner(
        path: PathBuf,
        config: SqliteConfig,
        temp: Option<tempfile::TempDir>,
    ) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match config.synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(config.busy_timeout)
            .foreign_keys(false);
        let open_error = |e: sqlx::Error| {
            Error::new(
                ErrorKind::EventStore,
                format!("cannot open SQLite store `{}`: {e}", path.display()),
            )
            .with("path", path.display())
            .with_source(e)
        };
        let mut conn = options.connect().await.map_err(open_error)?;
        if let Err(first) = MIGRATOR.run(&mut conn).await {
            // Two processes creating the same file at once: the loser of the race
            // finds the schema there on a second look. A schema from the future fails
            // again, unchanged.
            tracing::debug!(error = %first, "SQLite migration failed; retrying once");
            tokio::task::yield_now().await;
            MIGRATOR
                .run(&mut conn)
                .await
                .map_err(|e| migrate_error("SQLite", &MIGRATOR, e).with("path", path.display()))?;
        }
        let mut readers = Vec::with_capacity(config.read_connections.max(1));
        for _ in 0..config.read_connections.max(1) {
            readers.push(options.connect().await.map_err(open_error)?);
        }
        let stats = Arc::new(Stats::default());
        let writer = writer::spawn(conn, stats.clone(), config.max_batch)?;
        Ok(SqliteStore {
            shared: Arc::new(Shared {
                writer,
                readers: ReadPool::new(readers),
                stats,
                path,
                _temp: temp,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Statements, transactions and commits run so far by this store (all clones).
    pub fn stats(&self) -> StoreStats {
        self.shared.stats.snapshot()
    }

    async fn write(&self, op: Op) -> Result<Reply> {
        writer::call(&self.shared.writer, op).await
    }

    async fn read(&self) -> Result<Lease<'_>> {
        self.shared.stats.statements.fetch_add(1, Ordering::Relaxed);
        self.shared.readers.get().await
    }
}

fn unexpected(reply: Reply) -> Error {
    Error::new(
        ErrorKind::Unknown,
        format!("the SQLite writer answered {reply:?}: this is a bug in saga-adapters"),
    )
}

pub(crate) fn to_us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_us(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn col<'r, T>(row: &'r SqliteRow, i: usize, what: &str, key: (&str, &str)) -> Result<T>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(i).map_err(|e| {
        Error::new(
            ErrorKind::Codec,
            format!("stored {what} does not decode: {e}"),
        )
        .with(key.0, key.1)
        .with("code", "corrupted_row")
        .with_source(e)
    })
}

pub(crate) fn timer_from_row(row: &SqliteRow) -> Result<TimerRecord> {
    let timer_id: String = col(row, 0, "timer id", ("timer_id", "?"))?;
    let key = ("timer_id", timer_id.as_str());
    let saga_id: String = col(row, 1, "timer", key)?;
    let kind: String = col(row, 2, "timer kind", key)?;
    let fire_at: i64 = col(row, 3, "timer fire time", key)?;
    let attributes: String = col(row, 4, "timer attributes", key)?;
    Ok(TimerRecord {
        kind: parse_timer_kind(&timer_id, &kind)?,
        attributes: parse_json("timer attributes", key, &attributes)?,
        saga_id: SagaId::from(saga_id),
        fire_at: from_us(fire_at),
        timer_id,
    })
}

fn snapshot_from_row(saga_id: &SagaId, row: &SqliteRow) -> Result<Snapshot> {
    let key = ("saga_id", saga_id.as_str());
    let last: i64 = col(row, 0, "snapshot", key)?;
    Ok(Snapshot {
        saga_id: saga_id.clone(),
        last_event_id: crate::common::to_u64("snapshot last_event_id", saga_id.as_str(), last)?,
        codec: col(row, 1, "snapshot codec", key)?,
        state: col(row, 2, "snapshot state", key)?,
        checksum: col(row, 3, "snapshot checksum", key)?,
        created_at: from_us(col(row, 4, "snapshot time", key)?),
    })
}

const SNAPSHOT_COLUMNS: &str = "SELECT last_event_id, codec, state, checksum, created_at_us \
                                FROM saga_snapshots WHERE saga_id = ? ORDER BY last_event_id DESC";

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(
        &self,
        saga_id: &SagaId,
        expected_version: u64,
        events: Vec<HistoryEvent>,
    ) -> Result<u64> {
        self.commit(Commit::events_only(saga_id, expected_version, events))
            .await
    }

    async fn history_from(
        &self,
        saga_id: &SagaId,
        from_event_id: u64,
    ) -> Result<Vec<HistoryEvent>> {
        let from = i64::try_from(from_event_id).unwrap_or(i64::MAX);
        let mut conn = self.read().await?;
        let rows = sqlx::query(
            "SELECT event_id, event_type, ts_us, attributes, event_version, is_reset_point, \
             is_retry, trace_id FROM saga_events WHERE saga_id = ? AND event_id >= ? \
             ORDER BY event_id",
        )
        .bind(saga_id.as_str())
        .bind(from)
        .fetch_all(conn.conn())
        .await
        .map_err(|e| db_error(ErrorKind::EventStore, "read a history", e))?;
        drop(conn);
        let key = ("saga_id", saga_id.as_str());
        let events = rows
            .iter()
            .map(|row| {
                decode_event(
                    saga_id,
                    RawEvent {
                        event_id: col(row, 0, "event id", key)?,
                        event_type: col(row, 1, "event type", key)?,
                        timestamp: from_us(col(row, 2, "event time", key)?),
                        attributes: col(row, 3, "event attributes", key)?,
                        event_version: col(row, 4, "event version", key)?,
                        is_reset_point: col(row, 5, "event flag", key)?,
                        is_retry: col(row, 6, "event flag", key)?,
                        trace_id: col(row, 7, "trace id", key)?,
                    },
                )
            })
            .collect::<Result<Vec<_>>>()?;
        check_dense(saga_id, from_event_id, &events)?;
        Ok(events)
    }

    async fn version(&self, saga_id: &SagaId) -> Result<u64> {
        let mut conn = self.read().await?;
        let v: Option<i64> =
            sqlx::query_scalar("SELECT version FROM saga_executions WHERE saga_id = ?")
                .bind(saga_id.as_str())
                .fetch_optional(conn.conn())
                .await
                .map_err(|e| db_error(ErrorKind::EventStore, "read a version", e))?;
        crate::common::to_u64("version", saga_id.as_str(), v.unwrap_or(0))
    }

    async fn save_snapshot(&self, snapshot: Snapshot, max_snapshots: u32) -> Result<()> {
        match self
            .write(Op::SaveSnapshot(snapshot, max_snapshots))
            .await?
        {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn latest_snapshot(&self, saga_id: &SagaId) -> Result<Option<Snapshot>> {
        let mut conn = self.read().await?;
        let sql = format!("{SNAPSHOT_COLUMNS} LIMIT 1");
        let row = sqlx::query(&sql)
            .bind(saga_id.as_str())
            .fetch_optional(conn.conn())
            .await
            .map_err(|e| db_error(ErrorKind::EventStore, "read a snapshot", e))?;
        row.map(|r| snapshot_from_row(saga_id, &r)).transpose()
    }

    async fn snapshots(&self, saga_id: &SagaId) -> Result<Vec<Snapshot>> {
        let mut conn = self.read().await?;
        let rows = sqlx::query(SNAPSHOT_COLUMNS)
            .bind(saga_id.as_str())
            .fetch_all(conn.conn())
            .await
            .map_err(|e| db_error(ErrorKind::EventStore, "read snapshots", e))?;
        rows.iter().map(|r| snapshot_from_row(saga_id, r)).collect()
    }

    async fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        if filter.limit == Some(0) {
            return Ok(Vec::new());
        }
        let mut qb: QueryBuilder<'_, Sqlite> = QueryBuilder::new(
            "SELECT saga_id, version, workflow_type, status, started_at_us, closed_at_us, \
             search_attributes, updated_at_us FROM saga_executions x \
             WHERE workflow_type IS NOT NULL",
        );
        if let Some(t) = &filter.workflow_type {
            qb.push(" AND workflow_type = ").push_bind(t.clone());
        }
        if let Some(s) = filter.status {
            qb.push(" AND status = ").push_bind(status_name(s));
        }
        if let Some(t) = filter.started_after {
            qb.push(" AND started_at_us >= ").push_bind(to_us(t));
        }
        if let Some(t) = filter.started_before {
            qb.push(" AND started_at_us < ").push_bind(to_us(t));
        }
        if let Some(t) = filter.updated_before {
            qb.push(" AND updated_at_us < ").push_bind(to_us(t));
        }
        for (name, value) in &filter.search_attributes {
            qb.push(
                " AND EXISTS (SELECT 1 FROM saga_search_attributes a \
                 WHERE a.saga_id = x.saga_id AND a.name = ",
            )
            .push_bind(name.clone())
            .push(" AND a.value = ")
            .push_bind(value.to_string())
            .push(")");
        }
        qb.push(" ORDER BY started_at_us, saga_id");
        if let Some(limit) = filter.limit {
            qb.push(" LIMIT ")
                .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let mut conn = self.read().await?;
        let rows = qb
            .build()
            .fetch_all(conn.conn())
            .await
            .map_err(|e| db_error(ErrorKind::EventStore, "list executions", e))?;
        drop(conn);
        rows.iter()
            .map(|row| {
                let saga_id: String = col(row, 0, "execution", ("saga_id", "?"))?;
                let key = ("saga_id", saga_id.as_str());
                let version: i64 = col(row, 1, "version", key)?;
                let workflow_type: String = col(row, 2, "workflow type", key)?;
                let status: Option<String> = col(row, 3, "status", key)?;
                let started: Option<i64> = col(row, 4, "start time", key)?;
                let closed: Option<i64> = col(row, 5, "close time", key)?;
                let search: String = col(row, 6, "search attributes", key)?;
                let updated: Option<i64> = col(row, 7, "last event time", key)?;
                summary_from_row(
                    saga_id.clone(),
                    version,
                    workflow_type,
                    status,
                    started.map(from_us),
                    closed.map(from_us),
                    updated.map(from_us),
                    &search,
                )
            })
            .collect()
    }
}

#[async_trait]
impl TimerStore for SqliteStore {
    async fn create(&self, timer: TimerRecord) -> Result<()> {
        match self.write(Op::CreateTimer(timer)).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<TimerRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        match self.write(Op::Claim { now, limit, lease }).await? {
            Reply::Timers(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    async fn complete(&self, timer_id: &str) -> Result<()> {
        self.cancel(timer_id).await.map(|_| ())
    }

    async fn cancel(&self, timer_id: &str) -> Result<bool> {
        match self.write(Op::Cancel(timer_id.to_owned())).await? {
            Reply::Removed(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn next_fire_at(&self) -> Result<Option<DateTime<Utc>>> {
        let mut conn = self.read().await?;
        let at: Option<i64> = sqlx::query_scalar("SELECT MIN(fire_at_us) FROM saga_timers")
            .fetch_one(conn.conn())
            .await
            .map_err(|e| db_error(ErrorKind::TimerStore, "read the next timer", e))?;
        Ok(at.map(from_us))
    }
}

/// Events, timers and snapshot of a workflow task in one transaction, batched with the
/// commits of other workflow tasks in flight (group commit).
#[async_trait]
impl WorkflowStore for SqliteStore {
    async fn commit(&self, commit: Commit) -> Result<u64> {
        match self.write(Op::Commit(commit)).await? {
            Reply::Version(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }
}

/// Outbox rows live in the same file; claims and settles go through the writer.
#[async_trait]
impl Outbox for SqliteStore {
    async fn claim_tasks(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Task>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        match self.write(Op::ClaimTasks { now, limit, lease }).await? {
            Reply::Tasks(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    async fn settle_tasks(&self, saga_id: &SagaId, dedup_ids: &[String]) -> Result<()> {
        if dedup_ids.is_empty() {
            return Ok(());
        }
        match self
            .write(Op::SettleTasks(saga_id.clone(), dedup_ids.to_vec()))
            .await?
        {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn defer_tasks(
        &self,
        saga_id: &SagaId,
        dedup_ids: &[String],
        until: DateTime<Utc>,
    ) -> Result<()> {
        if dedup_ids.is_empty() {
            return Ok(());
        }
        match self
            .write(Op::DeferTasks(saga_id.clone(), dedup_ids.to_vec(), until))
            .await?
        {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn outbox_len(&self) -> Result<u64> {
        let mut conn = self.read().await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM saga_outbox")
            .fetch_one(conn.conn())
            .await
            .map_err(|e| db_error(ErrorKind::EventStore, "count outbox tasks", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn unsettled_tasks(&self, saga_id: &SagaId) -> Result<Vec<String>> {
        let mut conn = self.read().await?;
        sqlx::query_scalar("SELECT dedup_id FROM saga_outbox WHERE saga_id = ? ORDER BY dedup_id")
            .bind(saga_id.as_str())
            .fetch_all(conn.conn())
            .await
            .map_err(|e| db_error(ErrorKind::EventStore, "list outbox tasks", e))
    }
}

/// A stored outbox row: `saga_id, dedup_id, kind, queue, payload`.
pub(crate) fn task_from_row(row: &SqliteRow) -> Result<Task> {
    let dedup_id: String = col(row, 1, "outbox dedup_id", ("outbox", "?"))?;
    let key = ("dedup_id", dedup_id.as_str());
    let saga: String = col(row, 0, "outbox saga_id", key)?;
    let kind: String = col(row, 2, "outbox kind", key)?;
    Ok(Task {
        kind: parse_task_kind(&dedup_id, &kind)?,
        saga_id: SagaId::new(saga),
        queue: col(row, 3, "outbox queue", key)?,
        payload: col(row, 4, "outbox payload", key)?,
        dedup_id,
    })
}

/// Read connections handed out one per query. A semaphore, not a timed pool: a reader
/// waits as long as it takes (no tokio timer, so it also behaves on a paused clock).
struct ReadPool {
    conns: std::sync::Mutex<Vec<SqliteConnection>>,
    permits: Semaphore,
}

impl ReadPool {
    fn new(conns: Vec<SqliteConnection>) -> Self {
        ReadPool {
            permits: Semaphore::new(conns.len()),
            conns: std::sync::Mutex::new(conns),
        }
    }

    async fn get(&self) -> Result<Lease<'_>> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::new(ErrorKind::EventStore, "the SQLite store is closed"))?;
        let conn = self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unknown,
                    "no free SQLite read connection: this is a bug in saga-adapters",
                )
            })?;
        Ok(Lease {
            pool: self,
            conn: Some(conn),
            _permit: permit,
        })
    }
}

struct Lease<'a> {
    pool: &'a ReadPool,
    conn: Option<SqliteConnection>,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    fn conn(&mut self) -> &mut SqliteConnection {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("a lease holds its connection until dropped"))
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // Back before the permit (a field) is released.
        if let Some(c) = self.conn.take() {
            self.pool
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
        }
    }
}
