//! Conformance checks for [`WorkflowStore::commit`]: a workflow task's events, timer
//! changes and snapshot are written together or not at all.
//!
//! The default `commit` (append, then the rest) passes these checks too: a stale
//! commit fails at the append, before anything else is written. What it does not give
//! is atomicity against a crash between the steps, which no black-box check can see.

use std::sync::Arc;

use chrono::Duration;
use serde_json::json;
use tokio::sync::Barrier;

use super::{now_s, ok, unique};
use crate::domain::{EventType, HistoryEvent, SagaId, TimerKind};
use crate::port::{Commit, Snapshot, Task, TaskKind, TimerRecord, WorkflowStore};

/// Runs every workflow store check, in turn, on `store`.
pub async fn run_all_workflow_store<S: WorkflowStore>(store: &Arc<S>) {
    let s = store.as_ref();
    check_good_commit_writes_everything(s).await;
    check_stale_commit_writes_nothing(s).await;
    check_misnumbered_commit_writes_nothing(s).await;
    check_concurrent_commits_one_wins(store).await;
    check_concurrent_commits_across_sagas(store).await;
    super::outbox::run_all_outbox(s).await;
}

/// A commit at the current version appends its events, creates and cancels its
/// timers and saves its snapshot (pruned to `max_snapshots`).
pub async fn check_good_commit_writes_everything<S: WorkflowStore>(store: &S) {
    let (id, old_timer) = saga_with_timer(store, "ws-good").await;
    let new_timer = timer(&id, "ws-good-timer");
    for last in [0, 1] {
        ok(
            "save_snapshot",
            store.save_snapshot(snapshot(&id, last), 10).await,
        );
    }
    let commit = Commit {
        saga_id: id.clone(),
        expected_version: 1,
        events: signals(&id, 1, 3),
        create_timers: vec![new_timer.clone()],
        cancel_timers: vec![old_timer.timer_id.clone()],
        snapshot: Some(snapshot(&id, 3)),
        max_snapshots: 2,
        tasks: Vec::new(),
        redeliver_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        settle_tasks: Vec::new(),
    };
    let version = ok("commit", store.commit(commit.clone()).await);
    assert_eq!(version, 4, "commit must return the new version");
    assert_eq!(ok("version", store.version(&id).await), 4);
    let history = ok("history", store.history(&id).await);
    assert_eq!(
        history[1..],
        commit.events[..],
        "a good commit must append its events"
    );
    assert_eq!(
        ok("latest_snapshot", store.latest_snapshot(&id).await),
        Some(snapshot(&id, 3)),
        "a good commit must save its snapshot"
    );
    let kept: Vec<u64> = ok("snapshots", store.snapshots(&id).await)
        .iter()
        .map(|s| s.last_event_id)
        .collect();
    assert_eq!(
        kept,
        [3, 1],
        "a commit's snapshot is pruned to max_snapshots"
    );
    assert!(
        !ok("cancel", store.cancel(&old_timer.timer_id).await),
        "a good commit must cancel the timers it names"
    );
    assert!(
        ok("cancel", store.cancel(&new_timer.timer_id).await),
        "a good commit must create its timers"
    );
}

/// A commit at a stale version is a `Concurrency` error and writes nothing: no event,
/// no new timer, no cancelled timer, no snapshot.
pub async fn check_stale_commit_writes_nothing<S: WorkflowStore>(store: &S) {
    let (id, old_timer) = saga_with_timer(store, "ws-stale").await;
    ok("append", store.append(&id, 1, signals(&id, 1, 1)).await);
    let before = ok("history", store.history(&id).await);
    let new_timer = timer(&id, "ws-stale-timer");
    let stale = Commit {
        saga_id: id.clone(),
        expected_version: 1,
        events: signals(&id, 1, 2),
        create_timers: vec![new_timer.clone()],
        cancel_timers: vec![old_timer.timer_id.clone()],
        snapshot: Some(snapshot(&id, 2)),
        max_snapshots: 5,
        tasks: Vec::new(),
        redeliver_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        settle_tasks: Vec::new(),
    };
    match store.commit(stale).await {
        Ok(v) => panic!("a commit at stale version 1 (store at 2) succeeded with {v}"),
        Err(e) => assert!(
            e.is_conflict(),
            "a stale commit must be a Concurrency error, got {e}"
        ),
    }
    assert_stale_wrote_nothing(store, &id, &before, &old_timer, &new_timer).await;
}

