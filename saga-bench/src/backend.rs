//! The durable backends: a fresh, isolated store per timed run, its statement counters,
//! and clean-up.
//!
//! - `sqlite`: a new database file in a temporary directory (removed on close), WAL,
//!   with `PRAGMA synchronous` from `--sync` (`normal` or `full`).
//! - `postgres`: a new schema `saga_bench_<pid>_<n>` on `--database-url` (default
//!   `postgres://postgres@127.0.0.1:5432/test`), dropped on close.
//! - `postgres+nats`: the same schema, and a NATS JetStream task queue and signals in a
//!   namespace of the run's own on `--nats-url` (streams deleted on close); with
//!   `--processes N`, N-1 more worker processes (`saga-bench worker`) serve the run
//!   beside this one, which also drives it. They stop when their stdin closes, and
//!   answer a line `counts` on it with their activity and statement counters
//!   ([`WorkerCounts`]), so the driving process checks and reports the run across all
//!   processes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use saga_adapters::{
    NatsConfig, NatsTaskQueue, PostgresConfig, PostgresStore, SqliteConfig, SqliteStore,
    StoreStats, Synchronous,
};
use saga_runtime::activity::activity;
use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::engine::{SagaEngine, SagaEngineBuilder};
use saga_runtime::port::EventStore;
use sqlx::{Connection, Executor};

use crate::{BenchResult, Settings};

/// The default PostgreSQL of this project's machines (trust auth).
pub(crate) const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Pooled connections of the engine's `PostgresStore` (as `step_cost` uses).
pub(crate) const DEFAULT_PG_POOL: u32 = 32;

/// The NATS server of this project's machines.
pub(crate) const DEFAULT_NATS_URL: &str = "127.0.0.1:4222";

/// The name of a `--sync` setting.
pub(crate) fn sync_name(sync: Synchronous) -> &'static str {
    match sync {
        Synchronous::Normal => "normal",
        Synchronous::Full => "full",
    }
}

/// A schema of this process's own: `saga_bench_<pid>_<n>`.
pub(crate) fn fresh_schema() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "saga_bench_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Drops `schema` and everything in it.
pub(crate) async fn drop_schema(url: &str, schema: &str) -> BenchResult {
    let mut admin = sqlx::PgConnection::connect(url).await?;
    admin
        .execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
        .await?;
    admin.close().await?;
    Ok(())
}

/// One store of the selected backend.
pub(crate) enum Store {
    Memory(InMemoryStore),
    Sqlite {
        store: SqliteStore,
        dir: tempfile::TempDir,
    },
    Postgres {
        store: Box<PostgresStore>,
        schema: String,
        url: String,
    },
    PostgresNats {
        store: Box<PostgresStore>,
        queue: Box<NatsTaskQueue>,
        schema: String,
        url: String,
        /// The other worker processes.
        workers: Mutex<Vec<Worker>>,
    },
}

/// A `saga-bench worker` process serving the run.
pub(crate) struct Worker {
    child: Child,
    /// Lines to it: `counts` asks for its counters; closing it stops the process.
    ask: ChildStdin,
    /// Its answers, a line each.
    answers: BufReader<ChildStdout>,
}

/// What a worker process asked `counts` answers: its engine's activity counters
/// ([`saga_runtime::engine::SagaEngine::metrics`]) and its store's statement counters
/// so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WorkerCounts {
    /// Activity attempts run.
    pub(crate) activity_attempts: u64,
    /// Of those, the ones dispatched eagerly (not through the broker).
    pub(crate) eager_activities: u64,
    /// What its store sent to the database.
    pub(crate) store: StoreStats,
}

impl WorkerCounts {
    /// The line a worker answers with.
    fn line(self) -> String {
        let st = self.store;
        format!(
            "counts {} {} {} {} {} {}",
            self.activity_attempts,
            self.eager_activities,
            st.statements,
            st.transactions,
            st.commits,
            st.batched_writes
        )
    }

