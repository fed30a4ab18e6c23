//! Local activities across workers that die. No message carries a local activity: it
//! runs inside the workflow task that scheduled it. With the outbox on (a broker's
//! queue), that commit also writes the execution's workflow task to the outbox, due
//! after `redeliver_after`, and the commit of the outcome settles it. So when the
//! worker dies mid-run, the task comes due and another worker runs the activity again
//! (at least once, as Temporal's local activities); while it still runs, its worker
//! keeps the task from coming due, so a slow one is not run twice, and a workflow task
//! for something else (a signal) does not run it again either.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{count, kill, nudge_while_running, outbox_left, runtime, slow_run, Cluster};
use saga_runtime::activity::{activity, Activity, ActivityContext, ActivityError};
use saga_runtime::adapter::memory::{InMemoryStore, InMemoryTaskQueue};
use saga_runtime::client::SagaClient;
use saga_runtime::domain::{EventType, WorkflowStatus};
use saga_runtime::engine::{SagaEngine, SagaEngineBuilder, StartOptions};
use saga_runtime::workflow::{Command, Transition, Wake, Workflow, WorkflowContext};

static HUNG_RUNS: AtomicU32 = AtomicU32::new(0);
static TWICE_HUNG_RUNS: AtomicU32 = AtomicU32::new(0);
static SLOW_RUNS: AtomicU32 = AtomicU32::new(0);
static NUDGED_RUNS: AtomicU32 = AtomicU32::new(0);
static NUDGED_ALONE_RUNS: AtomicU32 = AtomicU32::new(0);

/// Counts a run in `runs`; the first `hung` runs never return (their worker is about
/// to die), later ones return `n`.
async fn hang_first(runs: &AtomicU32, hung: u32, n: u32) -> Result<u32, ActivityError> {
    if runs.fetch_add(1, Ordering::SeqCst) < hung {
        std::future::pending::<()>().await;
    }
    Ok(n)
}

#[allow(non_camel_case_types)]
struct hangs_first {}
impl Activity for hangs_first {
    const TYPE_ID: &'static str = "hangs-first";
    type Input = u32;
    type Output = u32;
    async fn execute(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
        hang_first(&HUNG_RUNS, 1, n).await
    }
}

#[allow(non_camel_case_types)]
struct hangs_twice {}
impl Activity for hangs_twice {
    const TYPE_ID: &'static str = "hangs-twice";
    type Input = u32;
    type Output = u32;
    async fn execute(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
        hang_first(&TWICE_HUNG_RUNS, 2, n).await
    }
}

/// Takes several times the outbox's `redeliver_after`.
#[allow(non_camel_case_types)]
struct slow_local {}
impl Activity for slow_local {
    const TYPE_ID: &'static str = "slow-local";
    type Input = u32;
    type Output = u32;
    async fn execute(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
        slow_run(&SLOW_RUNS, n, REDELIVER_AFTER * 4).await
    }
}

/// Slow, and its execution gets a signal while it runs (with the outbox on).
#[allow(non_camel_case_types)]
struct slow_nudged {}
impl Activity for slow_nudged {
    const TYPE_ID: &'static str = "slow-nudged";
    type Input = u32;
    type Output = u32;
    async fn execute(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
        slow_run(&NUDGED_RUNS, n, REDELIVER_AFTER * 4).await
    }
}

/// Slow, and its execution gets a signal while it runs (the embedded default: no
/// outbox, one process).
#[allow(non_camel_case_types)]
struct slow_nudged_alone {}
impl Activity for slow_nudged_alone {
    const TYPE_ID: &'static str = "slow-nudged-alone";
    type Input = u32;
    type Output = u32;
    async fn execute(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
        slow_run(&NUDGED_ALONE_RUNS, n, REDELIVER_AFTER * 4).await
    }
}

/// Runs activity `A` as a local activity and returns its output.
#[allow(non_camel_case_types)]
struct local_of<A>(std::marker::PhantomData<A>);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum LocalState {
    Start(u32),
    Ran,
}

