//! The engine's activity latency histograms and workflow lifecycle counts, on tokio's
//! paused clock (the latencies are exact), rendered in the text format.

use std::time::Duration;

use saga_runtime::activity::activity;
use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::conformance::engine::builder;
use saga_runtime::conformance::fixtures::*;
use saga_runtime::metrics::{ActivityLatency, AttemptOutcome, WorkflowCounts};

#[tokio::test(start_paused = true)]
async fn attempts_are_timed_and_lifecycles_counted_by_type() {
    let engine = builder(InMemoryStore::new())
        .workflow::<single<patient>>()
        .activities([activity::<patient>()])
        .build()
        .await
        .unwrap();

    // 40 ms, completed.
    let out = engine.start::<single<patient>>("p", 40).await.unwrap();
    assert_eq!(out.result().await.unwrap(), 40);
    // 3 s against a 1 s timeout, two attempts: two timeouts, then failed.
    let slow_run = engine.start::<single<slow>>("s", 3).await.unwrap();
    slow_run.result().await.unwrap_err();
    // One order completes, one is compensated (step 3 fails after acting).
    let ok = engine.start::<order_saga>("o1", Order::new("o1")).await;
    ok.unwrap().result().await.unwrap();
    let rejected = Order {
        carrier_rejects: true,
        ..Order::new("o2")
    };
    let bad = engine.start::<order_saga>("o2", rejected).await.unwrap();
    bad.result().await.unwrap_err();

    let m = engine.metrics();
    let find = |t: &str, o: AttemptOutcome| -> &ActivityLatency {
        m.activity_latency
            .iter()
            .find(|l| l.activity_type == t && l.outcome == o)
            .unwrap_or_else(|| panic!("no {t}/{o:?} in {:#?}", m.activity_latency))
    };
    let patient = &find("patient", AttemptOutcome::Completed).histogram;
    assert_eq!(patient.count(), 1);
    assert!(
        patient.sum() >= Duration::from_millis(40) && patient.sum() < Duration::from_millis(50),
        "{patient:?}"
    );
    let le: Vec<(f64, u64)> = patient.cumulative().collect();
    assert!(
        le.contains(&(0.025, 0)) && le.contains(&(0.05, 1)),
        "{le:?}"
    );

    let slow = &find("slow", AttemptOutcome::TimedOut).histogram;
    assert_eq!(slow.count(), 2, "{slow:?}");
    let le: Vec<(f64, u64)> = slow.cumulative().collect();
    assert!(le.contains(&(0.5, 0)) && le.contains(&(1.0, 2)), "{le:?}");

    // Every attempt is in a histogram: their counts add up to the counter.
    let timed: u64 = m.activity_latency.iter().map(|l| l.histogram.count()).sum();
    assert_eq!(timed, m.activity_attempts);
    assert!(m
        .activity_latency
        .iter()
        .any(|l| l.activity_type == "cancel-shipment"));

    let counts =
        |t: &str| -> &WorkflowCounts { m.workflows.iter().find(|w| w.workflow_type == t).unwrap() };
    assert_eq!(
        counts("order-saga"),
        &WorkflowCounts {
            workflow_type: "order-saga".into(),
            started: 2,
            completed: 1,
            compensated: 1,
            ..WorkflowCounts::default()
        }
    );
    assert_eq!((counts("slow").started, counts("slow").failed), (1, 1));
    assert_eq!(
        (counts("patient").started, counts("patient").completed),
        (1, 1)
    );

    let text = m.to_prometheus();
    for line in [
        "saga_engine_activity_attempt_duration_seconds_count{activity_type=\"patient\",outcome=\"completed\"} 1\n",
        "saga_engine_activity_attempt_duration_seconds_bucket{activity_type=\"slow\",outcome=\"timed_out\",le=\"+Inf\"} 2\n",
        "saga_engine_workflows_started_total{workflow_type=\"order-saga\"} 2\n",
        "saga_engine_workflows_closed_total{workflow_type=\"order-saga\",outcome=\"compensated\"} 1\n",
        "saga_engine_workflows_closed_total{workflow_type=\"slow\",outcome=\"failed\"} 1\n",
    ] {
        assert!(text.contains(line), "no `{}` in\n{text}", line.trim_end());
    }
}
