//! Bad input at the storage layer (issue 4): a corrupted row, a snapshot with a wrong
//! checksum, an unknown event type, a schema from the future. Each is a clear, typed
//! error naming what is wrong, and nothing stored is rewritten.

mod common;

use chrono::Utc;
use saga_runtime::domain::{EventType, HistoryEvent, SagaId};
use saga_runtime::port::{EventStore, HistoryReplayer, StoreReplayer};
use saga_runtime::{snapshot, ErrorKind};
use serde_json::json;

fn history(id: &SagaId, len: u64) -> Vec<HistoryEvent> {
    (0..len)
        .map(|i| {
            let (t, attrs) = if i == 0 {
                (
                    EventType::WorkflowExecutionStarted,
                    json!({"workflow_type": "bad-input", "input": null}),
                )
            } else {
                (EventType::SignalReceived, json!({"name": "poke", "n": i}))
            };
            HistoryEvent::new(id.clone(), i, t, Utc::now(), attrs, "trace".into())
        })
        .collect()
}

/// A snapshot whose stored checksum no longer matches is returned as stored (the
/// replayer must see it to fall back), fails verification with a `Snapshot` error,
/// and the replayer falls back to the full history; the row is left as it was.
async fn wrong_checksum_falls_back<S: EventStore>(
    store: S,
    id: &SagaId,
    corrupt: impl AsyncFnOnce(),
) {
    store.append(id, 0, history(id, 5)).await.unwrap();
    let sealed = snapshot::seal(
        id.clone(),
        3,
        "json",
        b"{\"state\":1}".to_vec(),
        true,
        Utc::now(),
    );
    store.save_snapshot(sealed, 5).await.unwrap();
    corrupt().await;
    let stored = store
        .latest_snapshot(id)
        .await
        .unwrap()
        .expect("still stored");
    assert_eq!(
        stored.checksum.as_deref(),
        Some("00"),
        "the row is not rewritten"
    );
    let err = snapshot::verify(&stored).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Snapshot, "{err}");
    assert_eq!(err.context("saga_id"), Some(id.as_str()));
    let store = std::sync::Arc::new(store);
    let loaded = StoreReplayer::new(store.clone()).load(id).await.unwrap();
    assert!(loaded.snapshot.is_none(), "the bad snapshot is not used");
    assert_eq!(loaded.corrupt_snapshots, 1);
    assert_eq!(
        loaded.events.len(),
        5,
        "replay falls back to the full history"
    );
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use common::sqlite::{exec, text};
    use saga_adapters::SqliteStore;

    async fn with_history(label: &str) -> (SqliteStore, SagaId) {
        let store = SqliteStore::open_temporary().await.unwrap();
        let id = SagaId::new(label);
        store.append(&id, 0, history(&id, 3)).await.unwrap();
        (store, id)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_attributes_are_a_codec_error_and_stay_as_they_are() {
        let (store, id) = with_history("bad-json").await;
        let broken = r#"{"name": "poke", "n": "#;
        let changed = exec(
            store.path(),
            &format!("UPDATE saga_events SET attributes = '{broken}' WHERE saga_id = 'bad-json' AND event_id = 1"),
        )
        .await;
        assert_eq!(changed, 1);
        let err = store.history(&id).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Codec, "{err}");
        assert_eq!(err.context("saga_id"), Some("bad-json"));
        assert_eq!(err.context("event_id"), Some("1"));
        assert_eq!(err.context("code"), Some("malformed_attributes"));
        assert!(err.message.contains("not valid JSON"), "{err}");
        // The events after the bad row still read.
        assert_eq!(store.history_from(&id, 2).await.unwrap().len(), 1);
        // Nothing was rewritten, and appending after it still checks the version.
        let row = text(
            store.path(),
            "SELECT attributes FROM saga_events WHERE saga_id = 'bad-json' AND event_id = 1",
        )
        .await;
        assert_eq!(row.as_deref(), Some(broken));
        let stale = store.append(&id, 1, history(&id, 3)[1..2].to_vec()).await;
        assert!(stale.unwrap_err().is_conflict());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_event_type_is_a_codec_error_naming_it() {
        let (store, id) = with_history("bad-type").await;
        exec(
            store.path(),
            "UPDATE saga_events SET event_type = 'WorkflowTeleported' \
             WHERE saga_id = 'bad-type' AND event_id = 2",
        )
        .await;
        let err = store.history(&id).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Codec, "{err}");
        assert_eq!(err.context("code"), Some("unknown_event_type"));
        assert_eq!(err.context("event_id"), Some("2"));
        assert!(err.message.contains("WorkflowTeleported"), "{err}");
        let row = text(
            store.path(),
            "SELECT event_type FROM saga_events WHERE saga_id = 'bad-type' AND event_id = 2",
        )
        .await;
        assert_eq!(row.as_deref(), Some("WorkflowTeleported"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_row_is_a_gap_not_a_shorter_history() {
        let (store, id) = with_history("gap").await;
        exec(
            store.path(),
            "DELETE FROM saga_events WHERE saga_id = 'gap' AND event_id = 1",
        )
        .await;
        let err = store.history(&id).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::EventStore, "{err}");
        assert_eq!(err.context("code"), Some("history_gap"));
        assert_eq!(err.context("event_id"), Some("1"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_with_wrong_checksum() {
        let store = SqliteStore::open_temporary().await.unwrap();
        let path = store.path().to_path_buf();
        let id = SagaId::new("bad-checksum");
        wrong_checksum_falls_back(store, &id, async || {
            exec(&path, "UPDATE saga_snapshots SET checksum = '00'").await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn schema_from_the_future_is_refused_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.db");
        let id = SagaId::new("kept");
        {
            let store = SqliteStore::open(&path).await.unwrap();
            store.append(&id, 0, history(&id, 2)).await.unwrap();
        }
        exec(
            &path,
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99990101000000, 'from a newer saga-adapters', 1, X'00', 0)",
        )
        .await;
        let err = SqliteStore::open(&path).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Configuration, "{err}");
        assert_eq!(err.context("code"), Some("schema_from_the_future"));
        assert_eq!(err.context("schema_version"), Some("99990101000000"));
        assert!(err.message.contains("newer than this build"), "{err}");
        // Nothing was touched: the marker and the data are still there.
        let future = text(
            &path,
            "SELECT description FROM _sqlx_migrations WHERE version = 99990101000000",
        )
        .await;
        assert_eq!(future.as_deref(), Some("from a newer saga-adapters"));
        let events = text(&path, "SELECT CAST(COUNT(*) AS TEXT) FROM saga_events").await;
        assert_eq!(events.as_deref(), Some("2"));
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::pg::{exec, with_schema};
    use saga_adapters::{PostgresConfig, PostgresStore};

    /// A store on `config` holding saga `label` as four rows of `saga_event_batches`
    /// (four appends of one event, so that rows can be edited one event at a time),
    /// and its schema.
    async fn four_rows(config: PostgresConfig, label: &str) -> (PostgresStore, SagaId, String) {
        let schema = config.schema.clone().unwrap();
        let store = PostgresStore::connect_with(config).await.unwrap();
        let id = SagaId::new(label);
        for (i, e) in history(&id, 4).into_iter().enumerate() {
            store.append(&id, i as u64, vec![e]).await.unwrap();
        }
        (store, id, schema)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_event_type_and_gaps_are_clear_errors_and_stay() {
        with_schema(|config| async move {
            let (store, id, schema) = four_rows(config, "bad-row").await;
            exec(
                &schema,
                "UPDATE saga_event_batches SET event_types[1] = 'WorkflowTeleported' \
                 WHERE saga_id = 'bad-row' AND first_event_id = 2",
            )
            .await;
            let err = store.history(&id).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::Codec, "{err}");
            assert_eq!(err.context("code"), Some("unknown_event_type"));
            assert_eq!(err.context("event_id"), Some("2"));
            // The view of one row per event shows what is stored.
            let kept: String = sqlx::query_scalar(
                "SELECT event_type FROM saga_events WHERE saga_id = 'bad-row' AND event_id = 2",
            )
            .fetch_one(store.pool())
            .await
            .unwrap();
            assert_eq!(kept, "WorkflowTeleported", "nothing is rewritten");

            exec(
                &schema,
                "UPDATE saga_event_batches SET first_event_id = 9 \
                 WHERE saga_id = 'bad-row' AND first_event_id = 3",
            )
            .await;
            let err = store.history_from(&id, 3).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::EventStore, "{err}");
            assert_eq!(err.context("code"), Some("history_gap"));

            // A negative id is reported, not skipped as "before the wanted ones".
            exec(
                &schema,
                "UPDATE saga_event_batches SET first_event_id = -1 \
                 WHERE saga_id = 'bad-row' AND first_event_id = 0",
            )
            .await;
            let err = store.history(&id).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::Codec, "{err}");
            assert_eq!(err.context("code"), Some("bad_event_id"));
        })
        .await;
    }

    /// A row whose arrays disagree on how many events it holds is reported, naming its
    /// first event, and left as it is; the rows before it still read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_of_uneven_arrays_is_a_clear_error_and_stays() {
        with_schema(|config| async move {
            let (store, id, schema) = four_rows(config, "uneven").await;
            exec(
                &schema,
                "UPDATE saga_event_batches SET trace_ids = trace_ids || 'extra'::text \
                 WHERE saga_id = 'uneven' AND first_event_id = 1",
            )
            .await;
            let err = store.history(&id).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::Codec, "{err}");
            assert_eq!(err.context("code"), Some("malformed_event_batch"));
            assert_eq!(err.context("event_id"), Some("1"));
            assert_eq!(store.history_from(&id, 2).await.unwrap().len(), 2);
            let traces: i64 = sqlx::query_scalar(
                "SELECT cardinality(trace_ids)::int8 FROM saga_event_batches \
                  WHERE saga_id = 'uneven' AND first_event_id = 1",
            )
            .fetch_one(store.pool())
            .await
            .unwrap();
            assert_eq!(traces, 2, "nothing is rewritten");
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_with_wrong_checksum() {
        with_schema(|config| async move {
            let schema = config.schema.clone().unwrap();
            let store = PostgresStore::connect_with(config).await.unwrap();
            let id = SagaId::new("bad-checksum");
            wrong_checksum_falls_back(store, &id, async || {
                exec(&schema, "UPDATE saga_snapshots SET checksum = '00'").await;
            })
            .await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn schema_from_the_future_is_refused_unchanged() {
        with_schema(|config| async move {
            let schema = config.schema.clone().unwrap();
            let store = PostgresStore::connect_with(config.clone()).await.unwrap();
            let id = SagaId::new("kept");
            store.append(&id, 0, history(&id, 2)).await.unwrap();
            drop(store);
            exec(
                &schema,
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (99990101000000, 'from a newer saga-adapters', true, '\\x00', 0)",
            )
            .await;
            let err = PostgresStore::connect_with(config).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::Configuration, "{err}");
            assert_eq!(err.context("code"), Some("schema_from_the_future"));
            assert_eq!(
                exec(&schema, "SELECT 1 FROM _sqlx_migrations WHERE version = 99990101000000").await,
                1,
                "the newer migration's row is still there"
            );
            assert_eq!(
                exec(&schema, "SELECT 1 FROM saga_events WHERE saga_id = 'kept'").await,
                2,
                "the data is untouched"
            );
        })
        .await;
    }
}
