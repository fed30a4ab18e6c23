//! The PostgreSQL store: the same ports as the SQLite store, for several engines in
//! several processes over one database, and [`PgSignalDispatcher`] to wake them.
//!
//! ```no_run
//! # async fn demo() -> saga_runtime::Result<()> {
//! use saga_adapters::PostgresStore;
//! let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/test").await?;
//! let signals = store.signal_dispatcher().await?;
//! # let _ = (store, signals); Ok(()) }
//! ```
//!
//! # Schema
//!
//! Embedded migrations (`migrations/postgres/`), applied by [`PostgresStore::connect`]
//! under sqlx's advisory lock, so several processes may start at once; a database
//! whose schema is newer than this build is refused (`Configuration`), unchanged.
//! Tables go to the first schema of the connection's `search_path`
//! ([`PostgresConfig::schema`] sets it on every pooled connection):
//!
//! | table | key | holds |
//! |---|---|---|
//! | `saga_event_batches` | `(saga_id, first_event_id)` | the events of one commit per row, as arrays (the view `saga_events` shows one row per event); attributes `json` (read back whole, never queried inside) |
//! | `saga_executions` | `saga_id` | the history's version and listing summary, indexed by type, status, start time, and GIN over the search attributes |
//! | `saga_snapshots` | `(saga_id, last_event_id)` | snapshots, pruned to `max_snapshots` per saga |
//! | `saga_timers` | `timer_id`, index `fire_at` | durable timers; claimed with `FOR UPDATE SKIP LOCKED` |
//!
//! # One statement per workflow task, shared by concurrent ones
//!
//! A commit is one SQL statement, so one implicit transaction and one WAL flush: a
//! data-modifying CTE first runs the conditional update of the `saga_executions` row
//! (`.. WHERE version = expected`; an `INSERT .. ON CONFLICT DO NOTHING` for a new
//! saga), and inserts the events, creates and cancels the timers, and adds and settles
//! outbox tasks only if that row changed. A stale writer changes no row and writes
//! nothing (a `Concurrency` error); the primary key `(saga_id, first_event_id)` backs
//! the check. Only a commit that carries a snapshot (every `interval` events) runs as
//! `BEGIN`, that statement, the snapshot insert and prune, `COMMIT`.
//!
//! Commits that arrive while others are being written share one statement (group
//! commit, `group_commit.rs`): the same CTE over arrays, where each commit's version
//! check decides for its own rows, so each is still all or nothing and a stale one
//! fails alone. With 100 workflows in flight this more than doubled the steps per
//! second (BENCHMARKS.md): most of PostgreSQL's work per commit is the statement's
//! fixed cost, not its rows. Version reads that arrive while one runs share one
//! statement too (group read, `group_read.rs`).

mod commit_sql;
mod definitions;
mod group_commit;
mod group_read;
mod kept;
mod lent;
mod outbox;
mod signals;

pub use signals::PgSignalDispatcher;

use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use saga_runtime::domain::{HistoryEvent, SagaId};
use saga_runtime::port::{
    Commit, EventStore, ExecutionFilter, ExecutionSummary, Snapshot, TimerRecord, TimerStore,
    WorkflowStore,
};
use saga_runtime::{Error, ErrorKind, Result};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, QueryBuilder, Row};

use crate::common::{
    category_name, check_dense, db_error, decode_event, exec_change, fold_summary, json_text,
    migrate_error, parse_json, parse_timer_kind, status_name, summary_from_row, timer_kind_name,
    validate_append, ExecChange, RawEvent,
};
use crate::{Stats, StoreStats};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Batches of workflow-task commits written at once by default, at most. Few and large
/// beats many and small while the database's CPU is the limit: on the 2-core benchmark
/// machine (BENCHMARKS.md) 1 and 2 flushers did 5 400 and 5 000 steps/s, 8 did 3 600.
/// More help when the database has cores to spare and fsync is slow. The second starts
/// only while half a batch waits for the first, so a process with few commits in
/// flight (one of several workers on one database) writes them in one statement.
pub const DEFAULT_COMMIT_FLUSHERS: usize = 2;

/// Connections kept out of the pool for the reads of a worker taking a task (version,
/// history, snapshot): a handful suffice, each read being one short statement; when
/// all are in use a read takes a pooled connection.
const KEPT_READERS: usize = 4;

