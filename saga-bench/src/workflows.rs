//! The workflows and activities the benchmarks run, written by hand in the shape
//! `#[workflow]` lowers to: a state enum with one variant per resume point holding the
//! locals live there, and a `resume` that runs one segment.

#![allow(non_camel_case_types)]

use serde::{Deserialize, Serialize};

use saga_runtime::prelude::*;

/// Length of [`Payload::note`]: with the counter, the JSON input is about 100 bytes.
pub(crate) const NOTE_LEN: usize = 80;

/// The input and output of every `saga-5` step (about 100 bytes as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Payload {
    pub(crate) note: String,
    pub(crate) counter: u64,
}

impl Payload {
    /// The input of workflow number `i`.
    pub(crate) fn new(i: u64) -> Self {
        let mut note = format!("order-{i:010}-");
        note.extend(std::iter::repeat_n('x', NOTE_LEN - note.len()));
        Payload { note, counter: i }
    }

    /// What one step does to it: count.
    pub(crate) fn touched(self) -> Self {
        Payload {
            note: self.note,
            counter: self.counter + 1,
        }
    }
}

/// `Err(e)` ends the workflow with `e` (what `?` lowers to).
macro_rules! take {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Transition::Fail(SagaError::from(e)),
        }
    };
}

/// A no-op step: returns its input with the counter incremented.
pub(crate) struct touch {}

impl Activity for touch {
    const TYPE_ID: &'static str = "touch";
    type Input = Payload;
    type Output = Payload;
    async fn execute(_ctx: ActivityContext, p: Payload) -> Result<Payload, ActivityError> {
        Ok(p.touched())
    }
}

/// Five sequential no-op steps:
///
/// ```text
/// async fn saga_5(ctx: &mut WorkflowContext, p: Payload) -> Result<Payload, SagaError> {
///     let p = ctx.activity::<touch>(p).await?;   // Touch1
///     let p = ctx.activity::<touch>(p).await?;   // Touch2
///     let p = ctx.activity::<touch>(p).await?;   // Touch3
///     let p = ctx.activity::<touch>(p).await?;   // Touch4
///     ctx.activity::<touch>(p).await             // Touch5
/// }
/// ```
pub(crate) struct saga_5 {}

/// One variant per `.await`; `p` is moved into each call, so nothing else is live.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Saga5State {
    Start { input: Payload },
    Touch1,
    Touch2,
    Touch3,
    Touch4,
    Touch5,
}

impl Workflow for saga_5 {
    const TYPE_ID: &'static str = "saga-5";
    const FINGERPRINT: &'static str = "saga-5:v1";
    type Input = Payload;
    type Output = Payload;
    type Error = SagaError;
    type State = Saga5State;

    fn start(input: Payload) -> Saga5State {
        Saga5State::Start { input }
    }

    fn resume(state: Saga5State, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        use Saga5State as S;
        let next = match state {
            S::Start { input } => {
                return Transition::Suspend {
                    commands: vec![Command::activity::<touch>(&input)],
                    state: S::Touch1,
                }
            }
            S::Touch1 => S::Touch2,
            S::Touch2 => S::Touch3,
            S::Touch3 => S::Touch4,
            S::Touch4 => S::Touch5,
            S::Touch5 => return Transition::Complete(take!(wake.activity::<touch>())),
        };
        let p = take!(wake.activity::<touch>());
        Transition::Suspend {
            commands: vec![Command::activity::<touch>(&p)],
            state: next,
        }
    }
}

/// The engine tests' `echo` (returns its input) drives the long chain too.
pub(crate) use saga_runtime::conformance::fixtures::echo;

