//! Start-time recovery (`SagaEngineBuilder::recover_on_start`): on by default exactly
//! where the outbox is off. Without the outbox it is what brings back work lost with a
//! crashed process's in-process queue; with the outbox on, the outbox's rows do that,
//! and a starting worker publishes nothing for executions that are merely waiting.

mod common;

use std::time::Duration;

use common::{outbox_left, Counted};
use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::conformance::engine::builder;
use saga_runtime::conformance::fixtures::*;
use saga_runtime::engine::{OutboxConfig, SagaEngine, SagaEngineBuilder};

const PARKED: [&str; 3] = ["parked-1", "parked-2", "parked-3"];

fn outbox_on(b: SagaEngineBuilder) -> SagaEngineBuilder {
    b.outbox(OutboxConfig {
        enabled: Some(true),
        redeliver_after: Duration::from_millis(200),
        reconcile_every: Duration::from_millis(50),
    })
}

/// Starts the `PARKED` waiters on `engine` and waits until each waits for `go`.
async fn park(engine: &SagaEngine) {
    for id in PARKED {
        engine
            .start::<waiter>(
                id,
                WaiterInput {
                    sleep_first_secs: 0,
                    timeout_secs: None,
                },
            )
            .await
            .unwrap();
    }
    for id in PARKED {
        for _ in 0..500 {
            if engine.describe(id).await.unwrap().waiting_for_signals == ["go"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            engine.describe(id).await.unwrap().waiting_for_signals,
            ["go"],
            "{id} parked"
        );
    }
}

/// Signals every parked waiter and checks each returns the payload.
async fn release(engine: &SagaEngine) {
    for id in PARKED {
        engine.signal(id, "go", format!("go {id}")).await.unwrap();
    }
    for id in PARKED {
        assert_eq!(
            engine.result::<waiter>(id).await.unwrap(),
            format!("go {id}")
        );
    }
}

/// Without the outbox, a starting worker publishes one workflow task per open
/// execution: the crashed process's queue took everything else with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_outbox_a_starting_worker_re_drives_every_open_execution() {
    let store = InMemoryStore::new();
    {
        let first = builder(store.clone()).build().await.unwrap();
        park(&first).await;
        // Dropped: a crash, with the three executions parked.
    }
    let queue = Counted::default();
    let second = builder(store.clone())
        .queue(queue.clone())
        .build()
        .await
        .unwrap();
    assert_eq!(queue.workflow_tasks(), PARKED.len() as u64);
    release(&second).await;
}

/// With the outbox on, a starting worker publishes nothing; the work a crashed
/// process left (here the first step of a start, whose task died with a client's queue) comes back
/// through the outbox, and the parked executions go on when signalled. Asked for,
/// recovery still runs: how executions written without the outbox are moved over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_outbox_on_a_starting_worker_publishes_nothing() {
    let store = InMemoryStore::new();
    {
        let first = outbox_on(builder(store.clone())).build().await.unwrap();
        park(&first).await;
        let client = outbox_on(builder(store.clone()))
            .client_only()
            .build()
            .await
            .unwrap();
        client.start::<chain>("lost-start", 5).await.unwrap();
        // Both dropped: the start's task dies with the client's queue.
    }

    let queue = Counted::default();
    let second = outbox_on(builder(store.clone()))
        .queue(queue.clone())
        .build()
        .await
        .unwrap();
    assert_eq!(queue.tasks(), 0, "nothing published at start");
    assert_eq!(second.result::<chain>("lost-start").await.unwrap(), 10);
    assert!(
        queue.tasks() >= 1,
        "the reconciler published the task of the start's first step"
    );
    drop(second);

    let queue = Counted::default();
    let third = outbox_on(builder(store.clone()))
        .queue(queue.clone())
        .recover_on_start(true)
        .build()
        .await
        .unwrap();
    assert_eq!(
        queue.workflow_tasks(),
        PARKED.len() as u64,
        "asked for, recovery re-drives the open executions"
    );
    release(&third).await;
    assert_eq!(outbox_left(&store).await, 0);
}
