//! Tests of the macros: trybuild cases under `tests/ui/` (`pass/` must compile and
//! run, `fail/` must fail with the checked-in `.stderr`), and the harness every pass
//! case's `main` runs its workflow with.
//!
//! [`check`] runs a workflow three ways and demands one answer:
//! 1. in a sans-IO simulator that drives `Workflow::resume` directly, carrying out each
//!    command itself (activities run for real, timers fire at once, signals come from
//!    the [`Script`]) — the reference for the result;
//! 2. on the engine with the in-memory store, to completion, snapshotting after every
//!    workflow task — same result; its decisions (the recorded commands) are the
//!    reference for 3;
//! 3. for each codec and each k: an engine that crashes after its k-th write (see
//!    [`resume`]), then a fresh engine over what it left, loading the state from the
//!    snapshot written with that codec and running to completion — same result, same
//!    decisions in every execution's history as 2.

pub mod acts;
pub mod difftest;
pub mod resume;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use saga_runtime::activity::{ActivityContext, ActivityRegistration, ActivityRegistry};
use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::codec::{AnyCodec, Codec};
use saga_runtime::domain::{EventType, SagaId};
use saga_runtime::engine::{SagaEngine, SagaEngineBuilder};
use saga_runtime::port::{EventStore, ExecutionFilter, WorkflowStore};
use saga_runtime::snapshot::SnapshotConfig;
use saga_runtime::workflow::{
    ChildError, Command, RecordedValue, Transition, Wake, Workflow, WorkflowContext,
};
use serde_json::Value;

use crate::resume::{CrashingStore, RecordingReplayer};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;
type ChildRunner = Arc<dyn Fn(Script, Value) -> BoxFuture<Result<Value, ChildError>>>;

/// What the outside world does while a workflow runs.
#[derive(Clone, Default)]
pub struct Script {
    activities: Vec<fn() -> ActivityRegistration>,
    signals: BTreeMap<String, VecDeque<Option<Value>>>,
    children: BTreeMap<&'static str, ChildRunner>,
    register: Vec<fn(SagaEngineBuilder) -> SagaEngineBuilder>,
    compare_engine: bool,
}

impl Script {
    /// An empty script.
    pub fn new() -> Self {
        Script {
            compare_engine: true,
            ..Script::default()
        }
    }

    /// The activities the workflow may run (`activity::<f>`, not called).
    pub fn activities(
        mut self,
        regs: impl IntoIterator<Item = fn() -> ActivityRegistration>,
    ) -> Self {
        self.activities.extend(regs);
        self
    }

    /// Signal `name` arrives with `payload`.
    pub fn signal(mut self, name: &str, payload: impl serde::Serialize) -> Self {
        let v = serde_json::to_value(payload).expect("signal payload encodes");
        self.signals
            .entry(name.to_owned())
            .or_default()
            .push_back(Some(v));
        self
    }

    /// Signal `name` never arrives: its wait times out.
    pub fn signal_times_out(mut self, name: &str) -> Self {
        self.signals
            .entry(name.to_owned())
            .or_default()
            .push_back(None);
        self
    }

    /// Child workflow `W` may be started.
    pub fn child<W: Workflow>(mut self) -> Self
    where
        W::Input: Clone,
    {
        let runner: ChildRunner = Arc::new(|script: Script, input: Value| {
            Box::pin(async move {
                let input: W::Input =
                    serde_json::from_value(input).map_err(|e| child_error(e.to_string()))?;
                let run = simulate::<W>(&script, input).await;
                match run.result {
                    Ok(v) => Ok(v),
                    Err(e) => Err(child_error(e)),
                }
            })
        });
        self.children.insert(W::TYPE_ID, runner);
        self.register.push(|b| b.workflow::<W>());
        self
    }

    /// The output depends on recorded values (`ctx.random()` ..): the engine's run
    /// cannot equal the simulator's, so only check that it completes the same way.
    pub fn output_varies(mut self) -> Self {
        self.compare_engine = false;
        self
    }

    fn registry(&self) -> ActivityRegistry {
        let mut r = ActivityRegistry::new();
        r.register_all(self.activities.iter().map(|f| f()));
        r
    }
}

fn child_error(message: String) -> ChildError {
    ChildError {
        child_id: String::new(),
        status: "Failed".into(),
        message,
    }
}

/// One simulated run.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The output (encoded) or the error (displayed).
    pub result: Result<Value, String>,
    /// Every command, in the order issued.
    pub trace: Vec<Command>,
    /// How many times the machine suspended.
    pub suspensions: usize,
    /// The recorded values (`now`, `random`, ..), in call order.
    pub recorded: Vec<RecordedValue>,
}

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time")
}

