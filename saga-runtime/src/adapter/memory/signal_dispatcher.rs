use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::domain::{Result, SagaId};
use crate::port::{Notification, SignalDispatcher, SignalSubscription};

/// A [`SignalDispatcher`] within one process. Clones share subscribers.
#[derive(Clone, Default)]
pub struct InMemorySignalDispatcher {
    subscribers: Arc<Mutex<HashMap<SagaId, Vec<UnboundedSender<Notification>>>>>,
}

impl InMemorySignalDispatcher {
    /// A dispatcher with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SignalDispatcher for InMemorySignalDispatcher {
    async fn notify(&self, saga_id: &SagaId, notification: Notification) -> Result<()> {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = subs.get_mut(saga_id) {
            // Dropped subscriptions are pruned here.
            list.retain(|tx| tx.send(notification.clone()).is_ok());
            if list.is_empty() {
                subs.remove(saga_id);
            }
        }
        Ok(())
    }

    async fn subscribe(&self, saga_id: &SagaId) -> Result<SignalSubscription> {
        let (tx, rx) = unbounded_channel();
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        let list = subs.entry(saga_id.clone()).or_default();
        list.retain(|tx| !tx.is_closed());
        list.push(tx);
        Ok(rx)
    }
}
