//! Stopping an engine after `k` writes and resuming in a fresh one.
//!
//! [`CrashingStore`] is the in-memory store with a fuse: it lets `k` event writes
//! (workflow-task commits, appends) through, logging every write, and makes the next
//! write — and every one after it — hang forever, as if the process died before that
//! write reached the disk. The engine over it is then dropped. [`CrashingStore::survivor`]
//! replays the logged writes into a brand-new [`InMemoryStore`]: exactly what the dead
//! engine left durable, history prefix and snapshots included. A fresh engine over that
//! store, with [`RecordingReplayer`] in front of it, shows where its state came from.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::domain::{HistoryEvent, Result, SagaId};
use saga_runtime::port::{
    Commit, EventStore, ExecutionFilter, ExecutionSummary, HistoryReplayer, LoadedHistory,
    Snapshot, StoreReplayer, TimerRecord, TimerStore, WorkflowStore,
};
use tokio::sync::watch;

/// One write that reached the store before the crash.
#[derive(Debug, Clone)]
enum Write {
    Commit(Commit),
    Append {
        saga_id: SagaId,
        expected_version: u64,
        events: Vec<HistoryEvent>,
    },
    Snapshot(Snapshot, u32),
    CreateTimer(TimerRecord),
    CompleteTimer(String),
    CancelTimer(String),
}

#[derive(Debug)]
struct Fuse {
    /// Event writes still allowed before the crash.
    budget: usize,
    log: Vec<Write>,
}

/// An in-memory store that crashes after a number of event writes (see the module
/// docs). Clones share the store and the fuse.
#[derive(Clone)]
pub struct CrashingStore {
    inner: InMemoryStore,
    fuse: Arc<tokio::sync::Mutex<Fuse>>,
    crashed: Arc<watch::Sender<bool>>,
}

impl CrashingStore {
    /// A store that lets `budget` event writes through.
    pub fn new(budget: usize) -> Self {
        CrashingStore {
            inner: InMemoryStore::new(),
            fuse: Arc::new(tokio::sync::Mutex::new(Fuse {
                budget,
                log: Vec::new(),
            })),
            crashed: Arc::new(watch::channel(false).0),
        }
    }

    /// Resolves once a write beyond the budget was attempted (never, if none is).
    pub async fn crashed(&self) {
        let mut rx = self.crashed.subscribe();
        // The sender lives in `self`: `wait_for` cannot fail while we wait.
        let _ = rx.wait_for(|c| *c).await;
    }

    /// A new store holding exactly the writes that got through, in their order.
    pub async fn survivor(&self) -> InMemoryStore {
        let log = self.fuse.lock().await.log.clone();
        let store = InMemoryStore::new();
        for w in log {
            let r = match w {
                Write::Commit(c) => store.commit(c).await.map(drop),
                Write::Append {
                    saga_id,
                    expected_version,
                    events,
                } => store
                    .append(&saga_id, expected_version, events)
                    .await
                    .map(drop),
                Write::Snapshot(s, max) => store.save_snapshot(s, max).await,
                Write::CreateTimer(t) => store.create(t).await,
                Write::CompleteTimer(id) => store.complete(&id).await,
                Write::CancelTimer(id) => store.cancel(&id).await.map(drop),
            };
            r.expect("a write that succeeded once succeeds again on an empty copy");
        }
        store
    }

    /// Runs `write` unless the store has crashed; an event write (`counts`) spends
    /// one unit of the budget, and the first one beyond it crashes the store.
    async fn guarded<T>(
        &self,
        counts: bool,
        logged: impl FnOnce() -> Write,
        write: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let mut fuse = self.fuse.lock().await;
        if *self.crashed.borrow() || (counts && fuse.budget == 0) {
            self.crashed.send_replace(true);
            drop(fuse);
            return std::future::pending().await;
        }
        let entry = logged();
        // Held across the write: writes reach the store, and the log, one at a time.
        let r = write.await;
        if r.is_ok() {
            if counts {
                fuse.budget -= 1;
            }
            fuse.log.push(entry);
        }
        r
    }
}

#[async_trait]
impl EventStore for CrashingStore {
    async fn append(
        &self,
        saga_id: &SagaId,
        expected_version: u64,
        events: Vec<HistoryEvent>,
    ) -> Result<u64> {
        let logged = || Write::Append {
            saga_id: saga_id.clone(),
            expected_version,
            events: events.clone(),
        };
        let write = self.inner.append(saga_id, expected_version, events.clone());
        self.guarded(true, logged, write).await
    }
    async fn history_from(
        &self,
        saga_id: &SagaId,
        from_event_id: u64,
    ) -> Result<Vec<HistoryEvent>> {
        self.inner.history_from(saga_id, from_event_id).await
    }
    async fn version(&self, saga_id: &SagaId) -> Result<u64> {
        self.inner.version(saga_id).await
    }
    async fn save_snapshot(&self, snapshot: Snapshot, max_snapshots: u32) -> Result<()> {
        let logged = || Write::Snapshot(snapshot.clone(), max_snapshots);
        let write = self.inner.save_snapshot(snapshot.clone(), max_snapshots);
        self.guarded(false, logged, write).await
    }
    async fn latest_snapshot(&self, saga_id: &SagaId) -> Result<Option<Snapshot>> {
        self.inner.latest_snapshot(saga_id).await
    }
    async fn snapshots(&self, saga_id: &SagaId) -> Result<Vec<Snapshot>> {
        self.inner.snapshots(saga_id).await
    }
    async fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        self.inner.list_executions(filter).await
    }
}

