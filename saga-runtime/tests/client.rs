//! `SagaClient`: a client without the workflow code writes what the engine writes, and
//! describes executions from their history as the engine does.

use std::time::Duration;

use saga_runtime::adapter::memory::{InMemoryStore, InMemoryTaskQueue};
use saga_runtime::client::SagaClient;
use saga_runtime::conformance::engine::{builder, compensations_in_history};
use saga_runtime::conformance::fixtures::*;
use saga_runtime::domain::{EventType, HistoryEvent};
use saga_runtime::engine::{SagaEngine, StartOptions};
use saga_runtime::port::{DefinitionStore, EventStore, Outbox};
use saga_runtime::prelude::*;
use serde_json::json;

async fn engine(store: &InMemoryStore, queue: &InMemoryTaskQueue) -> SagaEngine {
    builder(store.clone())
        .queue(queue.clone())
        .build()
        .await
        .expect("engine")
}

fn client(store: &InMemoryStore, queue: &InMemoryTaskQueue) -> SagaClient {
    SagaClient::new(store.clone()).queue(queue.clone(), "default")
}

fn approval_order(id: &str) -> Order {
    Order {
        needs_approval: true,
        ..Order::new(id)
    }
}

/// Polls `describe` until `done` holds (the engine runs on its own tasks).
async fn wait_for(
    client: &SagaClient,
    id: &str,
    done: impl Fn(&saga_runtime::engine::ExecutionDescription) -> bool,
) -> saga_runtime::engine::ExecutionDescription {
    for _ in 0..500 {
        let d = client.describe(id).await.expect("describe");
        if done(&d) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{id} never reached the expected state: {:?}",
        client.describe(id).await
    );
}

