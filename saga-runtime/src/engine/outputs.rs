//! Outputs handed to local waiters: when this engine commits the completion of an
//! execution that someone in this process awaits (`RunHandle::result`), the waiter
//! gets the output from the commit itself instead of reading it back from the store
//! after a notification. A completion written elsewhere (another process), and every
//! failure (whose error is built from the history), still goes through the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::domain::{EventType, HistoryEvent, SagaId};

/// Waiters by execution.
#[derive(Default)]
pub(super) struct Outputs {
    waiters: Mutex<HashMap<SagaId, Vec<oneshot::Sender<Value>>>>,
}

impl Outputs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SagaId, Vec<oneshot::Sender<Value>>>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a waiter for `saga_id`'s output; dropping the returned value
    /// unregisters it.
    pub(super) fn wait(self: &Arc<Self>, saga_id: &SagaId) -> OutputWaiter {
        let (tx, rx) = oneshot::channel();
        self.lock().entry(saga_id.clone()).or_default().push(tx);
        OutputWaiter {
            outputs: Arc::clone(self),
            saga_id: saga_id.clone(),
            rx: Some(rx),
        }
    }

    /// The output of the completion among `events`, if any and if anyone waits for
    /// it (so that a commit nobody waits on clones nothing).
    pub(super) fn wanted(&self, saga_id: &SagaId, events: &[HistoryEvent]) -> Option<Value> {
        let done = events
            .iter()
            .rev()
            .find(|e| e.event_type == EventType::WorkflowExecutionCompleted)?;
        if !self.lock().contains_key(saga_id) {
            return None;
        }
        Some(
            done.attributes
                .get("output")
                .cloned()
                .unwrap_or(Value::Null),
        )
    }

    /// Hands `output` (committed) to every waiter of `saga_id`.
    pub(super) fn deliver(&self, saga_id: &SagaId, output: Value) {
        let waiters = self.lock().remove(saga_id).unwrap_or_default();
        for w in waiters {
            let _ = w.send(output.clone());
        }
    }
}

/// One registered waiter.
pub(super) struct OutputWaiter {
    outputs: Arc<Outputs>,
    saga_id: SagaId,
    rx: Option<oneshot::Receiver<Value>>,
}

impl OutputWaiter {
    /// The output, once this engine commits the completion; pending forever otherwise
    /// (the caller races it against the store).
    pub(super) async fn output(&mut self) -> Value {
        if let Some(rx) = self.rx.as_mut() {
            let received = rx.await;
            self.rx = None;
            if let Ok(v) = received {
                return v;
            }
        }
        std::future::pending().await
    }
}

impl Drop for OutputWaiter {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut waiters = self.outputs.lock();
        if let Some(list) = waiters.get_mut(&self.saga_id) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                waiters.remove(&self.saga_id);
            }
        }
    }
}
