//! Durable adapters for `saga-runtime`, behind cargo features:
//!
//! | feature | adapter | ports |
//! |---|---|---|
//! | `sqlite` (default) | [`SqliteStore`] | `EventStore`, `TimerStore`, `WorkflowStore` (one file, WAL, group commit) |
//! | `postgres` | `PostgresStore`, `PgSignalDispatcher` | the same, plus `SignalDispatcher` on `LISTEN/NOTIFY` |
//! | `nats` | [`NatsTaskQueue`], [`NatsSignalDispatcher`] | `TaskQueue` on JetStream, `SignalDispatcher` on core NATS |
//!
//! Each passes `saga_runtime::conformance` unchanged, and the engine scenarios of
//! `saga_runtime::conformance::engine` run on each (see `tests/`).
//!
//! A workflow task commits as one transaction: its events, timer changes and snapshot
//! together or not at all (`WorkflowStore::commit`). A stale writer fails on the
//! version check (and, behind it, on a unique key: `(saga_id, event_id)` in SQLite,
//! `(saga_id, first_event_id)` of the commit's row of events in PostgreSQL) and writes
//! nothing. Stored rows that do not decode (an unknown event type, attributes that are
//! not JSON) are `Codec` errors naming the saga and event; a database whose schema is
//! newer than this build is a `Configuration` error; nothing is ever rewritten to
//! "repair" it.
//!
//! Builds never need a live database: queries use sqlx's runtime API, and migrations
//! are embedded with `sqlx::migrate!`.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

/// The NATS client, for [`NatsTaskQueue::with_client`] and [`NatsSignalDispatcher::new`].
#[cfg(feature = "nats")]
pub use async_nats;
pub use saga_runtime;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod common;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(feature = "nats")]
pub use nats::{NatsConfig, NatsSignalDispatcher, NatsTaskQueue, TaskRetention};
#[cfg(feature = "postgres")]
pub use postgres::{PgSignalDispatcher, PostgresConfig, PostgresStore, DEFAULT_COMMIT_FLUSHERS};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteConfig, SqliteStore, Synchronous};

use std::sync::atomic::{AtomicU64, Ordering};

/// What a store has done since it was opened: the statement count behind the
/// benchmark's "SQL statements per step".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// SQL statements sent to the database (reads, writes, `BEGIN`/`COMMIT`).
    pub statements: u64,
    /// Explicit transactions (`BEGIN .. COMMIT`); a single-statement write that
    /// commits on its own is counted in `statements` only.
    pub transactions: u64,
    /// Workflow-task commits (and plain appends).
    pub commits: u64,
    /// Writes that shared a transaction with others (group commit).
    pub batched_writes: u64,
}

#[derive(Debug, Default)]
#[allow(dead_code)]
pub(crate) struct Stats {
    pub(crate) statements: AtomicU64,
    pub(crate) transactions: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) batched: AtomicU64,
}

#[allow(dead_code)]
impl Stats {
    pub(crate) fn snapshot(&self) -> StoreStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreStats {
            statements: get(&self.statements),
            transactions: get(&self.transactions),
            commits: get(&self.commits),
            batched_writes: get(&self.batched),
        }
    }
}