    /// The counts of a worker's answer `line`.
    fn parse(line: &str) -> BenchResult<WorkerCounts> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            ["counts", attempts, eager, statements, transactions, commits, batched] => {
                Ok(WorkerCounts {
                    activity_attempts: attempts.parse()?,
                    eager_activities: eager.parse()?,
                    store: StoreStats {
                        statements: statements.parse()?,
                        transactions: transactions.parse()?,
                        commits: commits.parse()?,
                        batched_writes: batched.parse()?,
                    },
                })
            }
            _ => Err(format!("a worker process answered {line:?} to `counts`").into()),
        }
    }

    /// What was counted between `earlier` and these.
    pub(crate) fn since(self, earlier: WorkerCounts) -> WorkerCounts {
        WorkerCounts {
            activity_attempts: self.activity_attempts - earlier.activity_attempts,
            eager_activities: self.eager_activities - earlier.eager_activities,
            store: combine(self.store, earlier.store, |now, then| now - then),
        }
    }
}

/// Two stores' counters (or two readings of one) combined counter by counter: sums of
/// processes, differences of readings.
pub(crate) fn combine(a: StoreStats, b: StoreStats, op: impl Fn(u64, u64) -> u64) -> StoreStats {
    StoreStats {
        statements: op(a.statements, b.statements),
        transactions: op(a.transactions, b.transactions),
        commits: op(a.commits, b.commits),
        batched_writes: op(a.batched_writes, b.batched_writes),
    }
}

impl Worker {
    /// Asks the process for its counters and waits for the answer.
    fn counts(&mut self) -> BenchResult<WorkerCounts> {
        writeln!(self.ask, "counts")?;
        self.ask.flush()?;
        let mut line = String::new();
        if self.answers.read_line(&mut line)? == 0 {
            return Err("a worker process exited before answering `counts`".into());
        }
        WorkerCounts::parse(&line)
    }

    /// Closes its stdin (the process shuts its engine down) and waits for it to exit.
    fn stop(self) -> BenchResult {
        let Worker { mut child, ask, .. } = self;
        drop(ask);
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("a worker process ended with {status}").into());
        }
        Ok(())
    }
}

/// The store and task queue of a `postgres+nats` run (`schema`, `namespace`).
async fn postgres_nats(
    s: &Settings,
    schema: &str,
    namespace: &str,
) -> BenchResult<(PostgresStore, NatsTaskQueue)> {
    let store = PostgresStore::connect_with(PostgresConfig {
        max_connections: s.pg_pool,
        max_commit_batch: s.pg_commit_batch,
        commit_flushers: s.pg_commit_flushers,
        ..PostgresConfig::new(&s.database_url).schema(schema)
    })
    .await?;
    let config = NatsConfig {
        task_retention: s.nats_retention.retention(),
        ..NatsConfig::namespaced(namespace)
    };
    let queue = NatsTaskQueue::connect(&s.nats_url, config).await?;
    Ok((store, queue))
}

/// Worker loops per process: `--workers`, or what the driving process uses on a
/// database.
fn workers(s: &Settings) -> usize {
    s.workers.unwrap_or(crate::saga5::DURABLE_WORKERS)
}

/// Starts a `saga-bench worker` process for the run and waits until it serves.
fn spawn_worker(s: &Settings, schema: &str, namespace: &str) -> BenchResult<Worker> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["worker", "--backend", "postgres+nats"])
        .args(["--database-url", &s.database_url, "--nats-url", &s.nats_url])
        .args(["--pg-pool", &s.pg_pool.to_string()])
        .args(["--pg-commit-batch", &s.pg_commit_batch.to_string()])
        .args(["--nats-retention", &s.nats_retention.name()])
        .args(
            s.pg_commit_flushers
                .map(|f| ["--pg-commit-flushers".to_owned(), f.to_string()])
                .into_iter()
                .flatten(),
        )
        .args(["--workers", &workers(s).to_string()])
        .args(["--eager-activities", &s.eager_activities.to_string()])
        .args(["--schema", schema, "--nats-namespace", namespace])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let ask = child.stdin.take().ok_or("no stdin")?;
    let mut answers = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    answers.read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(format!("a worker process said {line:?}").into());
    }
    Ok(Worker {
        child,
        ask,
        answers,
    })
}

