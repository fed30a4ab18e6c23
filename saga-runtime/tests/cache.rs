//! The engine's cache of executions is bounded (`max_cached_executions`, like
//! Temporal's `max_cached_workflows`). An execution leaves it when this engine closes
//! it; one that another engine closes would stay for the life of the process: a
//! client that starts executions for workers to run kept every one it started.

use saga_runtime::adapter::memory::{InMemorySignalDispatcher, InMemoryTaskQueue};
use saga_runtime::conformance::engine::builder;
use saga_runtime::conformance::fixtures::{order_saga, Order};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_closed_elsewhere_leave_within_the_bound() {
    let store = saga_runtime::adapter::memory::InMemoryStore::new();
    let queue = InMemoryTaskQueue::new();
    let signals = InMemorySignalDispatcher::new();
    let worker = builder(store.clone())
        .queue(queue.clone())
        .signals(signals.clone())
        .build()
        .await
        .unwrap();
    // Two starters without workers of their own: one with the default bound, one
    // with a bound of 8. Each starts 40 executions, which the worker runs and closes.
    let starter = |bound: Option<usize>| {
        let b = builder(store.clone())
            .queue(queue.clone())
            .signals(signals.clone())
            .client_only();
        async move {
            match bound {
                Some(n) => b.max_cached_executions(n),
                None => b,
            }
            .build()
            .await
            .unwrap()
        }
    };
    let unbounded = starter(None).await;
    let bounded = starter(Some(8)).await;
    for (engine, prefix) in [(&unbounded, "default"), (&bounded, "eight")] {
        for n in 0..40 {
            let id = format!("{prefix}-{n}");
            let receipt = engine
                .execute::<order_saga>(id.as_str(), Order::new(&id))
                .await
                .unwrap();
            assert_eq!(receipt.shipment.tracking, format!("trk-{id}"));
        }
    }
    assert_eq!(
        unbounded.metrics().cached_executions,
        40,
        "within the default bound every execution it started stays cached"
    );
    let kept = bounded.metrics().cached_executions;
    assert!((1..=8).contains(&kept), "{kept} cached");
    // Still correct past the bound: an execution pushed out is loaded again.
    let loads = bounded.metrics().loads;
    let first = bounded.describe("eight-0").await.unwrap();
    assert_eq!(
        first.output,
        unbounded.describe("eight-0").await.unwrap().output
    );
    assert!(
        bounded.metrics().loads > loads,
        "eight-0 was read back from the store"
    );
    worker.shutdown().await;
}
