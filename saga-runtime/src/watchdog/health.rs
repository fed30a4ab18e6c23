//! The health detector: ports that do not answer (event store ping, timer store
//! responsive, task queue reachable, signal dispatcher), from
//! [`SagaEngine::health`](crate::engine::SagaEngine::health).
//!
//! The engine's action is a circuit breaker: while any port fails, its workers stop
//! fetching tasks (each task would fail and be redelivered, burning attempts and
//! filling logs), and they resume at the first round where every port answers again.

use chrono::{DateTime, Utc};

use super::{Action, Detector, Finding, Severity};
use crate::engine::HealthReport;

/// One critical finding per port that failed its ping.
pub fn detect(report: &HealthReport, now: DateTime<Utc>) -> Vec<Finding> {
    [
        ("event store", &report.event_store),
        ("timer store", &report.timer_store),
        ("task queue", &report.task_queue),
        ("signal dispatcher", &report.signals),
    ]
    .into_iter()
    .filter_map(|(port, r)| {
        let e = r.as_ref().err()?;
        Some(Finding::new(
            Detector::Health,
            Severity::Critical,
            None,
            format!("{port} does not answer: {e}"),
            Action::PauseWorkers,
            now,
        ))
    })
    .collect()
}
