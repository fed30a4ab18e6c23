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
