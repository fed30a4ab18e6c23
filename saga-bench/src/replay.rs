//! `replay`: time to load and rehydrate one execution against its history length.
//!
//! For each length (100, 200, 400, ... 51 200 events) a `long_chain` execution runs
//! enough `echo` steps (three events each) to reach it, then parks on a signal so it
//! stays open. The engine's cache is cleared and `engine.describe(id)` is timed: with
//! nothing cached it loads the newest snapshot and the events after it from the store
//! and folds them through the workflow code, as a worker picking the execution up does.
//! Once on an engine that never snapshots, once with snapshots every 100 events.

use std::time::{Duration, Instant};

use saga_runtime::activity::activity;
use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::domain::SagaId;
use saga_runtime::engine::SagaEngine;
use saga_runtime::port::EventStore;
use saga_runtime::snapshot::SnapshotConfig;

use crate::backend::Store;
use crate::report::{ms, percentile, round, Measurement, Reporter};
use crate::workflows::{echo, long_chain};
use crate::{BenchResult, Settings};

/// History lengths measured: 100 doubling to 51 200.
const LENGTHS: [u64; 10] = [100, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 51_200];

/// Timed loads per length and mode (per `--repeat`).
const LOADS_PER_REPEAT: usize = 3;

/// The same on a database, with snapshots.
const DURABLE_LOADS_PER_REPEAT: usize = 10;

/// How long building one history may take before the run is declared stuck.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// The snapshot settings of the two modes. "Never" is an interval no history reaches.
fn snapshot_config(snapshots: bool) -> SnapshotConfig {
    if snapshots {
        SnapshotConfig {
            interval: 100,
            max_snapshots: 5,
            enable_checksum: true,
        }
    } else {
        SnapshotConfig {
            interval: u64::MAX,
            max_snapshots: 1,
            enable_checksum: true,
        }
    }
}

/// Steps of `long_chain` whose history is at most `len` events: one
/// `WorkflowExecutionStarted`, three events per step, and with snapshots one
/// `SnapshotCreated` per 100 events.
fn steps_for(len: u64, snapshots: bool) -> u32 {
    let events = if snapshots { len * 100 / 101 } else { len };
    (events.saturating_sub(1) / 3) as u32
}

/// Waits until execution `id` waits for its `finish` signal.
async fn wait_parked(engine: &SagaEngine, store: &InMemoryStore, id: &SagaId) -> BenchResult {
    let deadline = Instant::now() + BUILD_TIMEOUT;
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Ask the engine only once the history stopped growing: `describe` of an
        // execution mid-step would replay it from the store.
        let version = store.version(id).await?;
        if version == last {
            let d = engine.describe(id).await?;
            if let Some(failure) = d.failure.or(d.workflow_task_failure) {
                return Err(format!("building `{id}` failed: {failure}").into());
            }
            if d.waiting_for_signals == ["finish"] {
                return Ok(());
            }
        }
        last = version;
        if Instant::now() > deadline {
            return Err(format!("`{id}` did not park within {BUILD_TIMEOUT:?}").into());
        }
    }
}

/// The median of `samples`.
fn median(samples: &mut [Duration]) -> Duration {
    percentile(samples, 0.5).unwrap_or_default()
}

/// Copies execution `id` (its events and snapshots) from `from` to `to`, in appends of
/// at most 500 events.
async fn copy(from: &InMemoryStore, to: &dyn EventStore, id: &SagaId) -> BenchResult {
    let events = from.history_from(id, 0).await?;
    let mut version = to.version(id).await?;
    for chunk in events.chunks(500) {
        version = to.append(id, version, chunk.to_vec()).await?;
    }
    let mut snapshots = from.snapshots(id).await?;
    snapshots.sort_by_key(|s| s.last_event_id);
    for snapshot in snapshots {
        to.save_snapshot(snapshot, 5).await?;
    }
    Ok(())
}

/// Measures every length in one mode. The histories are built on an in-memory engine;
/// on a database they are then copied into a new store (a fresh file or schema), and
/// the loads are timed on an engine over that store.
async fn mode(s: &Settings, snapshots: bool, out: &mut Reporter) -> BenchResult {
    let dest = if s.durable() {
        let store = Store::open(s).await?;
        let engine = store
            .builder()
            .workflow::<long_chain>()
            .activities([activity::<echo>()])
            .concurrency(2)
            .codec(s.codec)
            .snapshots(snapshot_config(snapshots))
            .recover_on_start(false)
            .build()
            .await?;
        Some((engine, store))
    } else {
        None
    };
    let result = measure(s, snapshots, dest.as_ref(), out).await;
    if let Some((engine, store)) = dest {
        engine.shutdown().await;
        store.close().await?;
    }
    result
}