/// Settings of a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/database`.
    pub url: String,
    /// The schema for the tables (created if missing, and set as `search_path` on
    /// every connection); `None` uses the server's default `search_path`.
    pub schema: Option<String>,
    /// Connections to the database in all (default 16): one for each commit flusher
    /// ([`PostgresConfig::commit_flushers`]), four kept for the reads of workers taking
    /// tasks, the rest pooled for everything else (at least two).
    pub max_connections: u32,
    /// How long a call waits for a free connection, or for the database to come back,
    /// before failing (default 30 s).
    pub acquire_timeout: Duration,
    /// Group commit: at most this many workflow-task commits in one statement
    /// (default 64; 1 turns group commit off).
    pub max_commit_batch: usize,
    /// Group commit: at most this many batches written at once, each on a connection of
    /// its own (default [`DEFAULT_COMMIT_FLUSHERS`]).
    pub commit_flushers: Option<usize>,
    /// How long a call of the store (a commit, a read, a timer or outbox statement)
    /// waits for PostgreSQL's answer before it fails with `code=unavailable` (default
    /// 30 s; a call that waits for a connection fails at whichever of this and
    /// `acquire_timeout` comes first). Measured on the client:
    /// what frees a connection whose server vanished without closing it (a host gone,
    /// a network cut), which would otherwise hold its call, and every commit or read
    /// queued behind it, until the kernel gives the connection up (about a quarter of an
    /// hour with Linux's defaults). Whether a commit that timed out was written is
    /// unknown to its caller, as after any lost connection; the version check settles
    /// it on the retry. The connection of a call that timed out is closed, not reused
    /// (nor pinged by the pool, which would wait as long). The signal dispatcher's
    /// `NOTIFY` is bounded the same way; its listening connection waits as long as it
    /// must (silence is what it expects), and is replaced when a subscription's
    /// confirmation does not come back on it.
    pub reply_timeout: Duration,
}

impl PostgresConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            schema: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(30),
            max_commit_batch: 64,
            commit_flushers: None,
            reply_timeout: Duration::from_secs(30),
        }
    }

    /// In `schema`.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }
}

/// Event store, timer store and snapshots on PostgreSQL. Clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    options: PgConnectOptions,
    channel: String,
    stats: Arc<Stats>,
    group: Arc<group_commit::GroupCommit>,
    /// Version reads queued behind a running one ([`group_read`]).
    group_read: Arc<group_read::GroupRead>,
    /// Connections kept for the reads of a worker taking a task ([`kept`]).
    readers: Arc<kept::KeptConnections>,
    /// [`PostgresConfig::reply_timeout`].
    reply_timeout: Duration,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("host", &self.options.get_host())
            .field("database", &self.options.get_database())
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

fn config_error(message: String) -> Error {
    Error::new(ErrorKind::Configuration, message)
}

/// A schema name we can quote safely: `[a-z_][a-z0-9_]*`, at most 48 bytes (the
/// notification channel `saga_signals_<schema>` must fit PostgreSQL's 63).
fn check_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 48
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(config_error(format!(
            "schema name `{schema}` must match [a-z_][a-z0-9_]* and be at most 48 bytes"
        )))
    }
}

/// Maps an error of the store: a lost or refused connection, an exhausted pool or a
/// server shutting down carries `code=unavailable` (the outage an operator must see;
/// the pool reconnects on the next call).
pub(crate) fn unavailable(what: &str, e: sqlx::Error) -> Error {
    let down = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // admin_shutdown, crash_shutdown, cannot_connect_now
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some("57P01") | Some("57P02") | Some("57P03")
        ),
        _ => false,
    };
    let err = db_error(ErrorKind::EventStore, what, e);
    if down {
        err.with("code", "unavailable")
    } else {
        err
    }
}

