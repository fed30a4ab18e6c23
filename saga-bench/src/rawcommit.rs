//! The raw commit rate of a durable backend, the physical reference for its saga-5
//! figures: single-row `INSERT` + commit (autocommit), 100 concurrent writer tasks, the
//! same durability settings as the store, for a fixed time. Saga-5 measures it on both
//! sides of its throughput run ([`bracketed`]); its latency figure carries the time of
//! one commit at concurrency 1 ([`postgres_commit_latency`]).
//!
//! - SQLite: a new file in WAL mode with the same `PRAGMA synchronous`. SQLite admits one
//!   writer at a time, so the 100 writers share one connection (a sqlx pool of 1):
//!   every insert is its own transaction and its own commit, as in `step_cost`.
//! - PostgreSQL: a schema of its own (dropped afterwards), `synchronous_commit` as the
//!   server has it (on here); [`PG_RAW_CONNECTIONS`] writers, each on a connection of
//!   its own (the server allows 100 in all, 3 reserved, and other sessions use some).
//!   Not a sqlx pool: it pings a connection on every return, a second round trip per
//!   commit that the store's commits do not pay either.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use saga_adapters::Synchronous;
use sqlx::Executor;
use tokio::task::JoinSet;

use crate::backend::{drop_schema, fresh_schema, sync_name};
use crate::report::{
    load_average, machine_busy, machine_busy_since, median, round, Measurement, Reporter,
};
use crate::{BenchResult, Settings};

/// Concurrent writer tasks (SQLite).
pub(crate) const WRITERS: u64 = 100;

/// PostgreSQL writers, each with its connection.
pub(crate) const PG_RAW_CONNECTIONS: u32 = 80;

/// Concurrent writers on `backend`.
pub(crate) fn writers(backend: &str) -> u64 {
    if backend == "sqlite" {
        WRITERS
    } else {
        u64::from(PG_RAW_CONNECTIONS)
    }
}

/// How long each timed run inserts.
const RUN: Duration = Duration::from_secs(3);

/// One insert's future.
type Insert<'a> = Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'a>>;

/// One timed run's commits: per second, and per second of the machine's busy CPU
/// ([`crate::report::machine_busy`]; `None` where it cannot be read).
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_sec: f64,
    per_busy_sec: Option<f64>,
}

/// One task per writer, each calling `insert` on its own `W` (one row, one commit)
/// until `RUN` is over.
async fn hammer<W: Send + 'static>(
    writers: Vec<W>,
    insert: for<'a> fn(&'a mut W, String) -> Insert<'a>,
) -> BenchResult<Rate> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let busy_before = machine_busy();
    let started = Instant::now();
    for (w, mut writer) in writers.into_iter().enumerate() {
        let (stop, done) = (stop.clone(), done.clone());
        tasks.spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                insert(&mut writer, format!("row-{w}-{i}")).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok::<W, sqlx::Error>(writer)
        });
    }
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(joined) = tasks.join_next().await {
        drop(joined??);
    }
    let elapsed = started.elapsed();
    let busy = machine_busy_since(busy_before).filter(|b| !b.is_zero());
    let done = done.load(Ordering::Relaxed) as f64;
    Ok(Rate {
        per_sec: done / elapsed.as_secs_f64(),
        per_busy_sec: busy.map(|b| done / b.as_secs_f64()),
    })
}

/// One timed run on a new SQLite file.
async fn sqlite_run(sync: Synchronous) -> BenchResult<Rate> {
    let dir = tempfile::Builder::new()
        .prefix("saga-bench-raw-")
        .tempdir()?;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("raw.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(match sync {
            Synchronous::Full => sqlx::sqlite::SqliteSynchronous::Full,
            Synchronous::Normal => sqlx::sqlite::SqliteSynchronous::Normal,
        })
        .busy_timeout(Duration::from_secs(5));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    pool.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        .await?;
    let writers = vec![pool.clone(); WRITERS as usize];
    let rate = hammer(writers, |p, v| {
        Box::pin(async move {
            sqlx::query("INSERT INTO raw (v) VALUES (?)")
                .bind(v)
                .execute(&*p)
                .await
                .map(drop)
        })
    })
    .await?;
    pool.close().await;
    dir.close()?;
    Ok(rate)
}

/// For comparison with `step_cost`: one connection inserting in a loop (no pool, no
/// concurrency), on a new SQLite file; commits per second over `RUN`.
async fn sqlite_sequential(sync: Synchronous) -> BenchResult<f64> {
    use sqlx::ConnectOptions;
    let dir = tempfile::Builder::new()
        .prefix("saga-bench-raw-")
        .tempdir()?;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("raw.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(match sync {
            Synchronous::Full => sqlx::sqlite::SqliteSynchronous::Full,
            Synchronous::Normal => sqlx::sqlite::SqliteSynchronous::Normal,
        })
        .connect()
        .await?;
    conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        .await?;
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < RUN {
        sqlx::query("INSERT INTO raw (v) VALUES (?)")
            .bind(format!("row-{i}"))
            .execute(&mut conn)
            .await?;
        i += 1;
    }
    let rate = i as f64 / started.elapsed().as_secs_f64();
    sqlx::Connection::close(conn).await?;
    dir.close()?;
    Ok(rate)
}

