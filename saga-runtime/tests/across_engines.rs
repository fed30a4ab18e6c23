//! What crosses from one engine to another besides the store: the first task of an
//! execution carries its history, so the worker that takes it reads only the version
//! to confirm it; a completion's notification carries its output, so a waiter
//! elsewhere reads nothing back. Both are shortcuts: without them the store is read,
//! and says the same.

mod common;

use std::sync::atomic::Ordering;

use saga_runtime::adapter::memory::{InMemorySignalDispatcher, InMemoryTaskQueue};
use saga_runtime::conformance::engine::builder;
use saga_runtime::conformance::fixtures::{order_saga, Order};
use saga_runtime::domain::ErrorKind;
use saga_runtime::engine::SagaEngine;

use common::Switch;

/// A worker and a client (which runs no workers) over one store; the client's
/// store counts its history reads, the worker's is the same store unwrapped.
async fn worker_and_client() -> (SagaEngine, SagaEngine, Switch) {
    let client_store = Switch::default();
    let queue = InMemoryTaskQueue::new();
    let signals = InMemorySignalDispatcher::new();
    let worker = builder(client_store.inner.clone())
        .queue(queue.clone())
        .signals(signals.clone())
        .build()
        .await
        .unwrap();
    let client = builder(client_store.clone())
        .queue(queue)
        .signals(signals)
        .client_only()
        .build()
        .await
        .unwrap();
    (worker, client, client_store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_task_carries_the_history() {
    let (worker, client, _) = worker_and_client().await;
    // The client runs the first step (the start schedules the first activity); the
    // worker takes the activity task, and the rest of the saga stays there.
    client
        .execute::<order_saga>("carried", Order::new("carried"))
        .await
        .unwrap();
    let m = worker.metrics();
    assert_eq!((m.histories_carried, m.loads), (1, 0), "{m:?}");

    // Too large to carry: the worker reads the history instead.
    let big = "b".repeat(20 * 1024);
    client
        .execute::<order_saga>("too-big", Order::new(&big))
        .await
        .unwrap();
    let m = worker.metrics();
    assert_eq!((m.histories_carried, m.loads), (1, 1), "{m:?}");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_elsewhere_brings_its_output() {
    let (worker, client, client_store) = worker_and_client().await;
    let reads = || client_store.reads.load(Ordering::SeqCst);

    let receipt = client
        .execute::<order_saga>("carried", Order::new("carried"))
        .await
        .unwrap();
    assert_eq!(receipt.shipment.tracking, "trk-carried");
    assert_eq!(
        reads(),
        0,
        "the output came with the notification of the worker's commit"
    );

    // A failure's error is built from the history: that one is read.
    let rejected = Order {
        carrier_rejects: true,
        ..Order::new("read")
    };
    let err = client
        .execute::<order_saga>("read", rejected)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::WorkflowExecution, "{err}");
    assert!(reads() > 0, "the failure's history was read");
    worker.shutdown().await;
}
