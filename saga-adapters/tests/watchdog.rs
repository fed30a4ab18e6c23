//! The watchdog's stall detector on the SQL stores: it lists the idle executions by
//! the time of their last event (migration 0004), forces the stuck attempt's timeout,
//! and the retry completes the execution. On tokio's paused
//! clock, with `Held` keeping virtual time still while the database works; PostgreSQL
//! in its own schema (skipped without a server unless `CI` is set, where it fails).
#![allow(non_camel_case_types)]

mod common;

use std::time::Duration;

use saga_runtime::activity::{
    activity, Activity, ActivityContext, ActivityError, ActivityOptions, RetryPolicy,
};
use saga_runtime::conformance::fixtures::single;
use saga_runtime::domain::{EventType, SagaId};
use saga_runtime::engine::SagaEngine;
use saga_runtime::port::WorkflowStore;
use saga_runtime::watchdog::{Action, Detector, WatchdogConfig};

/// The first attempt never returns and has no timeout; later attempts succeed.
pub struct hangs_first {}
impl Activity for hangs_first {
    const TYPE_ID: &'static str = "hangs-first";
    type Input = ();
    type Output = u32;
    async fn execute(ctx: ActivityContext, _: ()) -> Result<u32, ActivityError> {
        if ctx.attempt == 1 {
            std::future::pending::<()>().await;
        }
        Ok(ctx.attempt)
    }
    fn options() -> ActivityOptions {
        ActivityOptions {
            retry: RetryPolicy::exponential(3).with_initial_interval(Duration::from_secs(1)),
            start_to_close_timeout: None,
            task_queue: None,
        }
    }
}

async fn stalled_attempt_is_forced<S: WorkflowStore>(store: S) {
    let engine = SagaEngine::builder()
        .store(store)
        .workflow::<single<hangs_first>>()
        .activities([activity::<hangs_first>()])
        .watchdog(WatchdogConfig {
            every: Duration::from_secs(1),
            stall_after: Duration::from_secs(10),
            ..WatchdogConfig::default()
        })
        .build()
        .await
        .expect("engine");
    let run = engine
        .start::<single<hangs_first>>("stuck", ())
        .await
        .expect("start");
    let out = tokio::time::timeout(Duration::from_secs(120), run.result())
        .await
        .expect("the watchdog unsticks the execution")
        .expect("it completes");
    assert_eq!(out, 2, "the retry policy ran a second attempt");

    let stalls: Vec<_> = engine
        .watchdog_findings()
        .into_iter()
        .filter(|f| f.detector == Detector::Stall)
        .collect();
    assert_eq!(stalls.len(), 1, "{stalls:#?}");
    assert_eq!(stalls[0].saga_id, Some(SagaId::new("stuck")));
    assert!(matches!(
        stalls[0].action,
        Action::ForceActivityTimeout { attempt: 1, .. }
    ));
    assert!(stalls[0].action_taken);
    let history = engine.history("stuck").await.expect("history");
    assert!(history
        .iter()
        .any(|e| e.event_type == EventType::ActivityTaskTimedOut
            && e.attr_str("source") == Some("watchdog")));
}

#[cfg(feature = "sqlite")]
#[tokio::test(start_paused = true)]
async fn stall_on_sqlite() {
    let store = saga_adapters::SqliteStore::open_temporary()
        .await
        .expect("open a temporary SQLite store");
    stalled_attempt_is_forced(common::held::Held(store)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn stall_on_postgres() {
    common::pg::with_schema(|config| async move {
        let store = saga_adapters::PostgresStore::connect_with(config)
            .await
            .expect("connect");
        tokio::time::pause();
        stalled_attempt_is_forced(common::held::Held(store)).await;
        tokio::time::resume();
    })
    .await;
}