/// A commit whose events are misnumbered is rejected and writes nothing.
pub async fn check_misnumbered_commit_writes_nothing<S: WorkflowStore>(store: &S) {
    let (id, old_timer) = saga_with_timer(store, "ws-misnumbered").await;
    let before = ok("history", store.history(&id).await);
    let new_timer = timer(&id, "ws-misnumbered-timer");
    let bad = Commit {
        saga_id: id.clone(),
        expected_version: 1,
        events: signals(&id, 2, 2),
        create_timers: vec![new_timer.clone()],
        cancel_timers: vec![old_timer.timer_id.clone()],
        snapshot: Some(snapshot(&id, 2)),
        max_snapshots: 5,
        tasks: Vec::new(),
        redeliver_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        settle_tasks: Vec::new(),
    };
    let result = store.commit(bad).await;
    assert!(
        result.is_err(),
        "a commit whose events start at 2 for version 1 must fail, got {result:?}"
    );
    assert_stale_wrote_nothing(store, &id, &before, &old_timer, &new_timer).await;
}

/// Eight commits at the same version at once, each with its own timer and snapshot:
/// exactly one wins, and only its event, timer and snapshot are stored.
pub async fn check_concurrent_commits_one_wins<S: WorkflowStore>(store: &Arc<S>) {
    const WRITERS: usize = 8;
    let (id, _old) = saga_with_timer(store.as_ref(), "ws-race").await;
    let barrier = Arc::new(Barrier::new(WRITERS));
    let handles: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, barrier, id) = (Arc::clone(store), Arc::clone(&barrier), id.clone());
            tokio::spawn(async move {
                let t = timer(&id, "ws-race-timer");
                let mut snap = snapshot(&id, 1);
                snap.state = format!("writer-{writer}").into_bytes();
                let commit = Commit {
                    saga_id: id.clone(),
                    expected_version: 1,
                    events: vec![event(&id, 1, json!({"writer": writer}))],
                    create_timers: vec![t.clone()],
                    cancel_timers: Vec::new(),
                    snapshot: Some(snap),
                    max_snapshots: 5,
                    tasks: Vec::new(),
                    redeliver_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
                    settle_tasks: Vec::new(),
                };
                barrier.wait().await;
                (writer, t, store.commit(commit).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut timers = Vec::new();
    for handle in handles {
        let (writer, t, result) = handle.await.expect("a committer task panicked");
        match result {
            Ok(v) => {
                assert_eq!(v, 2, "the winning commit must return version 2");
                winners.push(writer);
            }
            Err(e) => assert!(
                e.is_conflict(),
                "a losing concurrent commit must be a Concurrency error, got {e}"
            ),
        }
        timers.push((writer, t));
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {WRITERS} concurrent commits must win: {winners:?}"
    );
    let winner = winners[0];
    let history = ok("history", store.history(&id).await);
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].attributes, json!({"writer": winner}));
    let snap = ok("latest_snapshot", store.latest_snapshot(&id).await);
    assert_eq!(
        snap.map(|s| s.state),
        Some(format!("writer-{winner}").into_bytes()),
        "the stored snapshot must be the winner's"
    );
    for (writer, t) in timers {
        assert_eq!(
            ok("cancel", store.cancel(&t.timer_id).await),
            writer == winner,
            "only the winner's timer may exist (writer {writer}, winner {winner})"
        );
    }
}

