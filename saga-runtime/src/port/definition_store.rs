//! Workflow definitions kept in the store: what a workflow type looks like (its
//! fingerprint, checkpoint table and diagram), so that tools that hold no workflow code
//! (the `saga` CLI, [`SagaClient`](crate::client::SagaClient)) can start, describe and
//! draw its executions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Error, ErrorKind, Result};
use crate::workflow::{Checkpoint, CheckpointKind, Workflow};

/// One row of a stored checkpoint table (an owned [`Checkpoint`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRow {
    /// Dense id, in source order.
    pub id: u32,
    /// The state variant that waits here (the node name in the diagram).
    pub variant: String,
    /// Source line of the `.await`.
    pub line: u32,
    /// What kind of wait.
    pub kind: CheckpointKind,
    /// What it awaits (activity type, signal name, ...).
    pub awaits: String,
}

impl From<&Checkpoint> for CheckpointRow {
    fn from(c: &Checkpoint) -> Self {
        CheckpointRow {
            id: c.id,
            variant: c.variant.to_owned(),
            line: c.line,
            kind: c.kind,
            awaits: c.awaits.to_owned(),
        }
    }
}

/// A workflow type as workers registered it: one per `(workflow_type, fingerprint)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowDefinition {
    /// [`Workflow::TYPE_ID`].
    pub workflow_type: String,
    /// [`Workflow::FINGERPRINT`]: executions record it at start.
    pub fingerprint: String,
    /// [`Workflow::checkpoints`].
    pub checkpoints: Vec<CheckpointRow>,
    /// [`Workflow::diagram`]: a Mermaid `stateDiagram-v2` (empty for a hand-written
    /// workflow without one).
    pub diagram: String,
    /// The workflow's default execution timeout ([`Workflow::options`]), which a start
    /// without code must record as the engine would.
    pub timeout_ms: Option<u64>,
    /// The workflow's default task queue ([`Workflow::options`]), which a start without
    /// code must record as the engine would.
    pub task_queue: Option<String>,
    /// When a worker last registered it.
    pub registered_at: DateTime<Utc>,
}

impl WorkflowDefinition {
    /// The definition of `W`, registered at `now`.
    pub fn of<W: Workflow>(now: DateTime<Utc>) -> Self {
        WorkflowDefinition {
            workflow_type: W::TYPE_ID.to_owned(),
            fingerprint: W::FINGERPRINT.to_owned(),
            checkpoints: W::checkpoints().iter().map(CheckpointRow::from).collect(),
            diagram: W::diagram().to_owned(),
            timeout_ms: W::options()
                .timeout
                .map(|d| d.as_millis().min(u64::MAX as u128) as u64),
            task_queue: W::options().task_queue,
            registered_at: now,
        }
    }
}

/// The error of a store that keeps no definitions (the trait's defaults).
pub fn definitions_unsupported() -> Error {
    Error::new(
        ErrorKind::Configuration,
        "this store keeps no workflow definitions",
    )
    .with("code", "unsupported")
}

/// Stores workflow definitions next to the histories.
///
/// Contract:
/// - `register_definition` upserts by `(workflow_type, fingerprint)`: registering the
///   same pair again replaces its checkpoints, diagram and timeout and moves
///   `registered_at`; a new fingerprint of a known type adds a row and keeps the old
///   one (executions started under it still need it).
/// - `definitions` lists every row, by `workflow_type`, then oldest `registered_at`
///   first (ties by fingerprint).
/// - `definition` is the row of `workflow_type` registered last (ties by fingerprint,
///   the greatest), or `None`.
///
/// A store that keeps no definitions implements the trait with its defaults, which
/// fail with [`definitions_unsupported`]; the engine then registers nothing.
///
/// ```
/// # use saga_runtime::adapter::memory::InMemoryStore;
/// # use saga_runtime::port::{DefinitionStore, WorkflowDefinition};
/// # tokio_test_block_on(async {
/// let store = InMemoryStore::new();
/// let def = WorkflowDefinition {
///     workflow_type: "order_saga".into(),
///     fingerprint: "f1".into(),
///     checkpoints: vec![],
///     diagram: String::new(),
///     timeout_ms: None,
///     task_queue: None,
///     registered_at: chrono::Utc::now(),
/// };
/// store.register_definition(def.clone()).await.unwrap();
/// assert_eq!(store.definition("order_saga").await.unwrap(), Some(def));
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[async_trait]
pub trait DefinitionStore: Send + Sync + 'static {
    /// Adds or replaces the definition of `(workflow_type, fingerprint)`.
    async fn register_definition(&self, _definition: WorkflowDefinition) -> Result<()> {
        Err(definitions_unsupported())
    }

    /// Every registered definition.
    async fn definitions(&self) -> Result<Vec<WorkflowDefinition>> {
        Err(definitions_unsupported())
    }

    /// The newest definition of `workflow_type`.
    async fn definition(&self, _workflow_type: &str) -> Result<Option<WorkflowDefinition>> {
        Err(definitions_unsupported())
    }
}
