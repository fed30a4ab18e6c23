//! The command line.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Operate saga executions in any store: list, inspect, start, signal, cancel, draw.
///
/// The store is given by URL: `sqlite://FILE` (the file must exist: workers create it)
/// or `postgres://USER@HOST:PORT/DB`. Workers register their workflow definitions in
/// the store, so no workflow code is needed here.
///
/// Exit codes: 0 success, 1 the operation failed or was refused, 2 bad input, 3 no
/// such execution or workflow type, 4 the store is unreachable.
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
    /// Run the watchdog's detectors over the store once (stalled executions, child
    /// workflows waiting on each other, outbox backlog) and print the findings with the
    /// action each suggests. Changes nothing.
    Watchdog(crate::commands::watchdog::WatchdogArgs),
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
