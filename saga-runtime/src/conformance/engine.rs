//! Engine scenarios, generic over the store: every durable store runs the same
//! behaviour checks as the in-memory one (order saga, compensation, retries, timeouts,
//! sleeps, signals, races, crash recovery, snapshots, replay).
//!
//! Timer scenarios are meant for tokio's paused clock
//! (`#[tokio::test(start_paused = true)]`): they wait hours of virtual time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::fixtures::*;
use crate::activity::activity;
use crate::domain::{ErrorKind, EventType, HistoryEvent, TimerKind, WorkflowStatus};
use crate::engine::{SagaEngine, SagaEngineBuilder, StartOptions};
use crate::port::WorkflowStore;
use crate::snapshot::SnapshotConfig;

/// A store the scenarios can run on.
pub trait ScenarioStore: WorkflowStore + Clone {}
impl<S: WorkflowStore + Clone> ScenarioStore for S {}

/// An engine builder with every fixture registered.
pub fn builder<S: ScenarioStore>(store: S) -> SagaEngineBuilder {
    SagaEngine::builder()
        .store(store)
        .workflow::<order_saga>()
        .workflow::<waiter>()
        .workflow::<sleeper>()
        .workflow::<chain>()
        .workflow::<single<flaky>>()
        .workflow::<single<slow>>()
        .workflow::<parallel>()
        .workflow::<local_flow>()
        .workflow::<parent_flow>()
        .workflow::<recorder>()
        .workflow::<pair<patient>>()
        .workflow::<trip>()
        .workflow::<vault_order>()
        .workflow::<vaulted>()
        .workflow::<vault_parent>()
        .activities([
            activity::<reserve_inventory>(),
            activity::<release_inventory>(),
            activity::<charge_payment>(),
            activity::<refund_payment>(),
            activity::<ship_order>(),
            activity::<cancel_shipment>(),
            activity::<flaky>(),
            activity::<slow>(),
            activity::<echo>(),
            activity::<patient>(),
            activity::<book_room>(),
            activity::<unbook_room>(),
            activity::<vault_charge>(),
            activity::<vault_refund>(),
        ])
        .concurrency(4)
        .timer_poll_interval(Duration::from_millis(200))
}

async fn engine<S: ScenarioStore>(store: S) -> SagaEngine {
    builder(store).build().await.expect("engine builds")
}

fn types(h: &[HistoryEvent]) -> Vec<EventType> {
    h.iter().map(|e| e.event_type).collect()
}

/// The activity types scheduled as compensations, in history order.
pub fn compensations_in_history(h: &[HistoryEvent]) -> Vec<String> {
    h.iter()
        .filter(|e| {
            e.event_type == EventType::ActivityTaskScheduled
                && e.attr_u64("compensates").is_some()
                && !e.is_retry
        })
        .map(|e| e.attr_str("activity_type").unwrap_or_default().to_owned())
        .collect()
}

/// Asserts the history is dense from 0 and every activity attempt finished at most once.
pub fn assert_history_sound(h: &[HistoryEvent]) {
    for (i, e) in h.iter().enumerate() {
        assert_eq!(
            e.event_id,
            i as u64,
            "event ids must be dense: {:?}",
            types(h)
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for e in h {
        if matches!(
            e.event_type,
            EventType::ActivityTaskCompleted
                | EventType::ActivityTaskFailed
                | EventType::ActivityTaskTimedOut
        ) {
            let key = (e.attr_u64("seq"), e.attr_u64("attempt"));
            assert!(
                seen.insert(key),
                "attempt {key:?} finished twice: {:?}",
                types(h)
            );
        }
    }
}

fn ts(e: &HistoryEvent) -> DateTime<Utc> {
    e.timestamp
}

/// The order saga completes; its history replays; trace ids ride on every event.
pub async fn order_saga_completes<S: ScenarioStore>(store: S) {
    let engine = engine(store).await;
    let run = engine
        .start::<order_saga>("order-ok", Order::new("o1"))
        .await
        .unwrap();
    let receipt = run.result().await.expect("completes");
    assert_eq!(receipt.shipment.tracking, "trk-o1");
    assert_eq!(receipt.payment.amount_cents, 4_200);
    let d = engine.describe("order-ok").await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Completed);
    let h = engine.history("order-ok").await.unwrap();
    assert_history_sound(&h);
    assert_eq!(h[0].event_type, EventType::WorkflowExecutionStarted);
    assert_eq!(
        h.last().unwrap().event_type,
        EventType::WorkflowExecutionCompleted
    );
    let trace = &h[0].trace_id;
    assert!(!trace.is_empty() && h.iter().all(|e| &e.trace_id == trace));
    assert_eq!(
        h.iter()
            .filter(|e| e.event_type == EventType::ActivityTaskCompleted)
            .count(),
        3
    );
    engine
        .verify_replay("order-ok")
        .await
        .expect("full replay accepts the history");
}

/// Step 3 fails after acting: compensations run for steps 3, 2, 1 in that order and
/// the saga ends Cancelled (manual 7.2: Compensating → Cancelled when all are done).
pub async fn order_saga_step3_fails_compensates_lifo<S: ScenarioStore>(store: S) {
    let engine = engine(store).await;
    let order = Order {
        carrier_rejects: true,
        ..Order::new("o3")
    };
    let err = engine
        .start::<order_saga>("order-step3", order)
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::WorkflowExecution, "{err}");
    assert!(err.message.contains("carrier rejected"), "{err}");
    assert_eq!(err.context("compensated"), Some("true"));
    let h = engine.history("order-step3").await.unwrap();
    assert_history_sound(&h);
    assert_eq!(
        compensations_in_history(&h),
        ["cancel-shipment", "refund-payment", "release-inventory"]
    );
    // Each compensation received the output of the step it undoes.
    let cancel = h
        .iter()
        .find(|e| e.attr_str("activity_type") == Some("cancel-shipment"))
        .unwrap();
    assert_eq!(cancel.attributes["input"]["tracking"], json!("trk-o3"));
    let lifecycle: Vec<_> = types(&h)
        .into_iter()
        .filter(|t| t.category() == crate::domain::EventCategory::Workflow)
        .collect();
    assert_eq!(
        lifecycle,
        [
            EventType::WorkflowExecutionStarted,
            EventType::WorkflowExecutionFailed,
            EventType::WorkflowExecutionCompensating,
            EventType::WorkflowExecutionCanceled
        ]
    );
    let d = engine.describe("order-step3").await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Cancelled);
    assert_eq!(
        d.compensations_done,
        ["cancel-shipment", "refund-payment", "release-inventory"]
    );
    engine.verify_replay("order-step3").await.unwrap();
}

/// Step 3 fails without acting: only the completed steps 2, 1 are compensated.
pub async fn failed_step_without_effect_is_not_compensated<S: ScenarioStore>(store: S) {
    let engine = engine(store).await;
    let order = Order {
        ship_error: true,
        ..Order::new("o4")
    };
    let err = engine
        .start::<order_saga>("order-ship-error", order)
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ActivityExecution, "{err}");
    assert!(err.message.contains("no carrier"), "{err}");
    let h = engine.history("order-ship-error").await.unwrap();
    assert_eq!(
        compensations_in_history(&h),
        ["refund-payment", "release-inventory"]
    );
    // Non-retryable: a single attempt of ship-order, no backoff timer.
    assert_eq!(
        h.iter()
            .filter(|e| e.event_type == EventType::ActivityTaskFailed
                && e.attr_str("activity_type") == Some("ship-order"))
            .count(),
        1
    );
    assert_eq!(
        engine.describe("order-ship-error").await.unwrap().status,
        WorkflowStatus::Cancelled
    );
}

/// A compensation that keeps failing ends in Failed, with the reason in `describe`.
pub async fn failing_compensation_ends_failed<S: ScenarioStore>(store: S) {
    let engine = engine(store).await;
    let order = Order {
        carrier_rejects: true,
        refund_fails: true,
        ..Order::new("o5")
    };
    let err = engine
        .start::<order_saga>("order-refund-fails", order)
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Compensation, "{err}");
    let d = engine.describe("order-refund-fails").await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Failed);
    let failure = d.failure.expect("failure recorded");
    assert!(failure.contains("carrier rejected"), "{failure}");
    assert!(
        failure.contains("refund-payment") && failure.contains("refuses the refund"),
        "{failure}"
    );
    assert_eq!(d.compensations_done, ["cancel-shipment"]);
    let h = engine.history("order-refund-fails").await.unwrap();
    // Three attempts of the refund (its policy), then the saga stops compensating:
    // release-inventory never runs.
    let refunds = h
        .iter()
        .filter(|e| {
            e.event_type == EventType::ActivityTaskFailed
                && e.attr_str("activity_type") == Some("refund-payment")
        })
        .count();
    assert_eq!(refunds, 3);
    assert_eq!(
        compensations_in_history(&h),
        ["cancel-shipment", "refund-payment"]
    );
    engine.verify_replay("order-refund-fails").await.unwrap();
}

