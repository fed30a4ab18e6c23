//! Cancellation across engines on PostgreSQL + NATS: one engine (a client) cancels a
//! saga while another engine (a worker) runs its compensable step. The worker's
//! result then finds the saga moved on (its commit conflicts and it reloads), is still
//! accepted, and the step is compensated before the saga ends Cancelled: the running
//! step's effect is never left in place with nobody to undo it.
//!
//! Without PostgreSQL or NATS the test skips, unless `CI` is set, where it fails.
#![cfg(all(feature = "nats", feature = "postgres"))]

mod common;

use std::time::{Duration, Instant};

use common::{nats, pg};
use saga_runtime::conformance::engine::{self as scenario, assert_history_sound};
use saga_runtime::conformance::fixtures::{trip, TripInput};
use saga_runtime::domain::{EventType, WorkflowStatus};
use saga_runtime::engine::SagaEngine;
use saga_runtime::ErrorKind;

/// Waits until `id`'s history holds an event of `event_type` for `activity_type`.
async fn until(engine: &SagaEngine, id: &str, event_type: EventType, activity_type: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = engine.history(id).await.unwrap();
        if h.iter().any(|e| {
            e.event_type == event_type && e.attr_str("activity_type") == Some(activity_type)
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {event_type} of {activity_type}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_a_client_while_a_worker_runs_the_step() {
    pg::with_schema(|config| async move {
        nats::with_namespace(
            |c| c,
            |nats_config| async move {
                let connect = || nats::pg_engine(&config, &nats_config);
                let client = connect().await.client_only().build().await.unwrap();
                let worker = connect().await.build().await.unwrap();

                let input = TripInput {
                    book_ms: 1_500,
                    card_declined: false,
                };
                let run = client.start::<trip>("trip-x", input).await.unwrap();
                // The worker has checked the card; the booking runs on for a while.
                until(&client, "trip-x", EventType::ActivityTaskCompleted, "flaky").await;
                client.cancel("trip-x").await.unwrap();
                let d = client.describe("trip-x").await.unwrap();
                assert_eq!(d.status, WorkflowStatus::Paused, "waits for the booking");
                assert_eq!(d.checkpoint, "Ending");

                let err = tokio::time::timeout(Duration::from_secs(30), run.result())
                    .await
                    .expect("the saga ends")
                    .unwrap_err();
                assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
                let h = client.history("trip-x").await.unwrap();
                assert_history_sound(&h);
                assert_eq!(
                    scenario::booking_after(&h, EventType::WorkflowExecutionCancelRequested),
                    [
                        EventType::ActivityTaskStarted,
                        EventType::ActivityTaskCompleted
                    ],
                    "the worker's result is recorded after the cancellation: {:?}",
                    h.iter().map(|e| e.event_type).collect::<Vec<_>>()
                );
                assert_eq!(scenario::compensations_in_history(&h), ["unbook-room"]);
                let d = client.describe("trip-x").await.unwrap();
                assert_eq!(d.status, WorkflowStatus::Cancelled);
                assert_eq!(d.compensations_done, ["unbook-room"]);
                client.verify_replay("trip-x").await.unwrap();
                worker.shutdown().await;
            },
        )
        .await;
    })
    .await;
}
