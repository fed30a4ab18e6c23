//! Every `ErrorKind` is produced by something the runtime really does.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use saga_runtime::adapter::memory::{InMemoryStore, InMemoryTaskQueue};
use saga_runtime::conformance::engine::builder;
use saga_runtime::conformance::fixtures::*;
use saga_runtime::domain::{EventType, HistoryEvent};
use saga_runtime::engine::StartOptions;
use saga_runtime::port::*;
use saga_runtime::prelude::*;
use saga_runtime::snapshot;

/// Adapters whose backend is down: every call fails with the port's own kind, as a
/// real adapter reports a lost connection.
#[derive(Clone)]
struct Down;

fn down(kind: ErrorKind) -> Error {
    Error::new(kind, "connection refused")
}

#[async_trait]
impl EventStore for Down {
    async fn append(&self, _: &SagaId, _: u64, _: Vec<HistoryEvent>) -> Result<u64, Error> {
        Err(down(ErrorKind::EventStore))
    }
    async fn history_from(&self, _: &SagaId, _: u64) -> Result<Vec<HistoryEvent>, Error> {
        Err(down(ErrorKind::EventStore))
    }
    async fn version(&self, _: &SagaId) -> Result<u64, Error> {
        Err(down(ErrorKind::EventStore))
    }
    async fn save_snapshot(&self, _: Snapshot, _: u32) -> Result<(), Error> {
        Err(down(ErrorKind::EventStore))
    }
    async fn latest_snapshot(&self, _: &SagaId) -> Result<Option<Snapshot>, Error> {
        Err(down(ErrorKind::EventStore))
    }
    async fn snapshots(&self, _: &SagaId) -> Result<Vec<Snapshot>, Error> {
        Err(down(ErrorKind::EventStore))
    }
    async fn list_executions(&self, _: &ExecutionFilter) -> Result<Vec<ExecutionSummary>, Error> {
        Err(down(ErrorKind::EventStore))
    }
}

#[async_trait]
impl WorkflowStore for Down {
    async fn commit(&self, _: Commit) -> Result<u64, Error> {
        Err(down(ErrorKind::EventStore))
    }
}

#[async_trait]
impl Outbox for Down {
    async fn claim_tasks(
        &self,
        _: DateTime<Utc>,
        _: Duration,
        _: usize,
    ) -> Result<Vec<Task>, Error> {
        Err(down(ErrorKind::EventStore))
    }
    async fn settle_tasks(&self, _: &SagaId, _: &[String]) -> Result<(), Error> {
        Err(down(ErrorKind::EventStore))
    }
    async fn defer_tasks(&self, _: &SagaId, _: &[String], _: DateTime<Utc>) -> Result<(), Error> {
        Err(down(ErrorKind::EventStore))
    }
    async fn outbox_len(&self) -> Result<u64, Error> {
        Err(down(ErrorKind::EventStore))
    }
    async fn unsettled_tasks(&self, _: &SagaId) -> Result<Vec<String>, Error> {
        Err(down(ErrorKind::EventStore))
    }
}

/// Keeps no definitions: the engine registers none.
impl DefinitionStore for Down {}

#[async_trait]
impl TimerStore for Down {
    async fn create(&self, _: TimerRecord) -> Result<(), Error> {
        Err(down(ErrorKind::TimerStore))
    }
    async fn claim_due(
        &self,
        _: DateTime<Utc>,
        _: usize,
        _: Duration,
    ) -> Result<Vec<TimerRecord>, Error> {
        Err(down(ErrorKind::TimerStore))
    }
    async fn complete(&self, _: &str) -> Result<(), Error> {
        Err(down(ErrorKind::TimerStore))
    }
    async fn cancel(&self, _: &str) -> Result<bool, Error> {
        Err(down(ErrorKind::TimerStore))
    }
    async fn next_fire_at(&self) -> Result<Option<DateTime<Utc>>, Error> {
        // An adapter may report a generic failure; health re-labels it by port.
        Err(down(ErrorKind::Unknown))
    }
}

