//! Conformance checks for the [`Outbox`](crate::port::Outbox) part of a [`WorkflowStore`]: tasks are written
//! with their commit, claimed when due under a lease, and settled by a later commit,
//! by `settle_tasks`, or by the commit that closes the execution; `unsettled_tasks`
//! lists a saga's rows as they stand.
//!
//! The outbox is one table per store, so the checks look only at the tasks of their
//! own sagas, and claim at instants of their own (an hour apart, far in the past) so
//! that other checks' tasks, due now or later, are not taken.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::{now_s, ok, unique};
use crate::domain::{EventType, HistoryEvent, SagaId};
use crate::port::{Commit, Task, TaskKind, WorkflowStore};

/// Runs every outbox check, in turn, on `store`.
pub async fn run_all_outbox<S: WorkflowStore>(store: &S) {
    check_commit_writes_tasks_claimed_when_due(store).await;
    check_settled_tasks_are_not_claimed(store).await;
    check_stale_commit_writes_no_tasks(store).await;
    check_closing_commit_settles_every_task(store).await;
    check_deferred_tasks_wait_until_their_time(store).await;
}

/// A commit's tasks are kept once each, claimed from their `redeliver_at` on, and not
/// claimed again until the lease runs out.
pub async fn check_commit_writes_tasks_claimed_when_due<S: WorkflowStore>(store: &S) {
    let at = instant(1);
    let id = started(store, "ob-claim").await;
    let tasks = vec![
        task(&id, 1, TaskKind::Activity),
        task(&id, 2, TaskKind::Workflow),
    ];
    let before = ok("outbox_len", store.outbox_len().await);
    let mut c = Commit::events_only(&id, 1, vec![signal(&id, 1)]);
    c.tasks = tasks.clone();
    c.redeliver_at = at;
    ok("commit", store.commit(c).await);
    // The same task again (a retried publish of the same event) is one row.
    let mut again = Commit::events_only(&id, 2, vec![signal(&id, 2)]);
    again.tasks = vec![tasks[0].clone()];
    again.redeliver_at = at;
    ok("commit", store.commit(again).await);
    assert_eq!(
        ok("outbox_len", store.outbox_len().await),
        before + 2,
        "a commit's tasks must be kept once each"
    );

    let lease = Duration::from_secs(60);
    let early = claim(store, &id, at - TimeDelta::seconds(1), lease).await;
    assert!(
        early.is_empty(),
        "a task must not be claimed before it is due: {early:?}"
    );
    let claimed = claim(store, &id, at, lease).await;
    assert_eq!(
        sorted(claimed),
        sorted(tasks.clone()),
        "due tasks must be claimed, exactly as committed"
    );
    let leased = claim(store, &id, at + TimeDelta::seconds(30), lease).await;
    assert!(
        leased.is_empty(),
        "a claimed task must not be claimed again within its lease"
    );
    let expired = claim(store, &id, at + TimeDelta::seconds(61), lease).await;
    assert_eq!(
        sorted(expired),
        sorted(tasks),
        "a task must be claimable again after its lease"
    );
    settle_all(store, &id).await;
}

/// A commit's `settle_tasks` and `settle_tasks` remove tasks; unknown ids are ignored.
pub async fn check_settled_tasks_are_not_claimed<S: WorkflowStore>(store: &S) {
    let at = instant(2);
    let id = started(store, "ob-settle").await;
    let (a, b, c) = (
        task(&id, 1, TaskKind::Activity),
        task(&id, 2, TaskKind::Activity),
        task(&id, 3, TaskKind::Activity),
    );
    let before = ok("outbox_len", store.outbox_len().await);
    let mut first = Commit::events_only(&id, 1, vec![signal(&id, 1)]);
    first.tasks = vec![a.clone(), b.clone()];
    first.redeliver_at = at;
    ok("commit", store.commit(first).await);
    // The next commit records `a`'s result and causes `c`.
    let mut second = Commit::events_only(&id, 2, vec![signal(&id, 2)]);
    second.tasks = vec![c.clone()];
    second.redeliver_at = at;
    second.settle_tasks = vec![a.dedup_id.clone()];
    ok("commit", store.commit(second).await);
    assert_eq!(
        unsettled(store, &id).await,
        [b.dedup_id.as_str(), c.dedup_id.as_str()],
        "unsettled_tasks must list the saga's rows, those settled by a commit left out"
    );
    let lease = Duration::from_secs(1);
    assert_eq!(
        sorted(claim(store, &id, at, lease).await),
        sorted(vec![b.clone(), c.clone()]),
        "a task settled by a commit must not be claimed"
    );
    ok(
        "settle_tasks",
        store
            .settle_tasks(&id, &[b.dedup_id.clone(), format!("{id}:999")])
            .await,
    );
    assert_eq!(
        claim(store, &id, at + TimeDelta::hours(1), lease).await,
        vec![c.clone()],
        "a task settled by settle_tasks must not be claimed"
    );
    assert_eq!(
        unsettled(store, &id).await,
        [c.dedup_id.as_str()],
        "unsettled_tasks must leave out a task settled by settle_tasks"
    );
    settle_all(store, &id).await;
    assert_eq!(ok("outbox_len", store.outbox_len().await), before);
    assert!(unsettled(store, &id).await.is_empty());
}