/// Fails twice, succeeds on attempt 3: the backoff timers are in history and their
/// delays were respected. A non-retryable error does not retry.
pub async fn retries_with_backoff<S: ScenarioStore>(store: S) {
    let engine = engine(store).await;
    let got = engine
        .start::<single<flaky>>(
            "flaky-3",
            FlakyInput {
                succeed_on: 3,
                non_retryable: false,
            },
        )
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(got, 3);
    let h = engine.history("flaky-3").await.unwrap();
    assert_history_sound(&h);
    let failed: Vec<_> = h
        .iter()
        .filter(|e| e.event_type == EventType::ActivityTaskFailed)
        .collect();
    assert_eq!(failed.len(), 2);
    let backoffs: Vec<_> = h
        .iter()
        .filter(|e| {
            e.event_type == EventType::TimerStarted
                && e.attributes["kind"] == json!(TimerKind::RetryBackoff)
        })
        .collect();
    assert_eq!(backoffs.len(), 2);
    assert_eq!(backoffs[0].attr_u64("duration_ms"), Some(1_000));
    assert_eq!(backoffs[1].attr_u64("duration_ms"), Some(2_000));
    for (failure, timer) in failed.iter().zip(&backoffs) {
        let id = timer.attr_str("timer_id").unwrap();
        let fired = h
            .iter()
            .find(|e| e.event_type == EventType::TimerFired && e.attr_str("timer_id") == Some(id))
            .expect("backoff timer fired");
        let waited = ts(fired) - ts(failure);
        assert!(
            waited.num_milliseconds() >= timer.attr_u64("duration_ms").unwrap() as i64,
            "retry came after {waited} only"
        );
        let next_start = h
            .iter()
            .find(|e| {
                e.event_type == EventType::ActivityTaskStarted
                    && e.attr_u64("attempt") == timer.attr_u64("attempt")
            })
            .expect("next attempt started");
        assert!(ts(next_start) >= ts(fired));
    }
    let retries = h
        .iter()
        .filter(|e| e.event_type == EventType::ActivityTaskScheduled && e.is_retry)
        .count();
    assert_eq!(retries, 2);

    let err = engine
        .start::<single<flaky>>(
            "flaky-fatal",
            FlakyInput {
                succeed_on: 1,
                non_retryable: true,
            },
        )
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ActivityExecution, "{err}");
    assert!(err.message.contains("invalid card number"), "{err}");
    let h = engine.history("flaky-fatal").await.unwrap();
    assert_eq!(
        h.iter()
            .filter(|e| e.event_type == EventType::ActivityTaskFailed)
            .count(),
        1
    );
    assert!(!h.iter().any(|e| e.event_type == EventType::TimerStarted));
}

/// An attempt that runs past its start-to-close timeout is timed out, retried per
/// policy, and fails the workflow when attempts run out.
pub async fn activity_timeout<S: ScenarioStore>(store: S) {
    let engine = engine(store).await;
    let err = engine
        .start::<single<slow>>("slow-1", 10)
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert!(err.message.contains("timed out"), "{err}");
    let h = engine.history("slow-1").await.unwrap();
    assert_history_sound(&h);
    let timeouts = h
        .iter()
        .filter(|e| e.event_type == EventType::ActivityTaskTimedOut)
        .count();
    assert_eq!(timeouts, 2, "{:?}", types(&h));
    // A fast enough call completes.
    let ok = engine
        .start::<single<slow>>("slow-0", 0)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(ok, 0);
}

/// A workflow-level timeout fails the execution (it was waiting for a signal).
pub async fn workflow_timeout<S: ScenarioStore>(store: S) {
    let engine = engine(store).await;
    let run = engine
        .start_with::<waiter>(
            "wf-timeout",
            WaiterInput {
                sleep_first_secs: 0,
                timeout_secs: None,
            },
            StartOptions {
                timeout: Some(Duration::from_secs(5)),
                ..StartOptions::default()
            },
        )
        .await
        .unwrap();
    let err = run.result().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    let d = engine.describe("wf-timeout").await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Failed);
    let h = engine.history("wf-timeout").await.unwrap();
    let started = ts(&h[0]);
    let timed_out = h
        .iter()
        .find(|e| e.event_type == EventType::WorkflowExecutionTimedOut)
        .expect("timed out event");
    assert!((ts(timed_out) - started).num_seconds() >= 5);
    // A signal to a closed execution is a clear error.
    let late = engine
        .signal("wf-timeout", "go", "too late")
        .await
        .unwrap_err();
    assert_eq!(late.kind, ErrorKind::Validation);
}

/// A durable sleep of one hour.
pub async fn sleep<S: ScenarioStore>(store: S) {
    let engine = engine(store).await;
    let slept = engine
        .start::<sleeper>("sleep-1h", 3600)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert!(slept >= 3600, "slept {slept}s");
    let h = engine.history("sleep-1h").await.unwrap();
    let started = h
        .iter()
        .find(|e| e.event_type == EventType::TimerStarted)
        .unwrap();
    assert_eq!(started.attributes["kind"], json!(TimerKind::Sleep));
    let fired = h
        .iter()
        .find(|e| e.event_type == EventType::TimerFired)
        .unwrap();
    assert!((ts(fired) - ts(started)).num_seconds() >= 3600);
}

