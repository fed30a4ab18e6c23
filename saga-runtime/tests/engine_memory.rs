//! The engine scenarios on the in-memory store. Timer scenarios run on tokio's paused
//! clock, so hours of workflow time pass in milliseconds.

use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::conformance::engine as scenario;

macro_rules! paused {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(start_paused = true)]
        async fn $name() {
            scenario::$name(InMemoryStore::new()).await;
        }
    )*};
}

saga_runtime::for_each_paused_scenario!(paused);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_race() {
    scenario::two_workers_race(InMemoryStore::new()).await;
}

#[tokio::test(start_paused = true)]
async fn corrupted_snapshot_falls_back() {
    scenario::corrupted_snapshot_falls_back(InMemoryStore::new(), |store, saga| {
        store.events().corrupt_snapshot(saga, |s| {
            let mid = s.state.len() / 2;
            s.state[mid] ^= 0x01;
        })
    })
    .await;
}

/// `shutdown` stops the workers and the timer loop and returns, on a single-threaded
/// runtime too.
#[tokio::test(start_paused = true)]
async fn shutdown_returns() {
    let engine = scenario::builder(InMemoryStore::new())
        .build()
        .await
        .unwrap();
    let run = engine
        .start::<saga_runtime::conformance::fixtures::chain>("shutdown", 3)
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), 3);
    tokio::time::timeout(std::time::Duration::from_secs(5), engine.shutdown())
        .await
        .expect("shutdown returns");
}