/// When a lease taken at `now` for `lease` runs out (saturating).
pub(crate) fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    now.checked_add_signed(lease)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl PostgresStore {
    /// Connects with the default settings and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(PostgresConfig::new(url)).await
    }

    /// Connects with `config`: creates the schema if needed, applies the embedded
    /// migrations (under an advisory lock), and opens the pool.
    pub async fn connect_with(config: PostgresConfig) -> Result<Self> {
        let mut options = PgConnectOptions::from_str(&config.url).map_err(|e| {
            config_error(format!("bad PostgreSQL url `{}`: {e}", config.url)).with_source(e)
        })?;
        let channel = match &config.schema {
            Some(schema) => {
                check_schema(schema)?;
                create_schema(&options, schema).await?;
                options = options.options([("search_path", schema.as_str())]);
                format!("saga_signals_{schema}")
            }
            None => "saga_signals".to_owned(),
        };
        let flushers = config
            .commit_flushers
            .unwrap_or(DEFAULT_COMMIT_FLUSHERS)
            .max(1);
        // The kept connections come out of the pool (detached), which then may open as
        // many again: the pool's share is what is left for the rest.
        let pooled = config
            .max_connections
            .saturating_sub(u32::try_from(flushers + KEPT_READERS).unwrap_or(u32::MAX))
            .max(2);
        let pool = PgPoolOptions::new()
            .max_connections(pooled)
            .min_connections(0)
            .acquire_timeout(config.acquire_timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(|e| unavailable("connect to PostgreSQL", e))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| migrate_error("PostgreSQL", &MIGRATOR, e))?;
        let store = PostgresStore {
            pool,
            options,
            channel,
            stats: Arc::new(Stats::default()),
            group: Arc::new(group_commit::GroupCommit::new(
                config.max_commit_batch,
                flushers,
            )),
            group_read: Arc::default(),
            readers: kept::KeptConnections::new(KEPT_READERS),
            reply_timeout: config.reply_timeout,
        };
        store.prewarm(pooled).await?;
        Ok(store)
    }

    /// Opens every pooled connection now, so that no call later waits for a connect.
    async fn prewarm(&self, n: u32) -> Result<()> {
        let mut held = Vec::with_capacity(n as usize);
        for _ in 0..n {
            held.push(
                self.pool
                    .acquire()
                    .await
                    .map_err(|e| unavailable("connect to PostgreSQL", e))?,
            );
        }
        Ok(())
    }

    /// A [`PgSignalDispatcher`] on this store's database and schema (its own two
    /// connections: one listening, one notifying), with this store's
    /// [`PostgresConfig::reply_timeout`].
    pub async fn signal_dispatcher(&self) -> Result<PgSignalDispatcher> {
        PgSignalDispatcher::connect_with(
            self.options.clone(),
            self.channel.clone(),
            self.reply_timeout,
        )
        .await
    }

    /// `call`, or an `unavailable` error of `kind` once it has waited the store's
    /// [`PostgresConfig::reply_timeout`] for PostgreSQL's answer. The call is dropped
    /// half-way, and with it the connection it was using ([`kept`], [`lent`]): closed,
    /// never reused.
    async fn bounded<T>(
        &self,
        kind: ErrorKind,
        what: &str,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let limit = self.reply_timeout;
        match tokio::time::timeout(limit, call).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                kind,
                format!("cannot {what}: PostgreSQL did not answer within {limit:?}"),
            )
            .with("code", "unavailable")),
        }
    }

    /// `call` on a connection of the pool, [`bounded`](Self::bounded) (the wait for
    /// the connection included); the connection is closed if the call timed out or
    /// lost the server ([`lent`]).
    async fn pooled<T>(
        &self,
        kind: ErrorKind,
        what: &str,
        call: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T>,
    ) -> Result<T> {
        self.bounded(kind, what, async {
            let mut conn = lent::Lent::acquire(&self.pool).await?;
            let r = call(&mut conn).await;
            conn.give_back(&r);
            r
        })
        .await
    }

    /// A connection for a read of a worker taking a task ([`kept`]).
    async fn reader(&self) -> Result<kept::Connection> {
        // Bounded too: a new kept connection's setup is a statement.
        self.bounded(
            ErrorKind::EventStore,
            "set up a connection",
            self.readers
                .get(&self.pool, &self.options, || self.count(1)),
        )
        .await
    }

    /// The connection pool (for tools and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Statements, transactions and commits run so far by this store (all clones).
    pub fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }

    fn count(&self, n: u64) {
        self.stats.statements.fetch_add(n, Ordering::Relaxed);
    }
}

async fn create_schema(options: &PgConnectOptions, schema: &str) -> Result<()> {
    let mut conn = sqlx::PgConnection::connect_with(options)
        .await
        .map_err(|e| unavailable("connect to PostgreSQL", e))?;
    let r = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    match r {
        Ok(_) => Ok(()),
        // Two processes creating it at once: the loser sees a duplicate.
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("23505") | Some("42P06")) =>
        {
            Ok(())
        }
        Err(e) => Err(unavailable("create the schema", e)),
    }
}

/// The values bound to the index part of the commit statement.
struct IndexValues {
    status: Option<String>,
    closed_at: Option<DateTime<Utc>>,
    search: Value,
    workflow_type: Option<String>,
    started_at: Option<DateTime<Utc>>,
}

impl IndexValues {
    fn from_summary(s: Option<&ExecutionSummary>) -> Self {
        IndexValues {
            status: s.map(|s| status_name(s.status).to_owned()),
            closed_at: s.and_then(|s| s.closed_at),
            search: s.map_or_else(
                || Value::Object(Default::default()),
                |s| {
                    Value::Object(
                        s.search_attributes
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    )
                },
            ),
            workflow_type: s.map(|s| s.workflow_type.clone()),
            started_at: s.map(|s| s.started_at),
        }
    }
}

impl PostgresStore {
    /// A commit with no events (the engine never sends one): the version must match;
    /// then the timer changes and the snapshot, in one transaction.
    async fn commit_without_events(
        &self,
        conn: &mut sqlx::PgConnection,
        c: &Commit,
    ) -> Result<u64> {
        let actual = self.version(&c.saga_id).await?;
        if actual != c.expected_version {
            return Err(Error::conflict(
                c.saga_id.as_str(),
                c.expected_version,
                actual,
            ));
        }
        let mut tx = self.begin(conn).await?;
        for t in &c.create_timers {
            if c.cancel_timers.contains(&t.timer_id) {
                continue;
            }
            self.insert_timer(&mut tx, t).await?;
        }
        self.count(1);
        sqlx::query("DELETE FROM saga_timers WHERE timer_id = ANY($1)")
            .bind(&c.cancel_timers)
            .execute(&mut *tx)
            .await
            .map_err(|e| timer_error("cancel timers", e))?;
        if let Some(s) = &c.snapshot {
            self.save_snapshot_in(&mut tx, s, c.max_snapshots).await?;
        }
        self.settle_in(&mut tx, &c.saga_id, &c.settle_tasks).await?;
        self.add_tasks_in(&mut tx, &c.tasks, c.redeliver_at).await?;
        self.finish(tx).await?;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(actual)
    }

