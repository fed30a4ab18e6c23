//! The outbox reconciler (DESIGN.md section 6): publishes again the tasks whose results
//! were not recorded in time, so a message the broker lost costs latency, never
//! correctness.
//!
//! Every engine with the outbox on runs one. Claims are leased in the store, so the
//! reconcilers of several workers do not publish the same task at once; a task
//! published twice anyway is deduplicated by the broker (`Nats-Msg-Id`) or dropped by
//! the worker that finds its result already in history.

use std::sync::Arc;

use super::Inner;

/// Tasks claimed per round.
const CLAIM_BATCH: usize = 256;

impl Inner {
    pub(super) async fn reconcile_loop(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let full = self.reconcile_once().await == CLAIM_BATCH;
            if !full {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.outbox.reconcile_every) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
    }

    /// One round: claims due tasks and publishes them; returns how many it claimed.
    pub(super) async fn reconcile_once(&self) -> usize {
        let lease = self.config.outbox.redeliver_after;
        let claimed = match self
            .store
            .claim_tasks(self.clock.now(), lease, CLAIM_BATCH)
            .await
        {
            Ok(tasks) => tasks,
            Err(e) => {
                self.note(&e);
                tracing::warn!(error = %e, "outbox claim failed");
                return 0;
            }
        };
        let n = claimed.len();
        for task in claimed {
            tracing::debug!(saga_id = %task.saga_id, dedup_id = %task.dedup_id, "re-publishing an unsettled task");
            match self.queue.publish(task).await {
                Ok(()) => self.counter(&self.counters.outbox_redelivered),
                // The claim lapses after `lease`, and the next round tries again.
                Err(e) => tracing::warn!(error = %e, "outbox re-publish failed"),
            }
        }
        n
    }
}
