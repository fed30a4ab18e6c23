//! Child workflows across workers that die. No message carries a child's start or,
//! once it closes, its outcome to the parent: the worker that wrote the commit does
//! both right after it. With the outbox on (a broker's queue), that commit also writes
//! a workflow task, due after `redeliver_after`, which what it re-drives settles: the
//! parent's for the start, the child's own for the outcome. So a worker that dies
//! between the commit and the rest costs latency, not a parent waiting forever. (Local
//! activities, the other such effect: `local_redrive.rs`.)

mod common;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::Switch;
use saga_runtime::adapter::memory::{InMemorySignalDispatcher, InMemoryStore, InMemoryTaskQueue};
use saga_runtime::conformance::engine::builder;
use saga_runtime::conformance::fixtures::{parent_flow, Order};
use saga_runtime::domain::{EventType, HistoryEvent};
use saga_runtime::engine::{OutboxConfig, SagaEngine};
use saga_runtime::port::{Commit, EventStore, Outbox, WorkflowStore};
use tokio::runtime::Runtime;

const REDELIVER_AFTER: Duration = Duration::from_millis(300);

/// What the workers share, as processes share PostgreSQL and NATS.
struct Cluster {
    store: InMemoryStore,
    queue: InMemoryTaskQueue,
    signals: InMemorySignalDispatcher,
}

impl Cluster {
    fn new() -> Self {
        Cluster {
            store: InMemoryStore::new(),
            queue: InMemoryTaskQueue::new(),
            signals: InMemorySignalDispatcher::new(),
        }
    }

    /// A worker with every fixture, the outbox on, and no re-drive of its own as it
    /// starts: only the outbox can bring back what a dead worker left.
    fn worker<S: WorkflowStore + Clone>(
        &self,
        store: S,
    ) -> impl Future<Output = saga_runtime::Result<SagaEngine>> {
        builder(store)
            .queue(self.queue.clone())
            .signals(self.signals.clone())
            .outbox(OutboxConfig {
                enabled: Some(true),
                redeliver_after: REDELIVER_AFTER,
                reconcile_every: Duration::from_millis(50),
            })
            .recover_on_start(false)
            .build()
    }

    /// The store as a worker sees it until the commit `trip` matches is written; from
    /// then on that worker reaches nothing, as if it had died right after.
    fn doomed_store(&self, trip: impl Fn(&Commit) -> bool + Send + Sync + 'static) -> Switch {
        Switch {
            inner: self.store.clone(),
            trip: Some(Arc::new(trip)),
            ..Switch::default()
        }
    }

    /// Runs a parent on a worker whose store goes down at `trip`, kills that worker,
    /// then has a worker started afterwards finish it: the child's tracking number.
    fn run_through_a_death(
        &self,
        parent: &str,
        trip: impl Fn(&Commit) -> bool + Send + Sync + 'static,
        check_left: impl FnOnce(&[HistoryEvent], &[HistoryEvent]),
    ) -> String {
        let store = self.doomed_store(trip);
        let doomed = runtime(1);
        let a = doomed.block_on(self.worker(store.clone())).unwrap();
        doomed
            .block_on(a.start::<parent_flow>(parent, Order::new(parent)))
            .unwrap();
        while !store.down.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Killed: none of its tasks runs another step (the engine's own drop would
        // still run on the dead runtime, so it is leaked with it).
        std::mem::forget(a);
        doomed.shutdown_background();

        let live = runtime(2);
        live.block_on(async {
            let parent_history = self.store.history(&parent.into()).await.unwrap();
            let child_history = self.store.history(&child_of(parent).into()).await.unwrap();
            check_left(&parent_history, &child_history);
            let b = self.worker(self.store.clone()).await.unwrap();
            let tracking =
                tokio::time::timeout(Duration::from_secs(20), b.result::<parent_flow>(parent))
                    .await
                    .expect("the later worker finished the parent")
                    .unwrap();
            let child = b.history(child_of(parent)).await.unwrap();
            assert_eq!(count(&child, EventType::WorkflowExecutionStarted), 1);
            assert_eq!(count(&child, EventType::WorkflowExecutionCompleted), 1);
            let h = b.history(parent).await.unwrap();
            assert_eq!(count(&h, EventType::ChildWorkflowExecutionStarted), 1);
            assert_eq!(count(&h, EventType::ChildWorkflowExecutionCompleted), 1);
            b.verify_replay(parent).await.unwrap();
            assert_eq!(
                self.store.outbox_len().await.unwrap(),
                0,
                "every task the deaths left was settled"
            );
            tracking
        })
    }
}

/// The id a parent's first child gets (`<parent>/child-<seq>`).
fn child_of(parent: &str) -> String {
    format!("{parent}/child-0")
}

fn runtime(threads: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime")
}

fn count(history: &[HistoryEvent], t: EventType) -> usize {
    history.iter().filter(|e| e.event_type == t).count()
}

/// The worker dies right after the parent's commit that decides to start the child:
/// the child was never created; the parent's task in the outbox re-drives the start.
#[test]
fn a_child_start_lost_with_its_worker_is_re_driven() {
    let cluster = Cluster::new();
    let tracking = cluster.run_through_a_death(
        "parent-1",
        |c| {
            c.events
                .iter()
                .any(|e| e.event_type == EventType::StartChildWorkflowExecutionInitiated)
        },
        |parent, child| {
            assert!(child.is_empty(), "the child was never created: {child:?}");
            assert_eq!(
                parent.last().map(|e| e.event_type),
                Some(EventType::StartChildWorkflowExecutionInitiated)
            );
        },
    );
    assert_eq!(tracking, "trk-parent-1");
}

/// The worker dies right after the child's closing commit: the parent never heard;
/// the child's task in the outbox re-drives the news.
#[test]
fn a_childs_outcome_lost_with_its_worker_is_re_driven() {
    let cluster = Cluster::new();
    let tracking = cluster.run_through_a_death(
        "parent-2",
        |c| c.saga_id.as_str() == child_of("parent-2") && c.closes_execution(),
        |parent, child| {
            assert_eq!(
                child.last().map(|e| e.event_type),
                Some(EventType::WorkflowExecutionCompleted)
            );
            assert_eq!(count(parent, EventType::ChildWorkflowExecutionCompleted), 0);
        },
    );
    assert_eq!(tracking, "trk-parent-2");
}
