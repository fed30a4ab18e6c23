//! Loading what replay needs: the newest valid snapshot and the events after it.

use std::sync::Arc;

use async_trait::async_trait;

use super::event_store::{EventStore, Snapshot};
use crate::domain::{HistoryEvent, Result, SagaId};
use crate::snapshot;

/// The input of a replay.
#[derive(Debug, Clone, Default)]
pub struct LoadedHistory {
    /// The newest snapshot whose checksum verified, if any.
    pub snapshot: Option<Snapshot>,
    /// The events after the snapshot (the whole history without one).
    pub events: Vec<HistoryEvent>,
    /// Snapshots skipped because their checksum did not match.
    pub corrupt_snapshots: u32,
}

/// Loads an execution for replay (manual section 9.2).
#[async_trait]
pub trait HistoryReplayer: Send + Sync + 'static {
    /// The newest verified snapshot and the events after it.
    async fn load(&self, saga_id: &SagaId) -> Result<LoadedHistory>;
}

/// The replayer over any [`EventStore`]: verifies each snapshot's SHA-256 and falls back
/// to older snapshots, then to the full history, when one is corrupt.
#[derive(Clone)]
pub struct StoreReplayer {
    store: Arc<dyn EventStore>,
}

impl StoreReplayer {
    /// A replayer reading from `store`.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        StoreReplayer { store }
    }
}

#[async_trait]
impl HistoryReplayer for StoreReplayer {
    async fn load(&self, saga_id: &SagaId) -> Result<LoadedHistory> {
        let mut corrupt = 0;
        let mut chosen = None;
        if let Some(latest) = self.store.latest_snapshot(saga_id).await? {
            if snapshot::verify(&latest).is_ok() {
                chosen = Some(latest);
            } else {
                corrupt += 1;
                for older in self.store.snapshots(saga_id).await?.into_iter().skip(1) {
                    if snapshot::verify(&older).is_ok() {
                        chosen = Some(older);
                        break;
                    }
                    corrupt += 1;
                }
            }
        }
        if corrupt > 0 {
            tracing::warn!(saga_id = %saga_id, corrupt, "snapshot checksum mismatch; falling back");
        }
        let from = chosen.as_ref().map_or(0, |s| s.last_event_id + 1);
        let events = self.store.history_from(saga_id, from).await?;
        Ok(LoadedHistory {
            snapshot: chosen,
            events,
            corrupt_snapshots: corrupt,
        })
    }
}