/// Drives `W::resume` sans-IO, carrying out each command itself.
pub async fn simulate<W: Workflow>(script: &Script, input: W::Input) -> Run {
    let registry = script.registry();
    let mut signals = script.signals.clone();
    let saga_id = SagaId::new("sim");
    let mut state = W::start(input);
    let mut wake = Wake::Start;
    let mut pending: VecDeque<(u32, Command)> = VecDeque::new();
    let mut trace = Vec::new();
    let mut recorded = Vec::new();
    let mut suspensions = 0;
    loop {
        let mut ctx = WorkflowContext::new(saga_id.clone(), epoch());
        let transition = W::resume(state, &mut ctx, wake);
        let (produced, mismatch) = ctx.take_recorded();
        assert!(mismatch.is_none(), "a value recorded wrongly: {mismatch:?}");
        recorded.extend(produced);
        match transition {
            Transition::Complete(out) => {
                let result = Ok(serde_json::to_value(&out).expect("output encodes"));
                return Run {
                    result,
                    trace,
                    suspensions,
                    recorded,
                };
            }
            Transition::Fail(err) => {
                return Run {
                    result: Err(err.to_string()),
                    trace,
                    suspensions,
                    recorded,
                };
            }
            Transition::Suspend { state: s, commands } => {
                if !commands.is_empty() {
                    assert!(
                        pending.is_empty(),
                        "new commands while {pending:?} are pending"
                    );
                }
                for (slot, c) in commands.into_iter().enumerate() {
                    trace.push(c.clone());
                    pending.push_back((slot as u32, c));
                }
                state = s;
                suspensions += 1;
                let (slot, command) = pending
                    .pop_front()
                    .unwrap_or_else(|| panic!("suspended with nothing to wait for: {state:?}"));
                wake = carry_out(script, &registry, &mut signals, slot, command, trace.len()).await;
            }
        }
    }
}

async fn carry_out(
    script: &Script,
    registry: &ActivityRegistry,
    signals: &mut BTreeMap<String, VecDeque<Option<Value>>>,
    slot: u32,
    command: Command,
    seq: usize,
) -> Wake {
    match command {
        Command::ScheduleActivity {
            activity_type,
            input,
        }
        | Command::ScheduleLocalActivity {
            activity_type,
            input,
        } => {
            let activity = registry
                .get_activity(&activity_type)
                .unwrap_or_else(|| panic!("activity `{activity_type}` is not in the script"));
            let ctx = ActivityContext {
                saga_id: SagaId::new("sim"),
                seq: seq as u64,
                attempt: 1,
                activity_type: activity_type.clone(),
            };
            let input = serde_json::value::to_raw_value(&input).expect("a JSON value encodes");
            Wake::Activity {
                slot,
                result: activity.execute_dyn(ctx, input).await,
            }
        }
        Command::StartTimer { .. } => Wake::Timer { slot },
        Command::WaitSignal { name, .. } => {
            let payload = signals
                .get_mut(&name)
                .and_then(VecDeque::pop_front)
                .unwrap_or_else(|| panic!("signal `{name}` is not in the script"));
            Wake::Signal {
                slot,
                name,
                payload,
            }
        }
        Command::StartChild {
            workflow_type,
            input,
            ..
        } => {
            let runner = script
                .children
                .get(workflow_type.as_str())
                .unwrap_or_else(|| panic!("child workflow `{workflow_type}` is not in the script"))
                .clone();
            Wake::Child {
                slot,
                result: runner(script.clone(), input).await,
            }
        }
        Command::Invalid { reason } => panic!("invalid command: {reason}"),
    }
}

/// Runs `W` in the simulator, on the engine, and on the engine stopped after every
/// write and resumed in a fresh engine with every codec; asserts they agree. Returns
/// the simulator's run.
pub fn check<W: Workflow>(input: W::Input, script: Script) -> Run
where
    W::Input: Clone,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
        .block_on(check_async::<W>(input, script))
}

/// The id every harness run uses.
const RUN_ID: &str = "run-1";