/// `saga-bench worker`: serves `saga-5` on the run's store and queue until stdin
/// closes (the driving process ended or dropped its store), answering each line
/// `counts` with its counters ([`WorkerCounts`]).
pub(crate) async fn serve_as_worker(s: &Settings) -> BenchResult {
    let (schema, namespace) = s
        .worker_of
        .clone()
        .ok_or("`worker` needs --schema and --nats-namespace")?;
    let (store, queue) = postgres_nats(s, &schema, &namespace).await?;
    // A clone shares the counters of the store the engine gets.
    let stats = store.clone();
    let engine = SagaEngine::builder()
        .store(store)
        .signals(queue.signal_dispatcher())
        .queue(queue)
        .workflow::<crate::workflows::saga_5>()
        .activities([activity::<crate::workflows::touch>()])
        .concurrency(workers(s))
        .eager_activities(s.eager_activities)
        .codec(s.codec)
        .recover_on_start(false)
        .build()
        .await?;
    println!("ready");
    let metrics = engine.metrics_handle();
    tokio::task::spawn_blocking(move || -> BenchResult {
        let mut stdout = std::io::stdout().lock();
        for line in std::io::stdin().lock().lines() {
            match line?.trim() {
                "counts" => {
                    let m = metrics.metrics();
                    let counts = WorkerCounts {
                        activity_attempts: m.activity_attempts,
                        eager_activities: m.eager_activities,
                        store: stats.stats(),
                    };
                    writeln!(stdout, "{}", counts.line())?;
                    stdout.flush()?;
                }
                other => return Err(format!("a worker got {other:?} on stdin").into()),
            }
        }
        Ok(())
    })
    .await??;
    engine.shutdown().await;
    Ok(())
}

impl Store {
    /// A new, empty store of `s.backend`.
    pub(crate) async fn open(s: &Settings) -> BenchResult<Store> {
        match s.backend {
            "memory" => Ok(Store::Memory(InMemoryStore::new())),
            "sqlite" => {
                let dir = tempfile::Builder::new().prefix("saga-bench-").tempdir()?;
                let config = SqliteConfig {
                    synchronous: s.sync,
                    ..SqliteConfig::default()
                };
                let store = SqliteStore::open_with(dir.path().join("saga.db"), config).await?;
                Ok(Store::Sqlite { store, dir })
            }
            "postgres" => {
                let schema = fresh_schema();
                let store = PostgresStore::connect_with(PostgresConfig {
                    max_connections: s.pg_pool,
                    max_commit_batch: s.pg_commit_batch,
                    commit_flushers: s.pg_commit_flushers,
                    ..PostgresConfig::new(&s.database_url).schema(&schema)
                })
                .await?;
                Ok(Store::Postgres {
                    store: Box::new(store),
                    schema,
                    url: s.database_url.clone(),
                })
            }
            "postgres+nats" => {
                let schema = fresh_schema();
                let namespace = schema.replace('_', "");
                let (store, queue) = postgres_nats(s, &schema, &namespace).await?;
                let workers = (1..s.processes)
                    .map(|_| spawn_worker(s, &schema, &namespace))
                    .collect::<BenchResult<Vec<_>>>()?;
                Ok(Store::PostgresNats {
                    store: Box::new(store),
                    queue: Box::new(queue),
                    schema,
                    url: s.database_url.clone(),
                    workers: Mutex::new(workers),
                })
            }
            other => Err(format!("backend `{other}` has no store here").into()),
        }
    }

    /// The store as an event store.
    pub(crate) fn events(&self) -> &dyn EventStore {
        match self {
            Store::Memory(m) => m,
            Store::Sqlite { store, .. } => store,
            Store::Postgres { store, .. } | Store::PostgresNats { store, .. } => store.as_ref(),
        }
    }

