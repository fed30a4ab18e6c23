//! The domain core (manual sections 5, 6, 7, 13): pure data and rules, no I/O.

pub mod compensation;
pub mod error;
pub mod event;
pub mod ids;
pub mod status;

pub use compensation::{CompensationAction, CompensationTracker, CompletedStep};
pub use error::{Error, ErrorKind, Result};
pub use event::{EventCategory, EventType, HistoryEvent, TimerKind};
pub use ids::SagaId;
pub use status::WorkflowStatus;
