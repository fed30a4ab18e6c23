//! The engine's cache of folded executions, bounded (like Temporal's
//! `max_cached_workflows`).
//!
//! Why a bound: an execution leaves the cache when this engine closes it, but with many
//! workers another engine often closes it (a start's first step runs on another
//! worker, a step on an activity queue, a recovery elsewhere), and the entry would
//! otherwise stay for the life of the process. Past the bound the least recently used
//! entries go; a later task for one of them loads it again from the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::Slot;
use crate::domain::SagaId;

struct Entry {
    slot: Slot,
    /// When it was last handed out (a tick of the cache's own clock).
    used: u64,
}

#[derive(Default)]
struct Entries {
    map: HashMap<SagaId, Entry>,
    tick: u64,
}

/// Folded executions by saga, at most `capacity` of them at rest.
pub(super) struct ExecutionCache {
    entries: Mutex<Entries>,
    capacity: usize,
}

impl ExecutionCache {
    pub(super) fn new(capacity: usize) -> Self {
        ExecutionCache {
            entries: Mutex::new(Entries::default()),
            capacity: capacity.max(1),
        }
    }

    /// A poisoned lock still holds a valid map.
    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot of `saga_id`, new (empty) if it has none; marks it used.
    pub(super) fn slot(&self, saga_id: &SagaId) -> Slot {
        let mut e = self.entries();
        e.tick += 1;
        let used = e.tick;
        let slot = match e.map.get_mut(saga_id) {
            Some(entry) => {
                entry.used = used;
                entry.slot.clone()
            }
            None => {
                let slot = Slot::default();
                let entry = Entry {
                    slot: slot.clone(),
                    used,
                };
                e.map.insert(saga_id.clone(), entry);
                slot
            }
        };
        if e.map.len() > self.capacity {
            self.shrink(&mut e);
        }
        slot
    }

    /// The slot of `saga_id` if it has one, without marking it used.
    pub(super) fn get(&self, saga_id: &SagaId) -> Option<Slot> {
        self.entries().map.get(saga_id).map(|e| e.slot.clone())
    }

    pub(super) fn evict(&self, saga_id: &SagaId) {
        self.entries().map.remove(saga_id);
    }

    pub(super) fn clear(&self) {
        self.entries().map.clear();
    }

    pub(super) fn len(&self) -> usize {
        self.entries().map.len()
    }

    /// Drops the least recently used entries nobody holds, down to an eighth below
    /// the capacity, so that the scan runs once per eighth of the capacity of new
    /// entries rather than on every one.
    ///
    /// An entry is held while its slot is cloned outside the map: a task is about to
    /// lock it or holds it locked. It stays, so that one execution never has two slots
    /// here (the store's version check would still catch the second, as a conflict).
    /// Under the map's lock no new clone can appear, so the count is exact.
    fn shrink(&self, e: &mut Entries) {
        let target = self.capacity - self.capacity / 8;
        let mut idle: Vec<(u64, SagaId)> = e
            .map
            .iter()
            .filter(|(_, entry)| Arc::strong_count(&entry.slot) == 1)
            .map(|(id, entry)| (entry.used, id.clone()))
            .collect();
        let excess = e.map.len().saturating_sub(target).min(idle.len());
        if excess == 0 {
            return;
        }
        idle.select_nth_unstable(excess - 1);
        for (_, id) in &idle[..excess] {
            e.map.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> SagaId {
        SagaId::new(format!("s{n}"))
    }

    #[test]
    fn keeps_the_most_recently_used_within_the_capacity() {
        let cache = ExecutionCache::new(16);
        for n in 0..16 {
            cache.slot(&id(n));
        }
        // Used again: the most recent now, whatever its age.
        cache.slot(&id(0));
        cache.slot(&id(16));
        // 17 > 16: down to 14, the oldest three gone (s1, s2, s3).
        assert_eq!(cache.len(), 14);
        assert!(cache.get(&id(0)).is_some());
        assert!(cache.get(&id(16)).is_some());
        for n in 1..=3 {
            assert!(cache.get(&id(n)).is_none(), "s{n} was least recently used");
        }
        assert!(cache.get(&id(4)).is_some());
    }

    #[test]
    fn a_held_slot_is_never_dropped() {
        let cache = ExecutionCache::new(2);
        let held = cache.slot(&id(0));
        for n in 1..10 {
            cache.slot(&id(n));
        }
        assert!(cache.len() <= 2, "{}", cache.len());
        let again = cache.get(&id(0)).expect("the held slot stays");
        assert!(Arc::ptr_eq(&held, &again), "one slot per execution");
    }
}
