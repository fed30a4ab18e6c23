//! Wake-ups: tells whoever waits on an execution that something happened to it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::domain::{Result, SagaId, WorkflowStatus};

/// Something that happened to an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Notification {
    /// A signal was recorded.
    SignalReceived {
        /// The signal's name.
        name: String,
    },
    /// A timer fired.
    TimerFired {
        /// The timer.
        timer_id: String,
    },
    /// The execution reached a closed or compensating status.
    StatusChanged {
        /// The new status.
        status: WorkflowStatus,
    },
}

/// A stream of notifications for one execution; dropping it unsubscribes.
pub type SignalSubscription = UnboundedReceiver<Notification>;

/// Publish / subscribe of per-execution notifications.
///
/// Contract: a subscriber of saga X receives every notification for X sent after
/// `subscribe` returned, in order, and none for other sagas.
#[async_trait]
pub trait SignalDispatcher: Send + Sync + 'static {
    /// Sends `notification` to the subscribers of `saga_id`.
    async fn notify(&self, saga_id: &SagaId, notification: Notification) -> Result<()>;
    /// Subscribes to `saga_id`.
    async fn subscribe(&self, saga_id: &SagaId) -> Result<SignalSubscription>;
}