/// A commit rejected for its version writes none of its tasks and settles nothing.
pub async fn check_stale_commit_writes_no_tasks<S: WorkflowStore>(store: &S) {
    let at = instant(3);
    let id = started(store, "ob-stale").await;
    let kept = task(&id, 1, TaskKind::Activity);
    let mut first = Commit::events_only(&id, 1, vec![signal(&id, 1)]);
    first.tasks = vec![kept.clone()];
    first.redeliver_at = at;
    ok("commit", store.commit(first).await);
    let before = ok("outbox_len", store.outbox_len().await);
    let mut stale = Commit::events_only(&id, 1, vec![signal(&id, 1)]);
    stale.tasks = vec![task(&id, 5, TaskKind::Activity)];
    stale.redeliver_at = at;
    stale.settle_tasks = vec![kept.dedup_id.clone()];
    let err = store
        .commit(stale)
        .await
        .expect_err("a stale commit must fail");
    assert!(
        err.is_conflict(),
        "a stale commit must be a conflict, got {err}"
    );
    assert_eq!(
        ok("outbox_len", store.outbox_len().await),
        before,
        "a stale commit must not write tasks"
    );
    assert_eq!(
        claim(store, &id, at, Duration::from_secs(1)).await,
        vec![kept.clone()],
        "a stale commit must neither add nor settle tasks"
    );
    assert_eq!(unsettled(store, &id).await, [kept.dedup_id.as_str()]);
    settle_all(store, &id).await;
}

/// The commit that closes an execution settles all of its tasks, and only its own.
pub async fn check_closing_commit_settles_every_task<S: WorkflowStore>(store: &S) {
    let at = instant(4);
    let id = started(store, "ob-close").await;
    let other = started(store, "ob-close-other").await;
    for (saga, n) in [(&id, 1), (&other, 1)] {
        let mut c = Commit::events_only(saga, n, vec![signal(saga, n)]);
        c.tasks = vec![
            task(saga, n, TaskKind::Activity),
            task(saga, n + 1, TaskKind::Activity),
        ];
        c.redeliver_at = at;
        ok("commit", store.commit(c).await);
    }
    let done = HistoryEvent::new(
        id.clone(),
        2,
        EventType::WorkflowExecutionCompleted,
        now_s(),
        json!({"output": null}),
        format!("trace-{id}"),
    );
    ok(
        "commit",
        store.commit(Commit::events_only(&id, 2, vec![done])).await,
    );
    let lease = Duration::from_secs(1);
    assert!(
        claim(store, &id, at, lease).await.is_empty(),
        "closing an execution must settle its tasks"
    );
    assert!(
        unsettled(store, &id).await.is_empty(),
        "unsettled_tasks must list nothing of a closed execution"
    );
    assert_eq!(
        unsettled(store, &other).await,
        [format!("{other}:1"), format!("{other}:2")],
        "unsettled_tasks must list only its own saga's rows"
    );
    // (The claim above leased the other saga's tasks too: claim after the lease.)
    assert_eq!(
        claim(store, &other, at + TimeDelta::hours(1), lease)
            .await
            .len(),
        2,
        "closing an execution must not settle another's tasks"
    );
    settle_all(store, &other).await;
}

