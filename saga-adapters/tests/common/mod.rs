//! Helpers shared by the adapter tests.
#![allow(dead_code)]

use std::future::Future;

/// Runs `f` to completion on a fresh runtime in another thread and returns its output:
/// lets a synchronous callback (the corruption hook of a scenario) run async SQL while
/// the test's own runtime is blocked in it.
pub fn block_on_side<T: Send>(f: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("side runtime")
                .block_on(f)
        })
        .join()
        .expect("side thread")
    })
}

#[cfg(feature = "sqlite")]
pub mod sqlite {
    use std::path::Path;

    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::ConnectOptions;

    /// Runs one statement on the database file at `path` through its own connection
    /// (as an operator with the `sqlite3` shell would); returns the rows changed.
    pub async fn exec(path: &Path, sql: &str) -> u64 {
        let mut conn = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
            .expect("open the SQLite file");
        sqlx::query(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"))
            .rows_affected()
    }

    /// Reads one text column of the first row of `sql`.
    pub async fn text(path: &Path, sql: &str) -> Option<String> {
        let mut conn = SqliteConnectOptions::new()
            .filename(path)
            .connect()
            .await
            .expect("open the SQLite file");
        sqlx::query_scalar(sql)
            .fetch_optional(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"))
    }
}

pub mod held {
    //! `Held<S>`: a store whose every call holds tokio's paused clock.
    //!
    //! On a paused clock (`start_paused = true`) tokio advances time whenever the
    //! runtime has nothing to do, and waiting for a database counts as nothing to do:
    //! while a commit waits for its fsync, the in-memory parts of the engine (queue
    //! fetch timeouts, the timer loop) let virtual time run ahead by minutes, and a
    //! 60 s sleep can fire before a signal sent "at once" is recorded. Tokio holds the
    //! clock while a blocking-pool task runs, so each call here runs beside a blocking
    //! task that lasts exactly as long as the call. (On a multi-threaded runtime the
    //! clock is not paused and this costs one blocking-pool handoff.)

    use std::future::Future;
    use std::time::Duration;

    use async_trait::async_trait;
    use chrono::{DateTime, Utc};
    use saga_runtime::domain::{HistoryEvent, SagaId};
    use saga_runtime::port::{
        Commit, DefinitionStore, EventStore, ExecutionFilter, ExecutionSummary, Outbox, Snapshot,
        Task, TimerRecord, TimerStore, WorkflowDefinition, WorkflowStore,
    };
    use saga_runtime::Result;

    /// Wraps a store so that its calls hold the paused clock.
    #[derive(Clone, Debug)]
    pub struct Held<S>(pub S);

    async fn hold<F: Future>(f: F) -> F::Output {
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let guard = tokio::task::spawn_blocking(move || {
            let _ = wait.recv();
        });
        let out = f.await;
        drop(done);
        let _ = guard.await;
        out
    }

    #[async_trait]
    impl<S: EventStore> EventStore for Held<S> {
        async fn append(&self, id: &SagaId, v: u64, events: Vec<HistoryEvent>) -> Result<u64> {
            hold(self.0.append(id, v, events)).await
        }
        async fn history_from(&self, id: &SagaId, from: u64) -> Result<Vec<HistoryEvent>> {
            hold(self.0.history_from(id, from)).await
        }
        async fn version(&self, id: &SagaId) -> Result<u64> {
            hold(self.0.version(id)).await
        }
        async fn save_snapshot(&self, s: Snapshot, max: u32) -> Result<()> {
            hold(self.0.save_snapshot(s, max)).await
        }
        async fn latest_snapshot(&self, id: &SagaId) -> Result<Option<Snapshot>> {
            hold(self.0.latest_snapshot(id)).await
        }
        async fn snapshots(&self, id: &SagaId) -> Result<Vec<Snapshot>> {
            hold(self.0.snapshots(id)).await
        }
        async fn list_executions(&self, f: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
            hold(self.0.list_executions(f)).await
        }
    }

    #[async_trait]
    impl<S: TimerStore> TimerStore for Held<S> {
        async fn create(&self, t: TimerRecord) -> Result<()> {
            hold(self.0.create(t)).await
        }
        async fn claim_due(
            &self,
            now: DateTime<Utc>,
            limit: usize,
            lease: Duration,
        ) -> Result<Vec<TimerRecord>> {
            hold(self.0.claim_due(now, limit, lease)).await
        }
        async fn complete(&self, id: &str) -> Result<()> {
            hold(self.0.complete(id)).await
        }
        async fn cancel(&self, id: &str) -> Result<bool> {
            hold(self.0.cancel(id)).await
        }
        async fn next_fire_at(&self) -> Result<Option<DateTime<Utc>>> {
            hold(self.0.next_fire_at()).await
        }
    }

    #[async_trait]
    impl<S: DefinitionStore> DefinitionStore for Held<S> {
        async fn register_definition(&self, d: WorkflowDefinition) -> Result<()> {
            hold(self.0.register_definition(d)).await
        }
        async fn definitions(&self) -> Result<Vec<WorkflowDefinition>> {
            hold(self.0.definitions()).await
        }
        async fn definition(&self, workflow_type: &str) -> Result<Option<WorkflowDefinition>> {
            hold(self.0.definition(workflow_type)).await
        }
    }

    #[async_trait]
    impl<S: WorkflowStore> WorkflowStore for Held<S> {
        async fn commit(&self, c: Commit) -> Result<u64> {
            hold(self.0.commit(c)).await
        }
    }

    #[async_trait]
    impl<S: WorkflowStore> Outbox for Held<S> {
        async fn claim_tasks(
            &self,
            now: DateTime<Utc>,
            lease: Duration,
            limit: usize,
        ) -> Result<Vec<Task>> {
            hold(self.0.claim_tasks(now, lease, limit)).await
        }
        async fn settle_tasks(&self, saga_id: &SagaId, ids: &[String]) -> Result<()> {
            hold(self.0.settle_tasks(saga_id, ids)).await
        }
        async fn defer_tasks(
            &self,
            saga_id: &SagaId,
            ids: &[String],
            until: DateTime<Utc>,
        ) -> Result<()> {
            hold(self.0.defer_tasks(saga_id, ids, until)).await
        }
        async fn outbox_len(&self) -> Result<u64> {
            hold(self.0.outbox_len()).await
        }
        async fn unsettled_tasks(&self, saga_id: &SagaId) -> Result<Vec<String>> {
            hold(self.0.unsettled_tasks(saga_id)).await
        }
    }
}

#[cfg(feature = "postgres")]
pub mod pg {
    //! Test isolation on PostgreSQL: every test gets its own schema, dropped at the end
    //! (also when the test fails). A missing server fails the test when `CI` is set,
    //! and skips it (with the reason printed) otherwise.

    use std::future::Future;
    use std::panic::{resume_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use futures_util::FutureExt;
    use saga_adapters::PostgresConfig;
    use sqlx::{Connection, PgConnection};

    /// `DATABASE_URL`, or the development and CI server.
    pub fn url() -> String {
        std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// A schema name no other run uses.
    pub fn unique_schema() -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        format!(
            "saga_test_{nanos:x}_{:x}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// An admin connection, or `None` (skip) when the server is down and CI is unset.
    pub async fn admin() -> Option<PgConnection> {
        let url = url();
        match PgConnection::connect(&url).await {
            Ok(c) => Some(c),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("PostgreSQL at {url} is required (CI is set) but unreachable: {e}")
            }
            Err(e) => {
                eprintln!(
                    "SKIPPED: PostgreSQL at {url} is unreachable ({e}); \
                     start it or set DATABASE_URL (with CI set this test fails)"
                );
                None
            }
        }
    }

    /// The store settings for `schema`: a small pool, and acquire and reply timeouts
    /// long enough for tokio's paused clock (which jumps ahead when the runtime idles,
    /// waiting on the database included).
    pub fn config(schema: &str) -> PostgresConfig {
        PostgresConfig {
            max_connections: 6,
            acquire_timeout: Duration::from_secs(24 * 3600),
            reply_timeout: Duration::from_secs(24 * 3600),
            ..PostgresConfig::new(url()).schema(schema)
        }
    }

    /// Runs `f` with a fresh schema's settings, then drops the schema.
    pub async fn with_schema<Fut>(f: impl FnOnce(PostgresConfig) -> Fut)
    where
        Fut: Future<Output = ()>,
    {
        let Some(mut admin) = admin().await else {
            return;
        };
        let schema = unique_schema();
        let outcome = AssertUnwindSafe(f(config(&schema))).catch_unwind().await;
        let dropped = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .execute(&mut admin)
            .await;
        if let Err(e) = dropped {
            eprintln!("could not drop test schema {schema}: {e}");
        }
        if let Err(panic) = outcome {
            resume_unwind(panic);
        }
    }

    /// Runs one statement in `schema` through its own connection (as an operator with
    /// `psql` would); returns the rows changed.
    pub async fn exec(schema: &str, sql: &str) -> u64 {
        let mut conn = PgConnection::connect(&url()).await.expect("connect");
        sqlx::query(&format!("SET search_path TO \"{schema}\""))
            .execute(&mut conn)
            .await
            .expect("set search_path");
        sqlx::query(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"))
            .rows_affected()
    }
}

#[cfg(feature = "nats")]
pub mod nats {
    //! Test isolation on NATS: every test gets its own streams and subjects (a unique
    //! namespace), deleted at the end (also when the test fails). A missing server
    //! fails the test when `CI` is set, and skips it (with the reason printed)
    //! otherwise.

    use std::future::Future;
    use std::panic::{resume_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};

    use futures_util::FutureExt;
    use saga_adapters::{NatsConfig, NatsTaskQueue};

    /// `NATS_URL`, or the development and CI server.
    pub fn url() -> String {
        std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
    }

    /// A namespace no other run uses (letters, digits, `_`).
    pub fn unique_namespace() -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        format!(
            "t{nanos:x}_{:x}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A client, or `None` (skip) when the server is down and CI is unset.
    pub async fn client() -> Option<async_nats::Client> {
        let url = url();
        match async_nats::connect(&url).await {
            Ok(c) => Some(c),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("NATS at {url} is required (CI is set) but unreachable: {e}")
            }
            Err(e) => {
                eprintln!(
                    "SKIPPED: NATS at {url} is unreachable ({e}); start it (see .ci/run) \
                     or set NATS_URL (with CI set this test fails)"
                );
                None
            }
        }
    }

    /// Runs `f` with a fresh namespace's settings (adjusted by `tune`), then deletes the
    /// namespace's streams.
    pub async fn with_namespace<Fut>(
        tune: impl FnOnce(NatsConfig) -> NatsConfig,
        f: impl FnOnce(NatsConfig) -> Fut,
    ) where
        Fut: Future<Output = ()>,
    {
        if client().await.is_none() {
            return;
        }
        let config = tune(NatsConfig::namespaced(&unique_namespace()));
        let outcome = AssertUnwindSafe(f(config.clone())).catch_unwind().await;
        match NatsTaskQueue::connect(&url(), config.clone()).await {
            Ok(q) => {
                if let Err(e) = q.delete_streams().await {
                    eprintln!("could not delete test streams {}: {e}", config.stream);
                }
            }
            Err(e) => eprintln!("could not clean up test streams {}: {e}", config.stream),
        }
        if let Err(panic) = outcome {
            resume_unwind(panic);
        }
    }

    /// Connects a queue with `config` (panics on failure: the server answered before).
    pub async fn queue(config: &NatsConfig) -> NatsTaskQueue {
        NatsTaskQueue::connect(&url(), config.clone())
            .await
            .expect("connect the NATS task queue")
    }

    /// An engine builder with every scenario fixture, on its own connections to the
    /// PostgreSQL store `pg` and the NATS task queue and signals of `nats`: one engine
    /// of a many-machine deployment.
    #[cfg(feature = "postgres")]
    pub async fn pg_engine(
        pg: &saga_adapters::PostgresConfig,
        nats: &NatsConfig,
    ) -> saga_runtime::engine::SagaEngineBuilder {
        let store = saga_adapters::PostgresStore::connect_with(pg.clone())
            .await
            .expect("connect PostgreSQL");
        let queue = queue(nats).await;
        saga_runtime::conformance::engine::builder(store)
            .signals(queue.signal_dispatcher())
            .queue(queue)
    }
}

pub mod proxy {
    //! A TCP proxy that can go silent the way a server gone without a reset does (a
    //! host gone, a network cut): it holds what it reads, passes nothing on, and
    //! closes nothing.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::{TcpListener, TcpStream};

    /// A TCP proxy to `upstream` that can go silent: while `silent`, it holds what it
    /// reads and passes nothing on, and closes nothing. [`Proxy::cut`] silences the
    /// connections open now for good, and passes new ones: a failover, as a client sees
    /// one (its old server gone without a word, a new one at the same address).
    pub struct Proxy {
        /// The port it listens on (127.0.0.1).
        pub port: u16,
        silent: Arc<AtomicBool>,
        /// Each connection's own silence, by connection.
        connections: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    }

    impl Proxy {
        /// A proxy to `upstream` (`host:port`).
        pub async fn start(upstream: String) -> Proxy {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("an address").port();
            let silent = Arc::new(AtomicBool::new(false));
            let connections = Arc::new(Mutex::new(Vec::new()));
            let (flag, all) = (silent.clone(), connections.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    let own = Arc::new(AtomicBool::new(false));
                    all.lock().expect("the list").push(own.clone());
                    let silence = [flag.clone(), own];
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pump(client_read, server_write, silence.clone()));
                    tokio::spawn(pump(server_read, client_write, silence));
                }
            });
            Proxy {
                port,
                silent,
                connections,
            }
        }

        /// Holds every connection's bytes while `yes`.
        pub fn go_silent(&self, yes: bool) {
            self.silent.store(yes, Ordering::SeqCst);
        }

        /// Silences every connection open now, for good; later ones pass.
        pub fn cut(&self) {
            for own in self.connections.lock().expect("the list").iter() {
                own.store(true, Ordering::SeqCst);
            }
        }
    }

    async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, silence: [Arc<AtomicBool>; 2]) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            while silence.iter().any(|s| s.load(Ordering::SeqCst)) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
}
