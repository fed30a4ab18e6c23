//! Ports (manual section 2): the traits the engine needs from infrastructure. One file
//! per trait; adapters live in [`crate::adapter`] and in the `saga-adapters` crate, and
//! every adapter passes [`crate::conformance`] unchanged.

pub mod definition_store;
pub mod event_store;
pub mod history_replayer;
pub mod outbox;
pub mod signal_dispatcher;
pub mod task_queue;
pub mod timer_store;
pub mod workflow_store;

pub use definition_store::{CheckpointRow, DefinitionStore, WorkflowDefinition};
pub use event_store::{EventStore, ExecutionFilter, ExecutionSummary, Snapshot};
pub use history_replayer::{HistoryReplayer, LoadedHistory, StoreReplayer};
pub use outbox::Outbox;
pub use signal_dispatcher::{
    Notification, SignalDispatcher, SignalSubscription, CARRIED_OUTPUT_BYTES,
};
pub use task_queue::{DeadLetter, Delivery, DeliveryTag, Task, TaskKind, TaskQueue};
pub use timer_store::{TimerRecord, TimerStore};
pub use workflow_store::{Commit, WorkflowStore};
