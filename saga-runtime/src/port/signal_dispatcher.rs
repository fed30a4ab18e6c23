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
///
/// **Inboxes** (optional). A dispatcher whose transport charges for every
/// subscription (NATS: a subscription, its confirmation and its removal for every
/// awaited execution) may also have one process-wide inbox ([`Self::inbox`]). An
/// engine that starts an execution and awaits it records its dispatcher's inbox in
/// the start, and the engine that closes the execution sends the close there
/// ([`Self::notify_inbox`]). The waiter registers with [`Self::watch_inbox`], which
/// costs the transport nothing after the inbox's first use. On top of the contract
/// above:
/// - a `watch_inbox(X)` waiter receives, in order, every notification for X sent with
///   `notify_inbox(X, inbox, _)` to its dispatcher's inbox after `watch_inbox`
///   returned, from any process, and none for other sagas (it may also receive one
///   sent to the inbox just before, still on its way);
/// - a `subscribe(X)` subscriber receives those too, whatever the inbox.
///
/// The defaults, for a dispatcher without inboxes: no inbox, `watch_inbox` is
/// `subscribe` and `notify_inbox` is `notify`.
#[async_trait]
pub trait SignalDispatcher: Send + Sync + 'static {
    /// Sends `notification` to the subscribers of `saga_id`.
    async fn notify(&self, saga_id: &SagaId, notification: Notification) -> Result<()>;
    /// Subscribes to `saga_id`.
    async fn subscribe(&self, saga_id: &SagaId) -> Result<SignalSubscription>;

    /// This dispatcher's inbox, if it has one: a name other processes' dispatchers
    /// can send to ([`Self::notify_inbox`]). Fixed for the dispatcher's life and
    /// shared by its clones.
    fn inbox(&self) -> Option<String> {
        None
    }

    /// Sends `notification` to the subscribers of `saga_id` and to the waiters of
    /// `saga_id` at `inbox` (another dispatcher's, or this one's).
    async fn notify_inbox(
        &self,
        saga_id: &SagaId,
        inbox: &str,
        notification: Notification,
    ) -> Result<()> {
        let _ = inbox;
        self.notify(saga_id, notification).await
    }

    /// Waits at this dispatcher's inbox for notifications of `saga_id`.
    async fn watch_inbox(&self, saga_id: &SagaId) -> Result<SignalSubscription> {
        self.subscribe(saga_id).await
    }
}