#[async_trait]
impl TaskQueue for Down {
    async fn publish(&self, _: Task) -> Result<(), Error> {
        Err(down(ErrorKind::TaskQueue))
    }
    async fn fetch(&self, _: &str, _: usize, _: Duration) -> Result<Vec<Delivery>, Error> {
        Err(down(ErrorKind::TaskQueue))
    }
    async fn ack(&self, _: &DeliveryTag) -> Result<(), Error> {
        Err(down(ErrorKind::TaskQueue))
    }
    async fn nak(&self, _: &DeliveryTag, _: Duration) -> Result<(), Error> {
        Err(down(ErrorKind::TaskQueue))
    }
    async fn terminate(&self, _: &DeliveryTag, _: &str) -> Result<(), Error> {
        Err(down(ErrorKind::TaskQueue))
    }
    async fn progress(&self, _: &DeliveryTag) -> Result<(), Error> {
        Err(down(ErrorKind::TaskQueue))
    }
    async fn dead_letters(&self, _: &str) -> Result<Vec<DeadLetter>, Error> {
        Err(down(ErrorKind::TaskQueue))
    }
}

#[async_trait]
impl SignalDispatcher for Down {
    async fn notify(&self, _: &SagaId, _: Notification) -> Result<(), Error> {
        Err(down(ErrorKind::SignalDispatcher))
    }
    async fn subscribe(&self, _: &SagaId) -> Result<SignalSubscription, Error> {
        Err(down(ErrorKind::SignalDispatcher))
    }
}