/// Creates `schema` and returns the options of a connection working in it.
async fn create_schema(url: &str, schema: &str) -> BenchResult<sqlx::postgres::PgConnectOptions> {
    let mut admin: sqlx::PgConnection = sqlx::Connection::connect(url).await?;
    admin
        .execute(format!("CREATE SCHEMA \"{schema}\"").as_str())
        .await?;
    sqlx::Connection::close(admin).await?;
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    Ok(options.options([("search_path", schema)]))
}

/// One timed run in a new PostgreSQL schema.
async fn postgres_run(url: &str) -> BenchResult<Rate> {
    let schema = fresh_schema();
    let result = async {
        let options = create_schema(url, &schema).await?;
        let mut writers = Vec::with_capacity(PG_RAW_CONNECTIONS as usize);
        for _ in 0..PG_RAW_CONNECTIONS {
            let conn: sqlx::PgConnection = sqlx::Connection::connect_with(&options).await?;
            writers.push(conn);
        }
        writers[0]
            .execute("CREATE TABLE raw (id bigserial PRIMARY KEY, v text NOT NULL)")
            .await?;
        hammer(writers, |conn, v| {
            Box::pin(async move {
                sqlx::query("INSERT INTO raw (v) VALUES ($1)")
                    .bind(v)
                    .execute(&mut *conn)
                    .await
                    .map(drop)
            })
        })
        .await
    }
    .await;
    drop_schema(url, &schema).await?;
    result
}

/// One-row commits timed one at a time for the latency floor, after a few untimed.
const FLOOR_COMMITS: usize = 200;

