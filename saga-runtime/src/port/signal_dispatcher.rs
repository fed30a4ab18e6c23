//! Wake-ups: tells whoever waits on an execution that something happened to it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
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
        /// For `Completed`: the output, so that a waiter in another process needs no
        /// read of the store. A dispatcher whose transport cannot carry it (too large)
        /// sends the notification without it ([`Notification::without_output`]), and
        /// the waiter reads the store instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Value>,
    },
}

impl Notification {
    /// The same notification without a completion's output.
    pub fn without_output(self) -> Self {
        match self {
            Notification::StatusChanged { status, .. } => Notification::StatusChanged {
                status,
                output: None,
            },
            other => other,
        }
    }
}

/// The largest completion output (as JSON) every dispatcher carries in its
/// notification (PostgreSQL's `NOTIFY` takes at most 8 000 bytes in all).
pub const CARRIED_OUTPUT_BYTES: usize = 4096;

/// A stream of notifications for one execution; dropping it unsubscribes.
pub type SignalSubscription = UnboundedReceiver<Notification>;

/// Publish / subscribe of per-execution notifications.
///
/// Contract: a subscriber of saga X receives every notification for X sent after
/// `subscribe` returned, in order, and none for other sagas. A completion's output
/// of up to [`CARRIED_OUTPUT_BYTES`] of JSON arrives with it; a larger one may be
/// dropped from the notification, never the notification itself.
#[async_trait]
pub trait SignalDispatcher: Send + Sync + 'static {
    /// Sends `notification` to the subscribers of `saga_id`.
    async fn notify(&self, saga_id: &SagaId, notification: Notification) -> Result<()>;
    /// Subscribes to `saga_id`.
    async fn subscribe(&self, saga_id: &SagaId) -> Result<SignalSubscription>;
}
