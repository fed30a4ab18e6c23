use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::Result;
use crate::port::{TimerRecord, TimerStore};

#[derive(Default)]
struct Timers {
    by_id: HashMap<String, (TimerRecord, Option<DateTime<Utc>>)>,
    /// (fire_at, timer_id), for due scans in time order.
    due: BTreeSet<(DateTime<Utc>, String)>,
}

/// A [`TimerStore`] in memory. Clones share the same timers.
#[derive(Clone, Default)]
pub struct InMemoryTimerStore {
    timers: Arc<Mutex<Timers>>,
}

impl InMemoryTimerStore {
    /// An empty timer store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timers> {
        self.timers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// True if no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl TimerStore for InMemoryTimerStore {
    async fn create(&self, timer: TimerRecord) -> Result<()> {
        let mut t = self.lock();
        if !t.by_id.contains_key(&timer.timer_id) {
            t.due.insert((timer.fire_at, timer.timer_id.clone()));
            t.by_id.insert(timer.timer_id.clone(), (timer, None));
        }
        Ok(())
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<TimerRecord>> {
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let mut t = self.lock();
        let due: Vec<String> = t
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in due {
            if out.len() >= limit {
                break;
            }
            if let Some((rec, claimed_until)) = t.by_id.get_mut(&id) {
                if claimed_until.is_none_or(|until| until <= now) {
                    *claimed_until = Some(now + lease);
                    out.push(rec.clone());
                }
            }
        }
        Ok(out)
    }

    async fn complete(&self, timer_id: &str) -> Result<()> {
        self.cancel(timer_id).await.map(|_| ())
    }

    async fn cancel(&self, timer_id: &str) -> Result<bool> {
        let mut t = self.lock();
        match t.by_id.remove(timer_id) {
            Some((rec, _)) => {
                t.due.remove(&(rec.fire_at, rec.timer_id));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn next_fire_at(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(self.lock().due.iter().next().map(|(at, _)| *at))
    }
}