/// `defer_tasks` keeps a task from being claimed until its new time, never brings a
/// task forward, touches only the named tasks of its saga, and ignores unknown ids.
pub async fn check_deferred_tasks_wait_until_their_time<S: WorkflowStore>(store: &S) {
    let at = instant(5);
    let id = started(store, "ob-defer").await;
    let (held, free) = (
        task(&id, 1, TaskKind::Activity),
        task(&id, 2, TaskKind::Activity),
    );
    let mut c = Commit::events_only(&id, 1, vec![signal(&id, 1)]);
    c.tasks = vec![held.clone(), free.clone()];
    c.redeliver_at = at;
    ok("commit", store.commit(c).await);
    let later = at + TimeDelta::minutes(10);
    ok(
        "defer_tasks",
        store
            .defer_tasks(&id, &[held.dedup_id.clone(), format!("{id}:999")], later)
            .await,
    );
    let lease = Duration::from_secs(3_600);
    assert_eq!(
        claim(store, &id, at, lease).await,
        vec![free],
        "a deferred task must not be claimed before its new time; the others must"
    );
    // Deferring to an earlier time than the row's leaves it as it was.
    ok(
        "defer_tasks",
        store
            .defer_tasks(
                &id,
                std::slice::from_ref(&held.dedup_id),
                at + TimeDelta::minutes(1),
            )
            .await,
    );
    assert!(
        claim(store, &id, at + TimeDelta::minutes(2), lease)
            .await
            .is_empty(),
        "defer_tasks must never make a task due sooner"
    );
    assert_eq!(
        claim(store, &id, later, lease).await,
        vec![held],
        "a deferred task must be claimed from its new time on"
    );
    settle_all(store, &id).await;
}

/// Claim instant `n` of this suite: hours apart, years before any real task is due.
fn instant(n: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_000_000_000 + n * 3_600, 0).unwrap_or_default()
}

/// Claims at `now` and keeps the tasks of `saga` (the outbox holds other checks' too).
async fn claim<S: WorkflowStore>(
    store: &S,
    saga: &SagaId,
    now: DateTime<Utc>,
    lease: Duration,
) -> Vec<Task> {
    ok("claim_tasks", store.claim_tasks(now, lease, 10_000).await)
        .into_iter()
        .filter(|t| t.saga_id == *saga)
        .collect()
}

async fn unsettled<S: WorkflowStore>(store: &S, saga: &SagaId) -> Vec<String> {
    ok("unsettled_tasks", store.unsettled_tasks(saga).await)
}

async fn settle_all<S: WorkflowStore>(store: &S, saga: &SagaId) {
    let ids: Vec<String> = (0..10).map(|n| format!("{saga}:{n}")).collect();
    ok("settle_tasks", store.settle_tasks(saga, &ids).await);
}

fn sorted(tasks: Vec<Task>) -> Vec<Task> {
    let order: BTreeSet<String> = tasks.iter().map(|t| t.dedup_id.clone()).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for id in order {
        out.extend(tasks.iter().filter(|t| t.dedup_id == id).take(1).cloned());
    }
    out
}

async fn started<S: WorkflowStore>(store: &S, label: &str) -> SagaId {
    let id = SagaId::new(unique(label));
    let start = HistoryEvent::new(
        id.clone(),
        0,
        EventType::WorkflowExecutionStarted,
        now_s(),
        json!({"workflow_type": unique("wf-ob"), "input": null}),
        format!("trace-{id}"),
    );
    ok(
        "commit",
        store.commit(Commit::events_only(&id, 0, vec![start])).await,
    );
    id
}

fn signal(saga: &SagaId, event_id: u64) -> HistoryEvent {
    HistoryEvent::new(
        saga.clone(),
        event_id,
        EventType::SignalReceived,
        now_s(),
        json!({"name": "poke"}),
        format!("trace-{saga}"),
    )
}

/// The task caused by event `event_id`, with a payload that is not valid UTF-8, so an
/// adapter must store it as bytes.
fn task(saga: &SagaId, event_id: u64, kind: TaskKind) -> Task {
    Task {
        kind,
        saga_id: saga.clone(),
        queue: "conformance".to_owned(),
        dedup_id: format!("{saga}:{event_id}"),
        payload: vec![0xff, 0x00, event_id as u8],
    }
}
