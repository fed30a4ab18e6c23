//! Saga Engine runtime: durable, compensating workflows for Rust.
//!
//! The crate is laid out like the architecture manual:
//! - [`domain`]: history events, the workflow status machine, compensation, errors;
//! - [`port`]: the traits every adapter implements (`EventStore`, `TaskQueue`,
//!   `TimerStore`, `SignalDispatcher`, `HistoryReplayer`);
//! - [`workflow`] and [`activity`]: what user code (or the macros) implements;
//! - [`engine`]: `SagaEngine`, workers, replay, timers, compensation;
//! - [`codec`] and [`snapshot`]: state encoding and checksummed snapshots;
//! - [`adapter::memory`]: in-process adapters;
//! - [`client`]: `SagaClient`, which operates executions without the workflow code;
//! - [`metrics`]: the engine's counters, latency histograms (and any other metric) in
//!   Prometheus text format;
//! - `telemetry` (feature `otel`): the engine's spans exported over OTLP, one saga one
//!   trace;
//! - [`conformance`]: the test suite every adapter must pass unchanged.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

#[doc(hidden)]
pub mod __private;
pub mod activity;
pub mod adapter;
pub mod client;
pub mod codec;
pub mod conformance;
pub mod domain;
pub mod engine;
pub mod metrics;
pub mod port;
pub mod prelude;
pub mod snapshot;
#[cfg(feature = "otel")]
pub mod telemetry;
pub mod watchdog;
pub mod workflow;

pub use domain::error::{Error, ErrorKind, Result};
