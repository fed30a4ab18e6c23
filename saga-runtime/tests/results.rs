//! How a waiter learns an execution's result: a completion committed by another
//! engine arrives with its output in the notification, so the waiter reads nothing
//! from the store; a failure, whose error is built from the history, is read.

mod common;

use std::sync::atomic::Ordering;

use saga_runtime::adapter::memory::{InMemorySignalDispatcher, InMemoryTaskQueue};
use saga_runtime::conformance::engine::builder;
use saga_runtime::conformance::fixtures::{order_saga, Order};
use saga_runtime::domain::ErrorKind;

use common::Switch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_elsewhere_brings_its_output() {
    // The client's store counts its history reads; the worker's is the same store
    // unwrapped, so only the client's reads are counted.
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
