//! The engine scenarios on the in-memory store. Timer scenarios run on tokio's paused
//! clock, so hours of workflow time pass in milliseconds.

use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::conformance::engine as scenario;

macro_rules! paused {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(start_paused = true)]
        async fn $name() {
            scenario::$name(InMemoryStore::new()).await;
        }
    )*};
}

paused!(
    order_saga_completes,
    order_saga_step3_fails_compensates_lifo,
    failed_step_without_effect_is_not_compensated,
    failing_compensation_ends_failed,
    retries_with_backoff,
    activity_timeout,
    workflow_timeout,
    sleep,
    signals,
    cancel_compensates,
    bad_input,
    crash_and_recover,
    crash_loses_queue_and_recovers,
    snapshots_taken_and_used,
    replay_detects_changed_code,
    snapshot_restores_with_every_codec,
    parallel_steps,
    local_activity,
    child_workflows,
    recorded_values_replay,
    stale_writer_conflicts_and_retries,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_race() {
    scenario::two_workers_race(InMemoryStore::new()).await;
}

#[tokio::test(start_paused = true)]
async fn corrupted_snapshot_falls_back() {
    scenario::corrupted_snapshot_falls_back(InMemoryStore::new(), |store, saga| {
        store.events().corrupt_snapshot(saga, |s| {
            let mid = s.state.len() / 2;
            s.state[mid] ^= 0x01;
        })
    })
    .await;
}