    /// Runs the commit statement on `conn`; `Ok(Err(actual))` when the version check
    /// failed (nothing written).
    async fn run_commit(
        &self,
        conn: &mut sqlx::PgConnection,
        c: &Commit,
        insert: bool,
        index: IndexValues,
    ) -> Result<std::result::Result<u64, u64>> {
        let new_version = c.expected_version + c.events.len() as u64;
        let cancelled = &c.cancel_timers;
        let timers: Vec<&TimerRecord> = c
            .create_timers
            .iter()
            .filter(|t| !cancelled.contains(&t.timer_id))
            .collect();
        let e = &c.events;
        let sql = commit_sql::single(commit_sql::Parts::of(c), insert);
        self.count(1);
        let row = sqlx::query(sql)
            .bind(c.saga_id.as_str())
            .bind(c.expected_version as i64)
            .bind(new_version as i64)
            .bind(index.status)
            .bind(index.closed_at)
            .bind(index.search.to_string())
            .bind(index.workflow_type)
            .bind(index.started_at)
            .bind(e.iter().map(|e| e.event_id as i64).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.event_type.name()).collect::<Vec<_>>())
            .bind(
                e.iter()
                    .map(|e| category_name(e.category))
                    .collect::<Vec<_>>(),
            )
            .bind(e.iter().map(|e| e.timestamp).collect::<Vec<_>>())
            .bind(
                e.iter()
                    .map(|e| json_text(&e.attributes))
                    .collect::<Vec<_>>(),
            )
            .bind(e.iter().map(|e| e.event_version as i32).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.is_reset_point).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.is_retry).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.trace_id.as_str()).collect::<Vec<_>>())
            .bind(
                timers
                    .iter()
                    .map(|t| t.timer_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                timers
                    .iter()
                    .map(|t| t.saga_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                timers
                    .iter()
                    .map(|t| timer_kind_name(t.kind))
                    .collect::<Vec<_>>(),
            )
            .bind(timers.iter().map(|t| t.fire_at).collect::<Vec<_>>())
            .bind(
                timers
                    .iter()
                    .map(|t| json_text(&t.attributes))
                    .collect::<Vec<_>>(),
            )
            .bind(cancelled.iter().map(String::as_str).collect::<Vec<_>>())
            .bind(c.closes_execution())
            .bind(&c.settle_tasks)
            .bind(
                c.tasks
                    .iter()
                    .map(|t| t.saga_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                c.tasks
                    .iter()
                    .map(|t| t.dedup_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(c.tasks.iter().map(|t| t.kind.name()).collect::<Vec<_>>())
            .bind(c.tasks.iter().map(|t| t.queue.as_str()).collect::<Vec<_>>())
            .bind(c.redeliver_at)
            .bind(
                c.tasks
                    .iter()
                    .map(|t| t.payload.as_slice())
                    .collect::<Vec<_>>(),
            )
            // The execution's `updated_at`: the time of the commit's last event.
            .bind(e.last().map(|e| e.timestamp))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| unavailable("commit a workflow task", e))?;
        let ok: bool = row.get(0);
        let actual: Option<i64> = row.get(1);
        Ok(if ok {
            Ok(new_version)
        } else {
            Err(actual.map_or(0, |v| v.max(0) as u64))
        })
    }

    async fn save_snapshot_in(
        &self,
        conn: &mut sqlx::PgConnection,
        s: &Snapshot,
        max_snapshots: u32,
    ) -> Result<()> {
        self.count(2);
        sqlx::query(
            "INSERT INTO saga_snapshots (saga_id, last_event_id, codec, state, checksum, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (saga_id, last_event_id) DO UPDATE SET codec = EXCLUDED.codec, \
             state = EXCLUDED.state, checksum = EXCLUDED.checksum, \
             created_at = EXCLUDED.created_at",
        )
        .bind(s.saga_id.as_str())
        .bind(i64::try_from(s.last_event_id).unwrap_or(i64::MAX))
        .bind(s.codec.as_str())
        .bind(s.state.as_slice())
        .bind(s.checksum.as_deref())
        .bind(s.created_at)
        .execute(&mut *conn)
        .await
        .map_err(|e| unavailable("save a snapshot", e))?;
        sqlx::query(
            "DELETE FROM saga_snapshots WHERE saga_id = $1 AND last_event_id NOT IN \
             (SELECT last_event_id FROM saga_snapshots WHERE saga_id = $1 \
              ORDER BY last_event_id DESC LIMIT $2)",
        )
        .bind(s.saga_id.as_str())
        .bind(i64::from(max_snapshots.max(1)))
        .execute(&mut *conn)
        .await
        .map_err(|e| unavailable("prune snapshots", e))?;
        Ok(())
    }

    /// Inserts timer `t` on `conn` (a timer already there stays as it is).
    async fn insert_timer(&self, conn: &mut sqlx::PgConnection, t: &TimerRecord) -> Result<()> {
        self.count(1);
        sqlx::query(
            "INSERT INTO saga_timers (timer_id, saga_id, kind, fire_at, attributes) \
             VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (timer_id) DO NOTHING",
        )
        .bind(t.timer_id.as_str())
        .bind(t.saga_id.as_str())
        .bind(timer_kind_name(t.kind))
        .bind(t.fire_at)
        .bind(json_text(&t.attributes))
        .execute(conn)
        .await
        .map_err(|e| timer_error("create a timer", e))?;
        Ok(())
    }

    async fn begin<'c>(
        &self,
        conn: &'c mut sqlx::PgConnection,
    ) -> Result<sqlx::Transaction<'c, Postgres>> {
        self.count(1);
        self.stats.transactions.fetch_add(1, Ordering::Relaxed);
        sqlx::Connection::begin(conn)
            .await
            .map_err(|e| unavailable("begin a transaction", e))
    }

    async fn finish(&self, tx: sqlx::Transaction<'_, Postgres>) -> Result<()> {
        self.count(1);
        tx.commit()
            .await
            .map_err(|e| unavailable("commit a transaction", e))
    }

    /// The rebuild of an index row whose `WorkflowExecutionStarted` comes late: the
    /// row is read under lock and the reference fold decides its values.
    async fn rebuilt_index(
        &self,
        conn: &mut sqlx::PgConnection,
        c: &Commit,
    ) -> Result<std::result::Result<IndexValues, u64>> {
        self.count(1);
        let row = sqlx::query(
            "SELECT version, workflow_type, status, started_at, closed_at, \
             search_attributes::text FROM saga_executions WHERE saga_id = $1 FOR UPDATE",
        )
        .bind(c.saga_id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| unavailable("read an execution", e))?;
        let Some(row) = row else { return Ok(Err(0)) };
        let version: i64 = row.get(0);
        if version != c.expected_version as i64 {
            return Ok(Err(version.max(0) as u64));
        }
        let before = match row.get::<Option<String>, _>(1) {
            None => None,
            Some(t) => Some(summary_from_row(
                c.saga_id.to_string(),
                version,
                t,
                row.get(2),
                row.get(3),
                row.get(4),
                None,
                row.get::<&str, _>(5),
            )?),
        };
        let after = fold_summary(before, &c.events);
        Ok(Ok(IndexValues::from_summary(after.as_ref())))
    }
}

