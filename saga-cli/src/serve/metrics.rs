//! `/metrics`: what the store and the task queue say, in Prometheus text format.
//!
//! Gauges read at each scrape: executions by workflow type and status (the store's
//! execution index), the outbox backlog, and with `--nats` each queue's depth and
//! dead letters (all of them, and those whose task the store still waits for). There
//! are no engine counters here: this server runs no engine (an application that does
//! exposes them with `EngineMetrics::to_prometheus`).

use std::collections::{BTreeMap, BTreeSet};

use saga_runtime::domain::{SagaId, WorkflowStatus};
use saga_runtime::metrics::{MetricType, PrometheusText};
use saga_runtime::port::{DeadLetter, ExecutionFilter, TaskQueue};

use super::AppState;
use crate::error::CliError;
use crate::ops::dead_letters;

pub(crate) async fn render(s: &AppState) -> Result<String, CliError> {
    let mut text = PrometheusText::new();

    let executions = s.client.list(&ExecutionFilter::default()).await?;
    let mut counts: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for e in &executions {
        *counts
            .entry(e.workflow_type.as_str())
            .or_default()
            .entry(e.status.name())
            .or_default() += 1;
    }
    let name = "saga_executions";
    text.family(
        name,
        "Executions in the store by workflow type and status.",
        MetricType::Gauge,
    );
    for (workflow_type, by_status) in &counts {
        // Every status of a type, zeros included: an absent series reads as unknown.
        for status in WorkflowStatus::ALL {
            let n = by_status.get(status.name()).copied().unwrap_or(0);
            text.sample(
                name,
                &[("workflow_type", workflow_type), ("status", status.name())],
                n as f64,
            );
        }
    }

    let outbox = s.client.store().outbox_len().await?;
    text.family(
        "saga_outbox_tasks",
        "Tasks in the store's outbox not yet settled by their result.",
        MetricType::Gauge,
    )
    .sample("saga_outbox_tasks", &[], outbox as f64);

    if let Some(queue) = &s.queue {
        let mut depths = Vec::new();
        let mut dead = Vec::new();
        let mut open = Vec::new();
        for q in &s.queues {
            depths.push((q, queue.unacked(q).await?));
            let letters = queue.dead_letters(q).await?;
            dead.push((q, letters.len()));
            open.push((q, still_open(s, &letters).await?));
        }
        let name = "saga_task_queue_depth";
        text.family(
            name,
            "Tasks in the NATS task queue: published and not yet acked.",
            MetricType::Gauge,
        );
        for (q, n) in depths {
            text.sample(name, &[("queue", q)], n as f64);
        }
        let name = "saga_dead_letters";
        text.family(
            name,
            "Tasks in the NATS dead-letter stream, waiting to be re-driven.",
            MetricType::Gauge,
        );
        for (q, n) in dead {
            text.sample(name, &[("queue", q)], n as f64);
        }
        let name = "saga_dead_letters_open";
        text.family(
            name,
            "Dead letters whose task the store still waits for (its outbox row is \
             unsettled); the others' sagas recorded the task's result since.",
            MetricType::Gauge,
        );
        for (q, n) in open {
            text.sample(name, &[("queue", q)], n as f64);
        }
    }
    Ok(text.finish())
}

/// How many of `letters` have their task's outbox row still in the store: one read
/// per saga. A letter whose saga recorded the task's result since (the reconciler
/// published it again and a worker ran it) needs no operator, so alerts should watch
/// this gauge rather than `saga_dead_letters`.
async fn still_open(s: &AppState, letters: &[DeadLetter]) -> Result<usize, CliError> {
    let sagas: BTreeSet<&SagaId> = letters.iter().map(|d| &d.task.saga_id).collect();
    let open = dead_letters::open_tasks(&s.client, sagas).await?;
    Ok(letters
        .iter()
        .filter(|d| open.contains(&(d.task.saga_id.to_string(), d.task.dedup_id.clone())))
        .count())
}
