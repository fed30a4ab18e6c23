//! `saga-5`: five sequential no-op activities per workflow.
//!
//! - throughput: N workflows with C in flight (C driver tasks, each awaiting
//!   `engine.execute(..)`, or with `--start-then-result` `engine.start(..)` then
//!   `.result()`, before taking the next); workflows/s, steps/s
//!   (activities completed), and start-to-result percentiles under that load;
//! - latency: the same at concurrency 1;
//! - the plain-tokio baselines of [`crate::baseline`], in the same run, so that
//!   throughput is reported as a ratio to them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use saga_adapters::StoreStats;
use saga_runtime::activity::activity;
use saga_runtime::engine::{SagaEngine, StartOptions};
use tokio::task::JoinSet;

use crate::backend::{combine, per_step, sync_name, Store, WorkerCounts};
use crate::baseline::{self, Variant, STEPS};
use crate::report::{
    load_average, machine_busy, machine_busy_since, named_processes_cpu, process_cpu, round,
    Measurement, Reporter,
};
use crate::workflows::{saga_5, touch, Payload};
use crate::{BenchResult, Part, Settings};

/// Workflows for the throughput figure: a few seconds at the target rate.
pub(crate) const DEFAULT_WORKFLOWS: u64 = 20_000;

/// Workflows for the throughput figure on a database (SQLite, PostgreSQL).
pub(crate) const DURABLE_WORKFLOWS: u64 = 5_000;

/// At most this many workflows for the latency figure (one at a time).
const LATENCY_WORKFLOWS: u64 = 2_000;

/// At most this many on a database (an fsync per commit makes each one take ms).
const DURABLE_LATENCY_WORKFLOWS: u64 = 200;

/// Engine worker loops: the engine's own default. The sweep in BENCHMARKS.md (1 to 100)
/// showed no difference beyond the machine's noise.
pub(crate) const DEFAULT_WORKERS: usize = 32;

/// On a database, one worker loop per workflow in flight (100): workflow tasks that
/// commit at the same time share a transaction (group commit), as in `step_cost`.
pub(crate) const DURABLE_WORKERS: usize = 100;

/// An engine running `saga-5` on a fresh store of the selected backend.
pub(crate) struct Bench {
    pub(crate) engine: Arc<SagaEngine>,
    store: Store,
    /// Drive with `start` then `result` instead of `execute`.
    start_then_result: bool,
    /// Start with `StartOptions::eager`.
    eager_start: bool,
    /// The broker's process, when its CPU is measured (`postgres+nats`).
    broker: Option<&'static str>,
}

/// The NATS server's process name.
const NATS_SERVER: &str = "nats-server";

impl Bench {
    /// A new engine with `workers` worker loops, on a new, empty store.
    pub(crate) async fn new(s: &Settings, workers: usize) -> BenchResult<Bench> {
        let store = Store::open(s).await?;
        let engine = store
            .builder()
            .workflow::<saga_5>()
            .activities([activity::<touch>()])
            .concurrency(workers)
            .eager_activities(s.eager_activities)
            .eager_start_when_idle(s.eager_start_when_idle)
            .codec(s.codec)
            .recover_on_start(false)
            .build()
            .await?;
        Ok(Bench {
            engine: Arc::new(engine),
            store,
            start_then_result: s.start_then_result,
            eager_start: s.eager_start,
            broker: (s.backend == "postgres+nats").then_some(NATS_SERVER),
        })
    }

    /// The store's statement counters (durable backends).
    pub(crate) fn stats(&self) -> Option<StoreStats> {
        self.store.stats()
    }

    /// Stops the workers, then frees the store (see [`Store::close`]): the in-memory
    /// histories on a thread of their own (`bench-teardown`), as dropping the engine
    /// instead would free them on a runtime thread during the next timed run.
    pub(crate) async fn close(self) -> BenchResult {
        let Bench { engine, store, .. } = self;
        let engine = Arc::into_inner(engine).ok_or("the engine is still shared")?;
        engine.shutdown().await;
        store.close().await
    }
}

