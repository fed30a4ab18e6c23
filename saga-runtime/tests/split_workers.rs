//! An activity-only worker (no workflow code) whose attempt outlives a change to its
//! execution: while the step runs, the execution is cancelled. Its commit then fails
//! the version check; it reads the history again, finds the result still wanted (a
//! cancellation waits for running steps, so that they can be undone) and records it,
//! and the compensation runs there too. (The rest of the split between workflow and
//! activity workers: the conformance scenario `split_workers_share_executions`.)

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use saga_runtime::activity::{activity, Activity, ActivityContext, ActivityError, ActivityOptions};
use saga_runtime::adapter::memory::{InMemorySignalDispatcher, InMemoryStore, InMemoryTaskQueue};
use saga_runtime::conformance::engine::compensations_in_history;
use saga_runtime::conformance::fixtures::single;
use saga_runtime::domain::{ErrorKind, EventType};
use saga_runtime::engine::SagaEngine;

const GATED_QUEUE: &str = "gated";

static STARTED: AtomicBool = AtomicBool::new(false);
static RELEASED: AtomicBool = AtomicBool::new(false);
static UNDONE: AtomicU32 = AtomicU32::new(0);

/// Returns its input once the test releases it; runs only on [`GATED_QUEUE`].
#[allow(non_camel_case_types)]
struct gated {}
impl Activity for gated {
    const TYPE_ID: &'static str = "gated";
    type Input = u64;
    type Output = u64;
    async fn execute(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
        STARTED.store(true, Ordering::SeqCst);
        while !RELEASED.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(n)
    }
    fn options() -> ActivityOptions {
        ActivityOptions {
            task_queue: Some(GATED_QUEUE.to_owned()),
            ..ActivityOptions::default()
        }
    }
    fn compensation() -> Option<&'static str> {
        Some(ungate::TYPE_ID)
    }
}

/// Undoes [`gated`], counting.
#[allow(non_camel_case_types)]
struct ungate {}
impl Activity for ungate {
    const TYPE_ID: &'static str = "ungate";
    type Input = u64;
    type Output = ();
    async fn execute(_ctx: ActivityContext, _n: u64) -> Result<(), ActivityError> {
        UNDONE.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn options() -> ActivityOptions {
        ActivityOptions {
            task_queue: Some(GATED_QUEUE.to_owned()),
            ..ActivityOptions::default()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_recorded_after_a_cancellation_is_compensated() {
    let store = InMemoryStore::new();
    let queue = InMemoryTaskQueue::new();
    let signals = InMemorySignalDispatcher::new();
    let workflows = SagaEngine::builder()
        .store(store.clone())
        .queue(queue.clone())
        .signals(signals.clone())
        .workflow::<single<gated>>()
        .activities([activity::<gated>(), activity::<ungate>()])
        .build()
        .await
        .unwrap();
    let activities = SagaEngine::builder()
        .store(store)
        .queue(queue)
        .signals(signals)
        .activities([activity::<gated>(), activity::<ungate>()])
        .task_queue_name(GATED_QUEUE)
        .build()
        .await
        .unwrap();

    let run = workflows
        .start::<single<gated>>("gated-1", 7)
        .await
        .unwrap();
    while !STARTED.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    workflows.cancel("gated-1").await.unwrap();
    RELEASED.store(true, Ordering::SeqCst);
    let err = run.result().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");

    let h = workflows.history("gated-1").await.unwrap();
    let cancelled = h
        .iter()
        .position(|e| e.event_type == EventType::WorkflowExecutionCancelRequested)
        .unwrap();
    let after: Vec<_> = h[cancelled + 1..]
        .iter()
        .map(|e| e.event_type)
        .take(2)
        .collect();
    assert_eq!(
        after,
        [
            EventType::ActivityTaskStarted,
            EventType::ActivityTaskCompleted
        ],
        "the step's result is recorded after the cancellation"
    );
    assert_eq!(compensations_in_history(&h), ["ungate"]);
    assert_eq!(UNDONE.load(Ordering::SeqCst), 1);
    let m = activities.metrics();
    assert_eq!(
        (m.activity_attempts, m.inputs_handed_over, m.workflow_tasks),
        (2, 2, 0),
        "the step and its compensation ran and were handed over; nothing decided there"
    );
    assert!(
        m.conflicts >= 1,
        "the first commit of the result lost: {m:?}"
    );
    workflows.verify_replay("gated-1").await.unwrap();
    workflows.shutdown().await;
    activities.shutdown().await;
}
