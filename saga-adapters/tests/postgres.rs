//! The PostgreSQL store and signal dispatcher: the conformance suites and every engine
//! scenario, each test in its own schema (dropped at the end). Without a server the
//! tests skip, unless `CI` is set, where they fail.
#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;

use common::held::Held;
use common::pg::with_schema;
use saga_adapters::PostgresStore;
use saga_runtime::conformance;
use saga_runtime::conformance::engine as scenario;

async fn connect(config: saga_adapters::PostgresConfig) -> PostgresStore {
    PostgresStore::connect_with(config)
        .await
        .expect("connect the PostgreSQL store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_store_conformance() {
    with_schema(|config| async move {
        conformance::run_all_event_store(&Arc::new(connect(config).await)).await;
    })
    .await;
}

/// A second connect finds the schema migrated (idempotent) and the suite passes again
/// among the first run's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_store_conformance_twice_across_reconnect() {
    with_schema(|config| async move {
        conformance::run_all_event_store(&Arc::new(connect(config.clone()).await)).await;
        conformance::run_all_event_store(&Arc::new(connect(config).await)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_store_conformance() {
    with_schema(|config| async move {
        conformance::run_all_timer_store(&Arc::new(connect(config).await)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definition_store_conformance() {
    with_schema(|config| async move {
        conformance::run_all_definition_store(&Arc::new(connect(config.clone()).await)).await;
        conformance::run_all_definition_store(&Arc::new(connect(config).await)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_store_conformance() {
    with_schema(|config| async move {
        conformance::run_all_workflow_store(&Arc::new(connect(config).await)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_dispatcher_conformance() {
    with_schema(|config| async move {
        let store = connect(config).await;
        let dispatcher = store.signal_dispatcher().await.expect("dispatcher");
        conformance::run_all_signal_dispatcher(&dispatcher).await;
    })
    .await;
}

/// Several processes may start at once: concurrent connects migrate once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_migrate_once() {
    with_schema(|config| async move {
        let connects: Vec<_> = (0..4)
            .map(|_| tokio::spawn(PostgresStore::connect_with(config.clone())))
            .collect();
        for c in connects {
            c.await.unwrap().expect("every concurrent connect succeeds");
        }
    })
    .await;
}

/// The scenarios on tokio's paused clock: the store connects on the real clock, then
/// the clock is paused; `Held` keeps virtual time still while the database works.
macro_rules! paused {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            with_schema(|config| async move {
                let store = connect(config).await;
                tokio::time::pause();
                scenario::$name(Held(store)).await;
                tokio::time::resume();
            })
            .await;
        }
    )*};
}

saga_runtime::for_each_paused_scenario!(paused);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_race() {
    with_schema(|config| async move {
        scenario::two_workers_race(connect(config).await).await;
    })
    .await;
}

/// The scenario's corruption: flip one bit of the newest stored snapshot's state with
/// an UPDATE.
#[tokio::test]
async fn corrupted_snapshot_falls_back() {
    with_schema(|config| async move {
        let schema = config.schema.clone().unwrap_or_default();
        let store = connect(config).await;
        tokio::time::pause();
        scenario::corrupted_snapshot_falls_back(Held(store), move |_, saga| {
            let sql = format!(
                "UPDATE saga_snapshots \
                    SET state = set_byte(state, length(state) / 2, \
                                         get_byte(state, length(state) / 2) # 1) \
                  WHERE saga_id = '{saga}' AND last_event_id = \
                        (SELECT max(last_event_id) FROM saga_snapshots WHERE saga_id = '{saga}')"
            );
            common::block_on_side(common::pg::exec(&schema, &sql)) == 1
        })
        .await;
        tokio::time::resume();
    })
    .await;
}

/// Group commit: the conformance check of many sagas committing at once, on a store
/// with one flusher, where the commits certainly share statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_judges_each_commit_alone() {
    with_schema(|config| async move {
        let store = Arc::new(
            connect(saga_adapters::PostgresConfig {
                commit_flushers: Some(1),
                ..config
            })
            .await,
        );
        conformance::workflow_store::check_concurrent_commits_across_sagas(&store).await;
        assert!(
            store.stats().batched_writes > 0,
            "no commit shared a statement: {:?}",
            store.stats()
        );
    })
    .await;
}

/// A commit the database refuses (a NUL character, which `jsonb` cannot hold) fails
/// alone when it shares a batch: the batch is retried one by one, the others are
/// written, and the refused one writes nothing and gets a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_refused_commit_fails_alone() {
    use saga_runtime::domain::{EventType, HistoryEvent, SagaId};
    use saga_runtime::port::{Commit, EventStore};
    use serde_json::json;

    with_schema(|config| async move {
        let store = connect(config).await;
        let started = |id: &SagaId, input: serde_json::Value| {
            let start = HistoryEvent::new(
                id.clone(),
                0,
                EventType::WorkflowExecutionStarted,
                chrono::Utc::now(),
                json!({"workflow_type": "refused", "input": input}),
                format!("trace-{id}"),
            );
            Commit::events_only(id, 0, vec![start])
        };
        let ids: Vec<SagaId> = (0..8).map(|i| SagaId::new(format!("gc-{i}"))).collect();
        let commits = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let input = if i == 3 {
                    json!("nul \u{0} here")
                } else {
                    json!(i)
                };
                started(id, input)
            })
            .collect();
        let before = store.stats();
        let results = store.commit_all(commits).await;
        let after = store.stats();
        // The new batch connection's setup (its plan cache mode), one batch statement
        // (refused), then eight on their own.
        assert_eq!(after.statements - before.statements, 10, "{after:?}");
        assert_eq!(after.batched_writes, before.batched_writes, "{after:?}");
        for (i, (id, r)) in ids.iter().zip(&results).enumerate() {
            if i == 3 {
                let e = r.as_ref().expect_err("the commit with a NUL must fail");
                assert!(
                    e.to_string().contains("commit a workflow task"),
                    "a clear error: {e}"
                );
                assert_eq!(store.version(id).await.unwrap(), 0, "it wrote nothing");
            } else {
                assert_eq!(r.as_ref().ok(), Some(&1), "commit {i}: {r:?}");
                let history = store.history(id).await.unwrap();
                assert_eq!(history.len(), 1);
                assert_eq!(history[0].attributes["input"], json!(i));
            }
        }
    })
    .await;
}
