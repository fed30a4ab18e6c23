//! What a workflow is to the engine (DESIGN.md section 4).
//!
//! A workflow is a deterministic, serializable state machine. `#[workflow]` lowers an
//! async fn into one; until then (and in tests) it can be written by hand. The step
//! function [`Workflow::resume`] is sans-IO: it runs from one checkpoint to the next
//! and returns the commands the engine must carry out; the engine does all the I/O,
//! records everything in history, and feeds results back as a [`Wake`].

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::activity::{Activity, ActivityError};
use crate::domain::SagaId;

/// A durable workflow: the type handle the macro emits for `#[workflow] async fn`.
///
/// `State` is an enum with one variant per resume point holding the locals live there;
/// it must round-trip through serde, because snapshots store it.
///
/// ```
/// use saga_runtime::prelude::*;
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// enum HelloState { Start { name: String }, Finished }
///
/// struct hello {}
/// impl Workflow for hello {
///     const TYPE_ID: &'static str = "hello";
///     const FINGERPRINT: &'static str = "hello-v1";
///     type Input = String;
///     type Output = String;
///     type Error = SagaError;
///     type State = HelloState;
///     fn start(name: String) -> HelloState { HelloState::Start { name } }
///     fn resume(state: HelloState, _ctx: &mut WorkflowContext, _wake: Wake) -> Transition<Self> {
///         match state {
///             HelloState::Start { name } => Transition::Complete(format!("hello {name}")),
///             HelloState::Finished => Transition::Fail(SagaError::new("finished", "resumed after the end")),
///         }
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a workflow",
    label = "not a workflow",
    note = "annotate an `async fn(ctx: &mut WorkflowContext, input: In) -> Result<Out, E>` with `#[workflow]`"
)]
pub trait Workflow: Send + Sync + 'static {
    /// The workflow type name stored in history.
    const TYPE_ID: &'static str;
    /// A stable hash of the lowered machine; an execution refuses to resume under
    /// code with a different fingerprint.
    const FINGERPRINT: &'static str;
    /// The start input.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The output on success.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The error the workflow returns on failure.
    type Error: Serialize + DeserializeOwned + fmt::Display + Send + 'static;
    /// The machine state.
    type State: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + 'static;

    /// The initial state for `input` (nothing runs yet).
    fn start(input: Self::Input) -> Self::State;

    /// Runs from the checkpoint `state` is at, with `wake` carrying what it waited for,
    /// to the next checkpoint or the end.
    fn resume(state: Self::State, ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self>;

    /// The checkpoint table.
    fn checkpoints() -> &'static [Checkpoint] {
        &[]
    }

    /// A Mermaid `stateDiagram-v2` of the machine.
    fn diagram() -> &'static str {
        ""
    }

    /// Defaults for executions of this workflow.
    fn options() -> WorkflowOptions {
        WorkflowOptions::default()
    }
}

/// The outcome of one [`Workflow::resume`] segment.
#[must_use]
pub enum Transition<W: Workflow + ?Sized> {
    /// Stopped at a checkpoint: `commands` were issued, `state` waits for their results.
    Suspend {
        /// Where the machine stopped.
        state: W::State,
        /// What it asks the engine to do, in order.
        commands: Vec<Command>,
    },
    /// Returned successfully.
    Complete(W::Output),
    /// Returned an error: the engine compensates what completed.
    Fail(W::Error),
}

impl<W: Workflow + ?Sized> fmt::Debug for Transition<W>
where
    W::Output: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transition::Suspend { state, commands } => f
                .debug_struct("Suspend")
                .field("state", state)
                .field("commands", commands)
                .finish(),
            Transition::Complete(o) => f.debug_tuple("Complete").field(o).finish(),
            Transition::Fail(e) => f.debug_tuple("Fail").field(&e.to_string()).finish(),
        }
    }
}