/// Everything but the times (timestamps, timers' `fire_at`) and the trace id, which
/// differ per run, with the saga id (which activities put in their outputs, and timer
/// ids carry) written as `ID`.
fn shape(h: &[HistoryEvent], id: &str) -> Vec<(u64, EventType, String, bool, bool)> {
    h.iter()
        .map(|e| {
            let mut attributes = e.attributes.clone();
            if let Some(o) = attributes.as_object_mut() {
                o.remove("fire_at");
            }
            (
                e.event_id,
                e.event_type,
                attributes.to_string().replace(id, "ID"),
                e.is_reset_point,
                e.is_retry,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_registers_definitions() {
    let store = InMemoryStore::new();
    let _engine = engine(&store, &InMemoryTaskQueue::new()).await;
    let def = store
        .definition(order_saga::TYPE_ID)
        .await
        .unwrap()
        .expect("order-saga registered at build");
    assert_eq!(def.fingerprint, order_saga::FINGERPRINT);
    assert_eq!(def.checkpoints.len(), 4);
    assert_eq!(def.checkpoints[2].variant, "Approval");
    assert!(def.diagram.starts_with("stateDiagram-v2"));
    let types: Vec<String> = store
        .definitions()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.workflow_type)
        .collect();
    assert!(types.contains(&"waiter".to_owned()), "{types:?}");
}

/// A start, a signal and the run that follows are the same history, event for event,
/// whether the engine or the client wrote the inputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_writes_what_the_engine_writes() {
    let store = InMemoryStore::new();
    let queue = InMemoryTaskQueue::new();
    let engine = engine(&store, &queue).await;
    let client = client(&store, &queue);

    let by_engine = engine
        .start::<order_saga>("by-engine", approval_order("same"))
        .await
        .unwrap();
    let started = client
        .start(
            order_saga::TYPE_ID,
            "by-client",
            json!(approval_order("same")),
            StartOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(started.event_id, 0);
    for id in ["by-engine", "by-client"] {
        let d = wait_for(&client, id, |d| d.checkpoint == "Approval").await;
        assert_eq!(d.status, WorkflowStatus::Paused);
        assert_eq!(d.waiting_for_signals, ["approval"]);
    }
    engine
        .signal("by-engine", "approval", Approval { granted: true })
        .await
        .unwrap();
    client
        .signal("by-client", "approval", json!({"granted": true}))
        .await
        .unwrap();
    by_engine.result().await.unwrap();
    engine.result::<order_saga>("by-client").await.unwrap();

    let a = store.history(&"by-engine".into()).await.unwrap();
    let b = store.history(&"by-client".into()).await.unwrap();
    assert_eq!(
        shape(&a, "by-engine"),
        shape(&b, "by-client"),
        "the histories must match"
    );
    // And the client describes a closed execution as the engine does.
    assert_eq!(
        client.describe("by-client").await.unwrap(),
        engine.describe("by-client").await.unwrap()
    );
    assert_eq!(
        client.status("by-client").await.unwrap(),
        WorkflowStatus::Completed
    );
}

/// While it runs, the client's description is the engine's (status, pending work,
/// compensations), with the checkpoint inferred from the definition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_from_history_matches_the_engine() {
    let store = InMemoryStore::new();
    let queue = InMemoryTaskQueue::new();
    let engine = engine(&store, &queue).await;
    let client = client(&store, &queue);
    engine
        .start::<order_saga>("parked", approval_order("p"))
        .await
        .unwrap();
    let from_client = wait_for(&client, "parked", |d| d.checkpoint == "Approval").await;
    let from_engine = engine.describe("parked").await.unwrap();
    assert_eq!(from_client, from_engine);
    assert_eq!(from_client.pending_timers.len(), 1, "the approval timeout");
    // Parked on the approval signal: `status` reads it as `describe` does.
    assert_eq!(client.status("parked").await.unwrap(), from_client.status);
    assert_eq!(from_client.status, WorkflowStatus::Paused);

    let diagram = client.execution_diagram("parked").await.unwrap();
    assert!(
        diagram.ends_with("    class Approval current\n"),
        "{diagram}"
    );
    assert!(diagram.contains("classDef current "), "{diagram}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_compensates() {
    let store = InMemoryStore::new();
    let queue = InMemoryTaskQueue::new();
    let engine = engine(&store, &queue).await;
    let client = client(&store, &queue);
    client
        .start(
            order_saga::TYPE_ID,
            "to-cancel",
            json!(approval_order("c")),
            StartOptions::default(),
        )
        .await
        .unwrap();
    wait_for(&client, "to-cancel", |d| d.checkpoint == "Approval").await;
    client.cancel("to-cancel").await.unwrap();
    let err = engine.result::<order_saga>("to-cancel").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    let h = store.history(&"to-cancel".into()).await.unwrap();
    assert_eq!(
        compensations_in_history(&h),
        ["refund-payment", "release-inventory"]
    );
    let d = client.describe("to-cancel").await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Cancelled);
    assert_eq!(d.checkpoint, "Finished");
    assert_eq!(
        d.compensations_done,
        ["refund-payment", "release-inventory"]
    );
    assert_eq!(d, engine.describe("to-cancel").await.unwrap());
}

/// Without a queue, an engine that starts later picks the client's start up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_without_queue_is_recovered_by_a_later_engine() {
    let store = InMemoryStore::new();
    // Only to register the definitions, as a worker did before.
    drop(engine(&store, &InMemoryTaskQueue::new()).await);
    let client = SagaClient::new(store.clone());
    client
        .start(
            order_saga::TYPE_ID,
            "later",
            json!(Order::new("later")),
            StartOptions::default(),
        )
        .await
        .unwrap();
    let d = client.describe("later").await.unwrap();
    assert_eq!(
        (d.status, d.checkpoint.as_str(), d.history_length),
        (WorkflowStatus::Running, "Start", 1),
        "no worker has run it yet"
    );
    let engine = engine(&store, &InMemoryTaskQueue::new()).await;
    engine.result::<order_saga>("later").await.unwrap();
}

/// Without a queue, a running engine picks the client's start and signal up through
/// the outbox (its reconciler publishes the workflow tasks the client wrote there),
/// and the tasks are settled once processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_engine_picks_up_client_writes_through_the_outbox() {
    let store = InMemoryStore::new();
    let engine = engine(&store, &InMemoryTaskQueue::new()).await;
    let client = SagaClient::new(store.clone());
    client
        .start(
            order_saga::TYPE_ID,
            "outboxed",
            json!(approval_order("outboxed")),
            StartOptions::default(),
        )
        .await
        .unwrap();
    wait_for(&client, "outboxed", |d| {
        d.waiting_for_signals == ["approval"]
    })
    .await;
    client
        .signal("outboxed", "approval", json!(Approval { granted: true }))
        .await
        .unwrap();
    let receipt = tokio::time::timeout(
        Duration::from_secs(10),
        engine.result::<order_saga>("outboxed"),
    )
    .await
    .expect("the running engine finishes it")
    .unwrap();
    assert_eq!(receipt.shipment.tracking, "trk-outboxed");
    assert!(
        engine.metrics().outbox_redelivered >= 2,
        "{:?}",
        engine.metrics()
    );
    assert_eq!(store.outbox_len().await.unwrap(), 0);
}

