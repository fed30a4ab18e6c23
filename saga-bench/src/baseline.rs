//! `baseline`: the five `saga-5` calls as plain tokio async fns, the physical reference
//! the engine's figures are divided by.
//!
//! Each "workflow" is a spawned task awaiting five calls in sequence (as the engine runs
//! each workflow's steps on its own tasks); C driver tasks each spawn one and await it
//! before taking the next, so C are in flight. Three variants:
//! - `pure`: the calls move the input along and count (what the activity body does);
//! - `serde`: each call also round-trips its input and its output through
//!   `serde_json` bytes, the minimum any durable engine adds;
//! - `spawn`: each call runs on its own spawned task and is awaited through its
//!   `JoinHandle` (as the engine runs each activity attempt), the scheduler's share.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::report::{load_average, median, round, Measurement, Reporter};
use crate::workflows::Payload;
use crate::{BenchResult, Settings};

/// Workflows per baseline run: a million steps, about a second.
pub(crate) const DEFAULT_WORKFLOWS: u64 = 200_000;

/// Steps per workflow.
pub(crate) const STEPS: u64 = 5;

/// How each call treats its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    Pure,
    Serde,
    Spawn,
}

impl Variant {
    pub(crate) const ALL: [Variant; 3] = [Variant::Pure, Variant::Serde, Variant::Spawn];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Variant::Pure => "pure",
            Variant::Serde => "serde",
            Variant::Spawn => "spawn",
        }
    }
}

/// The activity body, as a plain async fn.
async fn touch(p: Payload) -> Payload {
    black_box(p).touched()
}

/// The activity body behind a JSON boundary, as a durable engine sees it.
async fn touch_serde(p: Payload) -> Result<Payload, serde_json::Error> {
    let input: Payload = serde_json::from_slice(&serde_json::to_vec(&p)?)?;
    let output = touch(input).await;
    serde_json::from_slice(&serde_json::to_vec(&output)?)
}

async fn five(p: Payload, variant: Variant) -> BenchResult<Payload> {
    match variant {
        Variant::Pure => {
            let p = touch(p).await;
            let p = touch(p).await;
            let p = touch(p).await;
            let p = touch(p).await;
            Ok(touch(p).await)
        }
        Variant::Serde => {
            let p = touch_serde(p).await?;
            let p = touch_serde(p).await?;
            let p = touch_serde(p).await?;
            let p = touch_serde(p).await?;
            Ok(touch_serde(p).await?)
        }
        Variant::Spawn => {
            let p = tokio::spawn(touch(p)).await?;
            let p = tokio::spawn(touch(p)).await?;
            let p = tokio::spawn(touch(p)).await?;
            let p = tokio::spawn(touch(p)).await?;
            Ok(tokio::spawn(touch(p)).await?)
        }
    }
}

/// Runs `n` workflows with `c` in flight; their total time.
pub(crate) async fn measure(variant: Variant, n: u64, c: u64) -> BenchResult<Duration> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut drivers = JoinSet::new();
    for _ in 0..c.max(1) {
        let next = next.clone();
        drivers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), crate::BoxError>(());
                }
                let out = tokio::spawn(five(Payload::new(i), variant)).await??;
                if out.counter != i + STEPS {
                    return Err(format!("baseline workflow {i} counted {}", out.counter).into());
                }
            }
        });
    }
    while let Some(joined) = drivers.join_next().await {
        joined??;
    }
    Ok(started.elapsed())
}

/// The median steps/s of `repeat` runs, and each run's.
pub(crate) async fn steps_per_sec(
    variant: Variant,
    n: u64,
    c: u64,
    repeat: usize,
) -> BenchResult<(f64, Vec<f64>)> {
    let mut runs = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let elapsed = measure(variant, n, c).await?;
        runs.push((n * STEPS) as f64 / elapsed.as_secs_f64());
    }
    let shown = runs.iter().map(|r| round(*r, 0)).collect();
    Ok((median(&mut runs), shown))
}

/// Measures both variants; one measurement each, under `scenario`.
pub(crate) async fn measurements(
    scenario: &'static str,
    s: &Settings,
    n: u64,
    c: u64,
) -> BenchResult<Vec<Measurement>> {
    // Warm the runtime and the allocator up.
    measure(Variant::Pure, n / 10, c).await?;
    let mut out = Vec::new();
    let mut pure = None;
    for variant in Variant::ALL {
        let (steps, runs) = steps_per_sec(variant, n, c, s.repeat).await?;
        let mut m = Measurement::new(
            scenario,
            format!("baseline-{}", variant.name()),
            s.backend,
            s.codec_name(),
        )
        .with("runs_steps_per_sec", runs)
        .with("load_avg", load_average());
        m.workflows = Some(n);
        m.concurrency = Some(c);
        m.steps_per_sec = Some(round(steps, 0));
        m.workflows_per_sec = Some(round(steps / STEPS as f64, 0));
        // Both variants against the pure one: `serde`'s ratio is what JSON alone costs.
        let pure = *pure.get_or_insert(steps);
        out.push(m.against(pure));
    }
    Ok(out)
}

/// The `baseline` scenario.
pub(crate) async fn run(s: &Settings, out: &mut Reporter) -> BenchResult {
    let n = s.workflows.unwrap_or(DEFAULT_WORKFLOWS);
    let c = s.concurrency.unwrap_or(100);
    for m in measurements("baseline", s, n, c).await? {
        out.emit(m);
    }
    out.flush("baseline: five plain tokio calls per workflow");
    Ok(())
}