/// One timed run: its wall time and each workflow's start-to-result time.
pub(crate) struct Run {
    pub(crate) elapsed: Duration,
    pub(crate) latencies: Vec<Duration>,
    /// CPU time the process used meanwhile (both runtime threads).
    pub(crate) cpu: Option<Duration>,
    /// Busy CPU time of the whole machine meanwhile (every process: the database, the
    /// broker, the other workers).
    pub(crate) machine_busy: Option<Duration>,
    /// Statements, transactions and commits per step (durable backends), every
    /// process's.
    pub(crate) per_step: Option<(f64, f64, f64)>,
    /// What the other worker processes' stores did meanwhile (none: zero).
    pub(crate) elsewhere: StoreStats,
    /// CPU time the broker used meanwhile, when it runs on this machine
    /// ([`named_processes_cpu`]).
    pub(crate) broker_cpu: Option<Duration>,
    /// Where a broker carries the tasks: the activity attempts run eagerly meanwhile
    /// (without it), in every worker process.
    pub(crate) eager_attempts: Option<u64>,
    /// With other worker processes: the activity attempts each ran meanwhile, this
    /// process's first.
    pub(crate) attempts_per_process: Option<Vec<u64>>,
    /// Where a broker carries the tasks: the tasks its stream holds at the end of the
    /// run, and their stored bytes ([`crate::backend::Store::held_tasks`]).
    pub(crate) held_tasks: Option<(u64, u64)>,
}

impl Run {
    pub(crate) fn steps_per_sec(&self) -> f64 {
        (self.latencies.len() as u64 * STEPS) as f64 / self.elapsed.as_secs_f64()
    }

    /// Steps per second of the machine's busy CPU.
    pub(crate) fn steps_per_machine_cpu_sec(&self) -> Option<f64> {
        self.machine_busy
            .filter(|b| !b.is_zero())
            .map(|b| (self.latencies.len() as u64 * STEPS) as f64 / b.as_secs_f64())
    }

    /// Adds `cpu_util` (CPU-seconds per second: at most 2 on two cores) and
    /// `steps_per_cpu_sec` to `m`, this process's; `machine_cpu_util` and
    /// `steps_per_machine_cpu_sec`, the whole machine's.
    fn cpu_fields(&self, mut m: Measurement) -> Measurement {
        if let (Some(busy), Some(steps)) = (self.machine_busy, self.steps_per_machine_cpu_sec()) {
            m = m
                .with(
                    "machine_cpu_util",
                    round(busy.as_secs_f64() / self.elapsed.as_secs_f64(), 2),
                )
                .with("steps_per_machine_cpu_sec", round(steps, 0));
        }
        if let Some(broker) = self.broker_cpu.filter(|_| !self.latencies.is_empty()) {
            let per_workflow = broker.as_secs_f64() * 1e3 / self.latencies.len() as f64;
            m = m.with("broker_cpu_ms_per_workflow", round(per_workflow, 3));
        }
        if let Some((tasks, bytes)) = self.held_tasks.filter(|(tasks, _)| *tasks > 0) {
            // What keeping a task costs the broker's disk (`--nats-retention max-age`).
            m = m
                .with("held_tasks", tasks)
                .with("held_bytes_per_task", bytes / tasks);
        }
        if let Some(eager) = self.eager_attempts.filter(|_| !self.latencies.is_empty()) {
            // The share of the workflows' steps that never crossed the broker.
            let steps = self.latencies.len() as u64 * STEPS;
            m = m.with("eager_share", round(eager as f64 / steps as f64, 3));
        }
        if let Some(attempts) = &self.attempts_per_process {
            m = m.with("attempts_per_process", attempts.clone());
        }
        if let Some((statements, transactions, commits)) = self.per_step {
            m = m
                .with("statements_per_step", round(statements, 3))
                .with("transactions_per_step", round(transactions, 3))
                .with("commits_per_step", round(commits, 3));
        }
        match self.cpu {
            Some(cpu) if !cpu.is_zero() => m
                .with(
                    "cpu_util",
                    round(cpu.as_secs_f64() / self.elapsed.as_secs_f64(), 2),
                )
                .with(
                    "steps_per_cpu_sec",
                    round(
                        (self.latencies.len() as u64 * STEPS) as f64 / cpu.as_secs_f64(),
                        0,
                    ),
                ),
            _ => m,
        }
    }
}

