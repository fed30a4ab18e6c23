//! The OpenTelemetry exporter (`saga_runtime::telemetry`, feature `otel`) against a
//! fake OTLP/HTTP collector on 127.0.0.1: the spans of one saga arrive as one trace,
//! whose id is derived from the saga's `trace_id`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::conformance::engine::builder;
use saga_runtime::conformance::fixtures::{order_saga, Order};
use saga_runtime::engine::StartOptions;
use saga_runtime::telemetry::{otel_trace_id, Telemetry};
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

type Received = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A collector that records each `POST /v1/traces` (its content type and JSON body).
async fn collector() -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new().route(
        "/v1/traces",
        post({
            let received = received.clone();
            move |headers: HeaderMap, body: Bytes| async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                match serde_json::from_slice(&body) {
                    Ok(v) => {
                        received.lock().unwrap().push((content_type, v));
                        (StatusCode::OK, "{}")
                    }
                    Err(_) => (StatusCode::BAD_REQUEST, "{}"),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

/// A received span: its name, trace id, and string attributes.
#[derive(Debug)]
struct Span {
    name: String,
    trace_id: String,
    parent: String,
    attributes: BTreeMap<String, String>,
}

fn spans(received: &Received) -> Vec<Span> {
    let mut out = Vec::new();
    for (_, body) in received.lock().unwrap().iter() {
        for rs in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name");
            assert_eq!(
                service.map(|a| &a["value"]["stringValue"]),
                Some(&Value::from("otel-test")),
                "{rs}"
            );
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let attributes = s["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| {
                            let v = a["value"]["stringValue"].as_str()?;
                            Some((a["key"].as_str()?.to_owned(), v.to_owned()))
                        })
                        .collect();
                    out.push(Span {
                        name: s["name"].as_str().unwrap_or_default().to_owned(),
                        trace_id: s["traceId"].as_str().unwrap_or_default().to_lowercase(),
                        parent: s["parentSpanId"].as_str().unwrap_or_default().to_owned(),
                        attributes,
                    });
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_saga_is_one_trace_at_the_collector() {
    let (endpoint, received) = collector().await;
    let telemetry = Telemetry::otlp(Some(&endpoint), "otel-test").unwrap();
    let subscriber = tracing_subscriber::registry().with(telemetry.layer());
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let engine = builder(InMemoryStore::new()).build().await.unwrap();
    let given = StartOptions {
        trace_id: Some("trace-0123456789abcdef".into()),
        ..StartOptions::default()
    };
    let run = engine
        .start_with::<order_saga>("traced", Order::new("traced"), given)
        .await
        .unwrap();
    run.result().await.unwrap();
    // A second saga, with the engine's own trace id, compensated.
    let rejected = Order {
        carrier_rejects: true,
        ..Order::new("other")
    };
    let other = engine.start::<order_saga>("other", rejected).await.unwrap();
    other.result().await.unwrap_err();
    let other_trace = engine.history("other").await.unwrap()[0].trace_id.clone();
    engine.shutdown().await;
    telemetry
        .shutdown()
        .await
        .expect("the buffered spans are exported");

    let bodies = received.lock().unwrap().len();
    assert!(bodies > 0, "the collector received nothing");
    for (content_type, _) in received.lock().unwrap().iter() {
        assert_eq!(content_type.as_deref(), Some("application/json"));
    }
    let spans = spans(&received);
    let traced = "00000000000000000123456789abcdef";
    let other_id = otel_trace_id(&other_trace).to_string();
    assert_ne!(other_id, traced);

    // Every span of the engine carries a saga's trace id, and is in that saga's trace.
    let mut by_trace: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    for s in &spans {
        let saga_trace = s
            .attributes
            .get("trace_id")
            .unwrap_or_else(|| panic!("{s:?}"));
        assert_eq!(otel_trace_id(saga_trace).to_string(), s.trace_id, "{s:?}");
        by_trace.entry(&s.trace_id).or_default().push(s);
    }
    assert_eq!(
        by_trace.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([traced, other_id.as_str()]),
        "{spans:#?}"
    );
    for (trace, expected_steps) in [
        (
            traced,
            &["charge-payment", "reserve-inventory", "ship-order"][..],
        ),
        (
            other_id.as_str(),
            &[
                "cancel-shipment",
                "charge-payment",
                "refund-payment",
                "release-inventory",
                "reserve-inventory",
                "ship-order",
            ][..],
        ),
    ] {
        let in_trace = &by_trace[trace];
        let names: BTreeSet<&str> = in_trace.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            BTreeSet::from(["activity", "start", "workflow_task"]),
            "{in_trace:#?}"
        );
        let activities: BTreeSet<&str> = in_trace
            .iter()
            .filter(|s| s.name == "activity")
            .map(|s| s.attributes["activity_type"].as_str())
            .collect();
        assert_eq!(activities, expected_steps.iter().copied().collect());
        // Spans with no parent in the process hang under the saga's one root.
        let roots: BTreeSet<&str> = in_trace
            .iter()
            .filter(|s| s.name == "activity" || s.name == "start")
            .map(|s| s.parent.as_str())
            .collect();
        assert_eq!(roots.len(), 1, "{in_trace:#?}");
        assert!(!roots.iter().next().unwrap().is_empty());
    }
}
