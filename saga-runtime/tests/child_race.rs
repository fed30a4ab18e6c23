//! A parent that gives up on a child whose start is still in flight. The child's start
//! runs as its own task after the parent's commit; if the parent is cancelled on
//! another worker before that start creates the child, the parent's cancellation finds
//! no child to cancel.
//! The start, on recording the child on the parent, finds the parent has let it go,
//! and cancels the child itself, so that it does not run on as an orphan.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{closed_within, count, Switch};
use saga_runtime::conformance::engine::builder;
use saga_runtime::conformance::fixtures::{parent_flow, Order};
use saga_runtime::domain::{EventType, WorkflowStatus};
use saga_runtime::port::{Commit, EventStore};

const PARENT: &str = "racing-parent";
const CHILD: &str = "racing-parent/child-0";

/// The child's first commit, the one that creates it.
fn creates_the_child(c: &Commit) -> bool {
    c.saga_id.as_str() == CHILD
        && c.events
            .iter()
            .any(|e| e.event_type == EventType::WorkflowExecutionStarted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_started_after_its_parent_gave_up_on_it_is_cancelled() {
    let open = Arc::new(tokio::sync::Semaphore::new(0));
    let store = Switch {
        gate: Some((Arc::new(creates_the_child), open.clone())),
        ..Switch::default()
    };
    // Two workers: `engine` runs the parent and the child's start; `other` takes the
    // parent's cancellation. (Within one worker the two serialize on the child.)
    let engine = builder(store.clone()).build().await.unwrap();
    let seen_by_other = Switch {
        inner: store.inner.clone(),
        ..Switch::default()
    };
    let other = builder(seen_by_other.clone()).build().await.unwrap();
    let mut order = Order::new(PARENT);
    // The child would wait for a signal: only a cancellation ends it.
    order.needs_approval = true;
    engine.start::<parent_flow>(PARENT, order).await.unwrap();

    // The parent has decided to start the child; the child's creation is held.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count(
        &store.inner.history(&PARENT.into()).await.unwrap(),
        EventType::StartChildWorkflowExecutionInitiated,
    ) == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the parent never started its child"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    other.cancel(PARENT).await.unwrap();
    while !other.describe(PARENT).await.unwrap().status.is_closed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the parent never closed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        engine.describe(PARENT).await.unwrap().status,
        WorkflowStatus::Cancelled
    );
    // The parent's cancellation of its child runs on `other` right after that commit:
    // once it has looked, it found no child.
    while !seen_by_other.has_read(CHILD) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cancellation never looked for the child"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        store.inner.history(&CHILD.into()).await.unwrap().is_empty(),
        "the parent gave up before the child existed"
    );

    // Now the start creates the child, too late for the parent's cancellation.
    open.add_permits(1);
    let child = closed_within(&engine, CHILD, Duration::from_secs(10)).await;
    assert_eq!(child.status, WorkflowStatus::Cancelled, "{child:?}");
    let h = engine.history(PARENT).await.unwrap();
    assert_eq!(
        count(&h, EventType::ChildWorkflowExecutionStarted),
        0,
        "the parent, closed, recorded nothing more"
    );
    engine.verify_replay(CHILD).await.unwrap();
}
