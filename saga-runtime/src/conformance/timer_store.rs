//! Conformance checks for [`TimerStore`]: idempotent create, due claims with leases,
//! exclusive claims under concurrency, complete / cancel, and the next fire time.
//!
//! A timer store is shared by everything that uses it, so the checks assert only about
//! their own timers (unique ids) and tolerate unrelated ones. A claim loop may claim
//! unrelated due timers too; run the suite against a store no live scheduler uses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use serde_json::json;
use tokio::sync::Barrier;

use super::{now_s, ok, unique};
use crate::domain::{SagaId, TimerKind};
use crate::port::{TimerRecord, TimerStore};

/// A lease long enough to outlast any check.
const LONG_LEASE: Duration = Duration::from_secs(60);
/// A lease the checks let expire.
const SHORT_LEASE: Duration = Duration::from_millis(150);

/// Runs every timer store check, in turn, on `store`.
pub async fn run_all_timer_store<T: TimerStore>(store: &Arc<T>) {
    let s = store.as_ref();
    check_create_is_idempotent(s).await;
    check_claim_returns_only_due(s).await;
    check_claims_are_exclusive(store).await;
    check_expired_lease_is_claimable_again(s).await;
    check_complete_and_cancel_remove(s).await;
    check_next_fire_at_is_earliest(s).await;
}

/// Creating the same timer twice keeps one timer; it is claimed back unchanged.
pub async fn check_create_is_idempotent<T: TimerStore>(store: &T) {
    let t = timer("tm-idem", now_s() - chrono::Duration::seconds(60));
    ok("create", store.create(t.clone()).await);
    ok("create again", store.create(t.clone()).await);
    let own = ids([&t]);
    let claimed = claim_own(store, Utc::now(), LONG_LEASE, &own).await;
    assert_eq!(
        claimed,
        std::slice::from_ref(&t),
        "a timer created twice must be claimed once, unchanged"
    );
    assert!(
        ok("cancel", store.cancel(&t.timer_id).await),
        "cancel of the created timer must return true"
    );
    assert!(
        !ok("cancel", store.cancel(&t.timer_id).await),
        "a timer created twice must exist once: a second cancel must return false"
    );
}

/// `claim_due(now)` returns the timers with `fire_at <= now` (inclusive) and none later.
pub async fn check_claim_returns_only_due<T: TimerStore>(store: &T) {
    let now = now_s();
    let sec = chrono::Duration::seconds;
    let past = timer("tm-due-past", now - sec(60));
    let at_now = timer("tm-due-now", now);
    let soon = timer("tm-due-soon", now + sec(1));
    let later = timer("tm-due-later", now + sec(3600));
    let all = [&past, &at_now, &soon, &later];
    for t in all {
        ok("create", store.create(t.clone()).await);
    }
    let claimed = claim_own(store, now, LONG_LEASE, &ids(all)).await;
    assert_eq!(
        by_id(&claimed),
        by_id(&[past.clone(), at_now.clone()]),
        "claim_due(now) must return exactly the timers with fire_at <= now"
    );
    cancel_all(store, all).await;
}

/// 50 due timers, 8 concurrent claimers claiming 5 at a time until none are left:
/// every timer is claimed exactly once.
pub async fn check_claims_are_exclusive<T: TimerStore>(store: &Arc<T>) {
    const TIMERS: usize = 50;
    const CLAIMERS: usize = 8;
    const LIMIT: usize = 5;
    let due = now_s() - chrono::Duration::seconds(60);
    let timers: Vec<TimerRecord> = (0..TIMERS).map(|_| timer("tm-race", due)).collect();
    for t in &timers {
        ok("create", store.create(t.clone()).await);
    }
    let own = Arc::new(ids(&timers));
    let barrier = Arc::new(Barrier::new(CLAIMERS));
    let handles: Vec<_> = (0..CLAIMERS)
        .map(|_| {
            let (store, own, barrier) = (Arc::clone(store), Arc::clone(&own), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let give_up = Instant::now() + Duration::from_secs(10);
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_due(Utc::now(), LIMIT, LONG_LEASE).await;
                    let batch = ok("claim_due", batch);
                    assert!(
                        batch.len() <= LIMIT,
                        "claim_due(limit = {LIMIT}) returned {} timers",
                        batch.len()
                    );
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(
                        batch
                            .into_iter()
                            .filter(|t| own.contains(&t.timer_id))
                            .map(|t| t.timer_id),
                    );
                    assert!(
                        Instant::now() < give_up,
                        "claimers still get timers after 10 s: are claims exclusive?"
                    );
                }
            })
        })
        .collect();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for handle in handles {
        for id in handle.await.expect("a claimer task panicked") {
            *count.entry(id).or_default() += 1;
        }
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "concurrent claimers got the same timer: {twice:?}"
    );
    assert_eq!(
        count.len(),
        TIMERS,
        "every due timer must be claimed by someone"
    );
    for t in &timers {
        ok("complete", store.complete(&t.timer_id).await);
    }
}

/// A claimed timer is not claimed again while its lease holds, and is claimable again
/// once the lease expired (a crashed claimer does not lose it).
pub async fn check_expired_lease_is_claimable_again<T: TimerStore>(store: &T) {
    let t = timer("tm-lease", now_s() - chrono::Duration::seconds(60));
    ok("create", store.create(t.clone()).await);
    let own = ids([&t]);
    let first = claim_own(store, Utc::now(), SHORT_LEASE, &own).await;
    assert_eq!(
        first,
        std::slice::from_ref(&t),
        "a due timer must be claimable"
    );
    let held = claim_own(store, Utc::now(), SHORT_LEASE, &own).await;
    assert!(
        held.is_empty(),
        "a timer must not be claimed again while its lease holds"
    );
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(100)).await;
    let again = claim_own(store, Utc::now(), LONG_LEASE, &own).await;
    assert_eq!(
        again,
        std::slice::from_ref(&t),
        "a timer whose lease expired must be claimable again"
    );
    ok("complete", store.complete(&t.timer_id).await);
}

