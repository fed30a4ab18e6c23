//! What a workflow step costs on each store: steps/s with 100 sagas in flight, SQL
//! statements and transactions per step (from the store's own counters), next to the
//! raw commit rate of the same database (single-row insert + commit).
//!
//!     cargo run --release -p saga-adapters --example step_cost -- [workflows] [in_flight]
//!
//! The workload is saga-5: five sequential no-op activities per workflow (the `chain`
//! fixture). PostgreSQL is `DATABASE_URL` or `postgres://postgres@127.0.0.1:5432/test`,
//! in a schema of its own, dropped at the end (`PG_POOL` sets the pool size, default
//! 32). Then the time to load one execution for replay (snapshot + the events after
//! it) at history lengths up to 51 200 events. For the numbers of record use saga-bench.

use std::sync::Arc;
use std::time::{Duration, Instant};

use saga_adapters::{
    PostgresConfig, PostgresStore, SqliteConfig, SqliteStore, StoreStats, Synchronous,
};
use saga_runtime::conformance::engine::builder;
use saga_runtime::conformance::fixtures::chain;
use saga_runtime::engine::SagaEngine;
use saga_runtime::port::WorkflowStore;
use sqlx::{ConnectOptions, Connection, Executor};

const STEPS: u32 = 5;

async fn run<S: WorkflowStore + Clone>(
    label: &str,
    store: S,
    stats: impl Fn() -> StoreStats,
    workflows: usize,
    in_flight: usize,
    raw: f64,
) {
    let engine = Arc::new(
        builder(store)
            .concurrency(in_flight.max(4))
            .timer_poll_interval(Duration::from_secs(1))
            .build()
            .await
            .expect("engine"),
    );
    let before = stats();
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (engine, next) = (engine.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= workflows {
                        return latencies;
                    }
                    let t = Instant::now();
                    let run = engine
                        .start::<chain>(format!("w-{in_flight}-{i}"), STEPS)
                        .await
                        .expect("start");
                    run.result().await.expect("result");
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = stats();
    let steps = (workflows * STEPS as usize) as f64;
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    println!(
        "{label:<22} in_flight={in_flight:<3} {:>8.0} steps/s {:>7.0} wf/s  p50={:>6.1?}  \
         {:.2} statements/step  {:.3} transactions/step  {:.2} commits/step  raw={raw:.0} commits/s  ratio={:.2}",
        steps / elapsed,
        workflows as f64 / elapsed,
        p50,
        (after.statements - before.statements) as f64 / steps,
        (after.transactions - before.transactions) as f64 / steps,
        (after.commits - before.commits) as f64 / steps,
        steps / elapsed / raw,
    );
    if let Ok(engine) = Arc::try_unwrap(engine) {
        SagaEngine::shutdown(engine).await;
    }
}

/// Single-row insert + commit, one connection (SQLite serializes writers anyway).
async fn raw_sqlite(sync: Synchronous, n: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("raw.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(match sync {
            Synchronous::Full => sqlx::sqlite::SqliteSynchronous::Full,
            Synchronous::Normal => sqlx::sqlite::SqliteSynchronous::Normal,
        })
        .connect()
        .await
        .unwrap();
    conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
    let t = Instant::now();
    for i in 0..n {
        sqlx::query("INSERT INTO raw (v) VALUES (?)")
            .bind(format!("row-{i}"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Single-row insert + commit from `CLIENTS` concurrent connections (PostgreSQL here
/// allows 100 connections in all, a few of them reserved).
const CLIENTS: usize = 90;

async fn raw_postgres(url: &str, schema: &str, n: usize) -> f64 {
    let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
    admin
        .execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str())
        .await
        .unwrap();
    let opts: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let opts = opts.options([("search_path", schema)]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(CLIENTS as u32)
        .connect_with(opts)
        .await
        .unwrap();
    pool.execute("CREATE TABLE raw (id bigserial PRIMARY KEY, v text)")
        .await
        .unwrap();
    let t = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for i in 0..n / CLIENTS {
                    sqlx::query("INSERT INTO raw (v) VALUES ($1)")
                        .bind(format!("row-{w}-{i}"))
                        .execute(&pool)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Time to load one execution for replay (newest snapshot + the events after it) at
/// growing history lengths, with a snapshot every 100 events as the engine takes them.
async fn load_time<S: WorkflowStore>(label: &str, store: S) {
    use saga_runtime::domain::{EventType, HistoryEvent, SagaId};
    use saga_runtime::port::{HistoryReplayer, StoreReplayer};
    let store: Arc<S> = Arc::new(store);
    let replayer = StoreReplayer::new(store.clone());
    for len in [100u64, 800, 6_400, 51_200] {
        let id = SagaId::new(format!("replay-{len}"));
        let mut v = 0;
        while v < len {
            let n = (len - v).min(500);
            let events = (v..v + n)
                .map(|i| {
                    let t = if i == 0 {
                        EventType::WorkflowExecutionStarted
                    } else {
                        EventType::ActivityTaskCompleted
                    };
                    let attrs = serde_json::json!({"workflow_type": "chain", "seq": i,
                        "output": {"order_id": "order-456", "amount": 99.99}});
                    HistoryEvent::new(id.clone(), i, t, chrono::Utc::now(), attrs, "t".into())
                })
                .collect();
            v = store.append(&id, v, events).await.unwrap();
        }
        // The newest snapshot 50 events back (the engine snapshots every 100).
        let state = vec![b'x'; 2_000];
        let snap = saga_runtime::snapshot::seal(
            id.clone(),
            len - 51,
            "json",
            state,
            true,
            chrono::Utc::now(),
        );
        store.save_snapshot(snap, 5).await.unwrap();
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let loaded = replayer.load(&id).await.unwrap();
            times.push(t.elapsed());
            assert_eq!(loaded.events.len(), 50);
        }
        times.sort();
        println!(
            "{label:<22} load for replay, history {len:>6} events: p50={:?} p99={:?}",
            times[times.len() / 2],
            times[times.len() * 99 / 100]
        );
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let workflows = args.first().copied().unwrap_or(2_000);
    let in_flight = args.get(1).copied().unwrap_or(100);
    // The engine alone, for scale (no statements, no raw rate: ratio is steps/s).
    run(
        "memory",
        saga_runtime::adapter::memory::InMemoryStore::new(),
        StoreStats::default,
        workflows,
        in_flight,
        1.0,
    )
    .await;
    for sync in [Synchronous::Normal, Synchronous::Full] {
        let raw = raw_sqlite(sync, 5_000).await;
        for c in [in_flight, 1] {
            let dir = tempfile::tempdir().unwrap();
            let config = SqliteConfig {
                synchronous: sync,
                ..SqliteConfig::default()
            };
            let store = SqliteStore::open_with(dir.path().join("saga.db"), config)
                .await
                .unwrap();
            let n = if c == 1 { workflows / 10 } else { workflows };
            let s = store.clone();
            run(
                &format!("sqlite {sync:?}"),
                store,
                move || s.stats(),
                n,
                c,
                raw,
            )
            .await;
        }
    }
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("saga_bench_{}", std::process::id());
    let raw = raw_postgres(&url, &schema, 20_000).await;
    for c in [in_flight, 1] {
        let store = PostgresStore::connect_with(PostgresConfig {
            max_connections: std::env::var("PG_POOL")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(32),
            ..PostgresConfig::new(&url).schema(&schema)
        })
        .await
        .unwrap();
        let n = if c == 1 { workflows / 10 } else { workflows };
        let s = store.clone();
        run("postgres", store, move || s.stats(), n, c, raw).await;
    }
    let store = PostgresStore::connect_with(PostgresConfig::new(&url).schema(&schema))
        .await
        .unwrap();
    load_time("postgres", store).await;
    load_time("sqlite", SqliteStore::open_temporary().await.unwrap()).await;
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    admin
        .execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
        .await
        .unwrap();
}