/// `steps` sequential `echo` calls (three events each), then waits for signal `finish`
/// so the execution stays open with its whole history:
///
/// ```text
/// async fn long_chain(ctx: &mut WorkflowContext, steps: u32) -> Result<u64, SagaError> {
///     let mut sum = 0;
///     for i in 0..steps {
///         sum += ctx.activity::<echo>(i as u64).await?;   // Echo
///     }
///     let extra: u64 = ctx.signal("finish").await?;      // Parked
///     Ok(sum + extra)
/// }
/// ```
pub(crate) struct long_chain {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum LongChainState {
    Start { steps: u32 },
    Echo { i: u32, steps: u32, sum: u64 },
    Parked { sum: u64 },
}

impl Workflow for long_chain {
    const TYPE_ID: &'static str = "long-chain";
    const FINGERPRINT: &'static str = "long-chain:v1";
    type Input = u32;
    type Output = u64;
    type Error = SagaError;
    type State = LongChainState;

    fn start(steps: u32) -> LongChainState {
        LongChainState::Start { steps }
    }

    fn resume(state: LongChainState, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        use LongChainState as S;
        let (i, steps, sum) = match state {
            S::Start { steps } => (0, steps, 0),
            S::Echo { i, steps, sum } => (i + 1, steps, sum + take!(wake.activity::<echo>())),
            S::Parked { sum } => {
                let extra: u64 = take!(wake.signal());
                return Transition::Complete(sum + extra);
            }
        };
        if i >= steps {
            return Transition::Suspend {
                commands: vec![Command::signal("finish", None)],
                state: S::Parked { sum },
            };
        }
        Transition::Suspend {
            commands: vec![Command::activity::<echo>(&u64::from(i))],
            state: S::Echo { i, steps, sum },
        }
    }
}

/// Waits for signal `go`, then returns its input:
///
/// ```text
/// async fn parked(ctx: &mut WorkflowContext, p: Payload) -> Result<Payload, SagaError> {
///     let () = ctx.signal("go").await?;   // Waiting
///     Ok(p)
/// }
/// ```
pub(crate) struct parked {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ParkedState {
    Start { input: Payload },
    Waiting { input: Payload },
}

impl Workflow for parked {
    const TYPE_ID: &'static str = "parked";
    const FINGERPRINT: &'static str = "parked:v1";
    type Input = Payload;
    type Output = Payload;
    type Error = SagaError;
    type State = ParkedState;

    fn start(input: Payload) -> ParkedState {
        ParkedState::Start { input }
    }

    fn resume(state: ParkedState, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        match state {
            ParkedState::Start { input } => Transition::Suspend {
                commands: vec![Command::signal("go", None)],
                state: ParkedState::Waiting { input },
            },
            ParkedState::Waiting { input } => {
                let () = take!(wake.signal());
                Transition::Complete(input)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_input_is_about_100_bytes_of_json() {
        let p = Payload::new(12_345);
        assert_eq!(p.note.len(), NOTE_LEN);
        let len = serde_json::to_vec(&p).unwrap().len();
        assert!((95..=115).contains(&len), "{len}");
    }

    #[test]
    fn saga_5_schedules_five_touches_then_completes() {
        let mut ctx = WorkflowContext::new(SagaId::new("s"), chrono::Utc::now());
        let mut state = saga_5::start(Payload::new(0));
        let mut wake = Wake::Start;
        let mut scheduled = 0;
        loop {
            match saga_5::resume(state, &mut ctx, wake) {
                Transition::Suspend { state: s, commands } => {
                    assert_eq!(commands.len(), 1);
                    let Command::ScheduleActivity { input, .. } = &commands[0] else {
                        panic!("{commands:?}")
                    };
                    let p: Payload = serde_json::from_value(input.clone()).unwrap();
                    let out = serde_json::to_value(p.touched()).unwrap();
                    scheduled += 1;
                    state = s;
                    wake = Wake::Activity {
                        slot: 0,
                        result: Ok(out),
                    };
                }
                Transition::Complete(p) => {
                    assert_eq!(p.counter, 5);
                    break;
                }
                Transition::Fail(e) => panic!("{e}"),
            }
        }
        assert_eq!(scheduled, 5);
    }
}
