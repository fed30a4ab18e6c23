//! Conformance checks for [`EventStore`]: optimistic appends, dense ids, history reads,
//! snapshots and the execution index.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tokio::sync::Barrier;

use super::{now_s, ok, unique};
use crate::domain::{EventType, HistoryEvent, SagaId, WorkflowStatus};
use crate::port::{EventStore, ExecutionFilter, ExecutionSummary, Snapshot};

/// Runs every event store check, in turn, on `store`.
pub async fn run_all_event_store<S: EventStore>(store: &Arc<S>) {
    let s = store.as_ref();
    check_unknown_saga_is_empty(s).await;
    check_ids_are_dense_from_zero(s).await;
    check_stale_append_conflicts_and_writes_nothing(s).await;
    check_misnumbered_append_is_rejected(s).await;
    check_history_from(s).await;
    check_concurrent_appends_one_wins(store).await;
    check_snapshot_latest_and_order(s).await;
    check_snapshot_pruning(s).await;
    check_list_by_workflow_type(s).await;
    check_list_by_status(s).await;
    check_list_by_start_time(s).await;
    check_list_by_last_event_time(s).await;
    check_list_by_search_attributes(s).await;
    check_list_limit(s).await;
}

/// `version` of a saga that was never written is 0 and its history is empty.
pub async fn check_unknown_saga_is_empty<S: EventStore>(store: &S) {
    let id = SagaId::new(unique("es-unknown"));
    assert_eq!(
        ok("version", store.version(&id).await),
        0,
        "version of an unknown saga must be 0"
    );
    assert!(
        ok("history", store.history(&id).await).is_empty(),
        "history of an unknown saga must be empty"
    );
    assert!(
        ok("history_from(3)", store.history_from(&id, 3).await).is_empty(),
        "history_from of an unknown saga must be empty"
    );
    assert_eq!(
        ok("latest_snapshot", store.latest_snapshot(&id).await),
        None,
        "an unknown saga has no snapshot"
    );
}

/// Several appends give ids 0, 1, 2, .. in order; each append returns the new version,
/// and the history reads back exactly what was written.
pub async fn check_ids_are_dense_from_zero<S: EventStore>(store: &S) {
    let id = SagaId::new(unique("es-dense"));
    let mut written = Vec::new();
    for batch in [1, 3, 1, 2] {
        let from = written.len() as u64;
        let events = signals(&id, from, batch);
        let version = ok("append", store.append(&id, from, events.clone()).await);
        written.extend(events);
        assert_eq!(
            version,
            written.len() as u64,
            "append must return the new version (history length)"
        );
        assert_eq!(ok("version", store.version(&id).await), version);
    }
    let history = ok("history", store.history(&id).await);
    let ids: Vec<u64> = history.iter().map(|e| e.event_id).collect();
    assert_eq!(
        ids,
        (0..written.len() as u64).collect::<Vec<_>>(),
        "event ids must be dense and ordered from 0"
    );
    assert_eq!(history, written, "history must read back what was appended");
}

/// An append at a stale `expected_version` is a `Concurrency` error and writes nothing:
/// neither a second start at version 0 nor a write behind the head.
pub async fn check_stale_append_conflicts_and_writes_nothing<S: EventStore>(store: &S) {
    let id = SagaId::new(unique("es-stale"));
    let mut first = vec![started(&id, "conf-stale", now_s())];
    first.extend(signals(&id, 1, 2));
    ok("append", store.append(&id, 0, first.clone()).await);

    let attempts = [
        (0, vec![started(&id, "conf-stale-again", now_s())]),
        (1, signals(&id, 1, 1)),
        (2, signals(&id, 2, 3)),
    ];
    for (stale, events) in attempts {
        match store.append(&id, stale, events).await {
            Ok(v) => panic!("append at stale version {stale} (store at 3) succeeded with {v}"),
            Err(e) => assert!(
                e.is_conflict(),
                "append at stale version {stale} must be a Concurrency error, got {e}"
            ),
        }
        assert_eq!(
            ok("version", store.version(&id).await),
            3,
            "a rejected append must not change the version"
        );
        assert_eq!(
            ok("history", store.history(&id).await),
            first,
            "a rejected append must not change the history"
        );
    }
    // An append ahead of the head would leave a gap.
    let result = store.append(&id, 5, signals(&id, 5, 1)).await;
    assert!(
        result.is_err(),
        "append at version 5 when the store is at 3 must fail, got {result:?}"
    );
    assert_eq!(ok("version", store.version(&id).await), 3);
    assert_eq!(ok("history", store.history(&id).await), first);
}

