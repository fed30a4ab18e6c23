//! The `saga` binary against a PostgreSQL store filled by real engine runs, each test in
//! its own schema (dropped at the end). Without a server the tests skip with the reason
//! printed, unless `CI` is set, where they fail.

mod common;

use std::future::Future;
use std::panic::{resume_unwind, AssertUnwindSafe};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use saga_adapters::{PostgresConfig, PostgresStore};
use saga_runtime::conformance::fixtures::order_saga;
use saga_runtime::prelude::{ErrorKind, Workflow};
use serde_json::Value;
use sqlx::{Connection, PgConnection};

/// `DATABASE_URL`, or the development and CI server.
fn url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Runs `f` with a fresh schema (its name), then drops the schema, also when `f` fails.
async fn with_schema<Fut: Future<Output = ()>>(f: impl FnOnce(String) -> Fut) {
    let url = url();
    let mut admin = match PgConnection::connect(&url).await {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("PostgreSQL at {url} is required (CI is set) but unreachable: {e}")
        }
        Err(e) => {
            eprintln!(
                "SKIPPED: PostgreSQL at {url} is unreachable ({e}); \
                 start it or set DATABASE_URL (with CI set this test fails)"
            );
            return;
        }
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let schema = format!("saga_cli_{nanos:x}_{:x}", std::process::id());
    let outcome = futures_catch(f(schema.clone())).await;
    let dropped = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&mut admin)
        .await;
    if let Err(e) = dropped {
        eprintln!("could not drop test schema {schema}: {e}");
    }
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
}

/// Catches a panic of `f` so that the schema is dropped before it propagates.
async fn futures_catch<F: Future<Output = ()>>(f: F) -> std::thread::Result<()> {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| f.as_mut().poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(())) => std::task::Poll::Ready(Ok(())),
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    })
    .await
}

async fn store(schema: &str) -> PostgresStore {
    let config = PostgresConfig {
        max_connections: 4,
        ..PostgresConfig::new(url()).schema(schema)
    };
    PostgresStore::connect_with(config).await.expect("connect")
}

fn field<'a>(table: &'a str, key: &str) -> &'a str {
    table
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no `{key}` in:\n{table}"))
        .trim()
}

