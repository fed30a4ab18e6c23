//! `saga-bench`: the benchmarks of DESIGN.md section 9.
//!
//! ```text
//! cargo run --release -p saga-bench -- <scenario> --backend <memory|sqlite|postgres|postgres+nats> \
//!     [--workflows N] [--concurrency C] [--codec json|postcard|bincode] [--json] \
//!     [--sync normal|full] [--database-url URL] [--pg-pool N]
//! ```
//!
//! On `sqlite` and `postgres` every timed run uses a new store (a temporary file, or a
//! schema of its own that is dropped afterwards), and `saga-5` reports its figures against
//! the raw single-row insert + commit rate of the same database (`baseline`).
//! `postgres+nats` adds a NATS JetStream task queue (a namespace of its own per run) and
//! runs `--processes N` worker processes: this one, which also drives the workflows,
//! and N-1 copies of itself started as `saga-bench worker`.
//!
//! Every scenario runs on a multi-thread tokio runtime with two workers (the machines
//! this project runs on have two cores). Results and how they were produced are in
//! `BENCHMARKS.md`.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

// The engine allocates small JSON trees on every step; glibc's allocator spends a
// third of the run in malloc/free (see BENCHMARKS.md). mimalloc is what we recommend
// for services built on the engine, and what the numbers are measured with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backend;
mod baseline;
mod brokertrip;
mod codec;
mod parked;
mod rawcommit;
mod replay;
mod report;
mod saga5;
mod workflows;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use saga_adapters::Synchronous;
use saga_runtime::codec::AnyCodec;

use crate::report::Reporter;

/// What the scenarios return on failure.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The result of a scenario.
pub(crate) type BenchResult<T = ()> = Result<T, BoxError>;

/// Benchmarks of the saga engine (DESIGN.md section 9).
#[derive(Debug, Parser)]
#[command(name = "saga-bench", version)]
struct Cli {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,

    /// Where executions, events and tasks live.
    #[arg(long, value_enum)]
    backend: Backend,

    /// Workflows to run (saga-5: 20 000 for throughput, at most 2 000 for latency;
    /// baseline: 200 000; parked: 100 000; codec: iterations per batch, 50 000).
    #[arg(long)]
    workflows: Option<u64>,

    /// Workflows in flight (default 100).
    #[arg(long)]
    concurrency: Option<u64>,

    /// The engine's codec (snapshots); for `codec`, the only codec measured (default:
    /// all three).
    #[arg(long, value_enum)]
    codec: Option<CodecArg>,

    /// One JSON object per measurement per line instead of tables.
    #[arg(long)]
    json: bool,

    /// Engine worker loops pulling from the task queue (default: 32, the engine's; see
    /// BENCHMARKS.md for the sweep).
    #[arg(long)]
    workers: Option<usize>,

    /// Timed runs per figure; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,

    /// saga-5 only: run just this part (to profile one of them).
    #[arg(long, value_enum)]
    only: Option<Part>,

    /// SQLite only: `PRAGMA synchronous` of the store and of the raw-commit baseline
    /// (WAL mode either way).
    #[arg(long, value_enum, default_value_t = SyncArg::Normal)]
    sync: SyncArg,

    /// PostgreSQL only: the database; each run works in a schema of its own and drops
    /// it afterwards.
    #[arg(long, default_value = backend::DEFAULT_DATABASE_URL)]
    database_url: String,

    /// PostgreSQL only: pooled connections of the engine's store.
    #[arg(long, default_value_t = backend::DEFAULT_PG_POOL)]
    pg_pool: u32,

    /// PostgreSQL only: group commit, the most workflow-task commits per statement
    /// (1: no group commit).
    #[arg(long, default_value_t = 64)]
    pg_commit_batch: usize,

    /// PostgreSQL only: group commit, batches written at once (default: the store's,
    /// `saga_adapters::DEFAULT_COMMIT_FLUSHERS`).
    #[arg(long)]
    pg_commit_flushers: Option<usize>,

    /// postgres+nats only: the NATS server.
    #[arg(long, default_value = backend::DEFAULT_NATS_URL)]
    nats_url: String,

    /// postgres+nats only: how the task stream keeps tasks (applies to the run's own
    /// new stream).
    #[arg(long, value_enum, default_value_t = RetentionArg::MaxAge)]
    nats_retention: RetentionArg,