/// An append whose events are not numbered `expected_version, +1, ..`, or that carry
/// another saga's id, is rejected and writes nothing.
pub async fn check_misnumbered_append_is_rejected<S: EventStore>(store: &S) {
    let id = SagaId::new(unique("es-misnumbered"));
    let other = SagaId::new(unique("es-misnumbered-other"));
    let head = vec![started(&id, "conf-misnumbered", now_s())];
    ok("append", store.append(&id, 0, head.clone()).await);

    let mut gap = signals(&id, 1, 3);
    gap[1].event_id = 5;
    let cases = [
        ("ids start after expected_version", signals(&id, 2, 2)),
        ("ids start before expected_version", signals(&id, 0, 2)),
        ("ids have a gap", gap),
        ("events carry another saga id", signals(&other, 1, 1)),
    ];
    for (what, events) in cases {
        let result = store.append(&id, 1, events).await;
        assert!(
            result.is_err(),
            "append at version 1 where {what} must be rejected, got {result:?}"
        );
        assert_eq!(
            ok("version", store.version(&id).await),
            1,
            "a rejected append ({what}) must not change the version"
        );
        assert_eq!(
            ok("history", store.history(&id).await),
            head,
            "a rejected append ({what}) must not change the history"
        );
    }
    assert_eq!(
        ok("version", store.version(&other).await),
        0,
        "a rejected append must not write to the saga its events name"
    );
}

/// `history_from(n)` returns exactly the events `n..`, and nothing past the end.
pub async fn check_history_from<S: EventStore>(store: &S) {
    let id = SagaId::new(unique("es-from"));
    let mut events = vec![started(&id, "conf-from", now_s())];
    events.extend(signals(&id, 1, 5));
    ok("append", store.append(&id, 0, events.clone()).await);
    for n in 0..=7u64 {
        let got = ok("history_from", store.history_from(&id, n).await);
        let want = events.get(n as usize..).unwrap_or(&[]).to_vec();
        assert_eq!(
            got, want,
            "history_from({n}) must return exactly events {n}.."
        );
    }
}