fn ids(list_json: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(list_json).expect("list JSON");
    v.as_array()
        .expect("an array")
        .iter()
        .map(|e| e["saga_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_postgres() {
    with_schema(|schema| async move {
        let store = store(&schema).await;
        fill(&store).await;
        let url = url();
        let base = ["--store", url.as_str(), "--schema", schema.as_str()];
        let run = |args: &[&str]| {
            let mut full = base.to_vec();
            full.extend_from_slice(args);
            let full: Vec<String> = full.into_iter().map(str::to_owned).collect();
            async move {
                let refs: Vec<&str> = full.iter().map(String::as_str).collect();
                saga(&refs).await
            }
        };

        assert_eq!(
            ids(run(&["list", "-o", "json"]).await.ok()),
            ["done-1", "comp-1", "parked-1", "tagged-1"]
        );
        assert_eq!(
            ids(run(&["list", "-o", "json", "--status", "Completed"])
                .await
                .ok()),
            ["done-1"]
        );
        assert_eq!(
            ids(run(&["list", "-o", "json", "--attr", "region=eu"])
                .await
                .ok()),
            ["tagged-1"]
        );
        let parked = run(&["show", "parked-1"]).await;
        assert_eq!(field(parked.ok(), "checkpoint"), "Approval");
        let history = run(&["history", "done-1"]).await;
        assert!(history.ok().contains("WorkflowExecutionCompleted"));
        let diagram = run(&["diagram", "parked-1"]).await;
        assert!(diagram.ok().ends_with("    class Approval current\n"));
        let defs = run(&["definitions"]).await;
        assert!(defs.ok().contains(order_saga::FINGERPRINT));

        let input = serde_json::to_string(&approval_order("pg")).unwrap();
        run(&["start", "order-saga", "--input", &input, "--id", "pg-1"])
            .await
            .ok();
        run(&["start", "order-saga", "--input", &input, "--id", "pg-2"])
            .await
            .ok();
        let engine = engine(&store).await;
        for id in ["pg-1", "pg-2"] {
            wait_until(&engine, id, |d| d.waiting_for_signals == ["approval"]).await;
        }
        // A waiter in this process hears the CLI's signal through LISTEN/NOTIFY.
        let dispatcher = store.signal_dispatcher().await.unwrap();
        let mut heard =
            saga_runtime::port::SignalDispatcher::subscribe(&dispatcher, &"pg-1".into())
                .await
                .unwrap();
        run(&[
            "signal",
            "pg-1",
            "approval",
            "--payload",
            r#"{"granted":true}"#,
        ])
        .await
        .ok();
        let n = tokio::time::timeout(Duration::from_secs(10), heard.recv())
            .await
            .expect("the CLI's signal is notified");
        assert_eq!(
            n,
            Some(saga_runtime::port::Notification::SignalReceived {
                name: "approval".into()
            })
        );
        run(&["cancel", "pg-2"]).await.ok();
        engine.shutdown().await;

        // A worker started now re-drives both to the end.
        let engine = common::engine(&store).await;
        engine
            .result::<order_saga>("pg-1")
            .await
            .expect("pg-1 completes");
        let err = engine.result::<order_saga>("pg-2").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
        engine.shutdown().await;
        let done = run(&["show", "pg-1", "-o", "json"]).await;
        let done: Value = serde_json::from_str(done.ok()).unwrap();
        assert_eq!(done["status"], "Completed");

        // Bad input against a live database.
        run(&["show", "nope"])
            .await
            .fails(3, "no execution with id `nope`");
        run(&["start", "nope", "--input", "1"])
            .await
            .fails(3, "workflow type `nope` is not registered");
        run(&["signal", "done-1", "approval"])
            .await
            .fails(1, "is closed (Completed)");
        run(&["start", "order-saga", "--input", "{not json"])
            .await
            .fails(2, "--input is not valid JSON");
        run(&["cancel", "done-1"])
            .await
            .fails(1, "is closed (Completed)");
    })
    .await;
}

/// No server is needed for these: they never get one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_and_bad_urls() {
    let unreachable = saga(&[
        "--store",
        "postgres://postgres@127.0.0.1:1/test",
        "--connect-timeout",
        "1",
        "list",
    ])
    .await;
    unreachable.fails(4, "cannot open the PostgreSQL store");
    let with_schema = saga(&[
        "--store",
        "postgres://postgres@127.0.0.1:1/test",
        "--schema",
        "s",
        "list",
    ])
    .await;
    with_schema.fails(4, "cannot open the PostgreSQL store");
    saga(&[
        "--store",
        "postgres://postgres@127.0.0.1:notaport/test",
        "list",
    ])
    .await
    .fails(2, "bad PostgreSQL url");
    saga(&["--store", &url(), "--schema", "Bad-Name", "list"])
        .await
        .fails(2, "schema name `Bad-Name` must match");
}

/// `saga serve` on PostgreSQL: reads, a signal (notified through the store's
/// dispatcher, as the CLI's), metrics; an unreachable database refuses to serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres() {
    with_schema(|schema| async move {
        let store = store(&schema).await;
        fill(&store).await;
        let url = url();
        let server = tokio::task::spawn_blocking(move || {
            common::http::serve(&["--store", &url, "--schema", &schema], &[])
        })
        .await
        .unwrap();
        let s = &server;
        let all = s.get("/executions");
        assert_eq!(all.status, 200, "{all:#?}");
        let listed: Vec<String> = all
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["saga_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, ["done-1", "comp-1", "parked-1", "tagged-1"]);
        assert_eq!(
            s.get("/executions/parked-1").json()["checkpoint"],
            "Approval"
        );
        s.get("/executions/nope").error(404, "not_found");
        let sent = s.post(
            "/executions/parked-1/signals",
            r#"{"name": "approval", "payload": {"granted": true}}"#,
        );
        assert_eq!(sent.status, 202, "{sent:#?}");
        s.post("/executions/done-1/cancel", "").error(409, "closed");
        let metrics = s.get("/metrics").body;
        assert!(
            metrics
                .contains("saga_executions{workflow_type=\"order-saga\",status=\"Completed\"} 1\n"),
            "{metrics}"
        );
        assert!(metrics.contains("saga_outbox_tasks "), "{metrics}");
    })
    .await;
    saga(&[
        "--store",
        "postgres://postgres@127.0.0.1:1/test",
        "--connect-timeout",
        "1",
        "serve",
    ])
    .await
    .fails(4, "cannot open the PostgreSQL store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_on_postgres() {
    with_schema(|schema| async move {
        let store = store(&schema).await;
        fill(&store).await;
        write_deadlock(&store).await;
        let url = url();
        let out = saga(&[
            "--store", &url, "--schema", &schema, "watchdog", "-o", "json",
        ])
        .await;
        let v: Value = serde_json::from_str(out.ok()).expect("findings JSON");
        let found: Vec<(&str, &str)> = v
            .as_array()
            .expect("an array")
            .iter()
            .map(|f| {
                (
                    f["detector"].as_str().unwrap(),
                    f["saga_id"].as_str().unwrap_or("-"),
                )
            })
            .collect();
        assert!(found.contains(&("deadlock", "loop-b")), "{found:?}");
        assert!(found.contains(&("stall", "loop-a")), "{found:?}");
        assert!(!found.iter().any(|f| f.1 == "tagged-1"), "{found:?}");
    })
    .await;
}
