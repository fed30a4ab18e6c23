//! The watchdog (manual section 15): one test per detector that provokes its condition
//! on the in-memory engine and checks the finding and the effect of its action. All on
//! tokio's paused clock, so minutes of idleness pass in milliseconds.

#![allow(non_camel_case_types)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use saga_runtime::activity::{
    activity, Activity, ActivityContext, ActivityError, ActivityOptions, RetryPolicy,
};
use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::conformance::fixtures::{
    release_inventory, reserve_inventory, single, waiter, Order, WaiterInput,
};
use saga_runtime::domain::{EventType, HistoryEvent, SagaId, WorkflowStatus};
use saga_runtime::engine::SagaEngine;
use saga_runtime::port::EventStore;
use saga_runtime::watchdog::{Action, Detector, Finding, OpenExecutions, WatchdogConfig};
use saga_runtime::workflow::{Command, SagaError, Transition, Wake, Workflow, WorkflowContext};

use common::{Counted, Switch};

fn config() -> WatchdogConfig {
    WatchdogConfig {
        every: Duration::from_secs(1),
        stall_after: Duration::from_secs(3600),
        ..WatchdogConfig::default()
    }
}

fn of(engine: &SagaEngine, detector: Detector) -> Vec<Finding> {
    engine
        .watchdog_findings()
        .into_iter()
        .filter(|f| f.detector == detector)
        .collect()
}

/// Waits (in virtual time) until `done` holds, checking once a second.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..120 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("not within 120 s: {what}");
}

// ---------------------------------------------------------------- stall

/// The first attempt hangs for good with no timeout (a worker stuck in a call that
/// never returns); later attempts succeed with their attempt number.
pub struct hangs_first {}
impl Activity for hangs_first {
    const TYPE_ID: &'static str = "hangs-first";
    type Input = ();
    type Output = u32;
    async fn execute(ctx: ActivityContext, _: ()) -> std::result::Result<u32, ActivityError> {
        if ctx.attempt == 1 {
            std::future::pending::<()>().await;
        }
        Ok(ctx.attempt)
    }
    fn options() -> ActivityOptions {
        ActivityOptions {
            retry: RetryPolicy::exponential(3).with_initial_interval(Duration::from_secs(1)),
            start_to_close_timeout: None,
            task_queue: None,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn stall_forces_the_stuck_attempts_timeout_and_the_retry_succeeds() {
    let engine = SagaEngine::builder()
        .store(InMemoryStore::new())
        .workflow::<single<hangs_first>>()
        .activities([activity::<hangs_first>()])
        .watchdog(WatchdogConfig {
            stall_after: Duration::from_secs(10),
            ..config()
        })
        .build()
        .await
        .unwrap();
    let run = engine
        .start::<single<hangs_first>>("stuck", ())
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(120), run.result())
        .await
        .expect("the watchdog unsticks the execution")
        .unwrap();
    assert_eq!(out, 2, "the retry policy ran a second attempt");

    let stalls = of(&engine, Detector::Stall);
    assert_eq!(stalls.len(), 1, "{stalls:#?}");
    let f = &stalls[0];
    assert_eq!(f.saga_id, Some(SagaId::new("stuck")));
    assert!(matches!(
        f.action,
        Action::ForceActivityTimeout { attempt: 1, .. }
    ));
    assert!(f.action_taken);
    assert!(f.detail["idle_secs"] >= 10.0, "{f:?}");
    assert!(f.message.contains("hangs-first"), "{}", f.message);

    let history = engine.history("stuck").await.unwrap();
    let types: Vec<EventType> = history.iter().map(|e| e.event_type).collect();
    let timed_out = history
        .iter()
        .position(|e| e.event_type == EventType::ActivityTaskTimedOut)
        .expect("a timeout was recorded");
    assert_eq!(history[timed_out].attr_str("source"), Some("watchdog"));
    assert_eq!(history[timed_out].attr_u64("attempt"), Some(1));
    assert!(
        history[timed_out..]
            .iter()
            .any(|e| e.event_type == EventType::ActivityTaskScheduled
                && e.attr_u64("attempt") == Some(2)),
        "{types:?}"
    );
    let m = engine.metrics();
    assert!(m.watchdog_findings >= 1 && m.watchdog_actions >= 1, "{m:?}");
}

// ---------------------------------------------------------------- deadlock

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    me: String,
    partner: String,
}

/// Reserves inventory (compensated by a release), then runs its partner as a child
/// workflow under the partner's id and waits for it.
pub struct mutual {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MutualState {
    Start { pair: Pair },
    Reserve { pair: Pair },
    Partner,
}

impl Workflow for mutual {
    const TYPE_ID: &'static str = "mutual";
    const FINGERPRINT: &'static str = "mutual:v1";
    type Input = Pair;
    type Output = String;
    type Error = SagaError;
    type State = MutualState;

    fn start(pair: Pair) -> MutualState {
        MutualState::Start { pair }
    }