/// Eight writers append at the same version at once: exactly one succeeds, the others
/// get a `Concurrency` error, and the history holds the winner's event only.
pub async fn check_concurrent_appends_one_wins<S: EventStore>(store: &Arc<S>) {
    const WRITERS: usize = 8;
    let id = SagaId::new(unique("es-race"));
    ok(
        "append",
        store
            .append(&id, 0, vec![started(&id, "conf-race", now_s())])
            .await,
    );
    let barrier = Arc::new(Barrier::new(WRITERS));
    let handles: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, barrier, id) = (Arc::clone(store), Arc::clone(&barrier), id.clone());
            tokio::spawn(async move {
                let event = event(&id, 1, EventType::SignalReceived, json!({"writer": writer}));
                barrier.wait().await;
                (writer, store.append(&id, 1, vec![event]).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for handle in handles {
        let (writer, result) = handle.await.expect("an appender task panicked");
        match result {
            Ok(version) => {
                assert_eq!(version, 2, "the winning append must return version 2");
                winners.push(writer);
            }
            Err(e) => assert!(
                e.is_conflict(),
                "a losing concurrent append must be a Concurrency error, got {e}"
            ),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {WRITERS} concurrent appends at the same version must win, \
         winners: {winners:?}"
    );
    let history = ok("history", store.history(&id).await);
    assert_eq!(history.len(), 2, "only the winner's event may be written");
    assert_eq!(
        history[1].attributes,
        json!({"writer": winners[0]}),
        "the stored event must be the winner's"
    );
}

/// Snapshots round-trip; `latest_snapshot` is the highest `last_event_id` whatever the
/// save order; `snapshots` is newest first; saving the same `last_event_id` again
/// keeps one.
pub async fn check_snapshot_latest_and_order<S: EventStore>(store: &S) {
    let id = saga_with_history(store, "es-snap", 12).await;
    for last in [4, 9, 2] {
        ok(
            "save_snapshot",
            store.save_snapshot(snapshot(&id, last), 10).await,
        );
    }
    let latest = ok("latest_snapshot", store.latest_snapshot(&id).await);
    assert_eq!(
        latest,
        Some(snapshot(&id, 9)),
        "latest_snapshot must be the highest last_event_id (and round-trip unchanged)"
    );
    assert_eq!(
        last_ids(&ok("snapshots", store.snapshots(&id).await)),
        [9, 4, 2],
        "snapshots must be newest (highest last_event_id) first"
    );
    ok(
        "save_snapshot",
        store.save_snapshot(snapshot(&id, 9), 10).await,
    );
    assert_eq!(
        last_ids(&ok("snapshots", store.snapshots(&id).await)),
        [9, 4, 2],
        "saving a snapshot at the same last_event_id again must keep one"
    );
    let other = saga_with_history(store, "es-snap-none", 1).await;
    assert!(
        ok("snapshots", store.snapshots(&other).await).is_empty(),
        "snapshots of another saga must not be visible"
    );
}

/// Saving 7 snapshots with `max_snapshots = 5` keeps the 5 newest.
pub async fn check_snapshot_pruning<S: EventStore>(store: &S) {
    let id = saga_with_history(store, "es-prune", 8).await;
    for last in 1..=7 {
        ok(
            "save_snapshot",
            store.save_snapshot(snapshot(&id, last), 5).await,
        );
    }
    assert_eq!(
        last_ids(&ok("snapshots", store.snapshots(&id).await)),
        [7, 6, 5, 4, 3],
        "after 7 saves with max_snapshots 5 the 5 newest must remain, newest first"
    );
    assert_eq!(
        ok("latest_snapshot", store.latest_snapshot(&id).await).map(|s| s.last_event_id),
        Some(7)
    );
}

/// Filtering by workflow type lists exactly that type's executions, with a correct
/// summary (type, status, start time, version).
pub async fn check_list_by_workflow_type<S: EventStore>(store: &S) {
    let (ty, other_ty) = (unique("wf-type"), unique("wf-type-other"));
    let t0 = now_s() - Duration::hours(1);
    let a = start(store, "es-type-a", &ty, t0, 0).await;
    let b = start(store, "es-type-b", &ty, t0 + Duration::seconds(1), 3).await;
    let c = start(store, "es-type-c", &other_ty, t0, 1).await;

    let listed = list(store, by_type(&ty)).await;
    assert_eq!(
        ids(&listed),
        [a.clone(), b.clone()],
        "listing by workflow_type must return that type's executions, oldest first"
    );
    let sa = &listed[0];
    assert_eq!(sa.workflow_type, ty);
    assert_eq!(sa.status, WorkflowStatus::Running);
    assert_eq!(
        sa.started_at, t0,
        "started_at must be the start event's time"
    );
    assert_eq!(sa.closed_at, None);
    assert_eq!(sa.version, 1);
    assert_eq!(listed[1].version, 4, "version must count every event");
    assert_eq!(ids(&list(store, by_type(&other_ty)).await), [c]);
}

/// A saga with a `WorkflowExecutionCompleted` event lists as `Completed` (with its
/// close time); a running one as `Running`.
pub async fn check_list_by_status<S: EventStore>(store: &S) {
    let ty = unique("wf-status");
    let t0 = now_s() - Duration::hours(1);
    let running = start(store, "es-status-running", &ty, t0, 1).await;
    let done = start(store, "es-status-done", &ty, t0 + Duration::seconds(1), 1).await;
    let closed_at = t0 + Duration::seconds(30);
    ok(
        "append",
        store
            .append(
                &done,
                2,
                vec![event_at(
                    &done,
                    2,
                    EventType::WorkflowExecutionCompleted,
                    closed_at,
                    json!({"output": 1}),
                )],
            )
            .await,
    );

    let completed = list(
        store,
        ExecutionFilter {
            status: Some(WorkflowStatus::Completed),
            ..by_type(&ty)
        },
    )
    .await;
    assert_eq!(
        ids(&completed),
        [done],
        "a saga with WorkflowExecutionCompleted must list as Completed"
    );
    assert_eq!(completed[0].closed_at, Some(closed_at));
    assert_eq!(completed[0].version, 3);
    let still_running = list(
        store,
        ExecutionFilter {
            status: Some(WorkflowStatus::Running),
            ..by_type(&ty)
        },
    )
    .await;
    assert_eq!(ids(&still_running), [running]);
    let failed = list(
        store,
        ExecutionFilter {
            status: Some(WorkflowStatus::Failed),
            ..by_type(&ty)
        },
    )
    .await;
    assert!(failed.is_empty(), "no saga of this type failed: {failed:?}");
}

/// `started_after` is inclusive, `started_before` exclusive.
pub async fn check_list_by_start_time<S: EventStore>(store: &S) {
    let ty = unique("wf-time");
    let t0 = now_s() - Duration::hours(2);
    let mut sagas = Vec::new();
    for (i, offset) in [0, 60, 120, 180].into_iter().enumerate() {
        let at = t0 + Duration::seconds(offset);
        sagas.push(start(store, &format!("es-time-{i}"), &ty, at, 1).await);
    }
    let window = |after: Option<i64>, before: Option<i64>| ExecutionFilter {
        started_after: after.map(|s| t0 + Duration::seconds(s)),
        started_before: before.map(|s| t0 + Duration::seconds(s)),
        ..by_type(&ty)
    };
    assert_eq!(
        ids(&list(store, window(Some(60), None)).await),
        sagas[1..],
        "started_after must be inclusive"
    );
    assert_eq!(
        ids(&list(store, window(None, Some(120))).await),
        sagas[..2],
        "started_before must be exclusive"
    );
    assert_eq!(
        ids(&list(store, window(Some(30), Some(180))).await),
        sagas[1..3],
        "started_after and started_before must both apply"
    );
}

/// `updated_at` is the time of the last event, moved by every append (the watchdog's
/// stall detector depends on it); `updated_before` is exclusive.
pub async fn check_list_by_last_event_time<S: EventStore>(store: &S) {
    let ty = unique("wf-updated");
    let t0 = now_s() - Duration::hours(3);
    let idle = start(store, "es-updated-idle", &ty, t0, 0).await;
    let moved = start(store, "es-updated-moved", &ty, t0, 0).await;
    let later = t0 + Duration::minutes(90);
    let poke = |saga: &SagaId, id: u64, at| {
        event_at(
            saga,
            id,
            EventType::SignalReceived,
            at,
            json!({"name": "poke"}),
        )
    };
    ok(
        "append",
        store.append(&moved, 1, vec![poke(&moved, 1, t0)]).await,
    );
    ok(
        "append",
        store.append(&moved, 2, vec![poke(&moved, 2, later)]).await,
    );

    let all = list(store, by_type(&ty)).await;
    let at = |id: &SagaId| all.iter().find(|s| s.saga_id == *id).map(|s| s.updated_at);
    assert_eq!(at(&idle), Some(t0), "updated_at of a new saga is its start");
    assert_eq!(
        at(&moved),
        Some(later),
        "updated_at must follow the last appended event"
    );
    let idle_before = |t| ExecutionFilter {
        updated_before: Some(t),
        ..by_type(&ty)
    };
    assert_eq!(
        ids(&list(store, idle_before(t0 + Duration::minutes(1))).await),
        std::slice::from_ref(&idle),
        "updated_before must leave out a saga that moved since"
    );
    assert!(
        list(store, idle_before(t0)).await.is_empty(),
        "updated_before must be exclusive"
    );
    assert_eq!(
        list(store, idle_before(later + Duration::seconds(1)))
            .await
            .len(),
        2
    );
}

/// Search attributes set by `UpsertSearchAttributes` are matched by equality; later
/// upserts overwrite and add keys.
pub async fn check_list_by_search_attributes<S: EventStore>(store: &S) {
    let ty = unique("wf-search");
    let customer = unique("customer");
    let t0 = now_s() - Duration::hours(1);
    let tagged = start(store, "es-search-tagged", &ty, t0, 1).await;
    let untagged = start(
        store,
        "es-search-untagged",
        &ty,
        t0 + Duration::seconds(1),
        1,
    )
    .await;
    upsert(
        store,
        &tagged,
        2,
        json!({"customer": customer, "tier": "gold"}),
    )
    .await;

    let by = |attrs: &[(&str, serde_json::Value)]| ExecutionFilter {
        search_attributes: attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..ExecutionFilter::default()
    };
    let found = list(store, by(&[("customer", json!(customer))])).await;
    assert_eq!(
        ids(&found),
        std::slice::from_ref(&tagged),
        "search attribute filter must match exactly the saga that set it"
    );
    let want: BTreeMap<String, serde_json::Value> = [
        ("customer".to_owned(), json!(customer)),
        ("tier".to_owned(), json!("gold")),
    ]
    .into();
    assert_eq!(found[0].search_attributes, want);

    upsert(
        store,
        &tagged,
        3,
        json!({"tier": "platinum", "region": "eu"}),
    )
    .await;
    let found = list(
        store,
        by(&[
            ("customer", json!(customer)),
            ("tier", json!("platinum")),
            ("region", json!("eu")),
        ]),
    )
    .await;
    assert_eq!(
        ids(&found),
        std::slice::from_ref(&tagged),
        "a later upsert must overwrite and add keys, keeping the others"
    );
    let stale = list(
        store,
        by(&[("customer", json!(customer)), ("tier", json!("gold"))]),
    )
    .await;
    assert!(stale.is_empty(), "an overwritten value must not match");
    let wrong = list(store, by(&[("customer", json!(unique("nobody")))])).await;
    assert!(wrong.is_empty(), "a value nobody set must match nothing");
    let untagged_listed = list(store, by_type(&ty)).await;
    assert_eq!(ids(&untagged_listed), [tagged, untagged]);
}

/// `limit` returns at most that many, oldest start first.
pub async fn check_list_limit<S: EventStore>(store: &S) {
    let ty = unique("wf-limit");
    let t0 = now_s() - Duration::hours(1);
    let mut sagas = Vec::new();
    // Started out of order, so oldest-first is not insertion order.
    for (i, offset) in [30, 10, 40, 0, 20].into_iter().enumerate() {
        sagas.push((
            offset,
            start(
                store,
                &format!("es-limit-{i}"),
                &ty,
                t0 + Duration::seconds(offset),
                1,
            )
            .await,
        ));
    }
    sagas.sort_by_key(|(offset, _)| *offset);
    let oldest: Vec<SagaId> = sagas.into_iter().map(|(_, id)| id).collect();
    let limited = list(
        store,
        ExecutionFilter {
            limit: Some(3),
            ..by_type(&ty)
        },
    )
    .await;
    assert_eq!(
        ids(&limited),
        oldest[..3],
        "limit 3 must return the 3 oldest executions, oldest first"
    );
    assert_eq!(ids(&list(store, by_type(&ty)).await), oldest);
    let none = list(
        store,
        ExecutionFilter {
            limit: Some(0),
            ..by_type(&ty)
        },
    )
    .await;
    assert!(none.is_empty(), "limit 0 must return nothing");
}

fn event(saga: &SagaId, id: u64, ty: EventType, attributes: serde_json::Value) -> HistoryEvent {
    event_at(saga, id, ty, now_s(), attributes)
}

fn event_at(
    saga: &SagaId,
    id: u64,
    ty: EventType,
    at: DateTime<Utc>,
    attributes: serde_json::Value,
) -> HistoryEvent {
    HistoryEvent::new(
        saga.clone(),
        id,
        ty,
        at,
        attributes,
        format!("trace-{saga}"),
    )
}

fn started(saga: &SagaId, workflow_type: &str, at: DateTime<Utc>) -> HistoryEvent {
    event_at(
        saga,
        0,
        EventType::WorkflowExecutionStarted,
        at,
        json!({"workflow_type": workflow_type, "input": {"n": 1}}),
    )
}

/// `count` `SignalReceived` events numbered from `from`.
fn signals(saga: &SagaId, from: u64, count: u64) -> Vec<HistoryEvent> {
    (from..from + count)
        .map(|i| {
            event(
                saga,
                i,
                EventType::SignalReceived,
                json!({"name": "poke", "n": i}),
            )
        })
        .collect()
}

/// Starts a saga of `workflow_type` at `at` followed by `extra` signal events.
async fn start<S: EventStore>(
    store: &S,
    label: &str,
    workflow_type: &str,
    at: DateTime<Utc>,
    extra: u64,
) -> SagaId {
    let id = SagaId::new(unique(label));
    let mut events = vec![started(&id, workflow_type, at)];
    events.extend(signals(&id, 1, extra));
    ok("append", store.append(&id, 0, events).await);
    id
}

async fn saga_with_history<S: EventStore>(store: &S, label: &str, len: u64) -> SagaId {
    start(store, label, &unique("wf-snap"), now_s(), len - 1).await
}

async fn upsert<S: EventStore>(store: &S, id: &SagaId, at: u64, attrs: serde_json::Value) {
    let e = event(
        id,
        at,
        EventType::UpsertSearchAttributes,
        json!({"search_attributes": attrs}),
    );
    ok("append", store.append(id, at, vec![e]).await);
}

fn snapshot(saga: &SagaId, last_event_id: u64) -> Snapshot {
    let state = format!("state-{last_event_id}").into_bytes();
    Snapshot {
        saga_id: saga.clone(),
        last_event_id,
        codec: "json".to_owned(),
        checksum: Some(format!("sum-{last_event_id}")),
        state,
        created_at: DateTime::from_timestamp(1_700_000_000 + last_event_id as i64, 0)
            .unwrap_or_default(),
    }
}

fn last_ids(snapshots: &[Snapshot]) -> Vec<u64> {
    snapshots.iter().map(|s| s.last_event_id).collect()
}

fn by_type(workflow_type: &str) -> ExecutionFilter {
    ExecutionFilter {
        workflow_type: Some(workflow_type.to_owned()),
        ..ExecutionFilter::default()
    }
}

async fn list<S: EventStore>(store: &S, filter: ExecutionFilter) -> Vec<ExecutionSummary> {
    let result = store.list_executions(&filter).await;
    ok(format!("list_executions({filter:?})"), result)
}

fn ids(summaries: &[ExecutionSummary]) -> Vec<SagaId> {
    summaries.iter().map(|s| s.saga_id.clone()).collect()
}