/// Many sagas committing at once, as a busy engine does (and as a store that groups
/// concurrent commits into one transaction sees them): on each of 16 sagas two writers
/// race at the current version and a third commits at a stale one; 16 new sagas are
/// each created by two racing creators. No commit carries a snapshot. Every commit is
/// judged on its own: per saga exactly one winner, whose events, timer changes, outbox
/// settle and outbox task are all written, and nothing of any loser's.
pub async fn check_concurrent_commits_across_sagas<S: WorkflowStore>(store: &Arc<S>) {
    const SAGAS: usize = 16;
    // Due long ago, at an instant no other check claims at.
    let due = chrono::DateTime::from_timestamp(900_000_000, 0).unwrap_or_default();
    let mut existing = Vec::with_capacity(SAGAS);
    for _ in 0..SAGAS {
        let (id, old_timer) = saga_with_timer(store.as_ref(), "ws-many").await;
        let seed = outbox_task(&id, "seed");
        let mut c = Commit::events_only(&id, 1, signals(&id, 1, 1));
        c.tasks = vec![seed.clone()];
        c.redeliver_at = due;
        assert_eq!(ok("commit", store.commit(c).await), 2);
        existing.push((id, old_timer, seed));
    }
    let created: Vec<SagaId> = (0..SAGAS)
        .map(|_| SagaId::new(unique("ws-many-new")))
        .collect();

    // (saga, writer, its commit): writers 0 and 1 race at version 2, writer 2 is stale;
    // on a new saga, creators 0 and 1 race at version 0.
    let mut commits = Vec::new();
    for (id, old_timer, seed) in &existing {
        for writer in 0..3u64 {
            let expected = if writer == 2 { 1 } else { 2 };
            commits.push((
                id.clone(),
                writer,
                Commit {
                    create_timers: vec![timer(id, &format!("ws-many-w{writer}"))],
                    cancel_timers: vec![old_timer.timer_id.clone()],
                    tasks: vec![outbox_task(id, &format!("w{writer}"))],
                    redeliver_at: due,
                    settle_tasks: vec![seed.dedup_id.clone()],
                    ..Commit::events_only(
                        id,
                        expected,
                        vec![event(id, expected, json!({"writer": writer}))],
                    )
                },
            ));
        }
    }
    for id in &created {
        for writer in 0..2u64 {
            let start = HistoryEvent::new(
                id.clone(),
                0,
                EventType::WorkflowExecutionStarted,
                now_s(),
                json!({"workflow_type": "wf-ws-many", "input": writer}),
                format!("trace-{id}"),
            );
            commits.push((
                id.clone(),
                writer,
                Commit {
                    create_timers: vec![timer(id, &format!("ws-many-c{writer}"))],
                    tasks: vec![outbox_task(id, &format!("w{writer}"))],
                    redeliver_at: due,
                    ..Commit::events_only(id, 0, vec![start])
                },
            ));
        }
    }
    let barrier = Arc::new(Barrier::new(commits.len()));
    let handles: Vec<_> = commits
        .into_iter()
        .map(|(id, writer, commit)| {
            let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
            tokio::spawn(async move {
                let timer = commit.create_timers[0].timer_id.clone();
                barrier.wait().await;
                (id, writer, timer, store.commit(commit).await)
            })
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.expect("a committer task panicked"));
    }

    let claimed: Vec<Task> = ok(
        "claim_tasks",
        store
            .claim_tasks(due, std::time::Duration::from_secs(3_600), 100_000)
            .await,
    );
    let sagas: Vec<&SagaId> = existing.iter().map(|e| &e.0).chain(&created).collect();
    for saga in sagas {
        let mine: Vec<_> = results.iter().filter(|r| r.0 == *saga).collect();
        let new_saga = created.contains(saga);
        let mut winners = Vec::new();
        for (_, writer, _, result) in &mine {
            match result {
                Ok(v) => {
                    assert_eq!(
                        *v,
                        if new_saga { 1 } else { 3 },
                        "{saga}: writer {writer} won with the wrong version"
                    );
                    winners.push(*writer);
                }
                Err(e) => assert!(
                    e.is_conflict(),
                    "{saga}: a losing commit must be a Concurrency error, got {e}"
                ),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "{saga}: exactly one commit must win: {winners:?}"
        );
        let winner = winners[0];
        assert!(winner < 2, "{saga}: the stale commit won");
        let history = ok("history", store.history(saga).await);
        let last = history.last().expect("a history");
        if new_saga {
            assert_eq!(history.len(), 1, "{saga}: {history:?}");
            assert_eq!(last.attributes["input"], json!(winner));
        } else {
            assert_eq!(history.len(), 3, "{saga}: {history:?}");
            assert_eq!(last.attributes, json!({"writer": winner}));
        }
        for (_, writer, timer, _) in &mine {
            assert_eq!(
                ok("cancel", store.cancel(timer).await),
                *writer == winner,
                "{saga}: only the winner's timer may exist (writer {writer}, winner {winner})"
            );
        }
        let tasks: Vec<&str> = claimed
            .iter()
            .filter(|t| t.saga_id == *saga)
            .map(|t| t.dedup_id.as_str())
            .collect();
        assert_eq!(
            tasks,
            [outbox_task(saga, &format!("w{winner}")).dedup_id.as_str()],
            "{saga}: the outbox must hold the winner's task alone (the seed settled)"
        );
    }
    for (_, old_timer, _) in &existing {
        assert!(
            !ok("cancel", store.cancel(&old_timer.timer_id).await),
            "the winner must have cancelled the old timer"
        );
    }
}

fn outbox_task(saga: &SagaId, label: &str) -> Task {
    Task {
        kind: TaskKind::Activity,
        saga_id: saga.clone(),
        queue: "conformance".to_owned(),
        dedup_id: format!("{saga}:{label}"),
        payload: label.as_bytes().to_vec(),
    }
}

async fn assert_stale_wrote_nothing<S: WorkflowStore>(
    store: &S,
    id: &SagaId,
    before: &[HistoryEvent],
    old_timer: &TimerRecord,
    new_timer: &TimerRecord,
) {
    assert_eq!(
        ok("history", store.history(id).await),
        before,
        "a rejected commit must not write events"
    );
    assert_eq!(ok("version", store.version(id).await), before.len() as u64);
    assert_eq!(
        ok("latest_snapshot", store.latest_snapshot(id).await),
        None,
        "a rejected commit must not save its snapshot"
    );
    assert!(
        !ok("cancel", store.cancel(&new_timer.timer_id).await),
        "a rejected commit must not create its timers"
    );
    assert!(
        ok("cancel", store.cancel(&old_timer.timer_id).await),
        "a rejected commit must not cancel timers"
    );
}

/// A saga with its start event and a pending timer.
async fn saga_with_timer<S: WorkflowStore>(store: &S, label: &str) -> (SagaId, TimerRecord) {
    let id = SagaId::new(unique(label));
    let t = timer(&id, &format!("{label}-old"));
    let start = HistoryEvent::new(
        id.clone(),
        0,
        EventType::WorkflowExecutionStarted,
        now_s(),
        json!({"workflow_type": unique("wf-ws"), "input": null}),
        format!("trace-{id}"),
    );
    let commit = Commit {
        saga_id: id.clone(),
        expected_version: 0,
        events: vec![start],
        create_timers: vec![t.clone()],
        cancel_timers: Vec::new(),
        snapshot: None,
        max_snapshots: 5,
        tasks: Vec::new(),
        redeliver_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        settle_tasks: Vec::new(),
    };
    assert_eq!(ok("commit", store.commit(commit).await), 1);
    (id, t)
}

fn event(saga: &SagaId, id: u64, attributes: serde_json::Value) -> HistoryEvent {
    HistoryEvent::new(
        saga.clone(),
        id,
        EventType::SignalReceived,
        now_s(),
        attributes,
        format!("trace-{saga}"),
    )
}

fn signals(saga: &SagaId, from: u64, count: u64) -> Vec<HistoryEvent> {
    (from..from + count)
        .map(|i| event(saga, i, json!({"name": "poke", "n": i})))
        .collect()
}

fn timer(saga: &SagaId, label: &str) -> TimerRecord {
    TimerRecord {
        timer_id: unique(label),
        saga_id: saga.clone(),
        kind: TimerKind::Sleep,
        // Far in the future: no live scheduler would claim it during the check.
        fire_at: now_s() + Duration::days(365),
        attributes: json!({"seq": 1}),
    }
}

fn snapshot(saga: &SagaId, last_event_id: u64) -> Snapshot {
    Snapshot {
        saga_id: saga.clone(),
        last_event_id,
        codec: "json".to_owned(),
        state: format!("state-{last_event_id}").into_bytes(),
        checksum: None,
        created_at: chrono::DateTime::from_timestamp(1_700_000_000 + last_event_id as i64, 0)
            .unwrap_or_default(),
    }
}
