//! `parked`: memory per suspended workflow — N executions (100 000 by default) started
//! with C in flight and left waiting on a signal; the process's resident set before and
//! after, divided by N. What is counted is everything one parked execution costs in
//! this process: its history in the in-memory store and its cached execution.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::engine::SagaEngine;
use tokio::task::JoinSet;

use crate::report::{round, Measurement, Reporter};
use crate::workflows::{parked, Payload};
use crate::{BenchResult, Settings};

/// Parked workflows by default.
const DEFAULT_WORKFLOWS: u64 = 100_000;

/// The resident set size of this process, from `/proc/self/statm` (Linux).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The `parked` scenario.
pub(crate) async fn run(s: &Settings, out: &mut Reporter) -> BenchResult {
    let n = s.workflows.unwrap_or(DEFAULT_WORKFLOWS);
    let c = s.concurrency.unwrap_or(100);
    let engine = Arc::new(
        SagaEngine::builder()
            .store(InMemoryStore::new())
            .workflow::<parked>()
            .concurrency(2)
            .codec(s.codec)
            .recover_on_start(false)
            .build()
            .await?,
    );
    eprintln!("parked: starting {n} workflows that wait for a signal ({c} in flight)");
    let before = rss_bytes();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut drivers = JoinSet::new();
    for _ in 0..c.max(1) {
        let (next, engine) = (next.clone(), engine.clone());
        drivers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), crate::BoxError>(());
                }
                engine
                    .start::<parked>(format!("parked-{i}"), Payload::new(i))
                    .await?;
            }
        });
    }
    while let Some(joined) = drivers.join_next().await {
        joined??;
    }
    let elapsed = started.elapsed();
    let after = rss_bytes();
    let last = engine
        .describe(format!("parked-{}", n.saturating_sub(1)))
        .await?;
    if last.waiting_for_signals != ["go"] {
        return Err(format!("parked workflow is at `{}`, not waiting", last.checkpoint).into());
    }
    let per_workflow = match (before, after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) / n.max(1)),
        _ => None,
    };
    let mut m = Measurement::new("parked", "memory", s.backend, s.codec_name())
        .with("bytes_per_workflow", per_workflow)
        .with(
            "rss_before_mb",
            before.map(|b| round(b as f64 / 1048576.0, 1)),
        )
        .with(
            "rss_after_mb",
            after.map(|a| round(a as f64 / 1048576.0, 1)),
        );
    m.workflows = Some(n);
    m.concurrency = Some(c);
    m.workflows_per_sec = Some(round(n as f64 / elapsed.as_secs_f64(), 0));
    out.emit(m);
    out.flush("parked: workflows suspended on a signal");
    Ok(())
}