#[tokio::test(start_paused = true)]
async fn every_error_kind_is_produced() {
    let mut seen = BTreeSet::new();
    let mut saw = |e: &Error| {
        seen.insert(format!("{:?}", e.kind));
    };

    // EventStore: the store is down; start fails and records nothing.
    let broken = SagaEngine::builder()
        .store(Down)
        .queue(Down)
        .signals(Down)
        .workflow::<sleeper>()
        .client_only()
        .build()
        .await
        .unwrap();
    let e = broken.start::<sleeper>("s", 1).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::EventStore);
    saw(&e);
    // TimerStore, TaskQueue, SignalDispatcher: the health check names each port.
    let health = broken.health().await;
    assert!(!health.is_healthy());
    let kinds: Vec<_> = health.failures().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            ErrorKind::EventStore,
            ErrorKind::TimerStore,
            ErrorKind::TaskQueue,
            ErrorKind::SignalDispatcher
        ]
    );
    health.failures().into_iter().for_each(&mut saw);

    let store = InMemoryStore::new();
    let engine = builder(store.clone())
        .workflow::<bad_command>()
        .workflow::<panicker>()
        .activity::<tuple_keys>()
        .build()
        .await
        .unwrap();
    assert!(engine.health().await.is_healthy());

    // Codec: reading an output as the wrong type.
    engine
        .start::<sleeper>("sleep", 1)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    let e = engine.result::<waiter>("sleep").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Codec);
    saw(&e);

    // WorkflowExecution: the workflow's own logic fails (rejected approval).
    let mut order = Order::new("wf");
    order.needs_approval = true;
    let run = engine.start::<order_saga>("wf", order).await.unwrap();
    engine
        .signal("wf", "approval", Approval { granted: false })
        .await
        .unwrap();
    let e = run.result().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::WorkflowExecution, "{e}");
    saw(&e);

    // StepExecution: a command whose input cannot be encoded.
    let e = engine
        .start::<bad_command>("bad", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::StepExecution, "{e}");
    assert!(e.message.contains("key must be a string"), "{e}");
    saw(&e);

    // ActivityExecution: a non-retryable activity error.
    let run = engine
        .start::<single<flaky>>(
            "act",
            FlakyInput {
                succeed_on: 1,
                non_retryable: true,
            },
        )
        .await
        .unwrap();
    let e = run.result().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ActivityExecution);
    saw(&e);

    // TaskQueue: acking a delivery the queue does not know.
    let q = InMemoryTaskQueue::new();
    let e = q
        .ack(&DeliveryTag {
            seq: 99,
            handle: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TaskQueue);
    saw(&e);

    // Snapshot: a checksum mismatch.
    let mut s = snapshot::seal(
        SagaId::new("x"),
        3,
        "json",
        b"{}".to_vec(),
        true,
        Utc::now(),
    );
    s.state[0] ^= 1;
    let e = snapshot::verify(&s).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Snapshot);
    saw(&e);

    // Replay: changed code over a recorded history.
    engine
        .start::<order_saga>("rep", Order::new("rep"))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    let changed = SagaEngine::builder()
        .store(store.clone())
        .workflow::<order_saga_reordered>()
        .client_only()
        .build()
        .await
        .unwrap();
    let e = changed.verify_replay("rep").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Replay);
    saw(&e);

    // Configuration: an engine without a store.
    let e = SagaEngine::builder().build().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Configuration);
    saw(&e);

    // Validation: a duplicate start.
    let e = engine.start::<sleeper>("sleep", 2).await.unwrap_err();
    assert!(e.is_already_started());
    saw(&e);

    // Timeout: the workflow-level timeout.
    let opts = StartOptions {
        timeout: Some(Duration::from_secs(1)),
        ..StartOptions::default()
    };
    let input = WaiterInput {
        sleep_first_secs: 0,
        timeout_secs: None,
    };
    let run = engine
        .start_with::<waiter>("to", input, opts)
        .await
        .unwrap();
    let e = run.result().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    saw(&e);

    // Cancelled.
    let input = WaiterInput {
        sleep_first_secs: 0,
        timeout_secs: None,
    };
    let run = engine.start::<waiter>("cx", input).await.unwrap();
    engine.cancel("cx").await.unwrap();
    let e = run.result().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Cancelled);
    saw(&e);

    // Concurrency: a stale append.
    let id = SagaId::new("sleep");
    let stale = HistoryEvent::new(
        id.clone(),
        0,
        EventType::SignalReceived,
        Utc::now(),
        serde_json::json!({}),
        String::new(),
    );
    let e = store.append(&id, 0, vec![stale]).await.unwrap_err();
    assert!(e.is_conflict());
    saw(&e);

    // Compensation: a refund that keeps failing.
    let mut order = Order::new("comp");
    order.carrier_rejects = true;
    order.refund_fails = true;
    let e = engine
        .start::<order_saga>("comp", order)
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Compensation);
    saw(&e);

    // Unknown: workflow code panics. In the first segment the start fails and records
    // nothing; later, the execution stays put with a WorkflowTaskFailed marker.
    let e = engine.start::<panicker>("p0", true).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unknown);
    assert!(e.message.contains("bug in the first segment"), "{e}");
    saw(&e);
    assert!(engine.history("p0").await.unwrap_err().is_not_found());
    engine.start::<panicker>("p1", false).await.unwrap();
    let h = loop {
        let h = engine.history("p1").await.unwrap();
        if h.iter()
            .any(|e| e.event_type == EventType::WorkflowTaskFailed)
        {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let failed = h
        .iter()
        .find(|e| e.event_type == EventType::WorkflowTaskFailed)
        .unwrap();
    assert!(failed
        .attr_str("error")
        .unwrap()
        .contains("bug after the first step"));
    // The execution is not lost: it stays at its last good checkpoint, and says why.
    let d = engine.describe("p1").await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Paused);
    assert!(d.workflow_task_failure.unwrap().contains("panicked"));

    let all: BTreeSet<_> = ErrorKind::ALL.iter().map(|k| format!("{k:?}")).collect();
    assert_eq!(
        seen,
        all,
        "missing: {:?}",
        all.difference(&seen).collect::<Vec<_>>()
    );
}