/// An engine that does not run a workflow records a signal for it as it is (with the
/// workflow task, on the execution's queue) and the engine that runs it folds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_without_the_workflow_records_a_signal_for_the_one_that_has_it() {
    let store = InMemoryStore::new();
    let queue = InMemoryTaskQueue::new();
    let worker = engine(&store, &queue).await;
    let other = SagaEngine::builder()
        .store(store.clone())
        .queue(queue.clone())
        .client_only()
        .build()
        .await
        .unwrap();
    let run = worker
        .start::<order_saga>("elsewhere", approval_order("elsewhere"))
        .await
        .unwrap();
    let client = SagaClient::new(store.clone());
    wait_for(&client, "elsewhere", |d| {
        d.waiting_for_signals == ["approval"]
    })
    .await;
    other
        .signal("elsewhere", "approval", Approval { granted: true })
        .await
        .unwrap();
    let receipt = tokio::time::timeout(Duration::from_secs(10), run.result())
        .await
        .expect("the worker folds the signal")
        .unwrap();
    assert_eq!(receipt.shipment.tracking, "trk-elsewhere");
    let h = worker.history("elsewhere").await.unwrap();
    let signal = h
        .iter()
        .find(|e| e.event_type == EventType::SignalReceived)
        .expect("the signal is recorded");
    assert_eq!(
        signal.trace_id, h[0].trace_id,
        "it carries the execution's trace id"
    );
}

/// A client's start leaves the first activity's task in the outbox while it runs.
///
/// The workflow task of the start and the task of the activity its worker schedules
/// are different tasks and must have different dedup ids: when the workflow task's id
/// named the history's next event (the activity's scheduled event, whose id its task
/// also carries), the activity's outbox row was taken for the workflow task's and
/// never written, the worker then settled that row, and the running activity had no
/// task to re-drive it (and, published, the broker would drop it as a duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_start_keeps_the_first_activity_task_in_the_outbox() {
    use saga_runtime::engine::OutboxConfig;
    use saga_runtime::port::TaskKind;

    let store = InMemoryStore::new();
    let queue = InMemoryTaskQueue::new();
    // The outbox as with a queue outside the process.
    let engine = builder(store.clone())
        .queue(queue.clone())
        .outbox(OutboxConfig {
            enabled: Some(true),
            ..OutboxConfig::default()
        })
        .build()
        .await
        .expect("engine");
    let client = client(&store, &queue);
    client
        .start(
            <pair<patient>>::TYPE_ID,
            "first-task",
            json!(600),
            StartOptions::default(),
        )
        .await
        .unwrap();
    wait_for(&client, "first-task", |d| d.history_length >= 2).await;
    // Past the workflow task's processing and settling (the activity runs 600 ms).
    tokio::time::sleep(Duration::from_millis(150)).await;
    let far = chrono::Utc::now() + chrono::TimeDelta::days(1);
    let rows = store
        .claim_tasks(far, Duration::from_secs(3_600), 100)
        .await
        .unwrap();
    let ours: Vec<_> = rows
        .iter()
        .filter(|t| t.saga_id.as_str() == "first-task")
        .map(|t| (t.kind, t.dedup_id.as_str()))
        .collect();
    assert_eq!(
        ours,
        [(TaskKind::Activity, "first-task:1")],
        "the running activity's task, and only it"
    );
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        engine.result::<pair<patient>>("first-task"),
    )
    .await
    .expect("it finishes")
    .unwrap();
    assert_eq!(out, 600);
}

/// Bad input is a typed error and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_writes_nothing() {
    let store = InMemoryStore::new();
    let queue = InMemoryTaskQueue::new();
    let engine = engine(&store, &queue).await;
    let client = client(&store, &queue);

    let err = client
        .start("no-such-type", "x", json!(1), StartOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.context("code"), Some("unknown_workflow"), "{err}");
    assert!(
        err.message.contains("order-saga"),
        "names the known types: {err}"
    );
    assert_eq!(store.version(&"x".into()).await.unwrap(), 0);

    let run = engine.start::<sleeper>("taken", 1).await.unwrap();
    let before = store.history(&"taken".into()).await.unwrap();
    let err = client
        .start(
            order_saga::TYPE_ID,
            "taken",
            json!(Order::new("t")),
            StartOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.is_already_started(), "{err}");
    run.result().await.unwrap();
    let after = store.history(&"taken".into()).await.unwrap();
    assert_eq!(
        after[..before.len()],
        before[..],
        "the first execution is untouched"
    );

    let err = client
        .signal("missing", "go", json!(null))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = client.cancel("missing").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = client.describe("missing").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = client.status("missing").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    let version = store.version(&"taken".into()).await.unwrap();
    let err = client.signal("taken", "go", json!(1)).await.unwrap_err();
    assert_eq!(err.context("code"), Some("closed"), "{err}");
    let err = client.cancel("taken").await.unwrap_err();
    assert_eq!(err.context("code"), Some("closed"), "{err}");
    assert_eq!(store.version(&"taken".into()).await.unwrap(), version);

    let err = client.workflow_diagram("sleeper").await.unwrap_err();
    assert_eq!(err.context("code"), Some("no_diagram"), "{err}");
}