/// Per-execution options: the defaults of every execution of the type, which a start's
/// [`StartOptions`](crate::engine::StartOptions) override.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkflowOptions {
    /// Fail (and compensate) the execution if it has not finished after this long.
    pub timeout: Option<Duration>,
    /// The task queue of its executions (`#[workflow(task_queue = "orders")]`): only
    /// the workers serving it run them, whoever starts them (an engine, a client, a
    /// parent workflow). `None`: the starting engine's or client's queue, and a
    /// child's parent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_queue: Option<String>,
}

/// What a checkpoint waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointKind {
    /// `ctx.activity(..)`.
    Activity,
    /// `ctx.local_activity(..)`.
    LocalActivity,
    /// `ctx.child(..)`.
    Child,
    /// `ctx.sleep(..)`.
    Sleep,
    /// `ctx.signal(..)`, with or without `.timeout(d)`.
    Signal,
    /// `ctx.join((a, b, ..))`: several checkpoints awaited together.
    Join,
    /// `ctx.join_all(vec)`: a dynamic list awaited together.
    JoinAll,
}

/// One row of a workflow's checkpoint table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Dense id, in source order.
    pub id: u32,
    /// The state variant that waits here.
    pub variant: &'static str,
    /// Source line of the `.await`.
    pub line: u32,
    /// What kind of wait.
    pub kind: CheckpointKind,
    /// What it awaits (activity type, signal name, ...).
    pub awaits: &'static str,
}

/// An instruction from the machine to the engine. Commands are recorded in history and
/// compared on replay: a replayed segment must issue exactly the recorded ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Run an activity; its result wakes the machine.
    ScheduleActivity {
        /// The activity's `TYPE_ID`.
        activity_type: String,
        /// The encoded input.
        input: serde_json::Value,
    },
    /// Wake the machine after a durable delay.
    StartTimer {
        /// How long.
        duration: Duration,
    },
    /// Wake the machine when signal `name` arrives (or, with a timeout, when it expires).
    WaitSignal {
        /// The signal name.
        name: String,
        /// How long to wait at most.
        timeout: Option<Duration>,
    },
    /// Run an activity inside the workflow task (no queue, no durable timers between
    /// attempts); its result wakes the machine.
    ScheduleLocalActivity {
        /// The activity's `TYPE_ID`.
        activity_type: String,
        /// The encoded input.
        input: serde_json::Value,
    },
    /// Start a child workflow with its own history; its outcome wakes the machine.
    StartChild {
        /// The child's workflow `TYPE_ID`.
        workflow_type: String,
        /// The child's saga id; `None` derives `<parent>/<seq>`.
        child_id: Option<String>,
        /// The encoded input.
        input: serde_json::Value,
    },
    /// The machine could not build a command (its input failed to encode).
    Invalid {
        /// Why.
        reason: String,
    },
}

impl Command {
    /// Schedules activity `A` with `input`.
    pub fn activity<A: Activity>(input: &A::Input) -> Command {
        match serde_json::to_value(input) {
            Ok(input) => Command::ScheduleActivity {
                activity_type: A::TYPE_ID.to_owned(),
                input,
            },
            Err(e) => Command::Invalid {
                reason: format!("input of `{}` does not encode: {e}", A::TYPE_ID),
            },
        }
    }

    /// Runs activity `A` as a local activity.
    pub fn local_activity<A: Activity>(input: &A::Input) -> Command {
        match serde_json::to_value(input) {
            Ok(input) => Command::ScheduleLocalActivity {
                activity_type: A::TYPE_ID.to_owned(),
                input,
            },
            Err(e) => Command::Invalid {
                reason: format!(
                    "input of local activity `{}` does not encode: {e}",
                    A::TYPE_ID
                ),
            },
        }
    }

