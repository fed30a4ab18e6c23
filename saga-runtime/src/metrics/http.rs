//! A `/metrics` endpoint for a worker process (feature `metrics-http`): hyper's HTTP/1
//! server on a tokio `TcpListener`, answering `GET`/`HEAD /metrics` and nothing else.
//! hyper (no framework on top) keeps the feature small: it is what `axum` runs on, so
//! a workspace with `saga serve` builds nothing new for it. An application that
//! already runs a web server should serve
//! [`EngineMetrics::to_prometheus`](crate::engine::EngineMetrics::to_prometheus) from
//! there instead.
//!
//! ```no_run
//! # async fn demo(engine: saga_runtime::engine::SagaEngine) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
//! let metrics = engine.metrics_handle();
//! tokio::spawn(saga_runtime::metrics::http::serve(listener, move || {
//!     metrics.metrics().to_prometheus()
//! }));
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE as CONTENT_TYPE_HEADER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::CONTENT_TYPE;

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` (and `HEAD`) on `listener` with the document `render` returns
/// at each scrape; other paths get 404, other methods 405. Runs until the future is
/// dropped (spawn it, abort it to stop); each connection is served on its own task
/// (HTTP/1.1 keep-alive, as Prometheus scrapes), and one that sends no request head
/// within 10 s is closed. A failed `accept` (out of file descriptors, ...) is retried
/// after a short pause rather than ending the server.
pub async fn serve<F>(listener: TcpListener, render: F)
where
    F: Fn() -> String + Send + Sync + 'static,
{
    let render = Arc::new(render);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let render = render.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = respond(&req, &*render);
                async move { Ok::<_, Infallible>(response) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}

/// The answer to one request (hyper leaves the body out for `HEAD`).
fn respond(
    req: &Request<Incoming>,
    render: &(dyn Fn() -> String + Send + Sync),
) -> Response<Full<Bytes>> {
    let status = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let mut ok = Response::new(Full::new(Bytes::from(render())));
            ok.headers_mut()
                .insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(CONTENT_TYPE));
            return ok;
        }
        (_, "/metrics") => StatusCode::METHOD_NOT_ALLOWED,
        _ => StatusCode::NOT_FOUND,
    };
    let mut refused = Response::new(Full::new(Bytes::new()));
    *refused.status_mut() = status;
    if status == StatusCode::METHOD_NOT_ALLOWED {
        refused
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    refused
}