async fn check_async<W: Workflow>(input: W::Input, script: Script) -> Run
where
    W::Input: Clone,
{
    let debug = std::env::var_os("SAGA_HARNESS_DEBUG").is_some();
    let reference = simulate::<W>(&script, input.clone()).await;
    if debug {
        eprintln!("reference: {reference:?}");
    }

    // The engine, to completion.
    let store = InMemoryStore::new();
    let engine = engine::<W>(&script, AnyCodec::Json, store.clone()).await;
    let run = engine
        .start::<W>(RUN_ID, input.clone())
        .await
        .expect("starts");
    send_signals(&engine, &script, &BTreeMap::new()).await;
    let result = outcome(run.result().await);
    // Not `engine.shutdown()`: it does not return after an execution that failed in
    // its first segment (reported to the runtime); dropping the runtime ends it.
    drop(engine);
    if debug {
        eprintln!("engine: {result:?}");
    }
    match (&result, &reference.result) {
        (Ok(out), Ok(expected)) if script.compare_engine => {
            assert_eq!(out, expected, "the engine and the simulator disagree");
        }
        (Ok(_), Ok(_)) => {}
        (Err(e), Err(expected)) => assert!(
            e.contains(expected.as_str()),
            "engine error `{e}` is not `{expected}`"
        ),
        (got, expected) => panic!("engine {got:?} vs simulator {expected:?}"),
    }
    let whole = EngineRun {
        result,
        decisions: decisions(&store, &script).await,
    };

    // Stopped after every write, resumed in a fresh engine, with every codec.
    for codec in AnyCodec::ALL {
        let mut k = 1;
        while let Some(resumed) = stop_and_resume::<W>(&script, &input, codec, k).await {
            let at = format!(
                "stopped after write {k}, resumed from a {} snapshot",
                codec.name()
            );
            if debug {
                eprintln!("{at}: {:?}", resumed.result);
            }
            if script.compare_engine {
                assert_eq!(resumed.result, whole.result, "{at}: the result differs");
            } else {
                assert_eq!(
                    resumed.result.is_ok(),
                    whole.result.is_ok(),
                    "{at}: {:?} vs {:?}",
                    resumed.result,
                    whole.result
                );
            }
            assert_eq!(
                resumed.decisions, whole.decisions,
                "{at}: the recorded commands differ"
            );
            k += 1;
            assert!(k < 10_000, "the workflow never finished within {k} writes");
        }
        // Every suspension of the machine ended a write: each was a stopping point.
        assert!(
            k > reference.suspensions,
            "{} suspensions but only {} stopping points with {}",
            reference.suspensions,
            k - 1,
            codec.name()
        );
    }
    reference
}

/// An engine on the in-memory `store` that snapshots after every workflow task with
/// `codec`, running `W` and what the script registers.
async fn engine<W: Workflow>(
    script: &Script,
    codec: AnyCodec,
    store: impl WorkflowStore,
) -> SagaEngine {
    builder::<W>(script, codec)
        .store(store)
        .build()
        .await
        .expect("engine builds")
}

fn builder<W: Workflow>(script: &Script, codec: AnyCodec) -> SagaEngineBuilder {
    let mut builder = SagaEngine::builder()
        .codec(codec)
        .snapshots(SnapshotConfig {
            interval: 1,
            ..SnapshotConfig::default()
        })
        // Timers are created by this engine or found in its store at start, which the
        // timer loop wakes for: no need to poll every second of a long virtual sleep.
        .timer_poll_interval(Duration::from_secs(24 * 3600))
        // Each idle worker wakes every (virtual) second: few of them keep hour-long
        // sleeps cheap in real time.
        .concurrency(2)
        .workflow::<W>()
        .activities(script.activities.iter().map(|f| f()));
    // Serve the workflow's own queue, as its workers would.
    if let Some(queue) = W::options().task_queue {
        builder = builder.task_queue_name(queue);
    }
    for r in &script.register {
        builder = r(builder);
    }
    builder
}

/// Delivers the script's signals, less the ones `received` (by name) already.
async fn send_signals(engine: &SagaEngine, script: &Script, received: &BTreeMap<String, usize>) {
    for (name, payloads) in &script.signals {
        let skip = received.get(name).copied().unwrap_or(0);
        for p in payloads.iter().flatten().skip(skip) {
            engine
                .signal(RUN_ID, name, p)
                .await
                .expect("signal delivered");
        }
    }
}

fn outcome<T: serde::Serialize>(r: saga_runtime::Result<T>) -> Result<Value, String> {
    r.map(|out| serde_json::to_value(out).expect("output encodes"))
        .map_err(|e| e.to_string())
}

/// What an engine run produced.
#[derive(Debug)]
struct EngineRun {
    result: Result<Value, String>,
    /// Per execution (the run and its children), the decisions in history.
    decisions: BTreeMap<String, Vec<Value>>,
}

