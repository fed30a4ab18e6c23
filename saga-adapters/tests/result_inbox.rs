//! A caller's result by its inbox on PostgreSQL + NATS: `execute` on one engine (a
//! client, which runs nothing) names its dispatcher's inbox in the start, and the
//! worker engine that closes the execution sends the close there. The caller's engine
//! reads the store for a result only every hour here, so every result below came by
//! the inbox.
//!
//! Without PostgreSQL or NATS the test skips, unless `CI` is set, where it fails.
#![cfg(all(feature = "nats", feature = "postgres"))]

mod common;

use std::time::Duration;

use common::{nats, pg};
use saga_runtime::conformance::fixtures::{order_saga, Order};
use saga_runtime::domain::EventType;
use saga_runtime::engine::SagaEngine;
use saga_runtime::port::SignalDispatcher;

/// Far longer than the test may take: a result must not come from the store's poll.
const NO_POLL: Duration = Duration::from_secs(3600);
/// How long one result may take before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

/// `WorkflowExecutionStarted.result_inbox` of `id`.
async fn result_inbox(engine: &SagaEngine, id: &str) -> Option<String> {
    let history = engine.history(id).await.expect("history");
    let started = &history[0];
    assert_eq!(started.event_type, EventType::WorkflowExecutionStarted);
    started.attr_str("result_inbox").map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hears_a_close_written_by_another_engine_at_its_inbox() {
    pg::with_schema(|config| async move {
        nats::with_namespace(
            |c| c,
            |nats_config| async move {
                let signals = nats::queue(&nats_config).await.signal_dispatcher();
                let inbox = signals.inbox().expect("a NATS dispatcher has an inbox");
                let caller = nats::pg_engine(&config, &nats_config)
                    .await
                    .signals(signals)
                    .result_poll_interval(NO_POLL)
                    .client_only()
                    .build()
                    .await
                    .unwrap();
                let worker = nats::pg_engine(&config, &nats_config)
                    .await
                    .build()
                    .await
                    .unwrap();

                for i in 0..20 {
                    let id = format!("inbox-{i}");
                    let mut order = Order::new(&id);
                    // Every fifth is compensated: its failure comes by the inbox too.
                    order.carrier_rejects = i % 5 == 4;
                    let outcome = tokio::time::timeout(
                        PATIENCE,
                        caller.execute::<order_saga>(id.as_str(), order),
                    )
                    .await
                    .unwrap_or_else(|_| panic!("{id}: no result within {PATIENCE:?}"));
                    match outcome {
                        Ok(_) => assert!(i % 5 != 4, "{id} must have been compensated"),
                        Err(e) => assert!(i % 5 == 4, "{id} failed: {e}"),
                    }
                    assert_eq!(result_inbox(&caller, &id).await.as_ref(), Some(&inbox));
                }

                // A start that nobody awaits at once names no inbox: its close goes to
                // the subscribers of the execution alone.
                caller
                    .start::<order_saga>("no-inbox", Order::new("no-inbox"))
                    .await
                    .unwrap();
                assert_eq!(result_inbox(&caller, "no-inbox").await, None);
                caller.shutdown().await;
                worker.shutdown().await;
            },
        )
        .await;
    })
    .await;
}