#[async_trait]
impl TimerStore for CrashingStore {
    async fn create(&self, timer: TimerRecord) -> Result<()> {
        let logged = || Write::CreateTimer(timer.clone());
        let write = self.inner.create(timer.clone());
        self.guarded(false, logged, write).await
    }
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<TimerRecord>> {
        // A claim is a lease, not state the next process inherits.
        self.inner.claim_due(now, limit, lease).await
    }
    async fn complete(&self, timer_id: &str) -> Result<()> {
        let logged = || Write::CompleteTimer(timer_id.to_owned());
        self.guarded(false, logged, self.inner.complete(timer_id))
            .await
    }
    async fn cancel(&self, timer_id: &str) -> Result<bool> {
        let logged = || Write::CancelTimer(timer_id.to_owned());
        self.guarded(false, logged, self.inner.cancel(timer_id))
            .await
    }
    async fn next_fire_at(&self) -> Result<Option<DateTime<Utc>>> {
        self.inner.next_fire_at().await
    }
}

#[async_trait]
impl WorkflowStore for CrashingStore {
    async fn commit(&self, commit: Commit) -> Result<u64> {
        let logged = || Write::Commit(commit.clone());
        let write = self.inner.commit(commit.clone());
        self.guarded(true, logged, write).await
    }
}

/// The outbox is not part of the crash: the engines here use the in-process queue, so
/// only clients would write to it.
#[async_trait]
impl saga_runtime::port::Outbox for CrashingStore {
    async fn claim_tasks(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<saga_runtime::port::Task>> {
        self.inner.claim_tasks(now, lease, limit).await
    }
    async fn settle_tasks(&self, saga_id: &SagaId, dedup_ids: &[String]) -> Result<()> {
        self.inner.settle_tasks(saga_id, dedup_ids).await
    }
    async fn defer_tasks(
        &self,
        saga_id: &SagaId,
        dedup_ids: &[String],
        until: DateTime<Utc>,
    ) -> Result<()> {
        self.inner.defer_tasks(saga_id, dedup_ids, until).await
    }
    async fn outbox_len(&self) -> Result<u64> {
        self.inner.outbox_len().await
    }
    async fn unsettled_tasks(&self, saga_id: &SagaId) -> Result<Vec<String>> {
        self.inner.unsettled_tasks(saga_id).await
    }
}

/// Definitions are registered once, at the engine's start, before any crash.
#[async_trait]
impl saga_runtime::port::DefinitionStore for CrashingStore {
    async fn register_definition(
        &self,
        definition: saga_runtime::port::WorkflowDefinition,
    ) -> Result<()> {
        self.inner.register_definition(definition).await
    }
    async fn definitions(&self) -> Result<Vec<saga_runtime::port::WorkflowDefinition>> {
        self.inner.definitions().await
    }
    async fn definition(
        &self,
        workflow_type: &str,
    ) -> Result<Option<saga_runtime::port::WorkflowDefinition>> {
        self.inner.definition(workflow_type).await
    }
}

/// What one load handed the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// The execution loaded.
    pub saga_id: SagaId,
    /// The codec of the snapshot the state came from, if one did.
    pub snapshot_codec: Option<String>,
    /// Events folded on top of the snapshot (the whole history without one).
    pub events_folded: usize,
    /// Snapshots skipped as corrupt.
    pub corrupt_snapshots: u32,
}

/// The store's own replayer, noting every load.
#[derive(Clone)]
pub struct RecordingReplayer {
    inner: StoreReplayer,
    loads: Arc<Mutex<Vec<Load>>>,
}

impl RecordingReplayer {
    /// A replayer over `store`.
    pub fn new(store: InMemoryStore) -> Self {
        RecordingReplayer {
            inner: StoreReplayer::new(Arc::new(store)),
            loads: Arc::default(),
        }
    }

    /// Every load so far, in order.
    pub fn loads(&self) -> Vec<Load> {
        self.loads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl HistoryReplayer for RecordingReplayer {
    async fn load(&self, saga_id: &SagaId) -> Result<LoadedHistory> {
        let loaded = self.inner.load(saga_id).await?;
        self.loads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Load {
                saga_id: saga_id.clone(),
                snapshot_codec: loaded.snapshot.as_ref().map(|s| s.codec.clone()),
                events_folded: loaded.events.len(),
                corrupt_snapshots: loaded.corrupt_snapshots,
            });
        Ok(loaded)
    }
}