/// Runs workflows `first..first + n` on `engine` with `c` in flight, checking each
/// output and that every step ran exactly once, across all worker processes.
pub(crate) async fn drive(bench: &Bench, first: u64, n: u64, c: u64) -> BenchResult<Run> {
    let engine = &bench.engine;
    let start_then_result = bench.start_then_result;
    let options = StartOptions {
        eager: bench.eager_start,
        ..StartOptions::default()
    };
    let before = engine.metrics();
    // Blocking pipe I/O on a runtime thread, but outside the timed part, and a worker
    // answers at once.
    let others_before = bench.store.worker_counts()?;
    let cpu_before = process_cpu();
    let busy_before = machine_busy();
    let broker_before = bench.broker.and_then(named_processes_cpu);
    let next = Arc::new(AtomicU64::new(first));
    let end = first + n;
    let started = Instant::now();
    let mut drivers = JoinSet::new();
    for _ in 0..c.max(1) {
        let next = next.clone();
        let engine = engine.clone();
        let options = options.clone();
        drivers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return Ok::<_, crate::BoxError>(latencies);
                }
                let t = Instant::now();
                let id = format!("saga-5-{i}");
                let out = if start_then_result {
                    let run = engine
                        .start_with::<saga_5>(id, Payload::new(i), options.clone())
                        .await?;
                    run.result().await?
                } else {
                    engine
                        .execute_with::<saga_5>(id, Payload::new(i), options.clone())
                        .await?
                };
                latencies.push(t.elapsed());
                if out.counter != i + STEPS {
                    return Err(format!("workflow {i} counted {}", out.counter).into());
                }
            }
        });
    }
    let mut latencies = Vec::with_capacity(n as usize);
    while let Some(joined) = drivers.join_next().await {
        latencies.extend(joined??);
    }
    let elapsed = started.elapsed();
    let machine_busy = machine_busy_since(busy_before);
    let cpu = process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let broker_cpu = bench
        .broker
        .and_then(named_processes_cpu)
        .zip(broker_before)
        .map(|(after, before)| after.saturating_sub(before));
    let after = engine.metrics();
    let others: Vec<WorkerCounts> = bench
        .store
        .worker_counts()?
        .into_iter()
        .zip(others_before)
        .map(|(now, then)| now.since(then))
        .collect();
    let here = after.activity_attempts - before.activity_attempts;
    let per_process: Vec<u64> = std::iter::once(here)
        .chain(others.iter().map(|c| c.activity_attempts))
        .collect();
    let attempts: u64 = per_process.iter().sum();
    if attempts != n * STEPS {
        return Err(format!(
            "{n} workflows ran {attempts} activity attempts ({per_process:?} by process), not {}",
            n * STEPS
        )
        .into());
    }
    let eager_elsewhere: u64 = others.iter().map(|c| c.eager_activities).sum();
    let elsewhere = others.iter().fold(StoreStats::default(), |sum, c| {
        combine(sum, c.store, |a, b| a + b)
    });
    Ok(Run {
        elapsed,
        latencies,
        cpu,
        machine_busy,
        per_step: None,
        elsewhere,
        broker_cpu,
        eager_attempts: bench
            .broker
            .map(|_| after.eager_activities - before.eager_activities + eager_elsewhere),
        attempts_per_process: (!others.is_empty()).then_some(per_process),
        held_tasks: None,
    })
}