fn col<'r, T>(row: &'r PgRow, i: usize, what: &str, key: (&str, &str)) -> Result<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
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

fn timer_from_row(row: &PgRow) -> Result<TimerRecord> {
    let timer_id: String = col(row, 0, "timer id", ("timer_id", "?"))?;
    let key = ("timer_id", timer_id.as_str());
    let saga_id: String = col(row, 1, "timer", key)?;
    let kind: String = col(row, 2, "timer kind", key)?;
    let fire_at: DateTime<Utc> = col(row, 3, "timer fire time", key)?;
    let attributes: String = col(row, 4, "timer attributes", key)?;
    Ok(TimerRecord {
        kind: parse_timer_kind(&timer_id, &kind)?,
        attributes: parse_json("timer attributes", key, &attributes)?,
        saga_id: SagaId::from(saga_id),
        fire_at,
        timer_id,
    })
}

fn snapshot_from_row(saga_id: &SagaId, row: &PgRow) -> Result<Snapshot> {
    let key = ("saga_id", saga_id.as_str());
    let last: i64 = col(row, 0, "snapshot", key)?;
    Ok(Snapshot {
        saga_id: saga_id.clone(),
        last_event_id: crate::common::to_u64("snapshot last_event_id", saga_id.as_str(), last)?,
        codec: col(row, 1, "snapshot codec", key)?,
        state: col(row, 2, "snapshot state", key)?,
        checksum: col(row, 3, "snapshot checksum", key)?,
        created_at: col(row, 4, "snapshot time", key)?,
    })
}

const SNAPSHOT_COLUMNS: &str = "SELECT last_event_id, codec, state, checksum, created_at \
                                FROM saga_snapshots WHERE saga_id = $1 ORDER BY last_event_id DESC";
const LATEST_SNAPSHOT: &str = "SELECT last_event_id, codec, state, checksum, created_at \
                               FROM saga_snapshots WHERE saga_id = $1 ORDER BY last_event_id DESC \
                               LIMIT 1";

