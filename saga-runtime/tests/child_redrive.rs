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

use common::{closed_within, count, kill, outbox_left, runtime, Cluster, Switch};
use saga_runtime::conformance::engine::builder;
use saga_runtime::conformance::fixtures::{parent_flow, Order};
use saga_runtime::domain::{EventType, HistoryEvent, WorkflowStatus};
use saga_runtime::engine::SagaEngine;
use saga_runtime::port::{Commit, EventStore, Task, TaskKind, TaskQueue, WorkflowStore};

const REDELIVER_AFTER: Duration = Duration::from_millis(300);

/// A worker with every fixture, over `store`.
fn worker<S: WorkflowStore + Clone>(
    cluster: &Cluster,
    store: S,
) -> impl Future<Output = saga_runtime::Result<SagaEngine>> {
    cluster.outboxed(builder(store), REDELIVER_AFTER).build()
}

/// The store as a worker sees it until the commit `trip` matches is written; from
/// then on that worker reaches nothing, as if it had died right after.
fn doomed_store(
    cluster: &Cluster,
    trip: impl Fn(&Commit) -> bool + Send + Sync + 'static,
) -> Switch {
    Switch {
        inner: cluster.store.clone(),
        trip: Some(Arc::new(trip)),
        ..Switch::default()
    }
}

/// Runs a parent on a worker whose store goes down at `trip`, kills that worker,
/// then has a worker started afterwards finish it: the child's tracking number.
fn run_through_a_death(
    cluster: &Cluster,
    parent: &str,
    trip: impl Fn(&Commit) -> bool + Send + Sync + 'static,
    check_left: impl FnOnce(&[HistoryEvent], &[HistoryEvent]),
) -> String {
    let store = doomed_store(cluster, trip);
    let doomed = runtime(1);
    let a = doomed.block_on(worker(cluster, store.clone())).unwrap();
    doomed
        .block_on(a.start::<parent_flow>(parent, Order::new(parent)))
        .unwrap();
    while !store.down.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(a, doomed);

    let live = runtime(2);
    live.block_on(async {
        let parent_history = cluster.store.history(&parent.into()).await.unwrap();
        let child_history = cluster
            .store
            .history(&child_of(parent).into())
            .await
            .unwrap();
        check_left(&parent_history, &child_history);
        let b = worker(cluster, cluster.store.clone()).await.unwrap();
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
            outbox_left(&cluster.store).await,
            0,
            "every task the deaths left was settled"
        );
        tracking
    })
}

/// The id a parent's first child gets (`<parent>/child-<seq>`).
fn child_of(parent: &str) -> String {
    format!("{parent}/child-0")
}