    fn resume(state: MutualState, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        match state {
            MutualState::Start { pair } => Transition::Suspend {
                commands: vec![Command::activity::<reserve_inventory>(&Order::new(
                    &pair.me,
                ))],
                state: MutualState::Reserve { pair },
            },
            MutualState::Reserve { pair } => {
                if let Err(e) = wake.activity::<reserve_inventory>() {
                    return Transition::Fail(SagaError::from(e));
                }
                let swapped = Pair {
                    me: pair.partner.clone(),
                    partner: pair.me,
                };
                Transition::Suspend {
                    commands: vec![Command::child::<mutual>(Some(pair.partner), &swapped)],
                    state: MutualState::Partner,
                }
            }
            MutualState::Partner => match wake.child::<mutual>() {
                Ok(out) => Transition::Complete(out),
                Err(e) => Transition::Fail(SagaError::from(e)),
            },
        }
    }
}

fn mutual_engine(store: InMemoryStore) -> saga_runtime::engine::SagaEngineBuilder {
    SagaEngine::builder()
        .store(store)
        .workflow::<mutual>()
        .activities([
            activity::<reserve_inventory>(),
            activity::<release_inventory>(),
        ])
}

/// The histories of two executions that wait on each other as children: `x` runs `y`
/// as its child and `y` runs `x`.
///
/// The engine cannot build this itself (starting a child whose id exists under
/// another parent fails), so the test takes the histories a real run writes when `x`
/// starts `y` and `y` tries to start `x`, and rewrites them as a store written by
/// another writer would hold them: `x` names `y` as its parent, and `y`'s start of
/// `x` succeeded.
async fn deadlocked_histories() -> (Vec<HistoryEvent>, Vec<HistoryEvent>) {
    let engine = mutual_engine(InMemoryStore::new()).build().await.unwrap();
    let pair = Pair {
        me: "x".into(),
        partner: "y".into(),
    };
    let run = engine.start::<mutual>("x", pair).await.unwrap();
    assert!(run.result().await.is_err(), "y cannot start x under itself");
    let x = engine.history("x").await.unwrap();
    let y = engine.history("y").await.unwrap();
    engine.shutdown().await;

    let upto = |h: &[HistoryEvent], t: EventType| {
        let i = h.iter().position(|e| e.event_type == t).unwrap();
        h[..=i].to_vec()
    };
    let mut y = upto(&y, EventType::StartChildWorkflowExecutionInitiated);
    let initiated = y.last().unwrap().clone();
    let seq = initiated.attr_u64("seq").unwrap();
    y.push(HistoryEvent::new(
        initiated.saga_id.clone(),
        initiated.event_id + 1,
        EventType::ChildWorkflowExecutionStarted,
        initiated.timestamp,
        json!({"seq": seq, "child_id": "x"}),
        initiated.trace_id.clone(),
    ));
    let mut x = upto(&x, EventType::ChildWorkflowExecutionStarted);
    x[0].attributes["parent"] = json!({"saga_id": "y", "seq": seq});
    (x, y)
}

#[tokio::test(start_paused = true)]
async fn deadlock_cancels_one_of_the_cycle_and_both_compensate() {
    let (x, y) = deadlocked_histories().await;
    let store = InMemoryStore::new();
    store.append(&SagaId::new("x"), 0, x).await.unwrap();
    store.append(&SagaId::new("y"), 0, y).await.unwrap();

    // A cycle never moves: it is found among the executions idle for `stall_after`.
    let config = WatchdogConfig {
        stall_after: Duration::from_secs(10),
        ..config()
    };
    let engine = mutual_engine(store).watchdog(config).build().await.unwrap();
    eventually("both executions of the cycle close", async || {
        let mut closed = true;
        for id in ["x", "y"] {
            closed &= engine.describe(id).await.unwrap().status == WorkflowStatus::Cancelled;
        }
        closed
    })
    .await;

    let deadlocks = of(&engine, Detector::Deadlock);
    assert_eq!(deadlocks.len(), 1, "{deadlocks:#?}");
    let f = &deadlocks[0];
    // `y` started last: it closed the cycle.
    assert_eq!(
        f.action,
        Action::Cancel {
            saga_id: SagaId::new("y")
        }
    );
    assert!(f.action_taken);
    assert_eq!(f.detail["cycle_length"], 2.0);
    assert!(f.message.contains("x -> y -> x"), "{}", f.message);

    for id in ["x", "y"] {
        let d = engine.describe(id).await.unwrap();
        assert_eq!(
            d.compensations_done,
            vec!["release-inventory".to_owned()],
            "{id} compensated its reservation: {d:#?}"
        );
    }
    let y_history = engine.history("y").await.unwrap();
    let cancel = y_history
        .iter()
        .find(|e| e.event_type == EventType::WorkflowExecutionCancelRequested)
        .unwrap();
    assert!(cancel.attr_str("reason").unwrap().starts_with("watchdog:"));
}

// ---------------------------------------------------------------- health

#[tokio::test(start_paused = true)]
async fn health_pauses_the_workers_while_the_store_is_down_and_resumes_them() {
    let store = Switch::default();
    let queue = Counted::default();
    let engine = SagaEngine::builder()
        .store(store.clone())
        .queue(queue.clone())
        .workflow::<single<reserve_inventory>>()
        .activities([
            activity::<reserve_inventory>(),
            activity::<release_inventory>(),
        ])
        .concurrency(2)
        .watchdog(config())
        .build()
        .await
        .unwrap();

    store.down.store(true, Ordering::SeqCst);
    eventually("the breaker opens", async || engine.workers_paused()).await;
    let health = of(&engine, Detector::Health);
    assert!(!health.is_empty());
    assert!(health
        .iter()
        .all(|f| f.action == Action::PauseWorkers && f.action_taken));
    assert!(
        health[0].message.contains("event store"),
        "{}",
        health[0].message
    );

    // Paused workers fetch nothing (running, each would fetch once a second or more).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = queue.fetches();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(queue.fetches(), before, "workers fetched while paused");
    assert!(engine.workers_paused());

    store.down.store(false, Ordering::SeqCst);
    eventually("the breaker closes", async || !engine.workers_paused()).await;
    let resumed = of(&engine, Detector::Health);
    assert_eq!(resumed.last().unwrap().action, Action::ResumeWorkers);
    assert!(queue.fetches() > before, "workers fetch again");

    // And they work: an execution started now runs to its end.
    let run = engine
        .start::<single<reserve_inventory>>("after", Order::new("after"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), run.result())
        .await
        .expect("the resumed workers run it")
        .unwrap();
    assert!(
        engine.metrics().watchdog_actions >= 2,
        "a pause and a resume"
    );
}

// ---------------------------------------------------------------- capacity

/// Never returns: each attempt holds its worker.
pub struct hangs {}
impl Activity for hangs {
    const TYPE_ID: &'static str = "hangs";
    type Input = u32;
    type Output = ();
    async fn execute(_: ActivityContext, _: u32) -> std::result::Result<(), ActivityError> {
        std::future::pending().await
    }
    fn options() -> ActivityOptions {
        ActivityOptions {
            retry: RetryPolicy::none(),
            start_to_close_timeout: None,
            task_queue: None,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn capacity_reports_the_backlog_size() {
    let engine = SagaEngine::builder()
        .store(InMemoryStore::new())
        .workflow::<single<hangs>>()
        .activities([activity::<hangs>()])
        .concurrency(1)
        .watchdog(WatchdogConfig {
            backlog_threshold: 5,
            ..config()
        })
        .build()
        .await
        .unwrap();
    // One worker takes the first task and hangs; the other seven wait in the queue.
    for i in 0..8 {
        engine
            .start::<single<hangs>>(format!("busy-{i}"), i)
            .await
            .unwrap();
    }
    eventually("a capacity finding", async || {
        !of(&engine, Detector::Capacity).is_empty()
    })
    .await;
    let f = &of(&engine, Detector::Capacity)[0];
    assert_eq!(f.detail["backlog"], 7.0, "{f:?}");
    assert_eq!(f.detail["queue_depth"], 7.0);
    assert_eq!(f.detail["outbox"], 0.0);
    assert_eq!(f.action, Action::ScaleWorkers);
    assert!(f.message.starts_with("7 tasks waiting"), "{}", f.message);
}

// ---------------------------------------------------------------- the view

/// The open executions are read once, then only when they move; closed ones drop out.
#[tokio::test(start_paused = true)]
async fn open_executions_read_only_what_moved() {
    let store = Switch::default();
    let engine = SagaEngine::builder()
        .store(store.clone())
        .workflow::<waiter>()
        .build()
        .await
        .unwrap();
    let input = WaiterInput {
        sleep_first_secs: 0,
        timeout_secs: None,
    };
    for id in ["w1", "w2"] {
        engine.start::<waiter>(id, input.clone()).await.unwrap();
    }
    let mut open = OpenExecutions::new();
    let reads = || store.reads.load(Ordering::SeqCst);
    let before = reads();
    open.refresh(&store).await.unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(reads() - before, 2, "one read per new execution");

    open.refresh(&store).await.unwrap();
    assert_eq!(reads() - before, 2, "nothing moved, nothing read");

    // Asked for the executions idle since before they started: none, and nothing read.
    let mut idle = OpenExecutions::new();
    let long_ago = chrono::Utc::now() - chrono::TimeDelta::days(1);
    idle.refresh_idle(&store, long_ago).await.unwrap();
    assert!(idle.is_empty());
    assert_eq!(reads() - before, 2);

    engine.signal("w1", "go", "now").await.unwrap();
    engine.result::<waiter>("w1").await.unwrap();
    let before = reads();
    open.refresh(&store).await.unwrap();
    assert_eq!(reads(), before, "w1 closed: not listed, not read");
    let ids: Vec<&str> = open.iter().map(|x| x.saga_id.as_str()).collect();
    assert_eq!(ids, ["w2"]);
}
