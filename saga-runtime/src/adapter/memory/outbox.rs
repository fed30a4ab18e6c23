use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Result, SagaId};
use crate::port::{Commit, Outbox, Task};

#[derive(Default)]
struct Rows {
    /// (saga id, dedup id) -> (task, due at).
    by_key: BTreeMap<(SagaId, String), (Task, DateTime<Utc>)>,
    /// (due at, saga id, dedup id), for due scans in time order.
    due: BTreeSet<(DateTime<Utc>, SagaId, String)>,
}

impl Rows {
    fn remove(&mut self, key: &(SagaId, String)) {
        if let Some((_, at)) = self.by_key.remove(key) {
            self.due.remove(&(at, key.0.clone(), key.1.clone()));
        }
    }
}

/// An [`Outbox`] in memory. Clones share the same rows.
#[derive(Clone, Default)]
pub struct InMemoryOutbox {
    rows: Arc<Mutex<Rows>>,
}

impl InMemoryOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the outbox part of a commit whose append succeeded: settle, then add.
    /// `closes`: [`Commit::closes_execution`] (asked before the events moved out).
    pub(super) fn apply(&self, c: &Commit, closes: bool) {
        let mut rows = self.lock();
        if closes {
            let keys: Vec<_> = rows
                .by_key
                .range((c.saga_id.clone(), String::new())..)
                .take_while(|((saga, _), _)| *saga == c.saga_id)
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                rows.remove(&k);
            }
        }
        for id in &c.settle_tasks {
            rows.remove(&(c.saga_id.clone(), id.clone()));
        }
        for t in &c.tasks {
            let key = (t.saga_id.clone(), t.dedup_id.clone());
            if !rows.by_key.contains_key(&key) {
                rows.due
                    .insert((c.redeliver_at, key.0.clone(), key.1.clone()));
                rows.by_key.insert(key, (t.clone(), c.redeliver_at));
            }
        }
    }
}

#[async_trait]
impl Outbox for InMemoryOutbox {
    async fn claim_tasks(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Task>> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let mut rows = self.lock();
        let due: Vec<_> = rows
            .due
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .take(limit)
            .cloned()
            .collect();
        let mut tasks = Vec::with_capacity(due.len());
        for (at, saga, id) in due {
            rows.due.remove(&(at, saga.clone(), id.clone()));
            rows.due.insert((until, saga.clone(), id.clone()));
            if let Some(row) = rows.by_key.get_mut(&(saga, id)) {
                row.1 = until;
                tasks.push(row.0.clone());
            }
        }
        Ok(tasks)
    }

    async fn settle_tasks(&self, saga_id: &SagaId, dedup_ids: &[String]) -> Result<()> {
        let mut rows = self.lock();
        for id in dedup_ids {
            rows.remove(&(saga_id.clone(), id.clone()));
        }
        Ok(())
    }

    async fn defer_tasks(
        &self,
        saga_id: &SagaId,
        dedup_ids: &[String],
        until: DateTime<Utc>,
    ) -> Result<()> {
        let mut rows = self.lock();
        for id in dedup_ids {
            let key = (saga_id.clone(), id.clone());
            let Some(row) = rows.by_key.get_mut(&key) else {
                continue;
            };
            let at = row.1;
            if at >= until {
                continue;
            }
            row.1 = until;
            rows.due.remove(&(at, key.0.clone(), key.1.clone()));
            rows.due.insert((until, key.0, key.1));
        }
        Ok(())
    }

    async fn outbox_len(&self) -> Result<u64> {
        Ok(self.lock().by_key.len() as u64)
    }

    async fn unsettled_tasks(&self, saga_id: &SagaId) -> Result<Vec<String>> {
        let rows = self.lock();
        Ok(rows
            .by_key
            .range((saga_id.clone(), String::new())..)
            .take_while(|((saga, _), _)| saga == saga_id)
            .map(|((_, id), _)| id.clone())
            .collect())
    }
}
