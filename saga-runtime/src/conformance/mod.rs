//! The adapter conformance suite: one async test function per port contract, generic
//! over the adapter. Every adapter (in-memory, SQLite, PostgreSQL, NATS) runs it
//! unchanged; a failed check panics with what was expected.
//!
//! Each port has a module of `check_*` functions, one per clause of the contract, and a
//! `run_all_*` function that runs them in turn:
//!
//! | port | suite |
//! |------|-------|
//! | [`EventStore`](crate::port::EventStore) | [`run_all_event_store`] |
//! | [`TaskQueue`](crate::port::TaskQueue) | [`run_all_task_queue`] |
//! | [`TimerStore`](crate::port::TimerStore) | [`run_all_timer_store`] |
//! | [`WorkflowStore`](crate::port::WorkflowStore) | [`run_all_workflow_store`] (with [`run_all_outbox`]) |
//! | [`SignalDispatcher`](crate::port::SignalDispatcher) | [`run_all_signal_dispatcher`] |
//! | [`DefinitionStore`](crate::port::DefinitionStore) | [`run_all_definition_store`] |
//!
//! The checks take an adapter that the caller built (adapters are created async and
//! isolate themselves: own schema, own stream). Every check uses fresh ids (saga ids,
//! queue names, timer ids, workflow types) unique to the call, so the suite can run
//! many times against the same persistent database and never sees its own old data.
//! Timer checks may claim unrelated due timers they find; run them against a store no
//! live scheduler uses.
//!
//! Timing checks use real, short durations (a few hundred milliseconds), so the suite
//! works against real brokers and databases; run it on a multi-threaded runtime.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use saga_runtime::adapter::memory::{InMemoryStore, InMemoryTaskQueue, QueueConfig};
//! use saga_runtime::conformance;
//!
//! async fn conformance_suite() {
//!     let store = Arc::new(InMemoryStore::new());
//!     conformance::run_all_event_store(&store).await;
//!     conformance::run_all_timer_store(&store).await;
//!
//!     let config = QueueConfig { ack_wait: Duration::from_millis(200), max_deliver: 3 };
//!     let queue = InMemoryTaskQueue::with_config(config);
//!     conformance::run_all_task_queue(&queue, config.ack_wait, config.max_deliver).await;
//! }
//! ```

pub mod definition_store;
pub mod engine;
pub mod event_store;
pub mod fixtures;
pub mod outbox;
pub mod signal_dispatcher;
pub mod task_queue;
pub mod timer_store;
pub mod workflow_store;

pub use definition_store::run_all_definition_store;
pub use event_store::run_all_event_store;
pub use outbox::run_all_outbox;
pub use signal_dispatcher::{check_inboxes_across_dispatchers, run_all_signal_dispatcher};
pub use task_queue::run_all_task_queue;
pub use timer_store::run_all_timer_store;
pub use workflow_store::run_all_workflow_store;

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Timelike, Utc};

use crate::domain::Result;

/// An id no other call (in this process or an earlier run) has used:
/// `conf-<label>-<start time>-<pid>-<counter>`. Only `[a-z0-9-]`, so it is also a valid
/// NATS subject token and SQL-friendly.
pub(crate) fn unique(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("conf-{label}-{nanos:x}-{:x}-{n}", std::process::id())
}

/// `Utc::now()` truncated to whole seconds, so it survives any store's precision.
pub(crate) fn now_s() -> DateTime<Utc> {
    let now = Utc::now();
    now.with_nanosecond(0).unwrap_or(now)
}

/// Unwraps an adapter result, panicking with what was being done and the error.
#[track_caller]
pub(crate) fn ok<T>(what: impl Display, result: Result<T>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("conformance: {what} failed: {e}"),
    }
}
