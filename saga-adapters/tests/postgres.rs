//! The PostgreSQL store and signal dispatcher: the conformance suites and every engine
//! scenario, each test in its own schema (dropped at the end). Without a server the
//! tests skip, unless `CI` is set, where they fail.
#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;

use common::held::Held;
use common::pg::with_schema;
use saga_adapters::PostgresStore;
use saga_runtime::conformance;
use saga_runtime::conformance::engine as scenario;

async fn connect(config: saga_adapters::PostgresConfig) -> PostgresStore {
    PostgresStore::connect_with(config)
        .await
        .expect("connect the PostgreSQL store")
}

/// A store whose connections carry the test schema's name as `application_name`, so
/// that [`drop_connections`] ends exactly them; and that name.
async fn named_store(config: saga_adapters::PostgresConfig) -> (PostgresStore, String) {
    let app = config.schema.clone().expect("a test schema");
    let sep = if config.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}application_name={app}", config.url);
    (
        connect(saga_adapters::PostgresConfig { url, ..config }).await,
        app,
    )
}

/// Ends every connection named `app`, as a restart of the database would; at least
/// two must have been open.
async fn drop_connections(app: &str) {
    let mut admin = common::pg::admin().await.expect("admin connection");
    let dropped: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(app)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(dropped.len() >= 2, "the store's connections: {dropped:?}");
}

