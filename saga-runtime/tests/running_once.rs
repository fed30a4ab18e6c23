//! An activity attempt still running is not run again because a workflow task came
//! for something else: a signal from a client without the workflow's code (the `saga`
//! CLI, a split worker) records the signal and sends the execution a workflow task,
//! which folds the history and finds the attempt still pending. (Local activities:
//! `local_redrive.rs`.)

mod common;

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use common::{nudge_while_running, outbox_left, slow_run, Cluster};
use saga_runtime::activity::{activity, Activity, ActivityContext, ActivityError};
use saga_runtime::adapter::memory::{InMemoryStore, InMemoryTaskQueue};
use saga_runtime::client::SagaClient;
use saga_runtime::conformance::fixtures::single;
use saga_runtime::domain::EventType;
use saga_runtime::engine::{SagaEngine, StartOptions};

static ALONE_RUNS: AtomicU32 = AtomicU32::new(0);
static CLUSTER_RUNS: AtomicU32 = AtomicU32::new(0);

/// How long each test activity takes.
const SLOW: Duration = Duration::from_millis(400);

#[allow(non_camel_case_types)]
struct slow_alone {}
impl Activity for slow_alone {
    const TYPE_ID: &'static str = "slow-alone";
    type Input = u32;
    type Output = u32;
    async fn execute(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
        slow_run(&ALONE_RUNS, n, SLOW).await
    }
}

#[allow(non_camel_case_types)]
struct slow_in_cluster {}
impl Activity for slow_in_cluster {
    const TYPE_ID: &'static str = "slow-in-cluster";
    type Input = u32;
    type Output = u32;
    async fn execute(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
        slow_run(&CLUSTER_RUNS, n, SLOW).await
    }
}

/// `nudge_while_running` for `single<A>` (one activity task).
async fn nudge<A: Activity<Input = u32, Output = u32>>(
    engine: &SagaEngine,
    client: &SagaClient,
    id: &str,
    runs: &AtomicU32,
) {
    nudge_while_running::<single<A>>(
        engine,
        client,
        (id, StartOptions::default()),
        runs,
        EventType::ActivityTaskStarted,
        SLOW * 2,
    )
    .await;
}

/// The embedded default (no outbox, the in-process queue): the signal's workflow task
/// does not publish the running attempt's task again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_running_here_is_not_run_again_for_a_signal() {
    let (store, queue) = (InMemoryStore::new(), InMemoryTaskQueue::new());
    let engine = SagaEngine::builder()
        .store(store.clone())
        .queue(queue.clone())
        .workflow::<single<slow_alone>>()
        .activities([activity::<slow_alone>()])
        .build()
        .await
        .unwrap();
    let client = SagaClient::new(store).queue(queue, "default");
    nudge::<slow_alone>(&engine, &client, "once-alone", &ALONE_RUNS).await;
}

/// With the outbox on, two workers: whichever takes the signal's workflow task leaves
/// the attempt to the outbox, which re-drives it only if it comes due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_running_on_a_worker_is_not_run_again_for_a_signal() {
    let cluster = Cluster::default();
    let worker = || {
        let builder = SagaEngine::builder()
            .store(cluster.store.clone())
            .workflow::<single<slow_in_cluster>>()
            .activities([activity::<slow_in_cluster>()]);
        cluster.outboxed(builder, Duration::from_secs(60)).build()
    };
    let a = worker().await.unwrap();
    let _b = worker().await.unwrap();
    let client = SagaClient::new(cluster.store.clone()).queue(cluster.queue.clone(), "default");
    nudge::<slow_in_cluster>(&a, &client, "once-cluster", &CLUSTER_RUNS).await;
    assert_eq!(outbox_left(&cluster.store).await, 0);
}
