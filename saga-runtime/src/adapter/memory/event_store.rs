use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::domain::{Error, ErrorKind, HistoryEvent, Result, SagaId};
use crate::port::{EventStore, ExecutionFilter, ExecutionSummary, Snapshot};

#[derive(Default)]
struct SagaRecord {
    events: Vec<HistoryEvent>,
    summary: Option<ExecutionSummary>,
    /// Oldest first.
    snapshots: Vec<Snapshot>,
}

/// An [`EventStore`] in memory. Clones share the same data.
#[derive(Clone, Default)]
pub struct InMemoryEventStore {
    sagas: Arc<Mutex<HashMap<SagaId, SagaRecord>>>,
}

impl InMemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SagaId, SagaRecord>> {
        // A panic while holding the lock cannot leave a record half-written (every
        // mutation below is a single push/replace), so a poisoned lock is still usable.
        self.sagas.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Test hook: rewrite a stored snapshot in place (to simulate disk corruption).
    pub fn corrupt_snapshot(&self, saga_id: &SagaId, f: impl FnOnce(&mut Snapshot)) -> bool {
        let mut sagas = self.lock();
        match sagas.get_mut(saga_id).and_then(|r| r.snapshots.last_mut()) {
            Some(s) => {
                f(s);
                true
            }
            None => false,
        }
    }
}

#[async_trait]
impl EventStore for InMemoryEventStore {
    async fn append(
        &self,
        saga_id: &SagaId,
        expected_version: u64,
        events: Vec<HistoryEvent>,
    ) -> Result<u64> {
        for (i, e) in events.iter().enumerate() {
            if e.event_id != expected_version + i as u64 || &e.saga_id != saga_id {
                return Err(Error::new(
                    ErrorKind::Validation,
                    format!(
                        "event {} of saga `{}` does not follow version {expected_version}",
                        e.event_id, e.saga_id
                    ),
                )
                .with("saga_id", saga_id));
            }
        }
        let mut sagas = self.lock();
        let record = sagas.entry(saga_id.clone()).or_default();
        let actual = record.events.len() as u64;
        if actual != expected_version {
            return Err(Error::conflict(saga_id.as_str(), expected_version, actual));
        }
        for e in &events {
            match &mut record.summary {
                Some(s) => s.apply(e),
                None => record.summary = ExecutionSummary::from_started(e),
            }
        }
        record.events.extend(events);
        Ok(record.events.len() as u64)
    }

    async fn history_from(
        &self,
        saga_id: &SagaId,
        from_event_id: u64,
    ) -> Result<Vec<HistoryEvent>> {
        let sagas = self.lock();
        Ok(sagas
            .get(saga_id)
            .map(|r| {
                r.events
                    .get(from_event_id as usize..)
                    .unwrap_or(&[])
                    .to_vec()
            })
            .unwrap_or_default())
    }

    async fn version(&self, saga_id: &SagaId) -> Result<u64> {
        Ok(self
            .lock()
            .get(saga_id)
            .map_or(0, |r| r.events.len() as u64))
    }

    async fn save_snapshot(&self, snapshot: Snapshot, max_snapshots: u32) -> Result<()> {
        let mut sagas = self.lock();
        let record = sagas.entry(snapshot.saga_id.clone()).or_default();
        record
            .snapshots
            .retain(|s| s.last_event_id != snapshot.last_event_id);
        record.snapshots.push(snapshot);
        record.snapshots.sort_by_key(|s| s.last_event_id);
        let keep = max_snapshots.max(1) as usize;
        if record.snapshots.len() > keep {
            let excess = record.snapshots.len() - keep;
            record.snapshots.drain(..excess);
        }
        Ok(())
    }

    async fn latest_snapshot(&self, saga_id: &SagaId) -> Result<Option<Snapshot>> {
        Ok(self
            .lock()
            .get(saga_id)
            .and_then(|r| r.snapshots.last().cloned()))
    }

    async fn snapshots(&self, saga_id: &SagaId) -> Result<Vec<Snapshot>> {
        Ok(self
            .lock()
            .get(saga_id)
            .map(|r| r.snapshots.iter().rev().cloned().collect())
            .unwrap_or_default())
    }

    async fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        let sagas = self.lock();
        let mut out: Vec<_> = sagas
            .values()
            .filter_map(|r| r.summary.as_ref())
            .filter(|s| filter.matches(s))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            a.started_at
                .cmp(&b.started_at)
                .then_with(|| a.saga_id.cmp(&b.saga_id))
        });
        if let Some(limit) = filter.limit {
            out.truncate(limit);
        }
        Ok(out)
    }
}