    /// A builder of an engine on this store.
    pub(crate) fn builder(&self) -> SagaEngineBuilder {
        let builder = SagaEngine::builder();
        match self {
            Store::Memory(m) => builder.store(m.clone()),
            Store::Sqlite { store, .. } => builder.store(store.clone()),
            Store::Postgres { store, .. } => builder.store(PostgresStore::clone(store)),
            Store::PostgresNats { store, queue, .. } => builder
                .store(PostgresStore::clone(store))
                .signals(queue.signal_dispatcher())
                .queue(NatsTaskQueue::clone(queue)),
        }
    }

    /// The counters of the other worker processes so far, each process's (none: no
    /// other process serves the run).
    pub(crate) fn worker_counts(&self) -> BenchResult<Vec<WorkerCounts>> {
        match self {
            Store::PostgresNats { workers, .. } => workers
                .lock()
                .map_err(|_| "a worker's pipe panicked")?
                .iter_mut()
                .map(Worker::counts)
                .collect(),
            _ => Ok(Vec::new()),
        }
    }

    /// What the run's NATS task stream holds now: tasks and their stored bytes
    /// (`None` without a broker). Under `--nats-retention max-age` a run shorter than
    /// the age still holds every task it published, acked or not: the disk that
    /// retention costs.
    pub(crate) async fn held_tasks(&self) -> BenchResult<Option<(u64, u64)>> {
        let Store::PostgresNats { queue, .. } = self else {
            return Ok(None);
        };
        let js = saga_adapters::async_nats::jetstream::new(queue.client().clone());
        let mut stream = js.get_stream(&queue.config().stream).await?;
        let state = &stream.info().await?.state;
        Ok(Some((state.messages, state.bytes)))
    }

    /// Statements and transactions so far (`None` for the in-memory store).
    pub(crate) fn stats(&self) -> Option<StoreStats> {
        match self {
            Store::Memory(_) => None,
            Store::Sqlite { store, .. } => Some(store.stats()),
            Store::Postgres { store, .. } | Store::PostgresNats { store, .. } => {
                Some(store.stats())
            }
        }
    }

    /// Frees the store: the in-memory histories on a thread of their own
    /// (`bench-teardown`), the SQLite directory, the PostgreSQL schema.
    pub(crate) async fn close(self) -> BenchResult {
        match self {
            Store::Memory(store) => {
                std::thread::Builder::new()
                    .name("bench-teardown".into())
                    .spawn(move || drop(store))?
                    .join()
                    .map_err(|_| "freeing the store panicked")?;
                Ok(())
            }
            Store::Sqlite { store, dir } => {
                drop(store);
                // The writer thread closes the file when its channel closes.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                dir.close()?;
                Ok(())
            }
            Store::Postgres { store, schema, url } => {
                store.pool().close().await;
                drop(store);
                drop_schema(&url, &schema).await
            }
            Store::PostgresNats {
                store,
                queue,
                schema,
                url,
                workers,
            } => {
                let workers = workers
                    .into_inner()
                    .map_err(|_| "a worker's pipe panicked")?;
                for w in workers {
                    w.stop()?;
                }
                queue.delete_streams().await?;
                store.pool().close().await;
                drop(store);
                drop_schema(&url, &schema).await
            }
        }
    }
}

/// Statements, transactions and commits per step between two readings of this
/// process's store, plus `elsewhere`: what the other worker processes' stores did
/// meanwhile (each batches only its own commits, so the count depends on how many
/// processes share the work).
pub(crate) fn per_step(
    before: Option<StoreStats>,
    after: Option<StoreStats>,
    elsewhere: StoreStats,
    steps: u64,
) -> Option<(f64, f64, f64)> {
    let here = combine(after?, before?, |a, b| a - b);
    let all = combine(here, elsewhere, |a, b| a + b);
    let steps = steps.max(1) as f64;
    Some((
        all.statements as f64 / steps,
        all.transactions as f64 / steps,
        all.commits as f64 / steps,
    ))
}
