//! Everything a workflow author needs: `use saga_runtime::prelude::*;`.

pub use crate::activity::{
    activity, Activity, ActivityContext, ActivityError, ActivityOptions, ActivityRegistry,
    RetryPolicy,
};
pub use crate::codec::{AnyCodec, Codec};
pub use crate::domain::{Error, ErrorKind, EventType, HistoryEvent, SagaId, WorkflowStatus};
pub use crate::engine::{ExecutionDescription, RunHandle, SagaEngine, StartOptions};
pub use crate::snapshot::SnapshotConfig;
pub use crate::workflow::{
    Checkpoint, CheckpointKind, Command, SagaError, SignalError, Transition, Wake, Workflow,
    WorkflowContext, WorkflowOptions,
};
pub use std::time::Duration;

/// The attribute macros (`activity` is also the registration fn above: a fn and an
/// attribute macro live in different namespaces).
pub use saga_macros::{activity, deterministic, workflow};