/// `cancel` removes a timer (true, then false); `complete` removes a claimed timer for
/// good, even after its lease would have expired.
pub async fn check_complete_and_cancel_remove<T: TimerStore>(store: &T) {
    let due = now_s() - chrono::Duration::seconds(60);
    let cancelled = timer("tm-cancel", due);
    let completed = timer("tm-complete", due);
    let pending = timer("tm-pending", now_s() + chrono::Duration::seconds(3600));
    let all = [&cancelled, &completed, &pending];
    for t in all {
        ok("create", store.create(t.clone()).await);
    }
    assert!(
        ok("cancel", store.cancel(&cancelled.timer_id).await),
        "cancel of a pending timer must return true"
    );
    assert!(
        !ok("cancel", store.cancel(&cancelled.timer_id).await),
        "cancel of a cancelled timer must return false"
    );
    let own = ids(all);
    let claimed = claim_own(store, Utc::now(), SHORT_LEASE, &own).await;
    assert_eq!(
        claimed,
        std::slice::from_ref(&completed),
        "a cancelled timer must not be claimed"
    );
    ok("complete", store.complete(&completed.timer_id).await);
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(100)).await;
    let after = claim_own(store, Utc::now(), LONG_LEASE, &own).await;
    assert!(
        after.is_empty(),
        "a completed timer must never be claimed again, got {after:?}"
    );
    assert!(
        !ok("cancel", store.cancel(&completed.timer_id).await),
        "a completed timer is gone: cancel must return false"
    );
    assert!(ok("cancel", store.cancel(&pending.timer_id).await));
}

/// `next_fire_at` is the earliest `fire_at` among pending timers, claimed or not.
pub async fn check_next_fire_at_is_earliest<T: TimerStore>(store: &T) {
    let before = ok("next_fire_at", store.next_fire_at().await);
    // Earlier than anything in the store, so unrelated timers cannot interfere.
    let floor = before.map_or(now_s(), |b| b.min(now_s()));
    let early = floor.with_nanosecond(0).unwrap_or(floor) - chrono::Duration::days(1);
    let late_at = early + chrono::Duration::hours(1);
    let late = timer("tm-next-late", late_at);
    let first = timer("tm-next-early", early);
    ok("create", store.create(late.clone()).await);
    ok("create", store.create(first.clone()).await);
    let next = || async { ok("next_fire_at", store.next_fire_at().await) };
    assert_eq!(
        next().await,
        Some(early),
        "next_fire_at must be the earliest pending fire_at"
    );
    // Claiming "as of" `early` can only see our timer: nothing else is that old.
    let claimed = ok("claim_due", store.claim_due(early, 10, LONG_LEASE).await);
    assert_eq!(claimed, std::slice::from_ref(&first));
    assert_eq!(
        next().await,
        Some(early),
        "a claimed timer is still pending: next_fire_at must include it"
    );
    ok("complete", store.complete(&first.timer_id).await);
    let want = before.map_or(late_at, |b| b.min(late_at));
    assert_eq!(
        next().await,
        Some(want),
        "after completing the earliest timer, next_fire_at must move to the next one"
    );
    ok("cancel", store.cancel(&late.timer_id).await);
    assert_eq!(
        next().await,
        before,
        "after removing our timers, next_fire_at must be what it was"
    );
}

fn timer(label: &str, fire_at: DateTime<Utc>) -> TimerRecord {
    let timer_id = unique(label);
    TimerRecord {
        saga_id: SagaId::new(format!("{timer_id}-saga")),
        kind: TimerKind::Sleep,
        fire_at,
        attributes: json!({"seq": 3, "attempt": 1, "timer_id": timer_id}),
        timer_id,
    }
}

fn ids<'a>(timers: impl IntoIterator<Item = &'a TimerRecord>) -> BTreeSet<String> {
    timers.into_iter().map(|t| t.timer_id.clone()).collect()
}

fn by_id(timers: &[TimerRecord]) -> BTreeMap<&str, &TimerRecord> {
    timers.iter().map(|t| (t.timer_id.as_str(), t)).collect()
}

/// Claims as of `now` until a claim brings nothing new; returns what was claimed among
/// `own` (unrelated due timers get claimed too, and are ignored).
async fn claim_own<T: TimerStore>(
    store: &T,
    now: DateTime<Utc>,
    lease: Duration,
    own: &BTreeSet<String>,
) -> Vec<TimerRecord> {
    let mut seen = BTreeSet::new();
    let mut mine = Vec::new();
    loop {
        let batch = ok("claim_due", store.claim_due(now, 100, lease).await);
        let mut new = false;
        for t in batch {
            new |= seen.insert(t.timer_id.clone());
            if own.contains(&t.timer_id) {
                mine.push(t);
            }
        }
        if !new {
            return mine;
        }
    }
}

async fn cancel_all<'a, T: TimerStore>(
    store: &T,
    timers: impl IntoIterator<Item = &'a TimerRecord>,
) {
    for t in timers {
        ok("cancel", store.cancel(&t.timer_id).await);
    }
}
