//! `saga serve`: the CLI's operations as a REST API (JSON in and out, described by the
//! OpenAPI document at `/openapi.json`), and Prometheus metrics at `/metrics`.
//!
//! One module per concern: `routes` (the router and its handlers, which call
//! [`crate::ops`] as the CLI commands do), `problem` (failures as JSON bodies with a
//! stable code and the matching status), `openapi` (the document), `metrics` (the
//! `/metrics` text).

mod metrics;
mod openapi;
mod problem;
mod routes;

use std::sync::Arc;

use saga_adapters::NatsTaskQueue;
use saga_runtime::client::SagaClient;

use crate::args::{Global, ServeArgs};
use crate::error::CliError;
use crate::{nats, output, store};

/// What every request handler reads.
pub(crate) struct AppState {
    pub(crate) client: SagaClient,
    /// With `--nats`: the task queue, for depth, dead letters and re-drives.
    pub(crate) queue: Option<NatsTaskQueue>,
    /// The queues `/metrics` reports on.
    pub(crate) queues: Vec<String>,
}

/// Opens the store (and NATS), binds `--listen` and serves until the process is killed.
pub(crate) async fn run(global: &Global, args: ServeArgs) -> Result<(), CliError> {
    let queue = match &args.nats.nats {
        Some(_) => {
            let queue = nats::connect(&args.nats).await?;
            // A bad `--queue` is refused now rather than at every scrape.
            for name in &args.queues {
                queue.unacked(name).await?;
            }
            Some(queue)
        }
        None => None,
    };
    let opened = store::open(global).await?.with_signals().await?;
    let state = Arc::new(AppState {
        client: opened.client,
        queue,
        queues: args.queues,
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CliError::bad_input(format!("cannot listen on {}: {e}", args.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::other(format!("cannot read the listening address: {e}")))?;
    // The first line says where (with `--listen HOST:0`, the port the system chose).
    output::print(&format!("listening on http://{local}"))?;
    axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(stopped())
        .await
        .map_err(|e| CliError::other(format!("the server stopped: {e}")))
}

/// Resolves on Ctrl-C or SIGTERM: requests in flight are answered before the server
/// exits (a write cut short could leave a client unsure whether it was recorded).
async fn stopped() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // No handler: only Ctrl-C stops the server gracefully.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
