//! The SQLite store: the adapter conformance suites and every engine scenario, each
//! test on its own temporary database file.
#![cfg(feature = "sqlite")]

mod common;

use std::sync::Arc;

use common::held::Held;

use saga_adapters::SqliteStore;
use saga_runtime::conformance;
use saga_runtime::conformance::engine as scenario;
use saga_runtime::port::DefinitionStore;

async fn store() -> SqliteStore {
    SqliteStore::open_temporary()
        .await
        .expect("open a temporary SQLite store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_store_conformance() {
    conformance::run_all_event_store(&Arc::new(store().await)).await;
}

/// A file keeps what earlier runs wrote: the suite passes again after reopening it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_store_conformance_twice_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twice.db");
    let first = Arc::new(SqliteStore::open(&path).await.unwrap());
    conformance::run_all_event_store(&first).await;
    drop(first);
    let second = Arc::new(SqliteStore::open(&path).await.unwrap());
    conformance::run_all_event_store(&second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_store_conformance() {
    conformance::run_all_timer_store(&Arc::new(store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definition_store_conformance() {
    conformance::run_all_definition_store(&Arc::new(store().await)).await;
}

/// Definitions survive a reopen of the file, and the suite passes again among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definition_store_conformance_twice_across_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("saga.db");
    let first = Arc::new(SqliteStore::open(&path).await.expect("open"));
    conformance::run_all_definition_store(&first).await;
    let before = first.definitions().await.expect("definitions");
    drop(first);
    let second = Arc::new(SqliteStore::open(&path).await.expect("reopen"));
    assert_eq!(second.definitions().await.expect("definitions"), before);
    conformance::run_all_definition_store(&second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_store_conformance() {
    conformance::run_all_workflow_store(&Arc::new(store().await)).await;
}

/// The scenarios on tokio's paused clock; `Held` keeps virtual time still while the
/// database works (see `common::held`).
macro_rules! paused {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(start_paused = true)]
        async fn $name() {
            scenario::$name(Held(store().await)).await;
        }
    )*};
}

saga_runtime::for_each_paused_scenario!(paused);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_race() {
    scenario::two_workers_race(store().await).await;
}

/// The scenario's corruption: flip one byte of the newest stored snapshot's state
/// with an UPDATE, as a bad disk or a stray tool would.
#[tokio::test(start_paused = true)]
async fn corrupted_snapshot_falls_back() {
    scenario::corrupted_snapshot_falls_back(Held(store().await), |store, saga| {
        let (path, saga) = (store.0.path().to_path_buf(), saga.to_string());
        common::block_on_side(async move {
            let sql = format!(
                "UPDATE saga_snapshots SET state = CAST( \
                   substr(state, 1, length(state) / 2) \
                   || CASE WHEN substr(state, length(state) / 2 + 1, 1) = X'30' \
                           THEN X'31' ELSE X'30' END \
                   || substr(state, length(state) / 2 + 2) AS BLOB) \
                 WHERE saga_id = '{saga}' AND last_event_id = \
                   (SELECT MAX(last_event_id) FROM saga_snapshots WHERE saga_id = '{saga}')"
            );
            common::sqlite::exec(&path, &sql).await == 1
        })
    })
    .await;
}

/// Group commit: commits in flight at once share transactions, and a stale commit in a
/// batch fails alone while the others of its batch land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_batches_and_isolates_stale_commits() {
    use saga_runtime::domain::{EventType, HistoryEvent, SagaId};
    use saga_runtime::port::EventStore;

    let store = store().await;
    let event = |id: &SagaId, n: u64| {
        let t = if n == 0 {
            EventType::WorkflowExecutionStarted
        } else {
            EventType::SignalReceived
        };
        let attrs = serde_json::json!({"workflow_type": "gc", "n": n});
        HistoryEvent::new(id.clone(), n, t, chrono::Utc::now(), attrs, "t".into())
    };
    let contested = SagaId::new("contested");
    store
        .append(&contested, 0, vec![event(&contested, 0)])
        .await
        .unwrap();
    let before = store.stats();
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let store = store.clone();
        let contested = contested.clone();
        tasks.push(tokio::spawn(async move {
            if i % 4 == 0 {
                // All at version 1: one wins, the others are stale.
                let e = event(&contested, 1);
                (i, store.append(&contested, 1, vec![e]).await)
            } else {
                let id = SagaId::new(format!("gc-{i}"));
                let e = event(&id, 0);
                (i, store.append(&id, 0, vec![e]).await)
            }
        }));
    }
    let (mut won, mut lost) = (0, 0);
    for t in tasks {
        let (i, r) = t.await.unwrap();
        match (i % 4 == 0, r) {
            (true, Ok(_)) => won += 1,
            (true, Err(e)) if e.is_conflict() => lost += 1,
            (false, Ok(v)) => assert_eq!(v, 1),
            (_, other) => panic!("commit {i}: {other:?}"),
        }
    }
    assert_eq!((won, lost), (1, 49));
    assert_eq!(store.version(&contested).await.unwrap(), 2);
    let after = store.stats();
    let commits = after.commits - before.commits;
    let transactions = after.transactions - before.transactions;
    assert_eq!(commits, 151, "{after:?}");
    assert!(
        transactions < commits && after.batched_writes > before.batched_writes,
        "concurrent commits share transactions: {commits} commits in {transactions} \
         transactions"
    );
}