/// The throughput figure: the median of `repeat` runs, each on a fresh engine.
async fn throughput(s: &Settings, n: u64, c: u64, workers: usize) -> BenchResult<Measurement> {
    // Warm-up, not measured.
    let warm_up = Bench::new(s, workers).await?;
    drive(&warm_up, 0, (n / 10).max(c), c).await?;
    warm_up.close().await?;
    let mut runs = Vec::with_capacity(s.repeat);
    for _ in 0..s.repeat {
        let bench = Bench::new(s, workers).await?;
        let before = bench.stats();
        let mut run = drive(&bench, 0, n, c).await?;
        run.per_step = per_step(before, bench.stats(), run.elsewhere, n * STEPS);
        run.held_tasks = bench.store.held_tasks().await?;
        runs.push(run);
        bench.close().await?;
    }
    runs.sort_by(|a, b| a.steps_per_sec().total_cmp(&b.steps_per_sec()));
    let shown: Vec<f64> = runs.iter().map(|r| round(r.steps_per_sec(), 0)).collect();
    let mid = &mut runs[s.repeat / 2];
    let steps = mid.steps_per_sec();
    let m = Measurement::new("saga-5", "throughput", s.backend, s.codec_name())
        .with("workers", workers)
        .with("load_avg", load_average())
        .with("runs_steps_per_sec", shown)
        .with_percentiles(&mut mid.latencies);
    let mut m = mid.cpu_fields(m);
    m.workflows = Some(n);
    m.concurrency = Some(c);
    m.steps_per_sec = Some(round(steps, 0));
    m.workflows_per_sec = Some(round(steps / STEPS as f64, 0));
    Ok(m)
}

/// The latency figure: one workflow at a time.
async fn latency(s: &Settings, n: u64, workers: usize) -> BenchResult<Measurement> {
    let bench = Bench::new(s, workers).await?;
    let warm_up = (n / 10).max(1);
    drive(&bench, 0, warm_up, 1).await?;
    let floor_before = commit_latency(s).await?;
    let before = bench.stats();
    let mut run = drive(&bench, warm_up, n, 1).await?;
    run.per_step = per_step(before, bench.stats(), run.elsewhere, n * STEPS);
    let floor_after = commit_latency(s).await?;
    bench.close().await?;
    let steps = run.steps_per_sec();
    let mean = run.elapsed / n.max(1) as u32;
    let m = Measurement::new("saga-5", "latency", s.backend, s.codec_name())
        .with("workers", workers)
        .with("load_avg", load_average())
        .with("mean_ms", crate::report::ms(mean))
        .with_percentiles(&mut run.latencies);
    let trip = broker_trip(s).await?;
    let m = match floor_before.zip(floor_after) {
        // The start's commit and one per step, one after another.
        Some((a, b)) => {
            let one = (a + b) / 2;
            let commits = one * (STEPS as u32 + 1);
            let m = m
                .with("one_row_commit_ms", round(crate::report::ms(one), 3))
                .with("commit_floor_ms", round(crate::report::ms(commits), 3));
            match trip {
                // The first step's task crosses the broker once (`crate::brokertrip`).
                Some(trip) => m
                    .with("broker_trip_ms", round(crate::report::ms(trip), 3))
                    .with("floor_ms", round(crate::report::ms(commits + trip), 3)),
                None => m,
            }
        }
        None => m,
    };
    let mut m = run.cpu_fields(m);
    m.workflows = Some(n);
    m.concurrency = Some(1);
    m.steps_per_sec = Some(round(steps, 0));
    m.workflows_per_sec = Some(round(steps / STEPS as f64, 0));
    Ok(m)
}

/// On PostgreSQL, the median time of a one-row commit at concurrency 1 now
/// ([`crate::rawcommit::postgres_commit_latency`]); `None` on other backends.
async fn commit_latency(s: &Settings) -> BenchResult<Option<Duration>> {
    match s.backend {
        "postgres" | "postgres+nats" => Ok(Some(
            crate::rawcommit::postgres_commit_latency(&s.database_url).await?,
        )),
        _ => Ok(None),
    }
}

/// With NATS, the median time of one task's trip through JetStream now
/// ([`crate::brokertrip::nats_trip_latency`]); `None` on other backends.
async fn broker_trip(s: &Settings) -> BenchResult<Option<Duration>> {
    match s.backend {
        "postgres+nats" => Ok(Some(
            crate::brokertrip::nats_trip_latency(&s.nats_url).await?,
        )),
        _ => Ok(None),
    }
}

