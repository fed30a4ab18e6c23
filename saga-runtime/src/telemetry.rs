//! OpenTelemetry export of the engine's `tracing` spans over OTLP/HTTP with JSON
//! bodies (feature `otel`): one saga is one trace.
//!
//! The engine's spans (`start`, `workflow_task`, `activity`) carry the execution's
//! `trace_id` field. With this feature each of them joins the OpenTelemetry trace
//! [`otel_trace_id`] derives from that id, wherever it runs: every process that
//! touches a saga (the one that starts it, each worker that runs one of its tasks)
//! puts its spans in the same trace, with no context to propagate — the id is in the
//! history. A span whose `tracing` parent is already in that trace keeps its parent
//! (`start` → `workflow_task` in one process); the others hang under one remote
//! parent span id derived from the trace id (a span no process exports: Jaeger and
//! Tempo show the trace with that root missing).
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # async fn demo() -> saga_runtime::Result<()> {
//! // `None`: the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (default
//! // `http://localhost:4318`), with `/v1/traces` appended.
//! let telemetry = saga_runtime::telemetry::Telemetry::otlp(None, "order-worker")?;
//! let subscriber = tracing_subscriber::registry().with(telemetry.layer());
//! tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
//! // ... run the engine ...
//! telemetry.shutdown().await?; // exports what is still buffered
//! # Ok(()) }
//! ```
//!
//! The HTTP client is hyper's (already built for `axum` users; no gRPC, no TLS
//! stack): `http://` endpoints only, as a local collector or agent is reached.

use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use sha2::{Digest, Sha256};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::domain::{Error, ErrorKind, Result};