/// The event batches holding a saga's events from `$2` on, in order: the batch that
/// holds event `$2` (the last one starting at or before it) and every later one. The
/// caller drops the events before `$2`.
const HISTORY_FROM: &str = "\
SELECT first_event_id, event_types, timestamps, attributes::text[], event_versions,
       reset_points, retries, trace_ids
  FROM saga_event_batches
 WHERE saga_id = $1
   AND first_event_id >= COALESCE((SELECT max(first_event_id) FROM saga_event_batches
                                    WHERE saga_id = $1 AND first_event_id <= $2), 0)
 ORDER BY first_event_id";

/// The events of one `saga_event_batches` row, undecoded. Arrays of different lengths
/// (edited by hand) are a `Codec` error naming the row.
fn batch_events(saga_id: &SagaId, row: &PgRow) -> Result<Vec<RawEvent>> {
    let key = ("saga_id", saga_id.as_str());
    let first: i64 = col(row, 0, "first event id", key)?;
    let types: Vec<String> = col(row, 1, "event types", key)?;
    let timestamps: Vec<DateTime<Utc>> = col(row, 2, "event times", key)?;
    let attributes: Vec<String> = col(row, 3, "event attributes", key)?;
    let versions: Vec<i32> = col(row, 4, "event versions", key)?;
    let resets: Vec<bool> = col(row, 5, "event flags", key)?;
    let retries: Vec<bool> = col(row, 6, "event flags", key)?;
    let traces: Vec<String> = col(row, 7, "trace ids", key)?;
    let n = types.len();
    let lengths = [
        timestamps.len(),
        attributes.len(),
        versions.len(),
        resets.len(),
        retries.len(),
        traces.len(),
    ];
    if lengths.iter().any(|&l| l != n) {
        return Err(Error::new(
            ErrorKind::Codec,
            format!(
                "stored event batch starting at event {first} has arrays of different \
                 lengths ({n} event types; then {lengths:?})"
            ),
        )
        .with("saga_id", saga_id)
        .with("event_id", first)
        .with("code", "malformed_event_batch"));
    }
    let columns = types
        .into_iter()
        .zip(timestamps)
        .zip(attributes)
        .zip(versions)
        .zip(resets)
        .zip(retries)
        .zip(traces);
    Ok((0_i64..)
        .zip(columns)
        .map(
            |(i, ((((((event_type, timestamp), attributes), version), reset), retry), trace))| {
                RawEvent {
                    event_id: first.saturating_add(i),
                    event_type,
                    timestamp,
                    attributes,
                    event_version: i64::from(version),
                    is_reset_point: reset,
                    is_retry: retry,
                    trace_id: trace,
                }
            },
        )
        .collect())
}