/// The `saga-5` scenario.
pub(crate) async fn run(s: &Settings, out: &mut Reporter) -> BenchResult {
    let durable = s.durable();
    let n = s.workflows.unwrap_or(if durable {
        DURABLE_WORKFLOWS
    } else {
        DEFAULT_WORKFLOWS
    });
    let c = s.concurrency.unwrap_or(100);
    let workers = s.workers.unwrap_or(if durable {
        DURABLE_WORKERS
    } else {
        DEFAULT_WORKERS
    });
    let mut lines = Vec::new();
    if durable {
        return run_durable(s, out, n, c, workers).await;
    }
    if s.runs(Part::Baseline) {
        eprintln!(
            "saga-5: baselines ({} workflows, {c} in flight)",
            baseline::DEFAULT_WORKFLOWS
        );
        lines = baseline::measurements("saga-5", s, baseline::DEFAULT_WORKFLOWS, c).await?;
    }
    let baseline_of = |v: Variant| {
        lines
            .iter()
            .find(|m| m.measurement.ends_with(v.name()))
            .and_then(|m| m.steps_per_sec)
    };
    let (pure, serde) = (baseline_of(Variant::Pure), baseline_of(Variant::Serde));
    if s.runs(Part::Throughput) {
        eprintln!("saga-5: throughput ({n} workflows, {c} in flight, {workers} workers)");
        let mut m = throughput(s, n, c, workers).await?;
        if let (Some(serde), Some(steps)) = (serde, m.steps_per_sec) {
            m = m
                .with("baseline_serde", round(serde, 0))
                .with("ratio_serde", round(steps / serde, 4));
        }
        if let Some(pure) = pure {
            m = m.against(pure);
        }
        lines.push(m);
    }
    if s.runs(Part::Latency) {
        let n = n.min(LATENCY_WORKFLOWS);
        eprintln!("saga-5: latency ({n} workflows, one at a time)");
        lines.push(latency(s, n, workers).await?);
    }
    for m in lines {
        out.emit(m);
    }
    out.flush("saga-5: five sequential no-op activities");
    Ok(())
}

