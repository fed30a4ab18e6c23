//! Tests of the macros: trybuild cases under `tests/ui/` (`pass/` must compile and
//! run, `fail/` must fail with the checked-in `.stderr`), and the harness every pass
//! case's `main` runs its workflow with.
//!
//! [`check`] runs a workflow three ways and demands one answer:
//! 1. on the engine with the in-memory store, to completion;
//! 2. in a sans-IO simulator that drives `Workflow::resume` directly, carrying out each
//!    command itself (activities run for real, timers fire at once, signals come from
//!    the [`Script`]) — the reference run, recording the command trace;
//! 3. for each checkpoint k and each codec: the simulator stopped after k, the state
//!    encoded, decoded, and resumed — same result and same command trace as 2.

pub mod acts;
pub mod difftest;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use saga_runtime::activity::{ActivityContext, ActivityRegistration, ActivityRegistry};
use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::codec::{AnyCodec, Codec};
use saga_runtime::domain::SagaId;
use saga_runtime::engine::{SagaEngine, SagaEngineBuilder};
use saga_runtime::workflow::{
    ChildError, Command, RecordedValue, Transition, Wake, Workflow, WorkflowContext,
};
use serde_json::Value;

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
                let run = simulate::<W>(&script, input, None, &mut VecDeque::new()).await;
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

/// Drives `W::resume` sans-IO. `roundtrip`: after suspension `k`, encode and decode
/// the state with the codec. `replay`: recorded values to hand back (empty: record).
pub async fn simulate<W: Workflow>(
    script: &Script,
    input: W::Input,
    roundtrip: Option<(usize, AnyCodec)>,
    replay: &mut VecDeque<RecordedValue>,
) -> Run {
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
        let mut ctx = WorkflowContext::replaying(saga_id.clone(), epoch(), std::mem::take(replay));
        let transition = W::resume(state, &mut ctx, wake);
        let (produced, mismatch) = ctx.take_recorded();
        assert!(
            mismatch.is_none(),
            "recorded values replayed wrongly: {mismatch:?}"
        );
        recorded.extend(produced);
        *replay = ctx.take_unused();
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
                state = match roundtrip {
                    Some((k, codec)) if k == suspensions => {
                        let bytes = codec.encode(&s).expect("state encodes");
                        codec.decode(&bytes).expect("state decodes")
                    }
                    _ => s,
                };
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

/// Runs `W` on the engine, in the simulator, and stopped/encoded/resumed at every
/// checkpoint with every codec; asserts they agree. Returns the reference run.
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

async fn check_async<W: Workflow>(input: W::Input, script: Script) -> Run
where
    W::Input: Clone,
{
    let debug = std::env::var_os("SAGA_HARNESS_DEBUG").is_some();
    let reference = simulate::<W>(&script, input.clone(), None, &mut VecDeque::new()).await;
    if debug {
        eprintln!("reference: {reference:?}");
    }

    // The engine, to completion.
    let mut builder = SagaEngine::builder()
        .store(InMemoryStore::new())
        .workflow::<W>()
        .activities(script.activities.iter().map(|f| f()));
    for r in &script.register {
        builder = r(builder);
    }
    let engine = builder.build().await.expect("engine builds");
    let run = engine
        .start::<W>("run-1", input.clone())
        .await
        .expect("starts");
    for (name, payloads) in &script.signals {
        for p in payloads.iter().flatten() {
            engine
                .signal("run-1", name, p)
                .await
                .expect("signal delivered");
        }
    }
    let engine_result = run.result().await;
    if debug {
        eprintln!(
            "engine: {:?}",
            engine_result
                .as_ref()
                .map(|_| ())
                .map_err(ToString::to_string)
        );
    }
    match (&engine_result, &reference.result) {
        (Ok(out), Ok(expected)) if script.compare_engine => {
            let out = serde_json::to_value(out).expect("output encodes");
            assert_eq!(&out, expected, "the engine and the simulator disagree");
        }
        (Ok(_), Ok(_)) => {}
        (Err(e), Err(expected)) => {
            let e = e.to_string();
            assert!(
                e.contains(expected.as_str()),
                "engine error `{e}` is not `{expected}`"
            );
        }
        (got, expected) => panic!(
            "engine {:?} vs simulator {expected:?}",
            got.as_ref().map(|_| "Ok").map_err(ToString::to_string)
        ),
    }
    // Not `engine.shutdown()`: it does not return after an execution that failed in
    // its first segment (reported to the runtime); dropping the runtime ends it.
    drop(engine);

    // Stopped after every checkpoint, with every codec.
    for k in 0..reference.suspensions {
        for codec in AnyCodec::ALL {
            let mut replay: VecDeque<RecordedValue> = reference.recorded.iter().cloned().collect();
            let run = simulate::<W>(&script, input.clone(), Some((k, codec)), &mut replay).await;
            assert_eq!(
                (&run.result, &run.trace),
                (&reference.result, &reference.trace),
                "stopped after checkpoint {k}, state through {}",
                codec.name()
            );
        }
    }
    reference
}