impl<A: Activity<Input = u32, Output = u32>> Workflow for local_of<A> {
    const TYPE_ID: &'static str = A::TYPE_ID;
    const FINGERPRINT: &'static str = A::TYPE_ID;
    type Input = u32;
    type Output = u32;
    type Error = String;
    type State = LocalState;

    fn start(n: u32) -> LocalState {
        LocalState::Start(n)
    }

    fn resume(state: LocalState, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        match state {
            LocalState::Start(n) => Transition::Suspend {
                commands: vec![Command::local_activity::<A>(&n)],
                state: LocalState::Ran,
            },
            LocalState::Ran => match wake.activity::<A>() {
                Ok(n) => Transition::Complete(n),
                Err(e) => Transition::Fail(e.to_string()),
            },
        }
    }
}

const REDELIVER_AFTER: Duration = Duration::from_millis(300);

/// A worker with `local_of<A>` and `A`.
fn worker<A: Activity<Input = u32, Output = u32>>(
    cluster: &Cluster,
) -> impl Future<Output = saga_runtime::Result<SagaEngine>> {
    cluster
        .outboxed(builder::<A>(cluster), REDELIVER_AFTER)
        .build()
}

fn builder<A: Activity<Input = u32, Output = u32>>(cluster: &Cluster) -> SagaEngineBuilder {
    SagaEngine::builder()
        .store(cluster.store.clone())
        .workflow::<local_of<A>>()
        .activities([activity::<A>()])
}