/// The worker dies right after the parent's commit that decides to start the child:
/// the child was never created; the parent's task in the outbox re-drives the start.
#[test]
fn a_child_start_lost_with_its_worker_is_re_driven() {
    let cluster = Cluster::default();
    let tracking = run_through_a_death(
        &cluster,
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
    let cluster = Cluster::default();
    let tracking = run_through_a_death(
        &cluster,
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

/// The parent is cancelled while its child waits for a signal, and its worker dies
/// right after the commit that gives up on the child: the child never heard. The
/// child's task in the outbox (on the parent's queue, carrying the request) re-drives
/// it, and the child is cancelled as if its parent's worker had lived.
#[test]
fn a_childs_cancellation_lost_with_its_parents_worker_is_re_driven() {
    let cluster = Cluster::default();
    let parent = "parent-3";
    let child = child_of(parent);
    let store = doomed_store(&cluster, |c| {
        c.events
            .iter()
            .any(|e| e.event_type == EventType::RequestCancelChildWorkflowExecutionInitiated)
    });
    let doomed = runtime(1);
    let a = doomed.block_on(worker(&cluster, store.clone())).unwrap();
    doomed.block_on(async {
        let mut order = Order::new(parent);
        order.needs_approval = true;
        a.start::<parent_flow>(parent, order).await.unwrap();
        let waits = |d: saga_runtime::Result<_>| {
            d.is_ok_and(|d: saga_runtime::engine::ExecutionDescription| {
                d.waiting_for_signals == ["approval"]
            })
        };
        while !waits(a.describe(child.as_str()).await) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        a.cancel(parent).await.unwrap();
    });
    assert!(
        store.down.load(Ordering::SeqCst),
        "the cancel's commit tripped"
    );
    kill(a, doomed);

    let live = runtime(2);
    live.block_on(async {
        let left = cluster.store.history(&child.as_str().into()).await.unwrap();
        assert_eq!(
            count(&left, EventType::WorkflowExecutionCancelRequested),
            0,
            "the child never heard"
        );
        let b = worker(&cluster, cluster.store.clone()).await.unwrap();
        let d = closed_within(&b, &child, Duration::from_secs(20)).await;
        assert_eq!(d.status, WorkflowStatus::Cancelled);
        // What it had done before it waited is undone, last first.
        assert_eq!(
            d.compensations_done,
            ["refund-payment", "release-inventory"]
        );
        let h = b.history(child.as_str()).await.unwrap();
        assert_eq!(count(&h, EventType::WorkflowExecutionCancelRequested), 1);
        assert_eq!(
            b.describe(parent).await.unwrap().status,
            WorkflowStatus::Cancelled
        );
        assert_eq!(outbox_left(&cluster.store).await, 0);
    });
}

/// Two faults at once: the parent is cancelled on another worker while its child's
/// start is still in flight, and the worker carrying the start dies right after
/// creating the child, before it can find that the parent let the child go. The
/// parent's cancellation had found no child; its task in the outbox, kept for that,
/// comes due and cancels the child then.
#[test]
fn a_child_created_by_a_dying_start_after_its_parent_gave_up_is_cancelled() {
    let cluster = Cluster::default();
    let parent = "parent-4";
    let child = child_of(parent);
    let creates_the_child = {
        let child = child.clone();
        move |c: &Commit| {
            c.saga_id.as_str() == child
                && c.events
                    .iter()
                    .any(|e| e.event_type == EventType::WorkflowExecutionStarted)
        }
    };
    let open = Arc::new(tokio::sync::Semaphore::new(0));
    let doomed_store = Switch {
        gate: Some((Arc::new(creates_the_child.clone()), open.clone())),
        ..doomed_store(&cluster, creates_the_child)
    };
    let live_store = Switch {
        inner: cluster.store.clone(),
        ..Switch::default()
    };
    let doomed = runtime(1);
    let live = runtime(2);
    let a = doomed
        .block_on(worker(&cluster, doomed_store.clone()))
        .unwrap();
    let b = live.block_on(worker(&cluster, live_store.clone())).unwrap();
    let mut order = Order::new(parent);
    order.needs_approval = true;
    doomed
        .block_on(a.start::<parent_flow>(parent, order))
        .unwrap();
    live.block_on(async {
        let started =
            |h: &[HistoryEvent]| count(h, EventType::StartChildWorkflowExecutionInitiated) > 0;
        while !started(&cluster.store.history(&parent.into()).await.unwrap()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The child's creation is held on `a`; `b` takes the cancellation.
        b.cancel(parent).await.unwrap();
        while !live_store.has_read(&child) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            cluster
                .store
                .history(&child.as_str().into())
                .await
                .unwrap()
                .is_empty(),
            "the cancellation found no child"
        );
    });
    open.add_permits(1);
    while !doomed_store.down.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(a, doomed);

    live.block_on(async {
        let d = closed_within(&b, &child, Duration::from_secs(20)).await;
        assert_eq!(d.status, WorkflowStatus::Cancelled, "{d:?}");
        assert_eq!(
            b.describe(parent).await.unwrap().status,
            WorkflowStatus::Cancelled
        );
        let h = b.history(parent).await.unwrap();
        assert_eq!(count(&h, EventType::ChildWorkflowExecutionStarted), 0);
        b.verify_replay(child.as_str()).await.unwrap();
        assert_eq!(outbox_left(&cluster.store).await, 0);
    });
}

/// A workflow task whose payload names no effect this engine knows (corrupted, or from
/// a newer engine) is dead-lettered with the reason, not retried without end.
#[test]
fn a_workflow_task_with_an_unknown_payload_is_dead_lettered() {
    let cluster = Cluster::default();
    runtime(2).block_on(async {
        let _worker = worker(&cluster, cluster.store.clone()).await.unwrap();
        cluster
            .queue
            .publish(Task {
                kind: TaskKind::Workflow,
                saga_id: "someone".into(),
                queue: "default".to_owned(),
                dedup_id: "someone:junk".to_owned(),
                payload: br#"{"redrive":"dance"}"#.to_vec(),
            })
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let dead = loop {
            let dead = cluster.queue.dead_letters("default").await.unwrap();
            if !dead.is_empty() || tokio::time::Instant::now() > deadline {
                break dead;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].task.dedup_id, "someone:junk");
        assert!(
            dead[0].reason.contains("payload does not decode"),
            "{}",
            dead[0].reason
        );
    });
}