    /// Starts child workflow `W` (id derived from the parent unless given).
    pub fn child<W: Workflow>(child_id: Option<String>, input: &W::Input) -> Command {
        match serde_json::to_value(input) {
            Ok(input) => Command::StartChild {
                workflow_type: W::TYPE_ID.to_owned(),
                child_id,
                input,
            },
            Err(e) => Command::Invalid {
                reason: format!(
                    "input of child workflow `{}` does not encode: {e}",
                    W::TYPE_ID
                ),
            },
        }
    }

    /// A durable sleep.
    pub fn sleep(duration: Duration) -> Command {
        Command::StartTimer { duration }
    }

    /// Waits for signal `name`, forever or up to `timeout`.
    pub fn signal(name: impl Into<String>, timeout: Option<Duration>) -> Command {
        Command::WaitSignal {
            name: name.into(),
            timeout,
        }
    }

    /// Short description for errors and logs.
    pub fn describe(&self) -> String {
        match self {
            Command::ScheduleActivity {
                activity_type,
                input,
            } => {
                format!("ScheduleActivity({activity_type}, {input})")
            }
            Command::ScheduleLocalActivity {
                activity_type,
                input,
            } => {
                format!("ScheduleLocalActivity({activity_type}, {input})")
            }
            Command::StartChild {
                workflow_type,
                child_id,
                input,
            } => format!("StartChild({workflow_type}, {child_id:?}, {input})"),
            Command::StartTimer { duration } => format!("StartTimer({duration:?})"),
            Command::WaitSignal { name, timeout } => format!("WaitSignal({name}, {timeout:?})"),
            Command::Invalid { reason } => format!("Invalid({reason})"),
        }
    }
}

/// What woke the machine. `slot` is the index of the command in the suspension that
/// issued it (0 for a single await; the position inside a join).
#[derive(Debug, Clone, PartialEq)]
pub enum Wake {
    /// The first segment.
    Start,
    /// An activity finished for good (after retries).
    Activity {
        /// The command's index in its suspension.
        slot: u32,
        /// Its encoded output or its final error.
        result: Result<serde_json::Value, ActivityError>,
    },
    /// A child workflow closed.
    Child {
        /// The command's index in its suspension.
        slot: u32,
        /// Its encoded output, or why it did not complete.
        result: Result<serde_json::Value, ChildError>,
    },
    /// A sleep ended.
    Timer {
        /// The command's index in its suspension.
        slot: u32,
    },
    /// A signal arrived (`Some`) or its wait timed out (`None`).
    Signal {
        /// The command's index in its suspension.
        slot: u32,
        /// The signal's name.
        name: String,
        /// Its payload.
        payload: Option<serde_json::Value>,
    },
}

impl Wake {
    /// The index, in its suspension, of the command this wake answers (0 for `Start`).
    pub fn slot(&self) -> u32 {
        match self {
            Wake::Start => 0,
            Wake::Activity { slot, .. }
            | Wake::Child { slot, .. }
            | Wake::Timer { slot }
            | Wake::Signal { slot, .. } => *slot,
        }
    }

    /// The end of a sleep: `Ok` for a `Timer` wake.
    pub fn timer(self) -> Result<(), ActivityError> {
        match self {
            Wake::Timer { .. } => Ok(()),
            other => Err(ActivityError::non_retryable(format!(
                "expected a timer, woke with {other:?}"
            ))
            .with_kind("unexpected-wake")),
        }
    }

    /// The outcome of child workflow `W`, decoded.
    pub fn child<W: Workflow>(self) -> Result<W::Output, ChildError> {
        match self {
            Wake::Child { result, .. } => {
                let value = result?;
                serde_json::from_value(value).map_err(|e| ChildError {
                    child_id: String::new(),
                    status: "Completed".into(),
                    message: format!("output of child `{}` does not decode: {e}", W::TYPE_ID),
                })
            }
            other => Err(ChildError {
                child_id: String::new(),
                status: "unknown".into(),
                message: format!(
                    "expected the outcome of child `{}`, woke with {other:?}",
                    W::TYPE_ID
                ),
            }),
        }
    }

