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

/// A signal dispatcher that never delivers: subscriptions stay silent (their senders
/// are kept, so they do not close either).
#[derive(Default)]
struct Deaf {
    kept:
        std::sync::Mutex<Vec<tokio::sync::mpsc::UnboundedSender<saga_runtime::port::Notification>>>,
}

#[async_trait::async_trait]
impl saga_runtime::port::SignalDispatcher for Deaf {
    async fn notify(
        &self,
        _: &saga_runtime::domain::SagaId,
        _: saga_runtime::port::Notification,
    ) -> saga_runtime::Result<()> {
        Ok(())
    }

    async fn subscribe(
        &self,
        _: &saga_runtime::domain::SagaId,
    ) -> saga_runtime::Result<saga_runtime::port::SignalSubscription> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.kept.lock().unwrap().push(tx);
        Ok(rx)
    }
}

/// A completion this engine commits reaches `result()` from the commit itself, not
/// from a read of the store after a notification: with a dispatcher that never
/// notifies, the output still arrives at once instead of at the next poll of the store
/// (a second later).
#[tokio::test(start_paused = true)]
async fn result_comes_from_the_commit() {
    use saga_runtime::conformance::fixtures::{order_saga, Order};
    let engine = scenario::builder(InMemoryStore::new())
        .signals(Deaf::default())
        .build()
        .await
        .unwrap();
    let began = tokio::time::Instant::now();
    let run = engine
        .start::<order_saga>("local-output", Order::new("o1"))
        .await
        .unwrap();
    let receipt = run.result().await.expect("completes");
    assert_eq!(receipt.shipment.tracking, "trk-o1");
    let waited = began.elapsed();
    assert!(
        waited < std::time::Duration::from_millis(500),
        "the output came after {waited:?}: from a poll of the store, not the commit"
    );
    engine.shutdown().await;
}
