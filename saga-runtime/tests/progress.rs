//! A worker reports progress on the delivery of a long activity, so the queue does not
//! hand it to another worker while it runs (the way it redelivers a dead worker's task).

use std::time::Duration;

use saga_runtime::activity::activity;
use saga_runtime::adapter::memory::{InMemoryStore, InMemoryTaskQueue, QueueConfig};
use saga_runtime::conformance::fixtures::{patient, single};
use saga_runtime::engine::SagaEngine;

/// Runs one 1.5 s activity through a queue whose ack wait is 300 ms; returns how many
/// times the activity ran.
async fn attempts_with_progress_every(every: Duration) -> u64 {
    let queue = InMemoryTaskQueue::with_config(QueueConfig {
        ack_wait: Duration::from_millis(300),
        max_deliver: 20,
    });
    let engine = SagaEngine::builder()
        .store(InMemoryStore::new())
        .queue(queue)
        .workflow::<single<patient>>()
        .activities([activity::<patient>()])
        .progress_every(every)
        .build()
        .await
        .unwrap();
    let out = engine
        .start::<single<patient>>("long", 1_500)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(out, 1_500);
    engine.metrics().activity_attempts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_keeps_a_long_activity_from_being_redelivered() {
    assert_eq!(
        attempts_with_progress_every(Duration::from_millis(100)).await,
        1,
        "with progress every 100 ms the delivery stays with its worker"
    );
    // The control: without progress in time the queue redelivers the running task, and
    // another worker loop runs the attempt again.
    assert!(
        attempts_with_progress_every(Duration::from_secs(60)).await > 1,
        "without progress a long activity is delivered again"
    );
}