/// Signals: delivered before the wait (kept until then), after it, and a wait that
/// times out.
pub async fn signals<S: ScenarioStore>(store: S) {
    let engine = engine(store).await;
    // Before: the workflow sleeps 60 s first, the signal arrives meanwhile.
    let early = engine
        .start::<waiter>(
            "sig-early",
            WaiterInput {
                sleep_first_secs: 60,
                timeout_secs: None,
            },
        )
        .await
        .unwrap();
    engine
        .signal("sig-early", "go", "early bird")
        .await
        .unwrap();
    assert_eq!(early.result().await.unwrap(), "early bird");
    let h = engine.history("sig-early").await.unwrap();
    let sig = h
        .iter()
        .position(|e| e.event_type == EventType::SignalReceived)
        .unwrap();
    let fired = h
        .iter()
        .position(|e| e.event_type == EventType::TimerFired)
        .unwrap();
    assert!(sig < fired, "the signal was recorded before the wait began");

    // After: the workflow is already waiting.
    let late = engine
        .start::<waiter>(
            "sig-late",
            WaiterInput {
                sleep_first_secs: 0,
                timeout_secs: Some(600),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        engine
            .describe("sig-late")
            .await
            .unwrap()
            .waiting_for_signals,
        ["go"]
    );
    assert_eq!(
        engine.describe("sig-late").await.unwrap().status,
        WorkflowStatus::Paused
    );
    engine.signal("sig-late", "go", "on time").await.unwrap();
    assert_eq!(late.result().await.unwrap(), "on time");
    let h = engine.history("sig-late").await.unwrap();
    assert!(
        types(&h).contains(&EventType::TimerCanceled),
        "the wait's timeout timer is cancelled"
    );

    // Timeout: nobody signals.
    let err = engine
        .start::<waiter>(
            "sig-timeout",
            WaiterInput {
                sleep_first_secs: 0,
                timeout_secs: Some(30),
            },
        )
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert!(err.message.contains("signal `go` timed out"), "{err}");

    // Approval signal in the order saga, and a rejection that compensates.
    let mut order = Order::new("o6");
    order.needs_approval = true;
    let run = engine
        .start::<order_saga>("order-approve", order.clone())
        .await
        .unwrap();
    engine
        .signal("order-approve", "approval", Approval { granted: true })
        .await
        .unwrap();
    run.result().await.unwrap();
    let run = engine
        .start::<order_saga>("order-reject", order)
        .await
        .unwrap();
    engine
        .signal("order-reject", "approval", Approval { granted: false })
        .await
        .unwrap();
    let err = run.result().await.unwrap_err();
    assert!(err.message.contains("not approved"), "{err}");
    let h = engine.history("order-reject").await.unwrap();
    assert_eq!(
        compensations_in_history(&h),
        ["refund-payment", "release-inventory"]
    );
}

/// Cancelling a saga that waits for approval compensates what it did and ends
/// Cancelled.
pub async fn cancel_compensates<S: ScenarioStore>(store: S) {
    let engine = engine(store).await;
    let mut order = Order::new("o7");
    order.needs_approval = true;
    let run = engine
        .start::<order_saga>("order-cancel", order)
        .await
        .unwrap();
    // Wait until it is parked on the approval signal.
    loop {
        let d = engine.describe("order-cancel").await.unwrap();
        if d.waiting_for_signals == ["approval"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.cancel("order-cancel").await.unwrap();
    let err = run.result().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    let h = engine.history("order-cancel").await.unwrap();
    assert_eq!(
        compensations_in_history(&h),
        ["refund-payment", "release-inventory"]
    );
    assert_eq!(
        engine.describe("order-cancel").await.unwrap().status,
        WorkflowStatus::Cancelled
    );
    assert!(
        engine.cancel("order-cancel").await.is_err(),
        "a closed saga cannot be cancelled again"
    );
}

/// Waits until `id`'s history holds a result of `activity_type`.
async fn until_reported(engine: &SagaEngine, id: &str, activity_type: &str) {
    loop {
        let h = engine.history(id).await.unwrap();
        if h.iter().any(|e| {
            e.event_type == EventType::ActivityTaskCompleted
                && e.attr_str("activity_type") == Some(activity_type)
        }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The activity events of the `book-room` step of a `trip` history, from the first
/// event of type `after` on.
pub fn booking_after(h: &[HistoryEvent], after: EventType) -> Vec<EventType> {
    let from = h.iter().position(|e| e.event_type == after).unwrap();
    let seq = h
        .iter()
        .find(|e| e.attr_str("activity_type") == Some("book-room"))
        .and_then(|e| e.attr_u64("seq"))
        .unwrap();
    h[from..]
        .iter()
        .filter(|e| {
            e.attr_u64("seq") == Some(seq)
                && e.event_type.category() == crate::domain::EventCategory::Activity
        })
        .map(|e| e.event_type)
        .collect()
}

/// Cancelling a saga while one of its compensable steps runs on a worker waits for
/// that step's outcome: it completed, so it is compensated, and only then does the
/// saga end Cancelled. (Dropping the running step instead would leave its effect
/// with nobody to undo it.)
pub async fn cancel_waits_for_a_running_step<S: ScenarioStore>(store: S) {
    let engine = engine(store.clone()).await;
    let input = TripInput {
        book_ms: 5_000,
        card_declined: false,
    };
    let run = engine.start::<trip>("trip-cancel", input).await.unwrap();
    // The card check is done; the booking runs for seconds more.
    until_reported(&engine, "trip-cancel", "flaky").await;
    engine.cancel("trip-cancel").await.unwrap();
    let d = engine.describe("trip-cancel").await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Paused, "waits for the booking");
    assert_eq!(d.checkpoint, "Ending");
    assert_eq!(d.pending_activities, [("book-room".to_owned(), 1)]);
    let err = run.result().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    let h = engine.history("trip-cancel").await.unwrap();
    assert_history_sound(&h);
    assert_eq!(
        booking_after(&h, EventType::WorkflowExecutionCancelRequested),
        [
            EventType::ActivityTaskStarted,
            EventType::ActivityTaskCompleted
        ],
        "the running booking is not cancelled: its result is recorded"
    );
    assert_eq!(compensations_in_history(&h), ["unbook-room"]);
    let d = engine.describe("trip-cancel").await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Cancelled);
    assert_eq!(d.compensations_done, ["unbook-room"]);
    engine.verify_replay("trip-cancel").await.unwrap();

    // A history written before cancellation waited for running steps (the booking
    // cancelled outright, the saga closed at once) still replays.
    let cancelled = h
        .iter()
        .position(|e| e.event_type == EventType::WorkflowExecutionCancelRequested)
        .unwrap();
    let old_id = crate::domain::SagaId::new("trip-cancel-before");
    let mut old: Vec<HistoryEvent> = h[..=cancelled].to_vec();
    let booking = old
        .iter()
        .find(|e| e.attr_str("activity_type") == Some("book-room"))
        .and_then(|e| e.attr_u64("seq"))
        .unwrap();
    let reason = h[cancelled].attributes["reason"].clone();
    let at = h[cancelled].timestamp;
    for (event_type, attributes) in [
        (EventType::ActivityTaskCanceled, json!({"seq": booking})),
        (
            EventType::WorkflowExecutionCanceled,
            json!({"reason": reason}),
        ),
    ] {
        old.push(HistoryEvent::new(
            old_id.clone(),
            old.len() as u64,
            event_type,
            at,
            attributes,
            h[0].trace_id.clone(),
        ));
    }
    for e in &mut old {
        e.saga_id = old_id.clone();
    }
    store.append(&old_id, 0, old).await.unwrap();
    engine.verify_replay(old_id.clone()).await.unwrap();
    assert_eq!(
        engine.describe(old_id).await.unwrap().status,
        WorkflowStatus::Cancelled
    );
}

/// A step that fails the workflow while a compensable step runs beside it: the
/// workflow fails only once the running step has reported, and then compensates it.
pub async fn failure_waits_for_a_running_step<S: ScenarioStore>(store: S) {
    let engine = engine(store).await;
    let input = TripInput {
        book_ms: 5_000,
        card_declined: true,
    };
    let run = engine.start::<trip>("trip-declined", input).await.unwrap();
    let err = run.result().await.unwrap_err();
    assert!(err.message.contains("invalid card number"), "{err}");
    let h = engine.history("trip-declined").await.unwrap();
    assert_history_sound(&h);
    let failed = h
        .iter()
        .position(|e| e.event_type == EventType::ActivityTaskFailed)
        .unwrap();
    let booked = h
        .iter()
        .position(|e| e.event_type == EventType::ActivityTaskCompleted)
        .unwrap();
    let ended = h
        .iter()
        .position(|e| e.event_type == EventType::WorkflowExecutionFailed)
        .unwrap();
    assert!(
        failed < booked && booked < ended,
        "card check failed, then the booking completed, then the workflow failed: {:?}",
        types(&h)
    );
    assert_eq!(compensations_in_history(&h), ["unbook-room"]);
    assert_eq!(
        engine.describe("trip-declined").await.unwrap().status,
        WorkflowStatus::Cancelled
    );
    engine.verify_replay("trip-declined").await.unwrap();
}

/// Bad input at the API: duplicate start, unknown workflow, unknown execution.
pub async fn bad_input<S: ScenarioStore>(store: S) {
    let engine = engine(store.clone()).await;
    engine.start::<sleeper>("dup", 1).await.unwrap();
    let err = engine.start::<sleeper>("dup", 2).await.unwrap_err();
    assert!(err.is_already_started(), "{err}");
    // The first execution is untouched.
    assert_eq!(
        engine.history("dup").await.unwrap()[0].attributes["input"],
        json!(1)
    );
    let err = engine.signal("no-such-saga", "go", 1).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = engine.describe("no-such-saga").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let bare = SagaEngine::builder()
        .store(store)
        .client_only()
        .build()
        .await
        .unwrap();
    let err = bare
        .start::<sleeper>("x", 1)
        .await
        .expect_err("unregistered");
    assert_eq!(err.kind, ErrorKind::Configuration);
    let err = SagaEngine::builder().build().await.expect_err("no store");
    assert_eq!(err.kind, ErrorKind::Configuration);
}

/// Two engines over one store and queue race on the same sagas (signals and activity
/// results at once): no event is lost or duplicated, every saga completes.
pub async fn two_workers_race<S: ScenarioStore>(store: S) {
    let queue = crate::adapter::memory::InMemoryTaskQueue::new();
    let signals = crate::adapter::memory::InMemorySignalDispatcher::new();
    let a = builder(store.clone())
        .queue(queue.clone())
        .signals(signals.clone())
        .build()
        .await
        .unwrap();
    let b = builder(store.clone())
        .queue(queue)
        .signals(signals)
        .build()
        .await
        .unwrap();
    let n = 40;
    let mut runs = Vec::new();
    for i in 0..n {
        let mut order = Order::new(&format!("race-{i}"));
        order.needs_approval = true;
        runs.push(
            a.start::<order_saga>(format!("race-{i}"), order)
                .await
                .unwrap(),
        );
    }
    // Both engines send a stray signal to every saga at once, then the approvals,
    // while both engines' workers run the activities.
    tokio::join!(
        async {
            for i in 0..n {
                a.signal(format!("race-{i}"), "noise", i).await.unwrap();
            }
        },
        async {
            for i in 0..n {
                b.signal(format!("race-{i}"), "noise", i).await.unwrap();
            }
        }
    );
    tokio::join!(
        async {
            for i in (0..n).step_by(2) {
                a.signal(format!("race-{i}"), "approval", Approval { granted: true })
                    .await
                    .unwrap();
            }
        },
        async {
            for i in (1..n).step_by(2) {
                b.signal(format!("race-{i}"), "approval", Approval { granted: true })
                    .await
                    .unwrap();
            }
        }
    );
    for run in runs {
        run.result().await.expect("each saga completes");
    }
    for i in 0..n {
        let h = a.history(format!("race-{i}")).await.unwrap();
        assert_history_sound(&h);
        let signals = h
            .iter()
            .filter(|e| e.event_type == EventType::SignalReceived)
            .count();
        assert_eq!(
            signals, 3,
            "two noise signals and one approval for race-{i}"
        );
        a.verify_replay(format!("race-{i}")).await.unwrap();
    }
    let m = (a.metrics(), b.metrics());
    assert!(
        m.0.activity_attempts > 0 && m.1.activity_attempts > 0,
        "both engines worked: {m:?}"
    );
}

/// A "crash": the engine is dropped mid-saga; a new one over the same store finishes
/// it with the same result, and the history replays in full.
pub async fn crash_and_recover<S: ScenarioStore>(store: S) {
    let reference = engine(store.clone())
        .await
        .start::<order_saga>("crash-ref", Order::new("c"))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    let mut order = Order::new("c");
    order.needs_approval = true;
    {
        let first = engine(store.clone()).await;
        first.start::<order_saga>("crash-1", order).await.unwrap();
        loop {
            let d = first.describe("crash-1").await.unwrap();
            if d.waiting_for_signals == ["approval"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Dropped here, with the saga half done.
    }
    let second = engine(store).await;
    second
        .signal("crash-1", "approval", Approval { granted: true })
        .await
        .unwrap();
    let receipt = second.result::<order_saga>("crash-1").await.unwrap();
    assert_eq!(receipt.shipment.tracking, reference.shipment.tracking);
    assert_eq!(receipt.payment.amount_cents, reference.payment.amount_cents);
    let h = second.history("crash-1").await.unwrap();
    assert_history_sound(&h);
    second.verify_replay("crash-1").await.unwrap();
}

/// Recovery re-drives work that was scheduled but whose task was lost with the
/// crashed process (the new engine has a fresh queue).
pub async fn crash_loses_queue_and_recovers<S: ScenarioStore>(store: S) {
    {
        // A client-only engine records the start but runs nothing: the activity task
        // sits in a queue that dies with it.
        let client = builder(store.clone()).client_only().build().await.unwrap();
        client.start::<chain>("crash-chain", 5).await.unwrap();
    }
    let worker = engine(store).await;
    let sum = worker.result::<chain>("crash-chain").await.unwrap();
    assert_eq!(sum, 10);
    worker.verify_replay("crash-chain").await.unwrap();
}

/// A snapshot with one flipped byte is reported (metric + log), replay falls back to
/// the full history, and the result is unchanged.
pub async fn corrupted_snapshot_falls_back<S: ScenarioStore>(
    store: S,
    corrupt: impl FnOnce(&S, &crate::domain::SagaId) -> bool,
) {
    let snapshots = SnapshotConfig {
        interval: 4,
        max_snapshots: 2,
        enable_checksum: true,
    };
    let mut order = Order::new("snap");
    order.needs_approval = true;
    {
        let first = builder(store.clone())
            .snapshots(snapshots.clone())
            .build()
            .await
            .unwrap();
        first.start::<order_saga>("snap-1", order).await.unwrap();
        loop {
            if first.describe("snap-1").await.unwrap().waiting_for_signals == ["approval"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            first.metrics().snapshots_saved >= 1,
            "{:?}",
            first.metrics()
        );
    }
    let saga = crate::domain::SagaId::new("snap-1");
    assert!(store.latest_snapshot(&saga).await.unwrap().is_some());
    assert!(
        corrupt(&store, &saga),
        "the test could corrupt the snapshot"
    );
    let second = builder(store).snapshots(snapshots).build().await.unwrap();
    second
        .signal("snap-1", "approval", Approval { granted: true })
        .await
        .unwrap();
    let receipt = second.result::<order_saga>("snap-1").await.unwrap();
    assert_eq!(receipt.shipment.tracking, "trk-snap");
    assert!(
        second.metrics().corrupt_snapshots >= 1,
        "{:?}",
        second.metrics()
    );
    second.verify_replay("snap-1").await.unwrap();
}

/// Long histories load from snapshots, and a run with snapshots gives the same result.
pub async fn snapshots_taken_and_used<S: ScenarioStore>(store: S) {
    let engine = builder(store.clone())
        .snapshots(SnapshotConfig {
            interval: 10,
            max_snapshots: 3,
            enable_checksum: true,
        })
        .build()
        .await
        .unwrap();
    let sum = engine
        .start::<chain>("long-chain", 30)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(sum, (0..30).sum::<u64>());
    let saga = crate::domain::SagaId::new("long-chain");
    let kept = store.snapshots(&saga).await.unwrap();
    assert!(!kept.is_empty() && kept.len() <= 3, "kept {}", kept.len());
    let h = engine.history("long-chain").await.unwrap();
    assert!(types(&h).contains(&EventType::SnapshotCreated));
    engine.verify_replay("long-chain").await.unwrap();
}

/// Replaying a recorded history against changed code is a `Replay` error naming both
/// sides, never a wrong result; a changed fingerprint is refused by name.
pub async fn replay_detects_changed_code<S: ScenarioStore>(store: S) {
    let engine = engine(store.clone()).await;
    engine
        .start::<order_saga>("replay-1", Order::new("r"))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    drop(engine);

    let changed = SagaEngine::builder()
        .store(store.clone())
        .workflow::<order_saga_reordered>()
        .client_only()
        .build()
        .await
        .unwrap();
    let err = changed.verify_replay("replay-1").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Replay, "{err}");
    assert!(
        err.message.contains("charge-payment") && err.message.contains("ship-order"),
        "names both commands: {err}"
    );

    let v2 = SagaEngine::builder()
        .store(store)
        .workflow::<order_saga_v2>()
        .client_only()
        .build()
        .await
        .unwrap();
    let err = v2.verify_replay("replay-1").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Replay);
    assert!(
        err.message.contains("order-saga:v1") && err.message.contains("order-saga:v2"),
        "names both fingerprints: {err}"
    );
}

/// With each codec, a new engine resumes a parked saga from its snapshot (not the full
/// history) and finishes it.
pub async fn snapshot_restores_with_every_codec<S: ScenarioStore>(store: S) {
    use crate::codec::{AnyCodec, Codec};
    for codec in AnyCodec::ALL {
        let id = format!("snap-codec-{}", codec.name());
        let snapshots = SnapshotConfig {
            interval: 3,
            max_snapshots: 5,
            enable_checksum: true,
        };
        let mut order = Order::new(&id);
        order.needs_approval = true;
        {
            let first = builder(store.clone())
                .codec(codec)
                .snapshots(snapshots.clone())
                .build()
                .await
                .unwrap();
            first.start::<order_saga>(id.as_str(), order).await.unwrap();
            while first
                .describe(id.as_str())
                .await
                .unwrap()
                .waiting_for_signals
                != ["approval"]
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let saga = crate::domain::SagaId::new(&id);
        let snap = store
            .latest_snapshot(&saga)
            .await
            .unwrap()
            .expect("a snapshot was taken");
        assert_eq!(snap.codec, codec.name());
        let history_len = store.version(&saga).await.unwrap();
        assert!(
            snap.last_event_id + 1 >= history_len - 1,
            "the snapshot covers the parked state"
        );
        let second = builder(store.clone())
            .codec(codec)
            .snapshots(snapshots)
            .build()
            .await
            .unwrap();
        let d = second.describe(id.as_str()).await.unwrap();
        assert_eq!(d.waiting_for_signals, ["approval"], "{}", codec.name());
        assert_eq!(d.checkpoint, "Approval");
        second
            .signal(id.as_str(), "approval", Approval { granted: true })
            .await
            .unwrap();
        let receipt = second.result::<order_saga>(id.as_str()).await.unwrap();
        assert_eq!(receipt.shipment.tracking, format!("trk-{id}"));
        assert_eq!(second.metrics().corrupt_snapshots, 0, "{}", codec.name());
        second.verify_replay(id.as_str()).await.unwrap();
    }
}

/// `ctx.join` and `ctx.join_all`: parallel activities, results by slot.
pub async fn parallel_steps<S: ScenarioStore>(store: S) {
    let engine = engine(store).await;
    let sum = engine
        .start::<parallel>("par", 5)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(sum, 300 + (0..5).sum::<u64>());
    let h = engine.history("par").await.unwrap();
    assert_history_sound(&h);
    // Both join branches were scheduled before either completed.
    let first_two: Vec<_> = h[1..3].iter().map(|e| e.event_type).collect();
    assert_eq!(
        first_two,
        [
            EventType::ActivityTaskScheduled,
            EventType::ActivityTaskScheduled
        ]
    );
    let scheduled = h
        .iter()
        .filter(|e| e.event_type == EventType::ActivityTaskScheduled)
        .count();
    assert_eq!(scheduled, 7);
    engine.verify_replay("par").await.unwrap();
}

/// A local activity runs in the worker with its own events and in-process retries.
pub async fn local_activity<S: ScenarioStore>(store: S) {
    let engine = engine(store).await;
    let attempt = engine
        .start::<local_flow>(
            "local",
            FlakyInput {
                succeed_on: 2,
                non_retryable: false,
            },
        )
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(attempt, 2);
    let h = engine.history("local").await.unwrap();
    assert_history_sound(&h);
    let t = types(&h);
    assert!(!t.contains(&EventType::ActivityTaskScheduled), "{t:?}");
    for expected in [
        EventType::LocalActivityScheduled,
        EventType::LocalActivityStarted,
        EventType::LocalActivityCompleted,
    ] {
        assert!(t.contains(&expected), "{expected:?} in {t:?}");
    }
    let done = h
        .iter()
        .find(|e| e.event_type == EventType::LocalActivityCompleted)
        .unwrap();
    assert_eq!(done.attr_u64("attempts"), Some(2));
    let err = engine
        .start::<local_flow>(
            "local-fatal",
            FlakyInput {
                succeed_on: 1,
                non_retryable: true,
            },
        )
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ActivityExecution, "{err}");
    let h = engine.history("local-fatal").await.unwrap();
    assert!(types(&h).contains(&EventType::LocalActivityFailed));
    engine.verify_replay("local").await.unwrap();
}

/// A child workflow has its own history; the parent records the child's events and
/// its outcome (success, failure after compensation, cancellation with the parent).
pub async fn child_workflows<S: ScenarioStore>(store: S) {
    let engine = engine(store).await;
    let tracking = engine
        .start::<parent_flow>("parent-ok", Order::new("kid"))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(tracking, "trk-kid");
    let h = engine.history("parent-ok").await.unwrap();
    assert_history_sound(&h);
    let t = types(&h);
    for expected in [
        EventType::StartChildWorkflowExecutionInitiated,
        EventType::ChildWorkflowExecutionStarted,
        EventType::ChildWorkflowExecutionCompleted,
    ] {
        assert!(t.contains(&expected), "{expected:?} in {t:?}");
    }
    let child_id = h
        .iter()
        .find(|e| e.event_type == EventType::StartChildWorkflowExecutionInitiated)
        .and_then(|e| e.attr_str("child_id"))
        .unwrap()
        .to_owned();
    let child = engine.history(child_id.as_str()).await.unwrap();
    assert_eq!(child[0].attributes["parent"]["saga_id"], json!("parent-ok"));
    assert_eq!(
        child[0].trace_id, h[0].trace_id,
        "the child joins the parent's trace"
    );
    engine.verify_replay("parent-ok").await.unwrap();
    engine.verify_replay(child_id.as_str()).await.unwrap();

    // The child fails (and compensates): the parent sees why.
    let mut order = Order::new("kid2");
    order.carrier_rejects = true;
    let err = engine
        .start::<parent_flow>("parent-child-fails", order)
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert!(err.message.contains("carrier rejected"), "{err}");
    let h = engine.history("parent-child-fails").await.unwrap();
    assert!(
        types(&h).contains(&EventType::ChildWorkflowExecutionCanceled),
        "{:?}",
        types(&h)
    );

    // Cancelling the parent cancels the child, which compensates.
    let mut order = Order::new("kid3");
    order.needs_approval = true;
    let run = engine
        .start::<parent_flow>("parent-cancel", order)
        .await
        .unwrap();
    let child_id = "parent-cancel/child-0";
    loop {
        if let Ok(d) = engine.describe(child_id).await {
            if d.waiting_for_signals == ["approval"] {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        engine
            .describe("parent-cancel")
            .await
            .unwrap()
            .pending_children,
        [child_id]
    );
    engine.cancel("parent-cancel").await.unwrap();
    assert_eq!(run.result().await.unwrap_err().kind, ErrorKind::Cancelled);
    let err = engine.result::<order_saga>(child_id).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    let h = engine.history("parent-cancel").await.unwrap();
    assert!(types(&h).contains(&EventType::RequestCancelChildWorkflowExecutionInitiated));
    let child = engine.history(child_id).await.unwrap();
    assert_eq!(
        compensations_in_history(&child),
        ["refund-payment", "release-inventory"]
    );
}

/// `now`, `random`, `uuid` and `side_effect` are recorded, and a replay in another
/// engine hands back the recorded values (a fresh value would fail the replay).
pub async fn recorded_values_replay<S: ScenarioStore>(store: S) {
    {
        let first = engine(store.clone()).await;
        first.start::<recorder>("rec", 60).await.unwrap();
        while first
            .describe("rec")
            .await
            .unwrap()
            .pending_timers
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let second = engine(store).await;
    let out = second.result::<recorder>("rec").await.unwrap();
    let h = second.history("rec").await.unwrap();
    let recorded = |kind: &str| {
        h.iter()
            .filter(|e| {
                matches!(
                    e.event_type,
                    EventType::MarkerRecorded | EventType::SideEffectRecorded
                ) && e.attr_str("kind") == Some(kind)
            })
            .map(|e| e.attributes["value"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        recorded("random"),
        [json!(out.random), json!(out.random_after_sleep)]
    );
    assert_eq!(recorded("uuid"), [json!(out.uuid)]);
    assert_eq!(recorded("side_effect"), [json!(out.side_effect)]);
    let now: Vec<DateTime<Utc>> = recorded("now")
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].timestamp_millis(), out.now_ms);
    assert_eq!(out.uuid.len(), 36);
    assert_eq!(&out.uuid[14..15], "4", "a version-4 layout");
    assert!(types(&h).contains(&EventType::SideEffectRecorded));
    second.verify_replay("rec").await.unwrap();
}

/// Optimistic locking end to end: engine A holds a cached execution, engine B appends
/// to it, A's next write conflicts, reloads, and retries; nothing is lost or doubled.
pub async fn stale_writer_conflicts_and_retries<S: ScenarioStore>(store: S) {
    let a = engine(store.clone()).await;
    let b = builder(store).client_only().build().await.unwrap();
    let run = a
        .start::<waiter>(
            "stale",
            WaiterInput {
                sleep_first_secs: 60,
                timeout_secs: None,
            },
        )
        .await
        .unwrap();
    // B records the signal behind A's back; A's cached copy is now one event behind.
    b.signal("stale", "go", "from b").await.unwrap();
    // A's timer fires: its append at the stale version conflicts, it reloads (and sees
    // the signal), and retries.
    assert_eq!(run.result().await.unwrap(), "from b");
    assert!(a.metrics().conflicts >= 1, "{:?}", a.metrics());
    let h = a.history("stale").await.unwrap();
    assert_history_sound(&h);
    assert_eq!(
        h.iter()
            .filter(|e| e.event_type == EventType::SignalReceived)
            .count(),
        1
    );
    assert_eq!(
        h.iter()
            .filter(|e| e.event_type == EventType::TimerFired)
            .count(),
        1
    );
    a.verify_replay("stale").await.unwrap();
}

/// A task queue outside the process, as far as the engine can tell (so its outbox is
/// on), that loses the first publish of every task, the way a broker may lose a
/// message it acknowledged; it remembers every task published, to deliver them all
/// again later.
#[derive(Clone, Default)]
pub struct LossyQueue {
    inner: crate::adapter::memory::InMemoryTaskQueue,
    seen: std::sync::Arc<std::sync::Mutex<Vec<crate::port::Task>>>,
}

impl LossyQueue {
    fn seen(&self) -> std::sync::MutexGuard<'_, Vec<crate::port::Task>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The executions any of whose tasks were published.
    fn sagas_seen(&self) -> std::collections::BTreeSet<String> {
        self.seen()
            .iter()
            .map(|t| t.saga_id.as_str().to_owned())
            .collect()
    }

    /// Publishes every task ever published once more (duplicate deliveries).
    pub async fn redeliver_all(&self) {
        let tasks = self.seen().clone();
        for t in tasks {
            crate::port::TaskQueue::publish(&self.inner, t)
                .await
                .unwrap();
        }
    }
}

#[async_trait::async_trait]
impl crate::port::TaskQueue for LossyQueue {
    async fn publish(&self, task: crate::port::Task) -> crate::domain::Result<()> {
        let first = {
            let mut seen = self.seen();
            let first = !seen.iter().any(|t| t.dedup_id == task.dedup_id);
            seen.push(task.clone());
            first
        };
        if first {
            return Ok(()); // acknowledged, and lost
        }
        self.inner.publish(task).await
    }
    async fn fetch(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> crate::domain::Result<Vec<crate::port::Delivery>> {
        self.inner.fetch(queue, max, wait).await
    }
    async fn ack(&self, tag: &crate::port::DeliveryTag) -> crate::domain::Result<()> {
        self.inner.ack(tag).await
    }
    async fn nak(
        &self,
        tag: &crate::port::DeliveryTag,
        delay: Duration,
    ) -> crate::domain::Result<()> {
        self.inner.nak(tag, delay).await
    }
    async fn terminate(
        &self,
        tag: &crate::port::DeliveryTag,
        reason: &str,
    ) -> crate::domain::Result<()> {
        self.inner.terminate(tag, reason).await
    }
    async fn dead_letters(
        &self,
        queue: &str,
    ) -> crate::domain::Result<Vec<crate::port::DeadLetter>> {
        self.inner.dead_letters(queue).await
    }
    async fn progress(&self, tag: &crate::port::DeliveryTag) -> crate::domain::Result<()> {
        self.inner.progress(tag).await
    }
}

/// The outbox: every task the broker loses is published again by the reconciler once
/// it stays unsettled past `redeliver_after`; the saga completes; each activity ran
/// exactly once; closing the execution left no task in the outbox. Delivering every
/// task once more afterwards runs nothing again (the worker finds each result in
/// history and drops the task).
pub async fn outbox_redelivers_lost_tasks<S: ScenarioStore>(store: S) {
    let queue = LossyQueue::default();
    let engine = builder(store.clone())
        .queue(queue.clone())
        .outbox(crate::engine::OutboxConfig {
            redeliver_after: Duration::from_secs(5),
            ..Default::default()
        })
        // Every task through the queue: eager dispatch would keep the later steps
        // off it (see `eager_activities_skip_the_queue`).
        .eager_activities(false)
        .build()
        .await
        .unwrap();
    let receipt = engine
        .start::<order_saga>("outbox-1", Order::new("ob"))
        .await
        .unwrap()
        .result()
        .await
        .expect("completes although every first publish was lost");
    assert_eq!(receipt.shipment.tracking, "trk-ob");
    let h = engine.history("outbox-1").await.unwrap();
    assert_history_sound(&h);
    let scheduled = h
        .iter()
        .filter(|e| e.event_type == EventType::ActivityTaskScheduled)
        .count() as u64;
    assert_eq!(scheduled, 3);
    let m = engine.metrics();
    assert!(
        m.outbox_redelivered >= scheduled,
        "each lost task must be re-published: {m:?}"
    );
    assert_eq!(m.activity_attempts, scheduled, "each step runs once: {m:?}");
    assert_eq!(
        store.outbox_len().await.unwrap(),
        0,
        "the closed execution must leave no task in the outbox"
    );

    queue.redeliver_all().await;
    let dropped = m.dropped_tasks;
    for _ in 0..100 {
        if engine.metrics().dropped_tasks >= dropped + scheduled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = engine.metrics();
    assert!(
        after.dropped_tasks >= dropped + scheduled,
        "duplicates of finished tasks must be dropped: {after:?}"
    );
    assert_eq!(
        after.activity_attempts, scheduled,
        "a duplicate must not run again"
    );
    assert_eq!(engine.history("outbox-1").await.unwrap(), h);
}

/// Task queues: an execution started on queue `billing` has every task run by the
/// engine serving `billing` (it records the queue in its start event), none by the one
/// that started it; executions started without a queue stay on the starter's.
pub async fn task_queues_route_work<S: ScenarioStore>(store: S) {
    let (front, billing, _) = front_and(store, "billing").await;
    let options = StartOptions {
        task_queue: Some("billing".into()),
        ..Default::default()
    };
    let receipt = front
        .start_with::<order_saga>("routed", Order::new("r"), options)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(receipt.shipment.tracking, "trk-r");
    let h = front.history("routed").await.unwrap();
    assert_eq!(h[0].attr_str("task_queue"), Some("billing"));
    assert_history_sound(&h);
    assert_eq!(
        (
            front.metrics().activity_attempts,
            billing.metrics().activity_attempts
        ),
        (0, 3),
        "every step of a `billing` execution runs on the `billing` worker"
    );
    front
        .start::<order_saga>("unrouted", Order::new("u"))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(
        (
            front.metrics().activity_attempts,
            billing.metrics().activity_attempts
        ),
        (3, 3),
        "an execution started without a queue stays on the starter's"
    );
}

/// Two engines on `store` and one in-memory queue: the first serves the default
/// queue, the second `other`. Also returns the queue.
async fn front_and<S: ScenarioStore>(
    store: S,
    other: &str,
) -> (
    SagaEngine,
    SagaEngine,
    crate::adapter::memory::InMemoryTaskQueue,
) {
    let queue = crate::adapter::memory::InMemoryTaskQueue::new();
    let signals = crate::adapter::memory::InMemorySignalDispatcher::new();
    let front = builder(store.clone())
        .queue(queue.clone())
        .signals(signals.clone())
        .build()
        .await
        .unwrap();
    let second = builder(store)
        .queue(queue.clone())
        .signals(signals)
        .task_queue_name(other)
        .build()
        .await
        .unwrap();
    (front, second, queue)
}

/// How many activity attempts each engine ran.
fn attempts(front: &SagaEngine, vault: &SagaEngine) -> (u64, u64) {
    (
        front.metrics().activity_attempts,
        vault.metrics().activity_attempts,
    )
}

/// The part of [`activity_queues_route_steps`] any pair of engines on one store and
/// one task queue can run (`front` serves the default queue, `vault` [`VAULT_QUEUE`],
/// neither has run an activity yet): executions `<prefix>-ok` and `<prefix>-rejected`.
pub async fn steps_follow_their_activity_queues(
    front: &SagaEngine,
    vault: &SagaEngine,
    prefix: &str,
) {
    let ok = format!("{prefix}-ok");
    let tracking = front
        .execute::<vault_order>(ok.as_str(), Order::new("v"))
        .await
        .unwrap();
    assert_eq!(tracking, "trk-v");
    let h = front.history(&ok).await.unwrap();
    assert_history_sound(&h);
    let routed: Vec<_> = h
        .iter()
        .filter(|e| e.event_type == EventType::ActivityTaskScheduled)
        .map(|e| (e.attr_str("activity_type"), e.attr_str("task_queue")))
        .collect();
    assert_eq!(
        routed,
        vec![
            (Some("vault-charge"), Some(VAULT_QUEUE)),
            (Some("ship-order"), None)
        ],
        "the charge is recorded on its queue, the shipment on the execution's"
    );
    assert_eq!(
        attempts(front, vault),
        (1, 1),
        "the charge ran on the vault worker, the shipment on the front one"
    );

    // The carrier rejects after acting: both steps are undone, LIFO, each on the
    // queue of the step it undoes.
    let rejected = format!("{prefix}-rejected");
    let err = front
        .execute::<vault_order>(
            rejected.as_str(),
            Order {
                carrier_rejects: true,
                ..Order::new("vr")
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::WorkflowExecution, "{err}");
    assert_eq!(err.context("compensated"), Some("true"));
    let h = front.history(&rejected).await.unwrap();
    assert_eq!(
        h.last().map(|e| e.event_type),
        Some(EventType::WorkflowExecutionCanceled)
    );
    assert_history_sound(&h);
    assert_eq!(
        compensations_in_history(&h),
        ["cancel-shipment", "vault-refund"]
    );
    let refund = h
        .iter()
        .find(|e| {
            e.event_type == EventType::ActivityTaskScheduled
                && e.attr_str("activity_type") == Some("vault-refund")
        })
        .unwrap();
    assert_eq!(refund.attr_str("task_queue"), Some(VAULT_QUEUE));
    assert_eq!(
        attempts(front, vault),
        (3, 3),
        "charge and refund on the vault worker; shipment and its cancellation on the front one"
    );
}

/// An activity whose options name a task queue (`vault_charge`, on `vault`) runs only
/// on the workers serving that queue, and so does its compensation; the other steps of
/// the same execution stay on the execution's queue. The queue is recorded in the
/// step's `ActivityTaskScheduled`, and recovery sends a pending step there again.
pub async fn activity_queues_route_steps<S: ScenarioStore>(store: S) {
    let (front, vault, _) = front_and(store.clone(), VAULT_QUEUE).await;
    steps_follow_their_activity_queues(&front, &vault, "routed").await;

    // A history written before the activity named its queue (the same events without
    // `task_queue`) still replays: the queue is policy, like the retry policy.
    let before: Vec<HistoryEvent> = front
        .history("routed-ok")
        .await
        .unwrap()
        .into_iter()
        .map(|mut e| {
            e.saga_id = crate::domain::SagaId::new("routed-before");
            if let Some(o) = e.attributes.as_object_mut() {
                o.remove("task_queue");
            }
            e
        })
        .collect();
    let id = crate::domain::SagaId::new("routed-before");
    store
        .commit(crate::port::Commit::events_only(&id, 0, before))
        .await
        .unwrap();
    front.verify_replay("routed-before").await.unwrap();

    // Recovery re-publishes a pending step to the queue its history records: a
    // client-only engine records the start, and its in-process queue, holding the
    // charge, dies with it.
    {
        let client = builder(store.clone()).client_only().build().await.unwrap();
        client
            .start::<vault_order>("vault-recovered", Order::new("vc"))
            .await
            .unwrap();
    }
    let queue = crate::adapter::memory::InMemoryTaskQueue::new();
    let front = builder(store.clone())
        .queue(queue.clone())
        .build()
        .await
        .unwrap();
    let vault = builder(store)
        .queue(queue)
        .task_queue_name(VAULT_QUEUE)
        .recover_on_start(false)
        .build()
        .await
        .unwrap();
    let tracking = front
        .result::<vault_order>("vault-recovered")
        .await
        .unwrap();
    assert_eq!(tracking, "trk-vc");
    assert_eq!(
        attempts(&front, &vault),
        (1, 1),
        "the recovered charge went to the vault queue"
    );
}

/// A workflow type whose options name a queue (`vaulted`, on `vault`) runs there
/// whoever starts it: an engine serving another queue, a client without the code
/// (from the registered definition), or a parent on another queue. A start's own
/// queue still wins.
pub async fn workflow_queues_route_executions<S: ScenarioStore>(store: S) {
    let (front, vault, queue) = front_and(store.clone(), VAULT_QUEUE).await;
    let recorded = |h: &[HistoryEvent]| h[0].attr_str("task_queue").map(str::to_owned);

    assert_eq!(front.execute::<vaulted>("wq-engine", 7).await.unwrap(), 7);
    let h = front.history("wq-engine").await.unwrap();
    assert_eq!(recorded(&h).as_deref(), Some(VAULT_QUEUE));
    assert_eq!(
        attempts(&front, &vault),
        (0, 1),
        "started on the front, run on the vault"
    );

    let here = StartOptions {
        task_queue: Some("default".into()),
        ..StartOptions::default()
    };
    assert_eq!(
        front
            .execute_with::<vaulted>("wq-override", 8, here)
            .await
            .unwrap(),
        8
    );
    assert_eq!(attempts(&front, &vault), (1, 1), "the start's queue wins");

    let client = crate::client::SagaClient::new(store).queue(queue, "default");
    let started = client
        .start("vaulted", "wq-client", json!(9), StartOptions::default())
        .await
        .unwrap();
    assert_eq!(started.attr_str("task_queue"), Some(VAULT_QUEUE));
    assert_eq!(front.result::<vaulted>("wq-client").await.unwrap(), 9);
    assert_eq!(
        attempts(&front, &vault),
        (1, 2),
        "a client start follows the registered definition"
    );

    assert_eq!(
        front
            .execute::<vault_parent>("wq-parent", 10)
            .await
            .unwrap(),
        10
    );
    let parent = front.history("wq-parent").await.unwrap();
    assert_eq!(recorded(&parent).as_deref(), Some("default"));
    let child_id = parent
        .iter()
        .find(|e| e.event_type == EventType::StartChildWorkflowExecutionInitiated)
        .and_then(|e| e.attr_str("child_id"))
        .unwrap()
        .to_owned();
    let child = front.history(child_id.as_str()).await.unwrap();
    assert_eq!(recorded(&child).as_deref(), Some(VAULT_QUEUE));
    assert_eq!(
        attempts(&front, &vault),
        (1, 3),
        "the child's step ran on the vault worker"
    );
}

/// A worker needs the code only of what it runs (the split between workflow and
/// activity workers that Temporal makes). An activity-only worker (no workflows, here
/// on [`VAULT_QUEUE`]) runs its steps and records their results without deciding; a
/// worker with the workflow's code then decides what follows. In the same way any
/// engine delivers a child's outcome to a parent whose code it lacks, and fires the
/// timers of any execution.
pub async fn split_workers_share_executions<S: ScenarioStore>(store: S) {
    let signals = crate::adapter::memory::InMemorySignalDispatcher::new();
    let queue = crate::adapter::memory::InMemoryTaskQueue::new();
    let front = builder(store.clone())
        .queue(queue.clone())
        .signals(signals.clone())
        .build()
        .await
        .unwrap();
    let vault = SagaEngine::builder()
        .store(store.clone())
        .queue(queue)
        .signals(signals.clone())
        .activities([activity::<vault_charge>(), activity::<vault_refund>()])
        .task_queue_name(VAULT_QUEUE)
        .build()
        .await
        .unwrap();
    steps_follow_their_activity_queues(&front, &vault, "split").await;
    let m = vault.metrics();
    assert_eq!(
        (m.inputs_handed_over, m.workflow_tasks),
        (3, 0),
        "the vault recorded its three results (charge, charge, refund) and decided nothing"
    );
    front.verify_replay("split-ok").await.unwrap();
    front.verify_replay("split-rejected").await.unwrap();
    // Engines with the code would fire the timer below themselves.
    front.shutdown().await;
    vault.shutdown().await;

    // A child on the vault queue, run by a worker with the child's code but not the
    // parent's: the child's outcome goes to the parent's workers. (The child's worker
    // comes up once the parent has recorded the child's start: a child that ends
    // before that has its outcome delivered by the engine that started it.)
    let queue = crate::adapter::memory::InMemoryTaskQueue::new();
    let front = builder(store.clone())
        .queue(queue.clone())
        .signals(signals.clone())
        .build()
        .await
        .unwrap();
    front
        .start::<vault_parent>("split-parent", 11)
        .await
        .unwrap();
    let mut waited = Duration::ZERO;
    while !front
        .history("split-parent")
        .await
        .unwrap()
        .iter()
        .any(|e| e.event_type == EventType::ChildWorkflowExecutionStarted)
    {
        assert!(waited < Duration::from_secs(60), "the child never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    let children = SagaEngine::builder()
        .store(store.clone())
        .queue(queue)
        .signals(signals)
        .workflow::<vaulted>()
        .activity::<echo>()
        .task_queue_name(VAULT_QUEUE)
        // The queue holds the child's step: no re-drive of it at start.
        .recover_on_start(false)
        .build()
        .await
        .unwrap();
    assert_eq!(
        front.result::<vault_parent>("split-parent").await.unwrap(),
        11
    );
    let m = children.metrics();
    assert_eq!(
        (m.activity_attempts, m.inputs_handed_over),
        (1, 1),
        "the child ran on its own worker, which handed its outcome to the parent's"
    );
    let parent = front.history("split-parent").await.unwrap();
    assert_history_sound(&parent);
    assert!(parent
        .iter()
        .any(|e| e.event_type == EventType::ChildWorkflowExecutionCompleted));
    front.shutdown().await;
    children.shutdown().await;

    // A timer fired by an engine without the code: a client records the sleeper's
    // start and timer; an engine with no workflow at all fires it, on a queue of its
    // own; a worker started later folds the wake-up.
    let queue = crate::adapter::memory::InMemoryTaskQueue::new();
    let client = builder(store.clone())
        .queue(queue.clone())
        .client_only()
        .build()
        .await
        .unwrap();
    client.start::<sleeper>("split-timer", 60).await.unwrap();
    let timers = SagaEngine::builder()
        .store(store.clone())
        .queue(queue.clone())
        .task_queue_name("timers-only")
        .timer_poll_interval(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let mut waited = Duration::ZERO;
    while timers.metrics().inputs_handed_over == 0 {
        assert!(waited < Duration::from_secs(600), "the timer never fired");
        tokio::time::sleep(Duration::from_secs(1)).await;
        waited += Duration::from_secs(1);
    }
    let h = client.history("split-timer").await.unwrap();
    assert_eq!(h.last().map(|e| e.event_type), Some(EventType::TimerFired));
    // The same engine signals a waiter, and is refused a closed execution.
    let waiting = WaiterInput {
        sleep_first_secs: 0,
        timeout_secs: None,
    };
    client
        .start::<waiter>("split-signal", waiting)
        .await
        .unwrap();
    timers
        .signal("split-signal", "go", "from afar")
        .await
        .unwrap();
    let worker = builder(store).queue(queue).build().await.unwrap();
    let slept = worker.result::<sleeper>("split-timer").await.unwrap();
    assert!(slept >= 60, "woke after {slept} s");
    assert_history_sound(&worker.history("split-timer").await.unwrap());
    assert_eq!(
        worker.result::<waiter>("split-signal").await.unwrap(),
        "from afar"
    );
    let before = worker.history("split-timer").await.unwrap().len();
    let err = timers
        .signal("split-timer", "go", "late")
        .await
        .unwrap_err();
    assert_eq!(err.context("code"), Some("closed"), "{err}");
    assert_eq!(worker.history("split-timer").await.unwrap().len(), before);
    assert_eq!(
        timers.metrics().inputs_handed_over,
        2,
        "the timer and the signal"
    );
}

/// `execute` starts and waits in one call: the output of a completed execution, the
/// error of a compensated one, on the engine that runs it and on a client that does
/// not (there the close arrives as a notification); a taken id is refused and the
/// first execution untouched.
pub async fn execute_starts_and_waits<S: ScenarioStore>(store: S) {
    let queue = crate::adapter::memory::InMemoryTaskQueue::new();
    let signals = crate::adapter::memory::InMemorySignalDispatcher::new();
    let worker = builder(store.clone())
        .queue(queue.clone())
        .signals(signals.clone())
        .build()
        .await
        .unwrap();
    let client = builder(store)
        .queue(queue)
        .signals(signals)
        .client_only()
        .build()
        .await
        .unwrap();
    for (engine, id) in [(&worker, "exec-worker"), (&client, "exec-client")] {
        let receipt = engine
            .execute::<order_saga>(id, Order::new(id))
            .await
            .unwrap();
        assert_eq!(receipt.shipment.tracking, format!("trk-{id}"));
        let rejected = Order {
            carrier_rejects: true,
            ..Order::new(id)
        };
        let err = engine
            .execute::<order_saga>(format!("{id}-rejected"), rejected)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::WorkflowExecution, "{err}");
        assert_eq!(err.context("compensated"), Some("true"), "{err}");
        let again = engine
            .execute::<order_saga>(id, Order::new("other"))
            .await
            .unwrap_err();
        assert!(again.is_already_started(), "{again}");
        assert_eq!(
            engine.result::<order_saga>(id).await.unwrap(),
            receipt,
            "the first execution is untouched"
        );
    }
    assert_eq!(
        client.metrics().activity_attempts,
        0,
        "the client ran nothing"
    );
}

/// An outbox with an in-process queue, redelivering after `secs` seconds.
fn outbox_after(secs: u64) -> crate::engine::OutboxConfig {
    crate::engine::OutboxConfig {
        enabled: Some(true),
        redeliver_after: Duration::from_secs(secs),
        reconcile_every: Duration::from_millis(200),
    }
}

/// Eager dispatch: the activities a worker's own commits schedule run on that worker
/// at once, without the queue. Only the first step (scheduled by the start, a client
/// call, here never an eager one) goes through the queue; here the queue loses it, and
/// the outbox re-drives it. Each step runs once, and the closed saga leaves nothing in
/// the outbox.
pub async fn eager_activities_skip_the_queue<S: ScenarioStore>(store: S) {
    let queue = LossyQueue::default();
    let engine = builder(store.clone())
        .queue(queue.clone())
        .outbox(outbox_after(5))
        .eager_start_when_idle(false)
        .build()
        .await
        .unwrap();
    let receipt = engine
        .start::<order_saga>("eager-1", Order::new("eg"))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(receipt.shipment.tracking, "trk-eg");
    let h = engine.history("eager-1").await.unwrap();
    assert_history_sound(&h);
    let m = engine.metrics();
    assert_eq!(
        (m.activity_attempts, m.eager_activities),
        (3, 2),
        "three steps, the last two run eagerly: {m:?}"
    );
    let published: Vec<_> = queue.seen().iter().map(|t| t.dedup_id.clone()).collect();
    let scheduled: Vec<_> = h
        .iter()
        .filter(|e| e.event_type == EventType::ActivityTaskScheduled)
        .map(|e| format!("{}:{}", e.saga_id, e.event_id))
        .collect();
    assert_eq!(
        published,
        vec![scheduled[0].clone(), scheduled[0].clone()],
        "only the first step's task goes to the queue (lost once, re-published once)"
    );
    assert_eq!(store.outbox_len().await.unwrap(), 0);
}

/// Eager start (`StartOptions::eager`): the first step's activities run on the
/// starting engine too, so no task of the execution reaches the queue; a start without
/// it on the same engine (here one that never starts eagerly unasked) still hands its
/// first step to the queue. `execute` takes it as `start` does.
pub async fn eager_start_runs_the_first_step_here<S: ScenarioStore>(store: S) {
    let queue = LossyQueue::default();
    let engine = builder(store.clone())
        .queue(queue.clone())
        .outbox(outbox_after(5))
        .eager_start_when_idle(false)
        .build()
        .await
        .unwrap();
    let eager = StartOptions {
        eager: true,
        ..StartOptions::default()
    };
    let receipt = engine
        .execute_with::<order_saga>("eager-start", Order::new("es"), eager)
        .await
        .unwrap();
    assert_eq!(receipt.shipment.tracking, "trk-es");
    assert_history_sound(&engine.history("eager-start").await.unwrap());
    let m = engine.metrics();
    assert_eq!(
        (m.activity_attempts, m.eager_activities),
        (3, 3),
        "every step ran eagerly: {m:?}"
    );
    assert!(queue.seen().is_empty(), "nothing went to the queue");

    engine
        .execute::<order_saga>("queued-start", Order::new("qs"))
        .await
        .unwrap();
    assert_eq!(
        queue.sagas_seen(),
        ["queued-start".to_owned()].into(),
        "without eager start the first step goes to the queue"
    );
    assert_eq!(store.outbox_len().await.unwrap(), 0);
}

/// Eager start while idle (the default): a start that finds the engine running
/// nothing runs its execution here, no task reaching the queue; a start while that
/// execution's step still runs goes through the queue, and so does every start of an
/// engine with the option off. Both executions finish, and the outbox is left empty.
pub async fn an_idle_engine_starts_eagerly<S: ScenarioStore>(store: S) {
    let queue = LossyQueue::default();
    let engine = builder(store.clone())
        .queue(queue.clone())
        .outbox(outbox_after(5))
        .build()
        .await
        .unwrap();
    let receipt = engine
        .execute::<order_saga>("idle-start", Order::new("is"))
        .await
        .unwrap();
    assert_eq!(receipt.shipment.tracking, "trk-is");
    assert_history_sound(&engine.history("idle-start").await.unwrap());
    assert_eq!(
        engine.metrics().eager_activities,
        3,
        "the idle engine ran every step"
    );
    assert!(queue.seen().is_empty(), "nothing went to the queue");

    // A 2 s step running eagerly keeps the engine busy for the next start.
    let long = engine
        .start::<pair<patient>>("idle-long", 2_000)
        .await
        .unwrap();
    assert_eq!(
        engine.metrics().eager_activities,
        4,
        "the long step runs here"
    );
    engine
        .execute::<order_saga>("busy-start", Order::new("bs"))
        .await
        .unwrap();
    assert_eq!(
        queue.sagas_seen(),
        ["busy-start".to_owned()].into(),
        "a start on a busy engine hands its first step to the queue"
    );
    assert_eq!(long.result().await.unwrap(), 2_000);

    // Two starts at once on the idle engine: one takes it, the other queues.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (a, b) = tokio::join!(
        engine.execute::<order_saga>("burst-a", Order::new("ba")),
        engine.execute::<order_saga>("burst-b", Order::new("bb")),
    );
    a.unwrap();
    b.unwrap();
    let queued = queue.sagas_seen();
    assert_eq!(queued.len(), 2, "one of a burst queues: {queued:?}");
    assert_eq!(store.outbox_len().await.unwrap(), 0);
}

/// Waits until the `pair` execution `id` has scheduled its second step.
async fn second_step_scheduled(engine: &SagaEngine, id: &str) {
    loop {
        let h = engine.history(id).await.unwrap();
        let scheduled = h
            .iter()
            .filter(|e| e.event_type == EventType::ActivityTaskScheduled)
            .count();
        if scheduled == 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An eager attempt whose worker dies is not lost: its task stayed in the outbox, the
/// reconciler of another worker publishes it once `redeliver_after` passes, and that
/// worker runs it.
pub async fn eager_run_of_a_dead_worker_is_redriven<S: ScenarioStore>(store: S) {
    {
        let first = builder(store.clone())
            .outbox(outbox_after(60))
            .build()
            .await
            .unwrap();
        first
            .start::<pair<patient>>("eager-dead", 500)
            .await
            .unwrap();
        // Wait until the second step runs eagerly (500 ms of virtual time), then die.
        // (The first ran eagerly too: the start found the engine idle.)
        second_step_scheduled(&first, "eager-dead").await;
        assert_eq!(first.metrics().eager_activities, 2);
    }
    let second = builder(store.clone())
        .outbox(outbox_after(2))
        .build()
        .await
        .unwrap();
    let output = second.result::<pair<patient>>("eager-dead").await.unwrap();
    assert_eq!(output, 500);
    let m = second.metrics();
    assert!(
        m.outbox_redelivered >= 1,
        "re-published by the outbox: {m:?}"
    );
    assert_eq!(
        m.activity_attempts, 1,
        "the survivor ran the second step: {m:?}"
    );
    let h = second.history("eager-dead").await.unwrap();
    assert_history_sound(&h);
    assert_eq!(
        h.iter()
            .filter(|e| e.event_type == EventType::ActivityTaskStarted)
            .count(),
        2,
        "the dead worker's attempt left nothing in history"
    );
}

/// A graceful shutdown waits for the attempts running eagerly: the step finishes and
/// its result (here the execution's completion) is recorded before `shutdown` returns.
pub async fn shutdown_finishes_eager_attempts<S: ScenarioStore>(store: S) {
    let engine = builder(store.clone())
        .outbox(outbox_after(60))
        .build()
        .await
        .unwrap();
    engine
        .start::<pair<patient>>("eager-stop", 2_000)
        .await
        .unwrap();
    second_step_scheduled(&engine, "eager-stop").await;
    assert_eq!(
        engine.metrics().eager_activities,
        2,
        "both steps, by the idle start"
    );
    engine.shutdown().await;
    let h = store
        .history(&crate::domain::SagaId::new("eager-stop"))
        .await
        .unwrap();
    assert_eq!(
        h.last().map(|e| e.event_type),
        Some(EventType::WorkflowExecutionCompleted),
        "the eager attempt finished and recorded its result before shutdown returned"
    );
    assert_history_sound(&h);
}

/// A step longer than `redeliver_after` is not handed out again while its worker is
/// alive: the running attempt keeps its outbox row from coming due, whether it came
/// from the queue (the first step) or runs eagerly (the second).
pub async fn long_steps_are_not_redelivered<S: ScenarioStore>(store: S) {
    let engine = builder(store.clone())
        .outbox(outbox_after(2))
        .eager_start_when_idle(false)
        .build()
        .await
        .unwrap();
    let output = engine
        .start::<pair<patient>>("eager-long", 7_000)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(output, 7_000);
    let m = engine.metrics();
    assert_eq!(
        (
            m.activity_attempts,
            m.eager_activities,
            m.outbox_redelivered
        ),
        (2, 1, 0),
        "each 7 s step ran once, never re-published: {m:?}"
    );
}

/// Calls the macro `$m` with the names of every scenario meant for tokio's paused
/// clock: the one list each store's test file expands, so a new scenario runs on
/// every adapter.
///
/// ```text
/// macro_rules! paused { ($($name:ident),*) => {$(
///     #[tokio::test(start_paused = true)]
///     async fn $name() { scenario::$name(MyStore::new()).await }
/// )*} }
/// saga_runtime::for_each_paused_scenario!(paused);
/// ```
/// (`two_workers_race` needs a multi-thread runtime and `corrupted_snapshot_falls_back`
/// a store-specific corruption: each store's tests call those two themselves.)
#[macro_export]
macro_rules! for_each_paused_scenario {
    ($m:ident) => {
        $m!(
            order_saga_completes,
            order_saga_step3_fails_compensates_lifo,
            failed_step_without_effect_is_not_compensated,
            failing_compensation_ends_failed,
            retries_with_backoff,
            activity_timeout,
            workflow_timeout,
            sleep,
            signals,
            cancel_compensates,
            cancel_waits_for_a_running_step,
            failure_waits_for_a_running_step,
            bad_input,
            crash_and_recover,
            crash_loses_queue_and_recovers,
            snapshots_taken_and_used,
            replay_detects_changed_code,
            snapshot_restores_with_every_codec,
            parallel_steps,
            local_activity,
            child_workflows,
            recorded_values_replay,
            stale_writer_conflicts_and_retries,
            outbox_redelivers_lost_tasks,
            eager_activities_skip_the_queue,
            execute_starts_and_waits,
            eager_start_runs_the_first_step_here,
            an_idle_engine_starts_eagerly,
            eager_run_of_a_dead_worker_is_redriven,
            long_steps_are_not_redelivered,
            shutdown_finishes_eager_attempts,
            task_queues_route_work,
            activity_queues_route_steps,
            workflow_queues_route_executions,
            split_workers_share_executions
        );
    };
}