async fn measure(
    s: &Settings,
    snapshots: bool,
    dest: Option<&(SagaEngine, Store)>,
    out: &mut Reporter,
) -> BenchResult {
    let store = InMemoryStore::new();
    let engine = SagaEngine::builder()
        .store(store.clone())
        .workflow::<long_chain>()
        .activities([activity::<echo>()])
        .concurrency(2)
        .codec(s.codec)
        .snapshots(snapshot_config(snapshots))
        .recover_on_start(false)
        .build()
        .await?;
    // On a database a load with snapshots takes about a millisecond and the server's
    // noise dominates it: take more samples there.
    let warm_up = if s.durable() {
        2 * s.pg_pool as usize
    } else {
        0
    };
    let loads = if s.durable() && snapshots {
        s.repeat * DURABLE_LOADS_PER_REPEAT
    } else {
        s.repeat * LOADS_PER_REPEAT
    };
    for target in LENGTHS {
        let id = SagaId::new(format!("replay-{target}"));
        let built = Instant::now();
        engine
            .start::<long_chain>(id.clone(), steps_for(target, snapshots))
            .await?;
        wait_parked(&engine, &store, &id).await?;
        let built = built.elapsed();
        let (engine, events): (&SagaEngine, &dyn EventStore) = match dest {
            Some((engine, dest)) => {
                copy(&store, dest.events(), &id).await?;
                (engine, dest.events())
            }
            None => (&engine, &store),
        };

        // On a database, warm every pooled connection up first (each prepares the
        // load's statements on first use), as in a long-running worker.
        for _ in 0..warm_up {
            engine.clear_cache();
            engine.describe(id.clone()).await?;
        }
        let mut load = Vec::with_capacity(loads);
        let mut history_len = 0;
        for _ in 0..loads {
            engine.clear_cache();
            let t = Instant::now();
            let d = engine.describe(id.clone()).await?;
            load.push(t.elapsed());
            if d.waiting_for_signals != ["finish"] {
                return Err(format!("`{id}` rehydrated at `{}`, not parked", d.checkpoint).into());
            }
            history_len = d.history_length;
        }
        // The store's part alone: what the replayer reads.
        let snapshot = events.latest_snapshot(&id).await?;
        let from = snapshot.as_ref().map_or(0, |s| s.last_event_id + 1);
        let mut fetch = Vec::with_capacity(loads);
        for _ in 0..loads {
            let t = Instant::now();
            let snap = events.latest_snapshot(&id).await?;
            let events = events.history_from(&id, from).await?;
            fetch.push(t.elapsed());
            std::hint::black_box((snap, events));
        }

        let load_p90 = percentile(&mut load, 0.9).unwrap_or_default();
        let load = median(&mut load);
        let replayed = history_len - from;
        let mut m = Measurement::new("replay", "load+rehydrate", s.backend, s.codec_name())
            .with("history_len", history_len)
            .with("snapshots", snapshots)
            .with("load_ms", ms(load))
            .with("load_p90_ms", ms(load_p90))
            .with("loads", loads as u64)
            .with("fetch_ms", ms(median(&mut fetch)))
            .with("replayed_events", replayed)
            .with("build_ms", round(built.as_secs_f64() * 1e3, 1))
            .with(
                "snapshot_bytes",
                snapshot.as_ref().map(|s| s.state.len() as u64),
            );
        m.workflows = Some(1);
        m.extra.insert(
            "events_per_sec".into(),
            if snapshots {
                serde_json::Value::Null
            } else {
                round(history_len as f64 / load.as_secs_f64(), 0).into()
            },
        );
        out.emit(m);
    }
    Ok(())
}

/// The `replay` scenario.
pub(crate) async fn run(s: &Settings, out: &mut Reporter) -> BenchResult {
    for snapshots in [false, true] {
        eprintln!(
            "replay: building histories of 100..51 200 events ({} snapshots)",
            if snapshots { "with" } else { "without" }
        );
        mode(s, snapshots, out).await?;
    }
    out.flush("replay: load + rehydrate one execution (describe, cache cleared)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_counts_stay_within_the_target_length() {
        assert_eq!(steps_for(100, false), 33); // 1 + 3 * 33 = 100 events
        assert_eq!(steps_for(51_200, false), 17_066);
        assert!(steps_for(51_200, true) < steps_for(51_200, false));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parked_chain_rehydrates_from_the_store() {
        let store = InMemoryStore::new();
        let engine = SagaEngine::builder()
            .store(store.clone())
            .workflow::<long_chain>()
            .activities([activity::<echo>()])
            .snapshots(snapshot_config(true))
            .recover_on_start(false)
            .build()
            .await
            .unwrap();
        let id = SagaId::new("chain");
        engine
            .start::<long_chain>(id.clone(), steps_for(400, true))
            .await
            .unwrap();
        wait_parked(&engine, &store, &id).await.unwrap();
        engine.clear_cache();
        let d = engine.describe(id.clone()).await.unwrap();
        assert!(
            (390..=400).contains(&d.history_length),
            "{}",
            d.history_length
        );
        assert_eq!(d.waiting_for_signals, ["finish"]);
        assert!(store.latest_snapshot(&id).await.unwrap().is_some());
        assert_eq!(engine.metrics().loads, 1);
    }
}