/// The decision events of every execution in `store`: what the workflow code and the
/// engine decided, in order. Values two engines legitimately choose differently are
/// masked: timer deadlines and recorded `now`s come from each engine's wall clock,
/// recorded `random`/`uuid`/`side_effect` values from entropy (that they survive a
/// stop is what the result shows), and the output, when the script says it varies.
async fn decisions(store: &InMemoryStore, script: &Script) -> BTreeMap<String, Vec<Value>> {
    let mut out = BTreeMap::new();
    let executions = store
        .list_executions(&ExecutionFilter::default())
        .await
        .expect("executions list");
    for ex in executions {
        let history = store.history(&ex.saga_id).await.expect("history reads");
        let ds = history
            .into_iter()
            .filter(|e| e.event_type.is_decision())
            .map(|e| {
                let mut attributes = e.attributes;
                if let Some(o) = attributes.as_object_mut() {
                    o.remove("fire_at");
                    if matches!(
                        e.event_type,
                        EventType::MarkerRecorded | EventType::SideEffectRecorded
                    ) {
                        o.insert("value".into(), Value::from("<recorded>"));
                    }
                    if !script.compare_engine && o.contains_key("output") {
                        o.insert("output".into(), Value::from("<varies>"));
                    }
                }
                serde_json::json!({
                    "type": e.event_type.name(),
                    "retry": e.is_retry,
                    "attributes": attributes,
                })
            })
            .collect();
        out.insert(ex.saga_id.to_string(), ds);
    }
    out
}

/// Engine A runs `W` on a store that crashes after `k` writes and is dropped; engine
/// B, brand new, over a new store holding what A left (history prefix and snapshots,
/// encoded with `codec`), loads the state from the snapshot and runs to completion.
/// `None` when A finished within `k` writes (nothing left to resume).
async fn stop_and_resume<W: Workflow>(
    script: &Script,
    input: &W::Input,
    codec: AnyCodec,
    k: usize,
) -> Option<EngineRun>
where
    W::Input: Clone,
{
    let crashing = CrashingStore::new(k);
    let a = engine::<W>(script, codec, crashing.clone()).await;
    let finished = tokio::select! {
        r = async {
            let run = a.start::<W>(RUN_ID, input.clone()).await.expect("starts");
            send_signals(&a, script, &BTreeMap::new()).await;
            run.result().await
        } => { drop(r); true }
        () = crashing.crashed() => false,
    };
    drop(a);
    if finished {
        return None;
    }

    let store = crashing.survivor().await;
    let id = SagaId::new(RUN_ID);
    let history = store.history(&id).await.expect("history reads");
    let closed = history.last().is_some_and(|e| {
        matches!(
            e.event_type,
            EventType::WorkflowExecutionCompleted
                | EventType::WorkflowExecutionFailed
                | EventType::WorkflowExecutionCanceled
                | EventType::WorkflowExecutionTimedOut
        )
    });
    if closed {
        return None;
    }
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for e in &history {
        if e.event_type == EventType::SignalReceived {
            let name = e.attr_str("name").unwrap_or_default().to_owned();
            *received.entry(name).or_default() += 1;
        }
    }

    let replayer = RecordingReplayer::new(store.clone());
    let b = builder::<W>(script, codec)
        .store(store.clone())
        .replayer(replayer.clone())
        .build()
        .await
        .expect("engine builds");
    send_signals(&b, script, &received).await;
    let result = outcome(b.handle::<W>(RUN_ID).result().await);
    let metrics = b.metrics();
    drop(b);

    let at = format!("stopped after write {k}, {}", codec.name());
    assert_eq!(
        metrics.corrupt_snapshots, 0,
        "{at}: a snapshot did not decode"
    );
    assert_eq!(
        metrics.workflow_task_failures, 0,
        "{at}: a workflow task failed"
    );
    // The fresh engine's state came from the snapshot A wrote with `codec`, whole:
    // not one event of the history prefix was folded to rebuild it. (A child it
    // loads has a snapshot too, with at most its closing events after it.)
    let loads = replayer.loads();
    for l in &loads {
        assert_eq!(
            l.snapshot_codec.as_deref(),
            Some(codec.name()),
            "{at}: `{}` was not loaded from a snapshot",
            l.saga_id
        );
    }
    let first = loads
        .into_iter()
        .find(|l| l.saga_id == id)
        .unwrap_or_else(|| panic!("{at}: the fresh engine never loaded `{RUN_ID}`"));
    assert_eq!(
        (
            first.snapshot_codec.as_deref(),
            first.events_folded,
            first.corrupt_snapshots
        ),
        (Some(codec.name()), 0, 0),
        "{at}: the state was not loaded from the snapshot alone"
    );
    Some(EngineRun {
        result,
        decisions: decisions(&store, script).await,
    })
}
