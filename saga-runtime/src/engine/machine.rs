//! Type erasure between typed [`Workflow`]s and the engine, which works on JSON.

use std::marker::PhantomData;

use crate::codec::{AnyCodec, Codec};
use crate::domain::{Error, ErrorKind, Result};
use crate::port::WorkflowDefinition;
use crate::workflow::{Command, Transition, Wake, Workflow, WorkflowContext};

/// What one erased `resume` produced.
pub(crate) enum Step {
    Suspend(Vec<Command>),
    Complete(serde_json::Value),
    Fail {
        message: String,
        error: serde_json::Value,
    },
}

/// A running machine: the typed state behind a trait object.
pub(crate) trait Machine: Send {
    fn resume(&mut self, ctx: &mut WorkflowContext, wake: Wake) -> Result<Step>;
    fn encode(&self, codec: AnyCodec) -> Result<Vec<u8>>;
    /// The state's variant, for `describe` (`ChargePayment`).
    fn checkpoint(&self) -> String;
}

/// A registered workflow type.
pub(crate) trait ErasedWorkflow: Send + Sync {
    fn fingerprint(&self) -> &'static str;
    /// What the store keeps of it for tools without the code.
    fn definition(&self, now: chrono::DateTime<chrono::Utc>) -> WorkflowDefinition;
    /// Its own task queue ([`crate::workflow::WorkflowOptions::task_queue`]), if any.
    fn task_queue(&self) -> Option<String>;
    fn start(&self, input: &serde_json::Value) -> Result<Box<dyn Machine>>;
    fn restore(&self, codec: AnyCodec, bytes: &[u8]) -> Result<Box<dyn Machine>>;
}

pub(crate) struct Erased<W>(PhantomData<fn() -> W>);

impl<W> Erased<W> {
    pub(crate) fn new() -> Self {
        Erased(PhantomData)
    }
}

struct TypedMachine<W: Workflow> {
    state: Option<W::State>,
}

impl<W: Workflow> Machine for TypedMachine<W> {
    fn resume(&mut self, ctx: &mut WorkflowContext, wake: Wake) -> Result<Step> {
        let state = self.state.take().ok_or_else(|| {
            Error::new(
                ErrorKind::WorkflowExecution,
                "machine resumed after it finished",
            )
            .with("workflow_type", W::TYPE_ID)
        })?;
        // A panic in workflow code fails this workflow task, not the worker; the
        // execution stays where its history says until fixed code replays it.
        let transition =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| W::resume(state, ctx, wake)))
                .map_err(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic payload".to_owned());
                    Error::new(
                        ErrorKind::Unknown,
                        format!("workflow `{}` panicked: {what}", W::TYPE_ID),
                    )
                    .with("workflow_type", W::TYPE_ID)
                })?;
        Ok(match transition {
            Transition::Suspend { state, commands } => {
                self.state = Some(state);
                Step::Suspend(commands)
            }
            Transition::Complete(out) => match serde_json::to_value(out) {
                Ok(v) => Step::Complete(v),
                Err(e) => Step::Fail {
                    message: format!("output of `{}` does not encode: {e}", W::TYPE_ID),
                    error: serde_json::Value::Null,
                },
            },
            Transition::Fail(err) => Step::Fail {
                message: err.to_string(),
                error: serde_json::to_value(&err).unwrap_or(serde_json::Value::Null),
            },
        })
    }

    fn encode(&self, codec: AnyCodec) -> Result<Vec<u8>> {
        codec.encode(&self.state)
    }

    fn checkpoint(&self) -> String {
        match &self.state {
            Some(s) => {
                let dbg = format!("{s:?}");
                dbg.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            }
            None => "Finished".to_owned(),
        }
    }
}

impl<W: Workflow> ErasedWorkflow for Erased<W> {
    fn fingerprint(&self) -> &'static str {
        W::FINGERPRINT
    }
    fn definition(&self, now: chrono::DateTime<chrono::Utc>) -> WorkflowDefinition {
        WorkflowDefinition::of::<W>(now)
    }
    fn task_queue(&self) -> Option<String> {
        W::options().task_queue
    }
    fn start(&self, input: &serde_json::Value) -> Result<Box<dyn Machine>> {
        let input: W::Input = serde_json::from_value(input.clone()).map_err(|e| {
            Error::codec(format!(
                "input of workflow `{}` does not decode: {e}",
                W::TYPE_ID
            ))
        })?;
        Ok(Box::new(TypedMachine::<W> {
            state: Some(W::start(input)),
        }))
    }
    fn restore(&self, codec: AnyCodec, bytes: &[u8]) -> Result<Box<dyn Machine>> {
        let state: Option<W::State> = codec.decode(bytes)?;
        Ok(Box::new(TypedMachine::<W> { state }))
    }
}
