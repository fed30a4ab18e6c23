//! The adapter conformance suite (`saga_runtime::conformance`) against the in-memory
//! adapters.

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::adapter::memory::{
    InMemoryEventStore, InMemorySignalDispatcher, InMemoryStore, InMemoryTaskQueue,
    InMemoryTimerStore, QueueConfig,
};
use saga_runtime::conformance;

const QUEUE: QueueConfig = QueueConfig {
    ack_wait: Duration::from_millis(150),
    max_deliver: 3,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_store_in_memory_event_store() {
    conformance::run_all_event_store(&Arc::new(InMemoryEventStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_store_in_memory_store() {
    conformance::run_all_event_store(&Arc::new(InMemoryStore::new())).await;
}

/// A persistent store keeps what earlier runs wrote: the suite must pass again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_store_suite_passes_twice_on_one_store() {
    let store = Arc::new(InMemoryEventStore::new());
    conformance::run_all_event_store(&store).await;
    conformance::run_all_event_store(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_queue_in_memory() {
    let queue = InMemoryTaskQueue::with_config(QUEUE);
    conformance::run_all_task_queue(&queue, QUEUE.ack_wait, QUEUE.max_deliver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_store_in_memory_timer_store() {
    conformance::run_all_timer_store(&Arc::new(InMemoryTimerStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_store_in_memory_store() {
    conformance::run_all_timer_store(&Arc::new(InMemoryStore::new())).await;
}

/// Unrelated timers (due, claimed, in the future) must not disturb the checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_store_suite_passes_twice_among_unrelated_timers() {
    use saga_runtime::domain::{SagaId, TimerKind};
    use saga_runtime::port::{TimerRecord, TimerStore};

    let store = Arc::new(InMemoryTimerStore::new());
    let now = chrono::Utc::now();
    for (i, offset) in [-7200, -30, 30, 7200].into_iter().enumerate() {
        let timer = TimerRecord {
            timer_id: format!("unrelated-{i}"),
            saga_id: SagaId::new("unrelated"),
            kind: TimerKind::WorkflowTimeout,
            fire_at: now + chrono::Duration::seconds(offset),
            attributes: serde_json::Value::Null,
        };
        store.create(timer).await.unwrap();
    }
    conformance::run_all_timer_store(&store).await;
    conformance::run_all_timer_store(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_dispatcher_in_memory() {
    let dispatcher = InMemorySignalDispatcher::new();
    conformance::run_all_signal_dispatcher(&dispatcher).await;
    conformance::check_inboxes_across_dispatchers(&dispatcher, &dispatcher.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_store_in_memory_store() {
    conformance::run_all_workflow_store(&Arc::new(InMemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definition_store_in_memory_store() {
    conformance::run_all_definition_store(&Arc::new(InMemoryStore::new())).await;
}

/// A store holding an earlier run's definitions passes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definition_store_suite_passes_twice_on_one_store() {
    let store = Arc::new(InMemoryStore::new());
    conformance::run_all_definition_store(&store).await;
    conformance::run_all_definition_store(&store).await;
}
