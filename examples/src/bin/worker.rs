//! A worker process for many machines: serves the shop order saga
//! (`examples::shop`) from PostgreSQL (the store, the only source of truth) and NATS
//! JetStream (the task queue and signals). Start as many as you like against the same
//! database and server; they share the work.
//!
//! Run: `cargo run -p examples --bin worker`
//!
//! Settings (environment):
//! - `SAGA_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and
//!   `SAGA_SCHEMA` (default: the server's `search_path`);
//! - `SAGA_NATS_URL` (default `127.0.0.1:4222`) and `SAGA_NATS_NAMESPACE` (default:
//!   the production names `SAGA_TASKS`, `saga.tasks`, ...);
//! - `SAGA_TASK_QUEUE` (default `default`): the task queue this worker serves, so
//!   that a set of workers serves the executions started on it (`StartOptions::
//!   task_queue`, `saga start --task-queue`); a name NATS cannot carry stops the
//!   worker at start with the reason;
//! - `SAGA_CONCURRENCY` worker loops (default 32), `SAGA_REDELIVER_AFTER_MS` (the
//!   outbox's `redeliver_after`, default 60 000), `SAGA_NATS_ACK_WAIT_MS` (how long
//!   before a task a dead worker held is delivered again, default 30 000);
//! - `SAGA_EAGER_ACTIVITIES` (`1`, the default, or `0`): run the activities this
//!   worker's own steps schedule here at once instead of through NATS (eager
//!   dispatch, `SagaEngineBuilder::eager_activities`): a saga stays on the worker that
//!   took its first task; if that worker dies, the outbox re-drives its steps after
//!   `SAGA_REDELIVER_AFTER_MS`;
//! - `SAGA_RECOVER_ON_START` (`0`, the default, or `1`): publish a workflow task for
//!   every open execution as the worker starts (`SagaEngineBuilder::
//!   recover_on_start`). The outbox makes it needless, so set it once, on one worker,
//!   only to take over executions that workers without the outbox wrote;
//! - `SAGA_METRICS_ADDR` (optional, e.g. `0.0.0.0:9464`): serve the engine's metrics
//!   (counters, activity latency histograms, workflows by type) at
//!   `http://ADDR/metrics` in Prometheus text format; the worker prints the address it
//!   bound (port 0 picks a free one);
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` (optional, e.g. `http://127.0.0.1:4318`): export
//!   the engine's spans to that OpenTelemetry collector over OTLP/HTTP (JSON), one
//!   saga one trace (`saga_runtime::telemetry`); `OTEL_SERVICE_NAME` names the
//!   service (default `saga-worker`).
//!
//! SIGTERM (or Ctrl-C) stops it gracefully: the worker loops finish the task in hand
//! and take no other, and the attempts running eagerly finish and record their
//! results; a task fetched and not finished is never acknowledged, so the broker
//! delivers it to another worker after its ack wait. Nothing is dropped.

use std::process::ExitCode;
use std::time::Duration;

use examples::shop;
use saga_adapters::{NatsConfig, NatsTaskQueue, PostgresConfig, PostgresStore};
use saga_runtime::engine::OutboxConfig;
use saga_runtime::port::TaskQueue;
use saga_runtime::prelude::*;
use saga_runtime::telemetry::Telemetry;

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn flag(name: &str, default: bool) -> Result<bool, Error> {
    match std::env::var(name).as_deref() {
        Err(_) => Ok(default),
        Ok("1") => Ok(true),
        Ok("0") => Ok(false),
        Ok(v) => Err(Error::new(
            ErrorKind::Configuration,
            format!("{name} must be 1 or 0, got `{v}`"),
        )),
    }
}

fn number(name: &str, default: u64) -> Result<u64, Error> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v.parse().map_err(|_| {
            Error::new(
                ErrorKind::Configuration,
                format!("{name} must be a whole number, got `{v}`"),
            )
        }),
    }
}

async fn serve() -> Result<(), Error> {
    let mut pg = PostgresConfig::new(var(
        "SAGA_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    ));
    if let Ok(schema) = std::env::var("SAGA_SCHEMA") {
        pg = pg.schema(schema);
    }
    let store = PostgresStore::connect_with(pg).await?;
    shop::use_ledger(store.pool().clone()).await?;
    let mut nats = match std::env::var("SAGA_NATS_NAMESPACE") {
        Ok(ns) => NatsConfig::namespaced(&ns),
        Err(_) => NatsConfig::default(),
    };
    nats.ack_wait = Duration::from_millis(number("SAGA_NATS_ACK_WAIT_MS", 30_000)?);
    let queue = NatsTaskQueue::connect(&var("SAGA_NATS_URL", "127.0.0.1:4222"), nats).await?;
    let signals = queue.signal_dispatcher();
    let nats = queue.client().clone();
    let mut builder = shop::builder();
    if let Ok(name) = std::env::var("SAGA_TASK_QUEUE") {
        // Checks the name and reaches the queue's consumer now, not at the first pull.
        queue.depth(&name).await?;
        builder = builder.task_queue_name(name);
    }
    let engine = builder
        .store(store)
        .queue(queue)
        .signals(signals)
        .outbox(OutboxConfig {
            redeliver_after: Duration::from_millis(number("SAGA_REDELIVER_AFTER_MS", 60_000)?),
            ..OutboxConfig::default()
        })
        .concurrency(number("SAGA_CONCURRENCY", 32)? as usize)
        .eager_activities(flag("SAGA_EAGER_ACTIVITIES", true)?)
        .recover_on_start(flag("SAGA_RECOVER_ON_START", false)?)
        .build()
        .await?;
    let pid = std::process::id();
    let metrics = match std::env::var("SAGA_METRICS_ADDR") {
        Ok(addr) => {
            let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
                Error::new(
                    ErrorKind::Configuration,
                    format!("SAGA_METRICS_ADDR: cannot listen on `{addr}`: {e}"),
                )
            })?;
            let bound = listener.local_addr().map_err(|e| {
                Error::new(ErrorKind::Configuration, format!("SAGA_METRICS_ADDR: {e}"))
            })?;
            println!("worker {pid} metrics at http://{bound}/metrics");
            let handle = engine.metrics_handle();
            let render = move || handle.metrics().to_prometheus();
            Some(tokio::spawn(saga_runtime::metrics::http::serve(
                listener, render,
            )))
        }
        Err(_) => None,
    };
    println!("worker {pid} ready");
    stopped().await;
    println!("worker {pid} stopping");
    engine.shutdown().await;
    // Acks are not confirmed (`NatsTaskQueue`): send the last ones before exiting. One
    // lost would only cost a redelivery, which another worker drops.
    if let Err(e) = nats.flush().await {
        eprintln!("worker {pid}: could not flush the last acks: {e}");
    }
    if let Some(server) = metrics {
        server.abort();
    }
    println!("worker {pid} stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let telemetry = match std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT") {
        None => None,
        Some(_) => {
            let service = var("OTEL_SERVICE_NAME", "saga-worker");
            match Telemetry::otlp(None, &service) {
                Ok(t) => Some(t),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    // The engine's warnings (a failed publish, a store outage, a redelivery) on stderr;
    // with OpenTelemetry, its spans to the collector too.
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(tracing_subscriber::filter::LevelFilter::WARN);
    tracing_subscriber::registry()
        .with(stderr)
        .with(telemetry.as_ref().map(Telemetry::layer))
        .init();
    let code = match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    if let Some(t) = telemetry {
        if let Err(e) = t.shutdown().await {
            eprintln!("error: {e}");
        }
    }
    code
}