/// The median time of one single-row `INSERT` + commit at concurrency 1, in a new
/// PostgreSQL schema: what each durable step of a saga waits for at least.
///
/// Why: saga-5 at one in flight makes six commits one after another (the start, then
/// one per step), so six of these are the floor of its latency on this machine at this
/// time. The machine's disk varies from hour to hour by more than the engine's own
/// share of a saga's latency, so the latency figure carries the floor measured in the
/// same minute.
pub(crate) async fn postgres_commit_latency(url: &str) -> BenchResult<Duration> {
    let schema = fresh_schema();
    let result = async {
        let options = create_schema(url, &schema).await?;
        let mut conn: sqlx::PgConnection = sqlx::Connection::connect_with(&options).await?;
        conn.execute("CREATE TABLE raw (id bigserial PRIMARY KEY, v text NOT NULL)")
            .await?;
        let mut times = Vec::with_capacity(FLOOR_COMMITS);
        for i in 0..FLOOR_COMMITS + FLOOR_COMMITS / 10 {
            let t = Instant::now();
            sqlx::query("INSERT INTO raw (v) VALUES ($1)")
                .bind(format!("row-{i}"))
                .execute(&mut conn)
                .await?;
            if i >= FLOOR_COMMITS / 10 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        sqlx::Connection::close(conn).await?;
        Ok::<_, crate::BoxError>(Duration::from_secs_f64(median(&mut times)))
    }
    .await;
    drop_schema(url, &schema).await?;
    result
}

/// The raw commit rate: medians of `repeat` runs after a warm-up.
pub(crate) struct CommitRate {
    /// Commits per second (median), and each run's.
    pub(crate) per_sec: f64,
    pub(crate) runs: Vec<f64>,
    /// Commits per second of the machine's busy CPU (median), where it can be read.
    pub(crate) per_busy_sec: Option<f64>,
}

/// The raw commit rate of `s`'s backend.
pub(crate) async fn commits_per_sec(s: &Settings) -> BenchResult<CommitRate> {
    let once = || async {
        match s.backend {
            "sqlite" => sqlite_run(s.sync).await,
            // With NATS as the queue, the store is still the commit that counts.
            "postgres" | "postgres+nats" => postgres_run(&s.database_url).await,
            other => Err(format!("backend `{other}` has no raw commit rate").into()),
        }
    };
    once().await?; // warm-up (page cache, WAL files, server buffers)
    let mut rates = Vec::with_capacity(s.repeat);
    for _ in 0..s.repeat {
        rates.push(once().await?);
    }
    let mut per_sec: Vec<f64> = rates.iter().map(|r| r.per_sec).collect();
    let runs = per_sec.iter().map(|r| round(*r, 0)).collect();
    let per_busy_sec: Option<Vec<f64>> = rates.iter().map(|r| r.per_busy_sec).collect();
    Ok(CommitRate {
        per_sec: median(&mut per_sec),
        runs,
        per_busy_sec: per_busy_sec.map(|mut v| median(&mut v)),
    })
}

/// The raw-commit measurement, under `scenario`.
pub(crate) async fn measurement(scenario: &'static str, s: &Settings) -> BenchResult<Measurement> {
    let CommitRate {
        per_sec: rate,
        runs,
        per_busy_sec,
    } = commits_per_sec(s).await?;
    let mut m = Measurement::new(scenario, "baseline-commit", s.backend, s.codec_name())
        .with("commits_per_sec", round(rate, 0))
        .with("runs_commits_per_sec", runs)
        .with(
            "commits_per_machine_cpu_sec",
            per_busy_sec.map(|r| round(r, 0)),
        )
        .with("writers", writers(s.backend))
        .with("load_avg", load_average());
    if s.backend == "sqlite" {
        let sequential = sqlite_sequential(s.sync).await?;
        m = m
            .with("synchronous", sync_name(s.sync))
            .with("connections", 1)
            .with("sequential_commits_per_sec", round(sequential, 0));
    } else {
        let mut admin: sqlx::PgConnection = sqlx::Connection::connect(&s.database_url).await?;
        let (sync,): (String,) = sqlx::query_as("SHOW synchronous_commit")
            .fetch_one(&mut admin)
            .await?;
        sqlx::Connection::close(admin).await?;
        m = m
            .with("synchronous_commit", sync)
            .with("connections", PG_RAW_CONNECTIONS);
    }
    m.concurrency = Some(writers(s.backend));
    // One commit is the reference for one step.
    m.steps_per_sec = Some(round(rate, 0));
    Ok(m.against(rate))
}

/// `before` (a [`measurement`]) with the rate measured again after the engine's run,
/// `after`: its rates become the means of the two, and the line keeps both.
///
/// Why: the ratio of saga-5's throughput to the raw commit rate is the target, and
/// this machine's disk and CPU drift by 10-40 % within minutes; a baseline measured on
/// both sides of the engine's run is the reference for the minutes the engine ran in,
/// where one measured before it is only the reference for the minute before.
pub(crate) fn bracketed(before: Measurement, after: &CommitRate) -> Measurement {
    let field = |k: &str| before.extra.get(k).and_then(serde_json::Value::as_f64);
    let (Some(rate_before), busy_before) = (
        field("commits_per_sec"),
        field("commits_per_machine_cpu_sec"),
    ) else {
        return before;
    };
    let rate = (rate_before + after.per_sec) / 2.0;
    let per_busy_sec = busy_before
        .zip(after.per_busy_sec)
        .map(|(a, b)| round((a + b) / 2.0, 0));
    let mut m = before
        .with("commits_per_sec", round(rate, 0))
        .with("commits_per_sec_before", round(rate_before, 0))
        .with("commits_per_sec_after", round(after.per_sec, 0))
        .with("runs_commits_per_sec_after", after.runs.clone())
        .with("commits_per_machine_cpu_sec", per_busy_sec);
    m.steps_per_sec = Some(round(rate, 0));
    m.against(rate)
}

/// The `baseline` scenario on a durable backend.
pub(crate) async fn run(s: &Settings, out: &mut Reporter) -> BenchResult {
    eprintln!(
        "baseline: raw single-row insert + commit, {} writers, {} runs of {RUN:?}",
        writers(s.backend),
        s.repeat
    );
    out.emit(measurement("baseline", s).await?);
    out.flush("baseline: raw single-row insert + commit rate");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn before(rate: f64, busy: f64) -> Measurement {
        let mut m = Measurement::new("saga-5", "baseline-commit", "postgres", "json")
            .with("commits_per_sec", rate)
            .with("commits_per_machine_cpu_sec", busy);
        m.steps_per_sec = Some(rate);
        m.against(rate)
    }

    #[test]
    fn a_bracketed_baseline_is_the_mean_of_both_sides_and_keeps_each() {
        let after = CommitRate {
            per_sec: 7_000.0,
            runs: vec![6_900.0, 7_000.0, 7_100.0],
            per_busy_sec: Some(3_000.0),
        };
        let m = bracketed(before(11_000.0, 5_000.0), &after);
        let field = |k: &str| m.extra.get(k).and_then(serde_json::Value::as_f64);
        assert_eq!(m.steps_per_sec, Some(9_000.0));
        assert_eq!(m.baseline, Some(9_000.0));
        assert_eq!(field("commits_per_sec"), Some(9_000.0));
        assert_eq!(field("commits_per_sec_before"), Some(11_000.0));
        assert_eq!(field("commits_per_sec_after"), Some(7_000.0));
        assert_eq!(field("commits_per_machine_cpu_sec"), Some(4_000.0));
    }

    #[test]
    fn without_a_busy_cpu_reading_on_one_side_the_bracketed_line_has_none() {
        let after = CommitRate {
            per_sec: 7_000.0,
            runs: vec![7_000.0],
            per_busy_sec: None,
        };
        let m = bracketed(before(11_000.0, 5_000.0), &after);
        assert_eq!(m.steps_per_sec, Some(9_000.0));
        assert_eq!(
            m.extra.get("commits_per_machine_cpu_sec"),
            Some(&serde_json::Value::Null)
        );
    }
}