    /// The result of activity `A`, decoded.
    pub fn activity<A: Activity>(self) -> Result<A::Output, ActivityError> {
        match self {
            Wake::Activity { result, .. } => {
                let value = result?;
                serde_json::from_value(value).map_err(|e| {
                    ActivityError::non_retryable(format!(
                        "output of `{}` does not decode: {e}",
                        A::TYPE_ID
                    ))
                    .with_kind("decode")
                })
            }
            other => Err(ActivityError::non_retryable(format!(
                "expected the result of `{}`, woke with {other:?}",
                A::TYPE_ID
            ))
            .with_kind("unexpected-wake")),
        }
    }

    /// The payload of the awaited signal, decoded.
    pub fn signal<T: DeserializeOwned>(self) -> Result<T, SignalError> {
        match self {
            Wake::Signal {
                name,
                payload: Some(p),
                ..
            } => serde_json::from_value(p).map_err(|e| SignalError::Decode {
                name,
                reason: e.to_string(),
            }),
            Wake::Signal {
                name,
                payload: None,
                ..
            } => Err(SignalError::TimedOut { name }),
            other => Err(SignalError::Decode {
                name: String::new(),
                reason: format!("expected a signal, woke with {other:?}"),
            }),
        }
    }
}

/// Why a signal wait did not produce a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SignalError {
    /// The wait's timeout expired first.
    #[error("signal `{name}` timed out")]
    TimedOut {
        /// The signal.
        name: String,
    },
    /// The payload did not decode as the awaited type.
    #[error("signal `{name}` payload does not decode: {reason}")]
    Decode {
        /// The signal.
        name: String,
        /// The decoder's message.
        reason: String,
    },
}

/// Why a child workflow did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("child workflow `{child_id}` ended {status}: {message}")]
pub struct ChildError {
    /// The child's saga id.
    pub child_id: String,
    /// Its final status (`Failed`, `Cancelled`, ...), or why it never started.
    pub status: String,
    /// Its failure.
    pub message: String,
}

impl From<ChildError> for SagaError {
    fn from(e: ChildError) -> Self {
        SagaError::new("child", e.to_string())
    }
}

/// The error type most workflows return: a kind and a message, serializable into history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{kind}: {message}")]
pub struct SagaError {
    /// A short machine-readable kind (`rejected`, `activity`, `signal-timeout`, ...).
    pub kind: String,
    /// What happened.
    pub message: String,
}

impl SagaError {
    /// A new error.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        SagaError {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// The workflow decided not to go on (business rejection).
    pub fn rejected(message: impl Into<String>) -> Self {
        SagaError::new("rejected", message)
    }
}

impl From<ActivityError> for SagaError {
    fn from(e: ActivityError) -> Self {
        SagaError::new("activity", e.to_string())
    }
}

impl From<SignalError> for SagaError {
    fn from(e: SignalError) -> Self {
        let kind = match e {
            SignalError::TimedOut { .. } => "signal-timeout",
            SignalError::Decode { .. } => "signal-decode",
        };
        SagaError::new(kind, e.to_string())
    }
}

/// What a recorded synchronous call returns on replay (kept in history as
/// `MarkerRecorded` or `SideEffectRecorded`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedValue {
    /// `now`, `random`, `uuid` or `side_effect`.
    pub kind: String,
    /// The value.
    pub value: serde_json::Value,
}

/// The deterministic context a segment runs in. Never stored in the state.
///
/// `now()`, `random()`, `uuid()` and `side_effect(..)` are recorded: the first run
/// records the value in history, a replay returns the recorded one.
#[derive(Debug)]
pub struct WorkflowContext {
    saga_id: SagaId,
    now: DateTime<Utc>,
    /// Values recorded by earlier runs, to hand back in order on replay.
    replay: std::collections::VecDeque<RecordedValue>,
    /// Values produced by this run, to record.
    produced: Vec<RecordedValue>,
    /// A recorded value that did not fit the call that replayed it.
    mismatch: Option<String>,
    counter: u64,
}