#[async_trait]
impl EventStore for PostgresStore {
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
        self.count(1);
        let mut conn = self.reader().await?;
        let rows = self
            .bounded(ErrorKind::EventStore, "read a history", async {
                sqlx::query(HISTORY_FROM)
                    .bind(saga_id.as_str())
                    .bind(i64::try_from(from_event_id).unwrap_or(i64::MAX))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| unavailable("read a history", e))
            })
            .await;
        conn.give_back(&rows);
        let rows = rows?;
        let mut events = Vec::new();
        for row in &rows {
            for raw in batch_events(saga_id, row)? {
                // The events before `from_event_id` in the first batch are skipped; a
                // negative id (edited by hand) is decoded, to be reported.
                if u64::try_from(raw.event_id).map_or(true, |id| id >= from_event_id) {
                    events.push(decode_event(saga_id, raw)?);
                }
            }
        }
        check_dense(saga_id, from_event_id, &events)?;
        Ok(events)
    }

    async fn version(&self, saga_id: &SagaId) -> Result<u64> {
        self.version_grouped(saga_id).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot, max_snapshots: u32) -> Result<()> {
        self.pooled(ErrorKind::EventStore, "save a snapshot", async |conn| {
            let mut tx = self.begin(conn).await?;
            self.save_snapshot_in(&mut tx, &snapshot, max_snapshots)
                .await?;
            self.finish(tx).await
        })
        .await
    }

    async fn latest_snapshot(&self, saga_id: &SagaId) -> Result<Option<Snapshot>> {
        self.count(1);
        let mut conn = self.reader().await?;
        let row = self
            .bounded(ErrorKind::EventStore, "read a snapshot", async {
                sqlx::query(LATEST_SNAPSHOT)
                    .bind(saga_id.as_str())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| unavailable("read a snapshot", e))
            })
            .await;
        conn.give_back(&row);
        let row = row?;
        row.map(|r| snapshot_from_row(saga_id, &r)).transpose()
    }

    async fn snapshots(&self, saga_id: &SagaId) -> Result<Vec<Snapshot>> {
        self.pooled(ErrorKind::EventStore, "read snapshots", async |conn| {
            self.count(1);
            let rows = sqlx::query(SNAPSHOT_COLUMNS)
                .bind(saga_id.as_str())
                .fetch_all(conn)
                .await
                .map_err(|e| unavailable("read snapshots", e))?;
            rows.iter().map(|r| snapshot_from_row(saga_id, r)).collect()
        })
        .await
    }

    async fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        if filter.limit == Some(0) {
            return Ok(Vec::new());
        }
        self.pooled(ErrorKind::EventStore, "list executions", async |conn| {
            let mut qb: QueryBuilder<'_, Postgres> = QueryBuilder::new(
                "SELECT saga_id, version, workflow_type, status, started_at, closed_at, \
                 search_attributes::text, updated_at FROM saga_executions \
                 WHERE workflow_type IS NOT NULL",
            );
            if let Some(t) = &filter.workflow_type {
                qb.push(" AND workflow_type = ").push_bind(t.clone());
            }
            if let Some(s) = filter.status {
                qb.push(" AND status = ").push_bind(status_name(s));
            }
            if let Some(t) = filter.started_after {
                qb.push(" AND started_at >= ").push_bind(t);
            }
            if let Some(t) = filter.started_before {
                qb.push(" AND started_at < ").push_bind(t);
            }
            if let Some(t) = filter.updated_before {
                qb.push(" AND updated_at < ").push_bind(t);
            }
            if !filter.search_attributes.is_empty() {
                // Containment finds candidates through the GIN index; equality per key is
                // the exact semantics (containment would also match a larger array).
                let all: serde_json::Map<String, Value> = filter
                    .search_attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                qb.push(" AND search_attributes @> ")
                    .push_bind(Value::Object(all).to_string())
                    .push("::jsonb");
                for (k, v) in &filter.search_attributes {
                    qb.push(" AND search_attributes -> ")
                        .push_bind(k.clone())
                        .push(" = ")
                        .push_bind(v.to_string())
                        .push("::jsonb");
                }
            }
            qb.push(" ORDER BY started_at, saga_id COLLATE \"C\"");
            if let Some(limit) = filter.limit {
                qb.push(" LIMIT ")
                    .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            self.count(1);
            let rows = qb
                .build()
                .fetch_all(conn)
                .await
                .map_err(|e| unavailable("list executions", e))?;
            rows.iter()
                .map(|row| {
                    let saga_id: String = col(row, 0, "execution", ("saga_id", "?"))?;
                    let key = ("saga_id", saga_id.as_str());
                    let version: i64 = col(row, 1, "version", key)?;
                    let workflow_type: String = col(row, 2, "workflow type", key)?;
                    let status: Option<String> = col(row, 3, "status", key)?;
                    let started: Option<DateTime<Utc>> = col(row, 4, "start time", key)?;
                    let closed: Option<DateTime<Utc>> = col(row, 5, "close time", key)?;
                    let search: String = col(row, 6, "search attributes", key)?;
                    let updated: Option<DateTime<Utc>> = col(row, 7, "last event time", key)?;
                    summary_from_row(
                        saga_id.clone(),
                        version,
                        workflow_type,
                        status,
                        started,
                        closed,
                        updated,
                        &search,
                    )
                })
                .collect()
        })
        .await
    }
}

fn timer_error(what: &str, e: sqlx::Error) -> Error {
    db_error(ErrorKind::TimerStore, what, e)
}

#[async_trait]
impl TimerStore for PostgresStore {
    async fn create(&self, t: TimerRecord) -> Result<()> {
        self.pooled(ErrorKind::TimerStore, "create a timer", async |conn| {
            self.insert_timer(conn, &t).await
        })
        .await
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
        self.pooled(ErrorKind::TimerStore, "claim due timers", async |conn| {
            let until = lease_until(now, lease);
            self.count(1);
            let rows = sqlx::query(
                "UPDATE saga_timers SET claimed_until = $2 WHERE timer_id IN ( \
                     SELECT timer_id FROM saga_timers \
                      WHERE fire_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1) \
                      ORDER BY fire_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING timer_id, saga_id, kind, fire_at, attributes::text",
            )
            .bind(now)
            .bind(until)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(conn)
            .await
            .map_err(|e| timer_error("claim due timers", e))?;
            let mut timers = rows
                .iter()
                .map(timer_from_row)
                .collect::<Result<Vec<_>>>()?;
            timers.sort_by(|a, b| {
                a.fire_at
                    .cmp(&b.fire_at)
                    .then_with(|| a.timer_id.cmp(&b.timer_id))
            });
            Ok(timers)
        })
        .await
    }

    async fn complete(&self, timer_id: &str) -> Result<()> {
        self.cancel(timer_id).await.map(|_| ())
    }

    async fn cancel(&self, timer_id: &str) -> Result<bool> {
        self.pooled(ErrorKind::TimerStore, "remove a timer", async |conn| {
            self.count(1);
            let r = sqlx::query("DELETE FROM saga_timers WHERE timer_id = $1")
                .bind(timer_id)
                .execute(conn)
                .await
                .map_err(|e| timer_error("remove a timer", e))?;
            Ok(r.rows_affected() > 0)
        })
        .await
    }

