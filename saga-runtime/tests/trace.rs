//! `tracing` spans carry the execution's trace id from start through every workflow
//! task and activity.

use std::sync::{Arc, Mutex};

use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::conformance::engine::builder;
use saga_runtime::conformance::fixtures::*;
use saga_runtime::engine::StartOptions;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

type Spans = Arc<Mutex<Vec<(&'static str, Option<String>)>>>;

struct Capture(Spans);

struct TraceField(Option<String>);

impl Visit for TraceField {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "trace_id" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut v = TraceField(None);
        attrs.record(&mut v);
        self.0.lock().unwrap().push((attrs.metadata().name(), v.0));
    }
}

#[tokio::test(start_paused = true)]
async fn spans_carry_the_trace_id() {
    let spans: Spans = Arc::default();
    let subscriber = tracing_subscriber::registry().with(Capture(spans.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let engine = builder(InMemoryStore::new()).build().await.unwrap();
    let options = StartOptions {
        trace_id: Some("trace-abc123".into()),
        ..StartOptions::default()
    };
    let run = engine
        .start_with::<order_saga>("traced", Order::new("t"), options)
        .await
        .unwrap();
    run.result().await.unwrap();
    let h = engine.history("traced").await.unwrap();
    assert!(h.iter().all(|e| e.trace_id == "trace-abc123"));

    let spans = spans.lock().unwrap();
    for name in ["start", "workflow_task", "activity"] {
        let with_trace: Vec<_> = spans.iter().filter(|(n, _)| *n == name).collect();
        assert!(!with_trace.is_empty(), "no `{name}` span in {spans:?}");
        assert!(
            with_trace
                .iter()
                .all(|(_, t)| t.as_deref() == Some("trace-abc123")),
            "`{name}` spans without the trace id: {with_trace:?}"
        );
    }
    // Three activities ran, each in its own span.
    assert_eq!(spans.iter().filter(|(n, _)| *n == "activity").count(), 3);
}