/// Waits until `runs` reaches `n`.
fn wait_runs(runs: &AtomicU32, n: u32) {
    while runs.load(Ordering::SeqCst) < n {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The worker that runs the local activity dies with it (its runtime is dropped, as a
/// process killed with SIGKILL stops); a worker that was already running, and starts
/// nothing on its own, runs the activity again and completes the execution.
#[test]
fn a_dead_workers_local_activity_runs_again_on_a_live_worker() {
    let cluster = Cluster::default();
    let doomed = runtime(1);
    let live = runtime(2);
    let a = doomed.block_on(worker::<hangs_first>(&cluster)).unwrap();
    let b = live.block_on(worker::<hangs_first>(&cluster)).unwrap();
    doomed
        .block_on(a.start::<local_of<hangs_first>>("local-1", 7))
        .unwrap();
    wait_runs(&HUNG_RUNS, 1);
    kill(a, doomed);

    live.block_on(async {
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            b.result::<local_of<hangs_first>>("local-1"),
        )
        .await
        .expect("the live worker finished the execution")
        .unwrap();
        assert_eq!(out, 7);
        assert_eq!(
            HUNG_RUNS.load(Ordering::SeqCst),
            2,
            "run once more, not again"
        );
        let h = b.history("local-1").await.unwrap();
        assert_eq!(count(&h, EventType::LocalActivityCompleted), 1);
        assert_eq!(count(&h, EventType::LocalActivityScheduled), 1);
        assert_eq!(
            outbox_left(&cluster.store).await,
            0,
            "the outcome's commit settled the execution's task"
        );
    });
}

/// A local activity that outlasts `redeliver_after` on a live worker runs once: its
/// worker keeps the execution's task from coming due while it runs.
#[test]
fn a_slow_local_activity_on_a_live_worker_runs_once() {
    let cluster = Cluster::default();
    let rt = runtime(2);
    rt.block_on(async {
        let a = worker::<slow_local>(&cluster).await.unwrap();
        let _b = worker::<slow_local>(&cluster).await.unwrap();
        let out = a
            .execute::<local_of<slow_local>>("local-2", 5)
            .await
            .unwrap();
        assert_eq!(out, 5);
        // Past the point where a re-driven run would have been started and finished.
        tokio::time::sleep(REDELIVER_AFTER * 2).await;
        assert_eq!(SLOW_RUNS.load(Ordering::SeqCst), 1);
        let d = a.describe("local-2").await.unwrap();
        assert_eq!(d.status, WorkflowStatus::Completed);
        let h = a.history("local-2").await.unwrap();
        assert_eq!(count(&h, EventType::LocalActivityStarted), 1);
        assert_eq!(outbox_left(&cluster.store).await, 0);
    });
}

/// `nudge_while_running` for `local_of<A>`, on the default queue whoever `a` serves.
async fn nudge<A: Activity<Input = u32, Output = u32>>(
    a: &SagaEngine,
    client: &SagaClient,
    id: &str,
    runs: &AtomicU32,
) {
    let on_default = StartOptions {
        task_queue: Some("default".into()),
        ..StartOptions::default()
    };
    nudge_while_running::<local_of<A>>(
        a,
        client,
        (id, on_default),
        runs,
        EventType::LocalActivityStarted,
        REDELIVER_AFTER * 5,
    )
    .await;
}

/// A signal's workflow task, taken by a live worker while the local activity still
/// runs on another, does not run the activity again: only the activity's own task,
/// come due because its worker stopped deferring it, says that run died.
#[test]
fn a_local_activity_still_running_elsewhere_is_not_run_again_for_a_signal() {
    let cluster = Cluster::default();
    runtime(2).block_on(async {
        // `a` runs the local activity, as the engine that committed the start; it
        // serves another queue, so that `b` takes the signal's task.
        let a = cluster
            .outboxed(builder::<slow_nudged>(&cluster), REDELIVER_AFTER)
            .task_queue_name("elsewhere")
            .build()
            .await
            .unwrap();
        let _b = worker::<slow_nudged>(&cluster).await.unwrap();
        let client = SagaClient::new(cluster.store.clone()).queue(cluster.queue.clone(), "default");
        nudge::<slow_nudged>(&a, &client, "local-4", &NUDGED_RUNS).await;
        assert_eq!(outbox_left(&cluster.store).await, 0);
    });
}

/// The same on the embedded default (no outbox, one process): a signal's workflow
/// task does not run again a local activity that runs in this very process.
#[test]
fn a_local_activity_running_here_is_not_run_again_for_a_signal() {
    runtime(2).block_on(async {
        let (store, queue) = (InMemoryStore::new(), InMemoryTaskQueue::new());
        let a = SagaEngine::builder()
            .store(store.clone())
            .queue(queue.clone())
            .workflow::<local_of<slow_nudged_alone>>()
            .activities([activity::<slow_nudged_alone>()])
            .build()
            .await
            .unwrap();
        let client = SagaClient::new(store).queue(queue, "default");
        nudge::<slow_nudged_alone>(&a, &client, "local-5", &NUDGED_ALONE_RUNS).await;
    });
}

/// The worker that runs the activity again dies too: the execution's task outlived its
/// delivery (the run it re-drove settles it, not the delivery), so a third worker,
/// started after both died, still finds it and completes the execution.
#[test]
fn a_re_driven_local_activity_survives_its_worker_dying_too() {
    let cluster = Cluster::default();
    let first = runtime(1);
    let a = first.block_on(worker::<hangs_twice>(&cluster)).unwrap();
    first
        .block_on(a.start::<local_of<hangs_twice>>("local-3", 9))
        .unwrap();
    wait_runs(&TWICE_HUNG_RUNS, 1);
    kill(a, first);

    let second = runtime(1);
    let b = second.block_on(worker::<hangs_twice>(&cluster)).unwrap();
    wait_runs(&TWICE_HUNG_RUNS, 2);
    kill(b, second);

    let live = runtime(2);
    live.block_on(async {
        let c = worker::<hangs_twice>(&cluster).await.unwrap();
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            c.result::<local_of<hangs_twice>>("local-3"),
        )
        .await
        .expect("the third worker finished the execution")
        .unwrap();
        assert_eq!(out, 9);
        assert_eq!(TWICE_HUNG_RUNS.load(Ordering::SeqCst), 3);
        let h = c.history("local-3").await.unwrap();
        assert_eq!(count(&h, EventType::LocalActivityCompleted), 1);
        assert_eq!(outbox_left(&cluster.store).await, 0);
    });
}
