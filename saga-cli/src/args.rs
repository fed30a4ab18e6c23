//! The command line.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Operate saga executions in any store: list, inspect, start, signal, cancel, draw;
/// serve the same over HTTP; list and re-drive NATS dead letters.
///
/// The store is given by URL: `sqlite://FILE` (the file must exist: workers create it)
/// or `postgres://USER@HOST:PORT/DB`. Workers register their workflow definitions in
/// the store, so no workflow code is needed here.
///
/// Exit codes: 0 success, 1 the operation failed or was refused, 2 bad input, 3 no
/// such execution, workflow type or dead letter, 4 the store (or the NATS server) is
/// unreachable.
#[derive(Debug, Parser)]
#[command(name = "saga", version)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The store: `sqlite://FILE` or `postgres://USER@HOST:PORT/DB`.
    #[arg(long, env = "SAGA_STORE", global = true)]
    pub(crate) store: Option<String>,
    /// The PostgreSQL schema holding the tables (as the workers' `PostgresConfig::schema`).
    #[arg(long, env = "SAGA_SCHEMA", global = true)]
    pub(crate) schema: Option<String>,
    /// Seconds to wait for the store before giving up.
    #[arg(long, default_value_t = 5, global = true, value_name = "SECS")]
    pub(crate) connect_timeout: u64,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Table, global = true)]
    pub(crate) output: Format,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON for programs (`history`: one event per line).
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List executions, oldest start first.
    List(ListArgs),
    /// Show one execution: status, checkpoint, pending work, compensations.
    Show {
        /// The execution id.
        id: String,
    },
    /// Print an execution's history as a timeline.
    History {
        /// The execution id.
        id: String,
        /// Keep printing new events until the execution closes.
        #[arg(long, short)]
        follow: bool,
        /// How often `--follow` polls, in milliseconds.
        #[arg(long, default_value_t = 500, value_name = "MS")]
        interval: u64,
    },
    /// Start an execution of a registered workflow type.
    Start {
        /// The workflow type (see `saga definitions`).
        workflow_type: String,
        /// The input, as JSON.
        #[arg(long)]
        input: String,
        /// The execution id (default: `<type>-<time>`).
        #[arg(long)]
        id: Option<String>,
        /// Fail and compensate the execution after this many seconds (default: the
        /// workflow's own timeout, if any).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// The task queue its workflow and activity tasks go to: only workers serving
        /// it run the execution (default: the workflow type's, as registered, else
        /// `default`). 1 to 128 letters, digits, `_` or `-`.
        #[arg(long, value_name = "QUEUE")]
        task_queue: Option<String>,
    },
    /// Send a signal to an execution.
    Signal {
        /// The execution id.
        id: String,
        /// The signal name.
        name: String,
        /// The payload, as JSON.
        #[arg(long, default_value = "null")]
        payload: String,
    },
    /// Cancel an execution: completed steps are compensated, last first.
    Cancel {
        /// The execution id.
        id: String,
    },
    /// Print a workflow type's Mermaid diagram, or an execution's with where it is now
    /// highlighted.
    Diagram {
        /// An execution id or a workflow type.
        target: String,
    },
    /// List the registered workflow definitions.
    Definitions,
    // `serve` and `dlq` (issue 6: REST API, metrics, dead letters): kept together.
    /// Serve these operations as a REST API (JSON; OpenAPI document at
    /// `/openapi.json`) with Prometheus metrics at `/metrics`.
    ///
    /// The metrics are read from the store (executions by type and status, the outbox
    /// backlog) and, with `--nats`, from the task queue (depth and dead letters per
    /// `--queue`). This server embeds no engine: engine counters (workflow tasks,
    /// conflicts, activity attempts, ...) are exposed by the application that runs
    /// the engine, with `saga_runtime::metrics`.
    Serve(ServeArgs),
    /// Dead letters of the NATS task queue: tasks no worker could finish.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Run the watchdog's detectors over the store once (stalled executions, child
    /// workflows waiting on each other, outbox backlog) and print the findings with the
    /// action each suggests. Changes nothing.
    Watchdog(crate::commands::watchdog::WatchdogArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub(crate) listen: std::net::SocketAddr,
    #[command(flatten)]
    pub(crate) nats: NatsArgs,
    /// Task queues whose depth and dead letters `/metrics` reports (with `--nats`);
    /// repeatable.
    #[arg(long = "queue", value_name = "QUEUE", default_value = "default")]
    pub(crate) queues: Vec<String>,
}

/// Where the NATS task queue is (as the workers' `saga_adapters::NatsConfig`).
#[derive(Debug, Args)]
pub(crate) struct NatsArgs {
    /// The NATS server, `nats://HOST:PORT`.
    #[arg(long, env = "SAGA_NATS", value_name = "URL")]
    pub(crate) nats: Option<String>,
    /// The workers' `NatsConfig::namespaced(NS)`: streams `SAGA_TASKS_<NS>` and
    /// `SAGA_DLQ_<NS>`, subjects `saga.<NS>.tasks` and `saga.<NS>.dlq`.
    #[arg(long, value_name = "NS")]
    pub(crate) namespace: Option<String>,
    /// The task stream (overrides the namespace's).
    #[arg(long, value_name = "NAME")]
    pub(crate) stream: Option<String>,
    /// The subject prefix of tasks (overrides the namespace's).
    #[arg(long, value_name = "PREFIX")]
    pub(crate) subject_prefix: Option<String>,
    /// The dead-letter stream (overrides the namespace's).
    #[arg(long, value_name = "NAME")]
    pub(crate) dead_letter_stream: Option<String>,
    /// The subject prefix of dead letters (overrides the namespace's).
    #[arg(long, value_name = "PREFIX")]
    pub(crate) dead_letter_prefix: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List a queue's dead letters, oldest first: task, reason, delivery count.
    ///
    /// With `--store` (or `SAGA_STORE`), also what the store says of each: the saga's
    /// status, and whether the task is `open` (its outbox row is still there: re-drive
    /// it) or `settled` (the saga recorded its result since: the reconciler published it
    /// again and a worker ran it; re-driving it only clears the letter).
    List {
        #[command(flatten)]
        nats: NatsArgs,
        /// The task queue.
        #[arg(long, default_value = "default")]
        queue: String,
    },
    /// Publish dead letters to their queue again and remove them from the dead-letter
    /// stream: all of the queue's, or the one with `--id`.
    Redrive {
        #[command(flatten)]
        nats: NatsArgs,
        /// The task queue.
        #[arg(long, default_value = "default")]
        queue: String,
        /// Only the dead letter of this task (its dedup id, as `dlq list` shows).
        #[arg(long, value_name = "DEDUP_ID")]
        id: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only this workflow type.
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) workflow_type: Option<String>,
    /// Only this status (Running, Paused, Completed, Failed, Compensating, Cancelled).
    #[arg(long)]
    pub(crate) status: Option<String>,
    /// Started at or after: RFC 3339 (`2026-01-15T10:30:00Z`), a date (`2026-01-15`),
    /// or an age (`90s`, `15m`, `2h`, `7d`).
    #[arg(long, value_name = "TIME")]
    pub(crate) since: Option<String>,
    /// Started before (same forms as `--since`).
    #[arg(long, value_name = "TIME")]
    pub(crate) until: Option<String>,
    /// A search attribute that must equal VALUE (JSON, or else a string); repeatable.
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    pub(crate) attrs: Vec<String>,
    /// At most this many.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
}
