//! A minimal `/metrics` endpoint for a worker process (feature `metrics-http`): HTTP/1.1
//! on a tokio `TcpListener`, one request per connection, nothing but
//! `GET`/`HEAD /metrics`. No HTTP framework: the engine stays free of one, and a
//! Prometheus scrape needs no more. An application that already runs a web server
//! (axum, ...) should serve [`EngineMetrics::to_prometheus`](crate::engine::EngineMetrics::to_prometheus)
//! from there instead.
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

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::CONTENT_TYPE;

/// The longest request head read (request line and headers).
const MAX_HEAD: usize = 8 * 1024;
/// How long a connection may take, from accept to the last byte written.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` (and `HEAD`) on `listener` with the document `render` returns
/// at each scrape; other paths get 404, other methods 405. Runs until the future is
/// dropped (spawn it, abort it to stop); each connection is answered on its own task
/// and given up after 10 s. A failed `accept` (out of file descriptors, ...) is
/// retried after a short pause rather than ending the server.
pub async fn serve<F>(listener: TcpListener, render: F)
where
    F: Fn() -> String + Send + Sync + 'static,
{
    let render = Arc::new(render);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let render = render.clone();
                tokio::spawn(async move {
                    let answered =
                        tokio::time::timeout(CONNECTION_DEADLINE, answer(stream, &*render)).await;
                    if let Ok(Err(e)) = answered {
                        tracing::debug!(error = %e, "metrics request not answered");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(
    mut stream: TcpStream,
    render: &(dyn Fn() -> String + Send + Sync),
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return respond(&mut stream, "431 Request Header Fields Too Large", "", "").await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(()); // closed before a whole request
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => respond(&mut stream, "200 OK", CONTENT_TYPE, &render()).await,
        ("HEAD", "/metrics") => {
            let body = render();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.shutdown().await
        }
        (_, "/metrics") => respond(&mut stream, "405 Method Not Allowed", "", "").await,
        _ => respond(&mut stream, "404 Not Found", "", "").await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    if !content_type.is_empty() {
        out.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if status.starts_with("405") {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}