/// `saga-5` on a database: the raw commit rate of the same database with the same
/// durability (the baseline), throughput against it, latency at concurrency 1.
async fn run_durable(
    s: &Settings,
    out: &mut Reporter,
    n: u64,
    c: u64,
    workers: usize,
) -> BenchResult {
    let mut lines = Vec::new();
    let mut raw_line = None;
    if s.runs(Part::Baseline) {
        eprintln!(
            "saga-5: raw commit rate ({} writers)",
            crate::rawcommit::writers(s.backend)
        );
        raw_line = Some(crate::rawcommit::measurement("saga-5", s).await?);
    }
    let pg = |m: Measurement| {
        m.with("pg_pool", s.pg_pool)
            .with("pg_commit_batch", s.pg_commit_batch)
            .with(
                "pg_commit_flushers",
                s.pg_commit_flushers
                    .unwrap_or(saga_adapters::DEFAULT_COMMIT_FLUSHERS),
            )
    };
    let tag = |m: Measurement| match s.backend {
        "sqlite" => m.with("synchronous", sync_name(s.sync)),
        // Statement counts are every process's store's.
        "postgres+nats" => pg(m)
            .with("processes", s.processes)
            .with("nats_retention", s.nats_retention.name())
            .with("eager_start", s.eager_start)
            .with("eager_start_when_idle", s.eager_start_when_idle),
        _ => pg(m),
    };
    if s.runs(Part::Throughput) {
        eprintln!("saga-5: throughput ({n} workflows, {c} in flight, {workers} workers)");
        let mut m = tag(throughput(s, n, c, workers).await?);
        if let Some(before) = raw_line.take() {
            eprintln!("saga-5: raw commit rate again, after the throughput run");
            let after = crate::rawcommit::commits_per_sec(s).await?;
            raw_line = Some(crate::rawcommit::bracketed(before, &after));
        }
        let raw = raw_line.as_ref().and_then(|l| l.steps_per_sec);
        let raw_per_busy_sec = raw_line.as_ref().and_then(|l| {
            l.extra
                .get("commits_per_machine_cpu_sec")
                .and_then(serde_json::Value::as_f64)
        });
        lines.extend(raw_line.take());
        if let Some(raw) = raw {
            m = m.against(raw);
        }
        // The same comparison per busy CPU-second of the machine: what a step costs
        // all processes together against what a raw commit does.
        let steps_per_busy_sec = m
            .extra
            .get("steps_per_machine_cpu_sec")
            .and_then(serde_json::Value::as_f64);
        if let (Some(steps), Some(raw)) = (steps_per_busy_sec, raw_per_busy_sec) {
            m = m.with("ratio_machine_cpu", round(steps / raw, 4));
        }
        lines.push(m);
    }
    // The raw rate alone (`--only baseline`), measured once.
    lines.extend(raw_line);
    if s.runs(Part::Latency) {
        let n = n.min(DURABLE_LATENCY_WORKFLOWS);
        eprintln!("saga-5: latency ({n} workflows, one at a time)");
        lines.push(tag(latency(s, n, workers).await?));
    }
    for m in lines {
        out.emit(m);
    }
    out.flush("saga-5: five sequential no-op activities");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            backend: "memory",
            codec: saga_runtime::codec::AnyCodec::Json,
            codec_arg: None,
            workflows: None,
            concurrency: None,
            workers: None,
            repeat: 1,
            only: None,
            sync: saga_adapters::Synchronous::Normal,
            database_url: crate::backend::DEFAULT_DATABASE_URL.into(),
            pg_pool: 4,
            pg_commit_batch: 64,
            pg_commit_flushers: None,
            nats_url: crate::backend::DEFAULT_NATS_URL.into(),
            nats_retention: crate::RetentionArg::MaxAge,
            processes: 1,
            eager_activities: true,
            start_then_result: false,
            eager_start: false,
            eager_start_when_idle: true,
            worker_of: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_workflow_runs_its_five_steps_once() {
        let bench = Bench::new(&settings(), 4).await.unwrap();
        let run = drive(&bench, 0, 40, 8).await.unwrap();
        assert_eq!(run.latencies.len(), 40);
        assert_eq!(bench.engine.metrics().activity_attempts, 200);
        let busy = run.machine_busy.expect("the machine's busy CPU is read");
        let m = run.cpu_fields(Measurement::new("saga-5", "throughput", "memory", "json"));
        // A run shorter than a tick of `/proc/stat` reads no busy time, and no rate.
        assert_eq!(
            m.extra.contains_key("steps_per_machine_cpu_sec"),
            !busy.is_zero(),
            "{busy:?}: {:?}",
            m.extra
        );
        let again = drive(&bench, 40, 3, 1).await.unwrap();
        assert_eq!(again.latencies.len(), 3);
        bench.close().await.unwrap();
    }

    /// A bench on `s` (`postgres+nats`), or `None` (skipped, with the reason printed)
    /// where the servers are down and `CI` is unset; with `CI` set, a panic.
    async fn bench_on_servers(s: &Settings, workers: usize) -> Option<Bench> {
        match Bench::new(s, workers).await {
            Ok(b) => Some(b),
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED: PostgreSQL or NATS unreachable: {e}");
                None
            }
            Err(e) => panic!("PostgreSQL and NATS are required (CI is set): {e}"),
        }
    }

    /// `postgres+nats` in one process: the engine's tasks go through NATS, its events
    /// to PostgreSQL. (More processes need the `saga-bench` binary itself; the
    /// benchmark command runs them.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres_and_nats_every_workflow_completes() {
        let s = Settings {
            backend: "postgres+nats",
            ..settings()
        };
        let Some(bench) = bench_on_servers(&s, 8).await else {
            return;
        };
        let mut run = drive(&bench, 0, 20, 8).await.unwrap();
        assert_eq!(run.latencies.len(), 20);
        assert_eq!(bench.engine.metrics().activity_attempts, 100);
        // Kept for their age, acked or not: the steps that went through the broker
        // (at most one task each; the starts that found the engine busy among them)
        // are still held, each with its payload.
        run.held_tasks = bench.store.held_tasks().await.unwrap();
        let (held, bytes) = run.held_tasks.expect("a broker's stream");
        assert!((1..=100).contains(&held), "{held} tasks held");
        assert!(bytes > held * 100, "{bytes} bytes for {held} tasks");
        // The broker's CPU is charged to the run where the broker runs on this machine
        // (as in CI, where `.ci/run` starts it).
        let m = run.cpu_fields(Measurement::new("saga-5", "throughput", s.backend, "json"));
        assert_eq!(m.extra["held_tasks"], held);
        assert_eq!(
            m.extra.contains_key("broker_cpu_ms_per_workflow"),
            named_processes_cpu(NATS_SERVER).is_some(),
            "{:?}",
            m.extra
        );
        bench.close().await.unwrap();
    }

    /// On `postgres+nats` in one process, one at a time: with eager start while idle
    /// (the default) the starts find the engine idle and no step crosses the broker;
    /// without it every first step does, one in five.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_process_runs_whole_workflows_without_the_broker() {
        for idle in [true, false] {
            let s = Settings {
                backend: "postgres+nats",
                eager_start_when_idle: idle,
                ..settings()
            };
            let Some(bench) = bench_on_servers(&s, 4).await else {
                return;
            };
            let run = drive(&bench, 0, 10, 1).await.unwrap();
            let m = run.cpu_fields(Measurement::new("saga-5", "latency", s.backend, "json"));
            let share = number(&m, "eager_share").expect("eager_share");
            if idle {
                // A start may find the attempt that closed the one before still ending.
                assert!(share > 0.8, "{:?}", m.extra);
            } else {
                assert_eq!(share, 0.8, "{:?}", m.extra);
            }
            bench.close().await.unwrap();
        }
    }

    /// A short latency run on `backend`, or `None` (skipped, with the reason printed)
    /// where its servers (`servers`) are down and `CI` is unset; with `CI` set, a panic.
    async fn latency_on_servers(backend: &'static str, servers: &str) -> Option<Measurement> {
        let s = Settings {
            backend,
            ..settings()
        };
        match latency(&s, 5, 4).await {
            Ok(m) => Some(m),
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED: {servers} unreachable: {e}");
                None
            }
            Err(e) => panic!("{servers} required (CI is set): {e}"),
        }
    }

    /// The numeric field `k` of `m`.
    fn number(m: &Measurement, k: &str) -> Option<f64> {
        m.extra.get(k).and_then(serde_json::Value::as_f64)
    }

    /// On PostgreSQL the latency figure carries the floor measured around it: six
    /// one-row commits at one in flight; elsewhere it has none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_latency_on_postgres_carries_its_commit_floor() {
        let Some(m) = latency_on_servers("postgres", "PostgreSQL").await else {
            return;
        };
        let field = |k: &str| number(&m, k);
        let one = field("one_row_commit_ms").expect("one_row_commit_ms");
        let floor = field("commit_floor_ms").expect("commit_floor_ms");
        assert!(one > 0.0, "{:?}", m.extra);
        assert!(
            (floor - one * (STEPS + 1) as f64).abs() < 0.01,
            "{:?}",
            m.extra
        );
        assert!(!m.extra.contains_key("broker_trip_ms"), "{:?}", m.extra);
        let on_memory = latency(&settings(), 5, 4).await.unwrap();
        assert!(!on_memory.extra.contains_key("commit_floor_ms"));
    }

    /// With NATS the floor adds one trip through JetStream to the six commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_latency_on_postgres_and_nats_carries_one_broker_trip_in_its_floor() {
        let Some(m) = latency_on_servers("postgres+nats", "PostgreSQL and NATS").await else {
            return;
        };
        let field = |k: &str| number(&m, k);
        let commits = field("commit_floor_ms").expect("commit_floor_ms");
        let trip = field("broker_trip_ms").expect("broker_trip_ms");
        let floor = field("floor_ms").expect("floor_ms");
        assert!(trip > 0.0, "{:?}", m.extra);
        assert!((floor - commits - trip).abs() < 0.01, "{:?}", m.extra);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sqlite_every_step_is_counted_in_statements() {
        let s = Settings {
            backend: "sqlite",
            ..settings()
        };
        let bench = Bench::new(&s, 8).await.unwrap();
        let before = bench.stats();
        let mut run = drive(&bench, 0, 20, 8).await.unwrap();
        run.per_step = per_step(before, bench.stats(), run.elsewhere, 20 * STEPS);
        let (statements, _, commits) = run.per_step.unwrap();
        assert!(statements > 0.0 && commits > 0.0, "{:?}", run.per_step);
        bench.close().await.unwrap();
    }
}