/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The OpenTelemetry trace id of the saga whose trace id (the history's `trace_id`)
/// is `trace_id`:
/// - the engine's own form, `trace-` and 16 hex digits, is those 64 bits with 64 zero
///   bits in front (the way 64-bit ids are widened; search for the 16 digits);
/// - 32 hex digits (a W3C trace id given in `StartOptions::trace_id`) are used as
///   they are;
/// - anything else is hashed (the first 16 bytes of its SHA-256).
///
/// ```
/// use saga_runtime::telemetry::otel_trace_id;
/// assert_eq!(
///     otel_trace_id("trace-0123456789abcdef").to_string(),
///     "00000000000000000123456789abcdef"
/// );
/// let w3c = "4bf92f3577b34da6a3ce929d0e0e4736";
/// assert_eq!(otel_trace_id(w3c).to_string(), w3c);
/// assert_eq!(otel_trace_id("order 42"), otel_trace_id("order 42"));
/// assert_ne!(otel_trace_id("order 42"), otel_trace_id("order 43"));
/// ```
pub fn otel_trace_id(trace_id: &str) -> TraceId {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let id = match trace_id.strip_prefix("trace-") {
        Some(h) if h.len() == 16 && hex(h) => u128::from_str_radix(h, 16).ok(),
        _ if trace_id.len() == 32 && hex(trace_id) => u128::from_str_radix(trace_id, 16).ok(),
        _ => None,
    };
    match id.filter(|&n| n != 0) {
        Some(n) => TraceId::from(n),
        None => {
            let digest = Sha256::digest(trace_id.as_bytes());
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            TraceId::from_bytes(bytes)
        }
    }
}

/// The span id every saga span without a parent in its trace hangs under.
fn root_span_id(trace_id: &str) -> SpanId {
    let digest = Sha256::digest(format!("saga-root:{trace_id}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    if bytes == [0; 8] {
        bytes[7] = 1; // the invalid id; a 2^-64 chance
    }
    SpanId::from_bytes(bytes)
}

/// Puts `span` in the saga's trace (see the module docs). Without the OpenTelemetry
/// layer, or for a disabled span, nothing happens.
pub(crate) fn adopt(span: &tracing::Span, trace_id: &str) {
    if span.is_disabled() {
        return;
    }
    let id = otel_trace_id(trace_id);
    let current = tracing::Span::current();
    if !current.is_disabled() && current.context().span().span_context().trace_id() == id {
        return; // its `tracing` parent is already in the trace
    }
    let parent = SpanContext::new(
        id,
        root_span_id(trace_id),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(parent);
    let _ = span.set_parent(cx);
}

/// An OTLP/HTTP (JSON) span exporter and its tracer provider: hand its
/// [`layer`](Self::layer) to a `tracing_subscriber` registry, and
/// [`shutdown`](Self::shutdown) it before the process exits.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports to `endpoint` (the collector's base URL, `http://host:4318`;
    /// `/v1/traces` is appended), or with `None` where the standard environment says
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, else `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// plus `/v1/traces`, else `http://localhost:4318/v1/traces`). Spans are batched
    /// and sent on a thread of the SDK's; the requests run on the current tokio
    /// runtime, so call this inside one.
    pub fn otlp(endpoint: Option<&str>, service_name: &str) -> Result<Telemetry> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::new(
                ErrorKind::Configuration,
                "OpenTelemetry export needs a tokio runtime: call `Telemetry::otlp` inside one",
            )
        })?;
        let client = OnRuntime {
            client: opentelemetry_http::hyper::HyperClient::with_default_connector(
                EXPORT_TIMEOUT,
                None,
            ),
            runtime,
        };
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(client);
        if let Some(base) = endpoint {
            builder = builder.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
        }
        let exporter = builder.build().map_err(|e| {
            Error::new(
                ErrorKind::Configuration,
                format!("OpenTelemetry exporter: {e}"),
            )
        })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name.to_owned())
                    .build(),
            )
            .build();
        Ok(Telemetry { provider })
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans for this
    /// exporter: this crate's from `DEBUG` (its `workflow_task` spans are), everyone
    /// else's (the application, sqlx, async-nats) from `INFO`, so their debug
    /// chatter is neither recorded nor paid for.
    pub fn layer<S>(&self) -> impl Layer<S>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let tracer = self.provider.tracer("saga-runtime");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(
                Targets::new()
                    .with_target("saga_runtime", tracing::Level::DEBUG)
                    .with_default(tracing::Level::INFO),
            )
    }

    /// Exports every span still buffered and stops the exporter (waits up to the
    /// export timeout). Runs the SDK's blocking shutdown off the async runtime, so it
    /// cannot stall the runtime the export requests need.
    pub async fn shutdown(self) -> Result<()> {
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || provider.shutdown())
            .await
            .map_err(|e| Error::new(ErrorKind::Unknown, format!("OpenTelemetry shutdown: {e}")))?;
        done.map_err(|e| Error::new(ErrorKind::Unknown, format!("OpenTelemetry shutdown: {e}")))
    }
}

/// Hyper's client needs a tokio runtime; the SDK's batch exporter runs on a thread
/// of its own. Each request is spawned on the runtime the exporter was built on.
#[derive(Debug)]
struct OnRuntime {
    client: opentelemetry_http::hyper::HyperClient,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: Request<Bytes>,
    ) -> std::result::Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_trace_ids_keep_their_64_bits() {
        assert_eq!(
            otel_trace_id("trace-ffffffffffffffff").to_string(),
            "0000000000000000ffffffffffffffff"
        );
        // Not the engine's form: hashed, and valid (non-zero).
        for odd in [
            "trace-xyz",
            "trace-0000000000000000",
            "",
            "00000000000000000000000000000000",
        ] {
            let id = otel_trace_id(odd);
            assert_ne!(id, TraceId::INVALID, "{odd:?}");
            assert_eq!(id, otel_trace_id(odd));
        }
        assert_ne!(otel_trace_id("trace-xyz"), otel_trace_id("trace-xyw"));
        assert_ne!(root_span_id("a"), root_span_id("b"));
        assert_ne!(root_span_id("a"), SpanId::INVALID);
    }
}