    async fn next_fire_at(&self) -> Result<Option<DateTime<Utc>>> {
        self.pooled(ErrorKind::TimerStore, "read the next timer", async |conn| {
            self.count(1);
            sqlx::query_scalar("SELECT min(fire_at) FROM saga_timers")
                .fetch_one(conn)
                .await
                .map_err(|e| timer_error("read the next timer", e))
        })
        .await
    }
}

/// One statement per workflow task, shared with the concurrent ones (group commit); a
/// transaction of its own only when it carries a snapshot.
#[async_trait]
impl WorkflowStore for PostgresStore {
    async fn commit(&self, c: Commit) -> Result<u64> {
        match route(c)? {
            Route::Group(g) => self
                .commit_grouped(vec![g])
                .await
                .pop()
                .unwrap_or_else(|| Err(group_commit::no_answer())),
            Route::Alone(c, insert, index) => self.commit_alone(c, insert, index).await,
        }
    }
}

/// How a commit is written.
enum Route {
    /// With the concurrent commits, in one statement.
    Group(group_commit::Grouped),
    /// On its own: it has no events, carries a snapshot, or its listing row must be
    /// rebuilt (`None`) from the row read under lock.
    Alone(Commit, bool, Option<IndexValues>),
}

/// Checks `c` and decides how it is written.
fn route(c: Commit) -> Result<Route> {
    validate_append(&c.saga_id, c.expected_version, &c.events)?;
    if c.events.is_empty() {
        return Ok(Route::Alone(c, false, None));
    }
    let (insert, index) = match exec_change(c.expected_version, &c.events) {
        ExecChange::Insert(s) => (true, Some(IndexValues::from_summary(s.as_ref()))),
        ExecChange::Update { status, search } => (
            false,
            Some(IndexValues {
                status: status.map(|(s, _)| status_name(s).to_owned()),
                closed_at: status.and_then(|(_, at)| at),
                search: Value::Object(search.into_iter().collect()),
                workflow_type: None,
                started_at: None,
            }),
        ),
        ExecChange::Rebuild => (false, None),
    };
    Ok(match index {
        Some(index) if c.snapshot.is_none() => Route::Group(group_commit::Grouped {
            commit: c,
            insert,
            index,
        }),
        index => Route::Alone(c, insert, index),
    })
}

impl PostgresStore {
    /// Commits several workflow tasks at once: those that can share a statement are
    /// written together (as concurrent [`WorkflowStore::commit`] calls are), the others
    /// one after another. Each succeeds or fails on its own, as if committed alone;
    /// the results are in the order of `commits`.
    pub async fn commit_all(&self, commits: Vec<Commit>) -> Vec<Result<u64>> {
        let mut results: Vec<Option<Result<u64>>> = Vec::with_capacity(commits.len());
        let mut grouped = Vec::new();
        let mut alone = Vec::new();
        for (i, c) in commits.into_iter().enumerate() {
            results.push(None);
            match route(c) {
                Ok(Route::Group(g)) => grouped.push((i, g)),
                Ok(Route::Alone(c, insert, index)) => alone.push((i, c, insert, index)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let (at, groups): (Vec<usize>, Vec<_>) = grouped.into_iter().unzip();
        for (i, r) in at.into_iter().zip(self.commit_grouped(groups).await) {
            results[i] = Some(r);
        }
        for (i, c, insert, index) in alone {
            results[i] = Some(self.commit_alone(c, insert, index).await);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(group_commit::no_answer())))
            .collect()
    }

    /// A commit in a statement (or transaction) of its own.
    async fn commit_alone(
        &self,
        c: Commit,
        insert: bool,
        index: Option<IndexValues>,
    ) -> Result<u64> {
        self.pooled(
            ErrorKind::EventStore,
            "commit a workflow task",
            async |conn| {
                if c.events.is_empty() {
                    return self.commit_without_events(conn, &c).await;
                }
                let result = match (index, &c.snapshot) {
                    (Some(index), None) => self.run_commit(conn, &c, insert, index).await?,
                    (index, snapshot) => {
                        let mut tx = self.begin(conn).await?;
                        let index = match index {
                            Some(i) => i,
                            None => match self.rebuilt_index(&mut tx, &c).await? {
                                Ok(i) => i,
                                Err(actual) => {
                                    return Err(Error::conflict(
                                        c.saga_id.as_str(),
                                        c.expected_version,
                                        actual,
                                    ))
                                }
                            },
                        };
                        match self.run_commit(&mut tx, &c, insert, index).await? {
                            Ok(v) => {
                                if let Some(s) = snapshot {
                                    self.save_snapshot_in(&mut tx, s, c.max_snapshots).await?;
                                }
                                self.finish(tx).await?;
                                Ok(v)
                            }
                            Err(actual) => Err(actual),
                        }
                    }
                };
                match result {
                    Ok(v) => {
                        self.stats.commits.fetch_add(1, Ordering::Relaxed);
                        Ok(v)
                    }
                    Err(actual) => Err(Error::conflict(
                        c.saga_id.as_str(),
                        c.expected_version,
                        actual,
                    )),
                }
            },
        )
        .await
    }
}