/// Starts execution `id`: its first event, committed.
async fn start_one(store: &PostgresStore, id: &saga_runtime::domain::SagaId) {
    use saga_runtime::domain::{EventType, HistoryEvent};
    use saga_runtime::port::{Commit, WorkflowStore};
    let start = HistoryEvent::new(
        id.clone(),
        0,
        EventType::WorkflowExecutionStarted,
        chrono::Utc::now(),
        serde_json::json!({"workflow_type": "started"}),
        format!("trace-{id}"),
    );
    store
        .commit(Commit::events_only(id, 0, vec![start]))
        .await
        .expect("start an execution");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_store_conformance() {
    with_schema(|config| async move {
        conformance::run_all_event_store(&Arc::new(connect(config).await)).await;
    })
    .await;
}

/// A second connect finds the schema migrated (idempotent) and the suite passes again
/// among the first run's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_store_conformance_twice_across_reconnect() {
    with_schema(|config| async move {
        conformance::run_all_event_store(&Arc::new(connect(config.clone()).await)).await;
        conformance::run_all_event_store(&Arc::new(connect(config).await)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_store_conformance() {
    with_schema(|config| async move {
        conformance::run_all_timer_store(&Arc::new(connect(config).await)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definition_store_conformance() {
    with_schema(|config| async move {
        conformance::run_all_definition_store(&Arc::new(connect(config.clone()).await)).await;
        conformance::run_all_definition_store(&Arc::new(connect(config).await)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_store_conformance() {
    with_schema(|config| async move {
        conformance::run_all_workflow_store(&Arc::new(connect(config).await)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_dispatcher_conformance() {
    with_schema(|config| async move {
        let store = connect(config.clone()).await;
        let dispatcher = store.signal_dispatcher().await.expect("dispatcher");
        conformance::run_all_signal_dispatcher(&dispatcher).await;
        // Another process's dispatcher, on a store of its own.
        let there = connect(config)
            .await
            .signal_dispatcher()
            .await
            .expect("dispatcher");
        conformance::check_inboxes_across_dispatchers(&dispatcher, &there).await;
    })
    .await;
}

/// Several processes may start at once: concurrent connects migrate once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_migrate_once() {
    with_schema(|config| async move {
        let connects: Vec<_> = (0..4)
            .map(|_| tokio::spawn(PostgresStore::connect_with(config.clone())))
            .collect();
        for c in connects {
            c.await.unwrap().expect("every concurrent connect succeeds");
        }
    })
    .await;
}

/// The scenarios on tokio's paused clock: the store connects on the real clock, then
/// the clock is paused; `Held` keeps virtual time still while the database works.
macro_rules! paused {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            with_schema(|config| async move {
                let store = connect(config).await;
                tokio::time::pause();
                scenario::$name(Held(store)).await;
                tokio::time::resume();
            })
            .await;
        }
    )*};
}

saga_runtime::for_each_paused_scenario!(paused);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_race() {
    with_schema(|config| async move {
        scenario::two_workers_race(connect(config).await).await;
    })
    .await;
}

/// The scenario's corruption: flip one bit of the newest stored snapshot's state with
/// an UPDATE.
#[tokio::test]
async fn corrupted_snapshot_falls_back() {
    with_schema(|config| async move {
        let schema = config.schema.clone().unwrap_or_default();
        let store = connect(config).await;
        tokio::time::pause();
        scenario::corrupted_snapshot_falls_back(Held(store), move |_, saga| {
            let sql = format!(
                "UPDATE saga_snapshots \
                    SET state = set_byte(state, length(state) / 2, \
                                         get_byte(state, length(state) / 2) # 1) \
                  WHERE saga_id = '{saga}' AND last_event_id = \
                        (SELECT max(last_event_id) FROM saga_snapshots WHERE saga_id = '{saga}')"
            );
            common::block_on_side(common::pg::exec(&schema, &sql)) == 1
        })
        .await;
        tokio::time::resume();
    })
    .await;
}

/// The reads of a worker taking a task (here the version) go over a connection kept
/// out of the pool: set up once, then one statement per read, with no ping of a pooled
/// connection after each. Reads at once beyond the kept connections take pooled ones,
/// and all of them answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reads_reuse_kept_connections() {
    use saga_runtime::domain::SagaId;
    use saga_runtime::port::EventStore;

    with_schema(|config| async move {
        let store = connect(config).await;
        let id = SagaId::new("kept-reads");
        start_one(&store, &id).await;
        let before = store.stats().statements;
        for _ in 0..20 {
            assert_eq!(store.version(&id).await.unwrap(), 1);
        }
        let after = store.stats().statements;
        assert_eq!(after - before, 21, "one setup, then one statement per read");

        let reads = (0..32).map(|_| store.version(&id));
        for v in futures_util::future::join_all(reads).await {
            assert_eq!(v.unwrap(), 1);
        }
    })
    .await;
}

/// Group read: version reads that arrive while one runs go together, in one
/// statement, and each gets its own saga's version (0 for none).
/// An exclusive lock on a schema's `saga_executions`, held by a connection of its own
/// until released: every version read waits for it meanwhile.
struct ExecutionsLock(sqlx::PgConnection);

impl ExecutionsLock {
    async fn take(url: &str, schema: &str) -> Self {
        use sqlx::{Connection, Executor};
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        conn.execute("BEGIN").await.unwrap();
        conn.execute(
            format!("LOCK TABLE \"{schema}\".saga_executions IN ACCESS EXCLUSIVE MODE").as_str(),
        )
        .await
        .unwrap();
        ExecutionsLock(conn)
    }

    async fn release(mut self) {
        use sqlx::Executor;
        self.0.execute("ROLLBACK").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_reads_queued_behind_one_share_a_statement() {
    use saga_runtime::domain::{EventType, HistoryEvent, SagaId};
    use saga_runtime::port::EventStore;

    with_schema(|config| async move {
        let schema = config.schema.clone().expect("a test schema");
        let url = config.url.clone();
        let store = connect(config).await;
        let ids: Vec<SagaId> = (0..3)
            .map(|i| SagaId::new(format!("grouped-{i}")))
            .collect();
        for id in &ids {
            start_one(&store, id).await;
        }
        let moved = HistoryEvent::new(
            ids[2].clone(),
            1,
            EventType::SignalReceived,
            chrono::Utc::now(),
            serde_json::json!({"name": "go"}),
            "trace".to_owned(),
        );
        store.append(&ids[2], 1, vec![moved]).await.unwrap();
        let missing = SagaId::new("grouped-missing");
        let asked: Vec<&SagaId> = (0..40)
            .map(|i| match i % 4 {
                3 => &missing,
                k => &ids[k],
            })
            .collect();
        let asked: Vec<SagaId> = asked.into_iter().cloned().collect();
        // The first read waits for a lock on the table while the other 39 queue behind
        // it (without it, which reads overlap is up to the scheduler).
        let lock = ExecutionsLock::take(&url, &schema).await;
        let before = store.stats().statements;
        let reads = {
            let (store, asked) = (store.clone(), asked.clone());
            tokio::spawn(async move {
                futures_util::future::join_all(asked.iter().map(|id| store.version(id))).await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        lock.release().await;
        let versions = reads.await.unwrap();
        let statements = store.stats().statements - before;
        for (id, v) in asked.iter().zip(versions) {
            let want = match id.as_str() {
                "grouped-2" => 2,
                "grouped-missing" => 0,
                _ => 1,
            };
            assert_eq!(v.unwrap(), want, "{id}");
        }
        // The first read, the queued ones together, and the setup of a new connection.
        assert!(statements <= 3, "40 reads took {statements} statements");
    })
    .await;
}

/// A caller that gives up while it leads a read does not strand the reads queued
/// behind it: the first of them leads the next statement; and one that gives up after
/// taking others' reads along leaves them to ask again. Each is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_version_read_hands_its_queue_on() {
    use std::future::Future;
    use std::task::Poll;

    use saga_runtime::domain::SagaId;
    use saga_runtime::port::EventStore;

    with_schema(|config| async move {
        let schema = config.schema.clone().expect("a test schema");
        let url = config.url.clone();
        let store = connect(config).await;
        let ids: Vec<SagaId> = ["gives-up", "leads-next", "asks-again"]
            .into_iter()
            .map(SagaId::new)
            .collect();
        for id in &ids {
            start_one(&store, id).await;
        }
        // Read statements wait for this lock until the end, so that none is answered
        // while the test means it to be on the wire (a busy machine could otherwise
        // answer one between its write and its read of the socket).
        let lock = ExecutionsLock::take(&url, &schema).await;
        let mut first = Box::pin(store.version(&ids[0]));
        let mut second = Box::pin(store.version(&ids[1]));
        let mut third = Box::pin(store.version(&ids[2]));
        // `first` leads (its statement is on the wire), the other two queue.
        std::future::poll_fn(|cx| {
            assert!(first.as_mut().poll(cx).is_pending(), "answered at once");
            assert!(second.as_mut().poll(cx).is_pending(), "answered at once");
            assert!(third.as_mut().poll(cx).is_pending(), "answered at once");
            Poll::Ready(())
        })
        .await;
        // `first` gives up: `second` is woken to lead, takes `third` along, and gives
        // up in turn while its statement runs.
        drop(first);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        std::future::poll_fn(|cx| {
            assert!(second.as_mut().poll(cx).is_pending(), "answered at once");
            Poll::Ready(())
        })
        .await;
        drop(second);
        lock.release().await;
        let v = tokio::time::timeout(std::time::Duration::from_secs(10), third)
            .await
            .expect("the queued read was stranded");
        assert_eq!(v.unwrap(), 1);
        // And the store reads on as before, one read and many.
        assert_eq!(store.version(&ids[0]).await.unwrap(), 1);
        let reads = ids.iter().map(|id| store.version(id));
        for v in futures_util::future::join_all(reads).await {
            assert_eq!(v.unwrap(), 1);
        }
    })
    .await;
}

/// Group commit: the conformance check of many sagas committing at once, on a store
/// with one flusher, where the commits certainly share statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_judges_each_commit_alone() {
    with_schema(|config| async move {
        let store = Arc::new(
            connect(saga_adapters::PostgresConfig {
                commit_flushers: Some(1),
                ..config
            })
            .await,
        );
        conformance::workflow_store::check_concurrent_commits_across_sagas(&store).await;
        assert!(
            store.stats().batched_writes > 0,
            "no commit shared a statement: {:?}",
            store.stats()
        );
    })
    .await;
}

/// A commit the database refuses (a NUL character in its trace id, which a `text`
/// column cannot hold) fails alone when it shares a batch: the batch is retried one by
/// one, the others are written, and the refused one writes nothing and gets a clear
/// error. A NUL inside event attributes (stored as `json`) is not refused: it reads
/// back as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_refused_commit_fails_alone() {
    use saga_runtime::domain::{EventType, HistoryEvent, SagaId};
    use saga_runtime::port::{Commit, EventStore};
    use serde_json::json;

    with_schema(|config| async move {
        let store = connect(config).await;
        let started = |id: &SagaId, input: serde_json::Value, trace: String| {
            let start = HistoryEvent::new(
                id.clone(),
                0,
                EventType::WorkflowExecutionStarted,
                chrono::Utc::now(),
                json!({"workflow_type": "refused", "input": input}),
                trace,
            );
            Commit::events_only(id, 0, vec![start])
        };
        let ids: Vec<SagaId> = (0..8).map(|i| SagaId::new(format!("gc-{i}"))).collect();
        let input = |i: usize| {
            if i == 5 {
                json!(format!("nul \u{0} in {i}"))
            } else {
                json!(i)
            }
        };
        let commits = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let trace = if i == 3 {
                    format!("trace \u{0} {id}")
                } else {
                    format!("trace-{id}")
                };
                started(id, input(i), trace)
            })
            .collect();
        let before = store.stats();
        let results = store.commit_all(commits).await;
        let after = store.stats();
        // The new commit connection's setup (how it plans), one batch statement
        // (refused), then eight on their own.
        assert_eq!(after.statements - before.statements, 10, "{after:?}");
        assert_eq!(after.batched_writes, before.batched_writes, "{after:?}");
        for (i, (id, r)) in ids.iter().zip(&results).enumerate() {
            if i == 3 {
                let e = r.as_ref().expect_err("the commit with a NUL must fail");
                assert!(
                    e.to_string().contains("commit a workflow task"),
                    "a clear error: {e}"
                );
                assert_eq!(store.version(id).await.unwrap(), 0, "it wrote nothing");
            } else {
                assert_eq!(r.as_ref().ok(), Some(&1), "commit {i}: {r:?}");
                let history = store.history(id).await.unwrap();
                assert_eq!(history.len(), 1);
                assert_eq!(history[0].attributes["input"], input(i));
            }
        }
    })
    .await;
}

/// A history written before event attributes became `json` (migration 6) and before
/// events were stored a commit per row (migration 9) reads back unchanged after the
/// migrations, which convert it in place, and takes the next commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_from_before_json_attributes_read_back() {
    use saga_runtime::domain::{EventType, SagaId};
    use saga_runtime::port::EventStore;
    use serde_json::json;
    use sqlx::{Connection, Executor};

    with_schema(|config| async move {
        let schema = config.schema.clone().expect("a test schema");
        // The schema as migrations 1 to 5 left it.
        let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
        let before = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&all).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.as_str() < "0006" {
                std::fs::copy(&path, before.path().join(&name)).unwrap();
            }
        }
        let mut conn = sqlx::PgConnection::connect(&config.url).await.unwrap();
        conn.execute(
            format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET search_path TO \"{schema}\"")
                .as_str(),
        )
        .await
        .unwrap();
        let migrator = sqlx::migrate::Migrator::new(before.path()).await.unwrap();
        assert_eq!(migrator.iter().count(), 5);
        migrator.run(&mut conn).await.unwrap();
        drop(conn);
        let attributes =
            json!({"workflow_type": "old", "input": {"note": "ü \"quoted\"", "n": [1, 2.5, null]}});
        common::pg::exec(
            &schema,
            "INSERT INTO saga_executions (saga_id, version, workflow_type, status, started_at, \
             updated_at) VALUES ('old', 2, 'old', 'running', now(), now())",
        )
        .await;
        common::pg::exec(
            &schema,
            &format!(
                "INSERT INTO saga_events VALUES \
                 ('old', 0, 'WorkflowExecutionStarted', 'Workflow', now(), '{attributes}'::jsonb, \
                  1, true, false, 'trace-old'), \
                 ('old', 1, 'SignalReceived', 'Workflow', now(), '{{\"n\": 1}}'::jsonb, \
                  1, false, true, 'trace-old')"
            ),
        )
        .await;

        let store = connect(config).await;
        let id = SagaId::new("old");
        let history = store.history(&id).await.unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].event_type, EventType::WorkflowExecutionStarted);
        assert_eq!(history[0].attributes, attributes);
        assert!(history[0].is_reset_point && !history[0].is_retry);
        assert_eq!(history[1].event_type, EventType::SignalReceived);
        assert_eq!(history[1].attributes, json!({"n": 1}));
        assert!(!history[1].is_reset_point && history[1].is_retry);
        assert_eq!(history[1].trace_id, "trace-old");
        assert_eq!(store.history_from(&id, 1).await.unwrap(), history[1..]);
        let mut next = history[1].clone();
        next.event_id = 2;
        store.append(&id, 2, vec![next]).await.unwrap();
        assert_eq!(store.history(&id).await.unwrap().len(), 3);
        let column: (String,) = sqlx::query_as(
            "SELECT udt_name::text FROM information_schema.columns \
              WHERE table_schema = $1 AND table_name = 'saga_event_batches' \
                AND column_name = 'attributes'",
        )
        .bind(&schema)
        .fetch_one(&mut common::pg::admin().await.expect("admin connection"))
        .await
        .unwrap();
        assert_eq!(column.0, "_json", "an array of json");
        // An engine of an earlier version, still writing rows to `saga_events`, fails
        // rather than writes where nobody reads.
        let mut conn = sqlx::PgConnection::connect(&common::pg::url())
            .await
            .unwrap();
        conn.execute(format!("SET search_path TO \"{schema}\"").as_str())
            .await
            .unwrap();
        let old_write = conn
            .execute(
                "INSERT INTO saga_events VALUES ('old', 3, 'SignalReceived', 'Workflow', now(), \
                 '{}'::json, 1, false, false, 'trace-old')",
            )
            .await;
        assert!(old_write.is_err(), "{old_write:?}");
        assert_eq!(store.history(&id).await.unwrap().len(), 3);
    })
    .await;
}

/// The reads a worker makes when it takes a task go over connections the store keeps
/// out of its pool. When the database drops them all, one read fails (`unavailable`),
/// and the next goes over a new connection rather than trying the other dead ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_recover_from_dropped_connections() {
    use saga_runtime::domain::SagaId;
    use saga_runtime::port::EventStore;

    with_schema(|config| async move {
        let (store, app) = named_store(config).await;
        let id = SagaId::new("dropped-reads");
        start_one(&store, &id).await;
        // Reads at once: every kept connection for reads is opened, and stays idle.
        let reads = (0..16).map(|_| store.version(&id));
        for v in futures_util::future::join_all(reads).await {
            assert_eq!(v.unwrap(), 1);
        }
        drop_connections(&app).await;
        let mut failed = 0;
        loop {
            match store.version(&id).await {
                Ok(v) => {
                    assert_eq!(v, 1);
                    break;
                }
                Err(e) => {
                    assert_eq!(e.context("code"), Some("unavailable"), "{e}");
                    failed += 1;
                    assert!(failed < 8, "reads still fail");
                }
            }
        }
        assert_eq!(failed, 1, "reads failed on lost connections");
        assert_eq!(store.history(&id).await.unwrap().len(), 1);
    })
    .await;
}

/// Commits go over connections the store keeps out of its pool. When the database
/// drops them (a restart, `pg_terminate_backend`), one commit fails, with
/// `unavailable` and nothing written, and the next ones go over new connections: one at
/// a time (the single-commit statement) and many at once (the batch statement) both
/// recover, and every history ends whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_recover_from_dropped_connections() {
    use saga_runtime::domain::{EventType, HistoryEvent, SagaId};
    use saga_runtime::port::{Commit, EventStore, WorkflowStore};
    use serde_json::json;

    with_schema(|config| async move {
        let (store, app) = named_store(config).await;
        let ids: Vec<SagaId> = (0..8).map(|i| SagaId::new(format!("drop-{i}"))).collect();
        let event = |id: &SagaId, n: u64| {
            let t = if n == 0 {
                EventType::WorkflowExecutionStarted
            } else {
                EventType::SignalReceived
            };
            let e = HistoryEvent::new(
                id.clone(),
                n,
                t,
                chrono::Utc::now(),
                json!({"workflow_type": "dropped", "name": "s", "n": n}),
                format!("trace-{id}"),
            );
            Commit::events_only(id, n, vec![e])
        };
        // Event `n` of every saga: the first one alone, then the others at once; a
        // commit failing with `unavailable` wrote nothing and is tried again (up to 4
        // times). Returns how many tries failed.
        let step = |n: u64| {
            let (store, ids) = (&store, &ids);
            async move {
                let mut failed = 0;
                loop {
                    match store.commit(event(&ids[0], n)).await {
                        Ok(v) => {
                            assert_eq!(v, n + 1);
                            break;
                        }
                        Err(e) => {
                            assert_eq!(e.context("code"), Some("unavailable"), "{e}");
                            failed += 1;
                        }
                    }
                    assert!(failed < 4, "the single commit still fails");
                }
                let mut pending: Vec<&SagaId> = ids[1..].iter().collect();
                while !pending.is_empty() {
                    let commits = pending.iter().map(|id| event(id, n)).collect();
                    let results = store.commit_all(commits).await;
                    let mut left = Vec::new();
                    for (id, r) in pending.into_iter().zip(results) {
                        match r {
                            Ok(v) => assert_eq!(v, n + 1),
                            Err(e) => {
                                // Not a conflict: a failed try wrote nothing.
                                assert_eq!(e.context("code"), Some("unavailable"), "{id}: {e}");
                                left.push(id);
                            }
                        }
                    }
                    if !left.is_empty() {
                        failed += 1;
                        assert!(failed < 8, "the batch still fails");
                    }
                    pending = left;
                }
                failed
            }
        };
        assert_eq!(step(0).await + step(1).await, 0);
        drop_connections(&app).await;
        let failed = step(2).await + step(3).await;
        // One commit fails, on the first lost connection; after it the store opens new
        // ones rather than trying the other dead ones (kept, or idle in the pool).
        assert_eq!(failed, 1, "commits failed on lost connections");
        for id in &ids {
            let mut tries = 0;
            let history = loop {
                match store.history(id).await {
                    Ok(h) => break h,
                    Err(e) if tries < 4 => {
                        tries += 1;
                        assert_eq!(e.context("code"), Some("unavailable"), "{e}");
                    }
                    Err(e) => panic!("history of {id}: {e}"),
                }
            };
            let ids: Vec<u64> = history.iter().map(|e| e.event_id).collect();
            assert_eq!(ids, vec![0, 1, 2, 3], "{id}");
        }
    })
    .await;
}