impl WorkflowContext {
    /// A context for `saga_id` at the recorded time `now`.
    pub fn new(saga_id: SagaId, now: DateTime<Utc>) -> Self {
        WorkflowContext {
            saga_id,
            now,
            replay: Default::default(),
            produced: Vec::new(),
            mismatch: None,
            counter: 0,
        }
    }

    /// A context that replays `recorded` values (the engine's replay path).
    pub fn replaying(
        saga_id: SagaId,
        now: DateTime<Utc>,
        recorded: std::collections::VecDeque<RecordedValue>,
    ) -> Self {
        WorkflowContext {
            replay: recorded,
            ..WorkflowContext::new(saga_id, now)
        }
    }

    /// The execution's id.
    pub fn saga_id(&self) -> &SagaId {
        &self.saga_id
    }

    /// The time of the event that woke this segment (recorded; identical on replay).
    pub fn now(&mut self) -> DateTime<Utc> {
        let now = self.now;
        self.record("now", move || now)
    }

    /// A random number, recorded (identical on replay).
    pub fn random(&mut self) -> u64 {
        let seed = self.seed();
        self.record("random", move || splitmix64(seed))
    }

    /// A random (version 4 layout) UUID, recorded (identical on replay).
    pub fn uuid(&mut self) -> String {
        let (a, b) = (
            splitmix64(self.seed()),
            splitmix64(self.seed() ^ 0x9e37_79b9_7f4a_7c15),
        );
        self.record("uuid", move || {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&a.to_be_bytes());
            bytes[8..].copy_from_slice(&b.to_be_bytes());
            bytes[6] = (bytes[6] & 0x0f) | 0x40;
            bytes[8] = (bytes[8] & 0x3f) | 0x80;
            let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        })
    }

    /// Runs `f` once and records its result; a replay returns the recorded result
    /// without running `f`. For anything nondeterministic that is too small for an
    /// activity.
    pub fn side_effect<T: Serialize + DeserializeOwned>(&mut self, f: impl FnOnce() -> T) -> T {
        self.record("side_effect", f)
    }

    fn seed(&mut self) -> u64 {
        use std::hash::{Hash, Hasher};
        self.counter += 1;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.saga_id.hash(&mut h);
        self.now.timestamp_nanos_opt().hash(&mut h);
        self.counter.hash(&mut h);
        self.produced.len().hash(&mut h);
        h.finish()
            ^ (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default())
    }

    fn record<T: Serialize + DeserializeOwned>(&mut self, kind: &str, f: impl FnOnce() -> T) -> T {
        if let Some(r) = self.replay.pop_front() {
            if r.kind == kind {
                match serde_json::from_value::<T>(r.value.clone()) {
                    Ok(v) => {
                        self.produced.push(r);
                        return v;
                    }
                    Err(e) => self
                        .mismatch
                        .get_or_insert(format!("recorded `{kind}` value does not decode: {e}")),
                };
            } else {
                self.mismatch.get_or_insert(format!(
                    "history recorded `{}` where the workflow code now calls `{kind}`",
                    r.kind
                ));
            }
        }
        let v = f();
        let value = serde_json::to_value(&v).unwrap_or(serde_json::Value::Null);
        self.produced.push(RecordedValue {
            kind: kind.to_owned(),
            value,
        });
        v
    }

    /// The values this segment recorded (or replayed), in call order, and a replay
    /// mismatch if one was found. For the engine.
    pub fn take_recorded(&mut self) -> (Vec<RecordedValue>, Option<String>) {
        (std::mem::take(&mut self.produced), self.mismatch.take())
    }

    /// Recorded values this segment did not use: handed back to the next segment.
    pub fn take_unused(&mut self) -> std::collections::VecDeque<RecordedValue> {
        std::mem::take(&mut self.replay)
    }
}

/// A fast, well-mixed 64-bit hash step (splitmix64).
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