    /// postgres+nats only: worker processes (this one included).
    #[arg(long, default_value_t = 1)]
    processes: usize,

    /// The engine's eager activity dispatch (on by default; it acts only where the
    /// outbox is on: postgres+nats): `--eager-activities false` sends every task
    /// through the queue.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    eager_activities: bool,

    /// saga-5: drive each workflow with `start(..)` then `result()` (which reads the
    /// store once more before it waits) instead of `execute(..)`.
    #[arg(long)]
    start_then_result: bool,

    /// saga-5: start each workflow with `StartOptions::eager`, so that its first step
    /// runs on this process too instead of going through the queue (postgres+nats;
    /// with more processes they then serve nothing).
    #[arg(long)]
    eager_start: bool,

    /// saga-5: the engine's eager start while idle (on by default; postgres+nats): a
    /// start that finds this process running nothing runs its workflow here.
    /// `--eager-start-when-idle false` sends every first step through the queue.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    eager_start_when_idle: bool,

    /// (Internal, `worker`) the schema and NATS namespace of the run to serve.
    #[arg(long, hide = true)]
    schema: Option<String>,
    #[arg(long, hide = true)]
    nats_namespace: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RetentionArg {
    /// For the duplicate window, acked or not (the adapter's default).
    MaxAge,
    /// Until acked (JetStream work-queue retention).
    WorkQueue,
}

impl RetentionArg {
    /// The flag's value, as clap spells it (worker processes are given the same).
    pub(crate) fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    pub(crate) fn retention(self) -> saga_adapters::TaskRetention {
        match self {
            RetentionArg::MaxAge => saga_adapters::NatsConfig::default().task_retention,
            RetentionArg::WorkQueue => saga_adapters::TaskRetention::WorkQueue,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SyncArg {
    /// fsync at WAL checkpoints only.
    Normal,
    /// fsync the WAL at every commit.
    Full,
}

impl From<SyncArg> for Synchronous {
    fn from(s: SyncArg) -> Synchronous {
        match s {
            SyncArg::Normal => Synchronous::Normal,
            SyncArg::Full => Synchronous::Full,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Five sequential no-op activities: throughput with C in flight, latency at 1.
    #[value(name = "saga-5")]
    Saga5,
    /// The same five calls as plain tokio async fns.
    Baseline,
    /// Load and rehydrate one execution against history length, with and without
    /// snapshots.
    Replay,
    /// Memory per workflow parked on a signal.
    Parked,
    /// Encode/decode time and size of a history event per codec.
    Codec,
    /// Every scenario above, in that order.
    All,
    /// (Internal) serve `saga-5` as an extra worker process of a `postgres+nats` run,
    /// until stdin closes.
    #[value(hide = true)]
    Worker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Memory,
    Sqlite,
    Postgres,
    #[value(name = "postgres+nats")]
    PostgresNats,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::PostgresNats => "postgres+nats",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CodecArg {
    Json,
    Postcard,
    Bincode,
}

impl From<CodecArg> for AnyCodec {
    fn from(c: CodecArg) -> AnyCodec {
        match c {
            CodecArg::Json => AnyCodec::Json,
            CodecArg::Postcard => AnyCodec::Postcard,
            CodecArg::Bincode => AnyCodec::Bincode,
        }
    }
}

/// A part of `saga-5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Part {
    /// The plain-tokio baselines.
    Baseline,
    /// Workflows/s and steps/s with C in flight.
    Throughput,
    /// Start-to-result at concurrency 1.
    Latency,
}

/// What every scenario is given.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) backend: &'static str,
    /// The engine's codec.
    pub(crate) codec: AnyCodec,
    /// `--codec` as given (the `codec` scenario measures all three without it).
    pub(crate) codec_arg: Option<AnyCodec>,
    pub(crate) workflows: Option<u64>,
    pub(crate) concurrency: Option<u64>,
    pub(crate) workers: Option<usize>,
    pub(crate) repeat: usize,
    pub(crate) only: Option<Part>,
    /// SQLite's `PRAGMA synchronous`.
    pub(crate) sync: Synchronous,
    /// PostgreSQL's url.
    pub(crate) database_url: String,
    /// PostgreSQL pool size of the engine's store.
    pub(crate) pg_pool: u32,
    pub(crate) pg_commit_batch: usize,
    pub(crate) pg_commit_flushers: Option<usize>,
    /// NATS server (postgres+nats).
    pub(crate) nats_url: String,
    /// How the run's NATS task stream keeps tasks.
    pub(crate) nats_retention: RetentionArg,
    /// Worker processes, this one included (postgres+nats).
    pub(crate) processes: usize,
    /// The engine's eager activity dispatch.
    pub(crate) eager_activities: bool,
    /// saga-5: `start` then `result` instead of `execute`.
    pub(crate) start_then_result: bool,
    /// saga-5: eager start.
    pub(crate) eager_start: bool,
    /// saga-5: eager start while idle.
    pub(crate) eager_start_when_idle: bool,
    /// `worker` mode: the schema and NATS namespace of the run it serves.
    pub(crate) worker_of: Option<(String, String)>,
}

impl Settings {
    pub(crate) fn codec_name(&self) -> &'static str {
        use saga_runtime::codec::Codec;
        self.codec.name()
    }

    /// Whether `part` of saga-5 runs.
    pub(crate) fn runs(&self, part: Part) -> bool {
        self.only.is_none_or(|p| p == part)
    }

    /// Whether the backend is a database (not the in-memory store).
    pub(crate) fn durable(&self) -> bool {
        self.backend != "memory"
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.backend == Backend::PostgresNats
        && !matches!(
            cli.scenario,
            Scenario::Saga5 | Scenario::Baseline | Scenario::Worker
        )
    {
        eprintln!(
            "saga-bench: backend `postgres+nats` runs `saga-5` and `baseline` (the store alone: use `--backend postgres` for `replay`)"
        );
        return ExitCode::from(2);
    }
    if cli.scenario == Scenario::Worker && cli.backend != Backend::PostgresNats {
        eprintln!("saga-bench: `worker` serves a `postgres+nats` run");
        return ExitCode::from(2);
    }
    if cli.backend != Backend::Memory && cli.scenario == Scenario::Parked {
        eprintln!(
            "saga-bench: `parked` measures process memory and runs on `--backend memory` only"
        );
        return ExitCode::from(2);
    }
    let settings = Settings {
        backend: cli.backend.name(),
        codec: cli.codec.map_or(AnyCodec::Json, AnyCodec::from),
        codec_arg: cli.codec.map(AnyCodec::from),
        workflows: cli.workflows,
        concurrency: cli.concurrency,
        workers: cli.workers,
        repeat: cli.repeat.max(1),
        only: cli.only,
        sync: cli.sync.into(),
        database_url: cli.database_url,
        pg_pool: cli.pg_pool,
        pg_commit_batch: cli.pg_commit_batch,
        pg_commit_flushers: cli.pg_commit_flushers,
        nats_url: cli.nats_url,
        nats_retention: cli.nats_retention,
        processes: cli.processes.max(1),
        eager_activities: cli.eager_activities,
        start_then_result: cli.start_then_result,
        eager_start: cli.eager_start,
        eager_start_when_idle: cli.eager_start_when_idle,
        worker_of: cli.schema.zip(cli.nats_namespace),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("saga-bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = Reporter::new(cli.json);
    match runtime.block_on(run(cli.scenario, &settings, &mut out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("saga-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(scenario: Scenario, s: &Settings, out: &mut Reporter) -> BenchResult {
    match scenario {
        Scenario::Saga5 => saga5::run(s, out).await,
        Scenario::Baseline if s.durable() => rawcommit::run(s, out).await,
        Scenario::Baseline => baseline::run(s, out).await,
        Scenario::Replay => replay::run(s, out).await,
        Scenario::Parked => parked::run(s, out).await,
        Scenario::Codec => codec::run(s, out),
        Scenario::Worker => backend::serve_as_worker(s).await,
        Scenario::All => {
            saga5::run(s, out).await?;
            replay::run(s, out).await?;
            if !s.durable() {
                parked::run(s, out).await?;
            }
            codec::run(s, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_design_commands_parse() {
        let cli = Cli::try_parse_from([
            "saga-bench",
            "saga-5",
            "--backend",
            "postgres+nats",
            "--workflows",
            "10",
            "--concurrency",
            "4",
            "--codec",
            "postcard",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.scenario, Scenario::Saga5);
        assert_eq!(cli.backend, Backend::PostgresNats);
        assert_eq!(cli.codec, Some(CodecArg::Postcard));
        assert!(cli.json);
        assert!(Cli::try_parse_from(["saga-bench", "replay"]).is_err());
    }
}
