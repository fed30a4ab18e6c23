//! The `saga` binary against a SQLite store filled by real engine runs: every command,
//! and bad input (exit code and message).

mod common;

use std::path::Path;

use common::*;
use saga_adapters::SqliteStore;
use saga_runtime::conformance::fixtures::{order_saga, VAULT_QUEUE};
use saga_runtime::port::EventStore;
use saga_runtime::prelude::*;
use serde_json::Value;

async fn filled() -> (tempfile::TempDir, String, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("saga.db");
    let store = SqliteStore::open(&path).await.expect("open");
    fill(&store).await;
    let url = format!("sqlite://{}", path.display());
    (dir, url, store)
}

/// The value of `key:` in `saga show`'s table.
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
async fn list_filters() {
    let (_dir, url, _store) = filled().await;
    let s = url.as_str();
    let table = saga(&["--store", s, "list"]).await;
    let table = table.ok();
    assert!(table.starts_with("ID "), "{table}");
    for id in ["done-1", "comp-1", "parked-1", "tagged-1"] {
        assert!(table.contains(id), "{table}");
    }
    let all = saga(&["list", "--store", s, "-o", "json"]).await;
    assert_eq!(ids(all.ok()), ["done-1", "comp-1", "parked-1", "tagged-1"]);

    let only = |args: &'static [&'static str]| {
        let s = s.to_owned();
        async move {
            let mut full = vec!["--store", s.as_str(), "--output", "json", "list"];
            full.extend_from_slice(args);
            ids(saga(&full).await.ok())
        }
    };
    assert_eq!(only(&["--status", "completed"]).await, ["done-1"]);
    assert_eq!(only(&["--status", "Cancelled"]).await, ["comp-1"]);
    assert_eq!(
        only(&["--status", "Running"]).await,
        ["parked-1", "tagged-1"]
    );
    assert_eq!(only(&["--type", "tagged"]).await, ["tagged-1"]);
    assert_eq!(only(&["--attr", "region=eu"]).await, ["tagged-1"]);
    assert_eq!(
        only(&["--attr", "priority=3", "--attr", "region=eu"]).await,
        ["tagged-1"]
    );
    assert!(only(&["--attr", "region=us"]).await.is_empty());
    assert_eq!(only(&["--since", "1h"]).await.len(), 4);
    assert!(only(&["--until", "2000-01-01"]).await.is_empty());
    assert!(only(&["--since", "2999-01-01T00:00:00Z"]).await.is_empty());
    assert_eq!(only(&["--limit", "1"]).await, ["done-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_history_diagram_definitions() {
    let (_dir, url, _store) = filled().await;
    let s = url.as_str();

    let parked = saga(&["--store", s, "show", "parked-1"]).await;
    let parked = parked.ok();
    assert_eq!(field(parked, "status"), "Paused");
    assert_eq!(field(parked, "checkpoint"), "Approval");
    assert_eq!(field(parked, "waiting for signals"), "approval");
    assert_eq!(field(parked, "type"), "order-saga");
    assert_eq!(field(parked, "compensations done"), "-");

    let comp = saga(&["--store", s, "show", "comp-1", "--output", "json"]).await;
    let comp: Value = serde_json::from_str(comp.ok()).unwrap();
    assert_eq!(comp["status"], "Cancelled");
    assert_eq!(comp["checkpoint"], "Finished");
    assert_eq!(
        comp["compensations_done"],
        serde_json::json!(["cancel-shipment", "refund-payment", "release-inventory"])
    );
    assert!(comp["failure"]
        .as_str()
        .unwrap()
        .contains("carrier rejected"));

    let done = saga(&["--store", s, "show", "done-1"]).await;
    assert_eq!(field(done.ok(), "status"), "Completed");

    let history = saga(&["--store", s, "history", "done-1"]).await;
    let history = history.ok();
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("ATTRIBUTES"));
    assert!(lines[1].starts_with("0 ") && lines[1].contains("WorkflowExecutionStarted"));
    assert!(lines[1].contains("workflow_type=order-saga"), "{history}");
    assert!(lines.last().unwrap().contains("WorkflowExecutionCompleted"));
    let json = saga(&["--store", s, "history", "done-1", "-o", "json"]).await;
    let events: Vec<Value> = json
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one event per line"))
        .collect();
    assert_eq!(events.len(), lines.len() - 1);
    assert_eq!(events[0]["event_type"], "WorkflowExecutionStarted");

    let by_type = saga(&["--store", s, "diagram", "order-saga"]).await;
    let by_type = by_type.ok();
    assert!(by_type.starts_with("stateDiagram-v2\n"), "{by_type}");
    assert!(
        !by_type.contains("class "),
        "no execution, nothing highlighted"
    );
    let by_id = saga(&["--store", s, "diagram", "parked-1"]).await;
    let by_id = by_id.ok();
    assert!(by_id.starts_with(by_type.trim_end()), "{by_id}");
    assert!(by_id.contains("classDef current "), "{by_id}");
    assert!(by_id.ends_with("    class Approval current\n"), "{by_id}");
    let json = saga(&["--store", s, "diagram", "parked-1", "-o", "json"]).await;
    let json: Value = serde_json::from_str(json.ok()).unwrap();
    assert_eq!(json["saga_id"], "parked-1");
    assert_eq!(json["diagram"].as_str().unwrap(), by_id);

    let defs = saga(&["--store", s, "definitions"]).await;
    let defs = defs.ok();
    assert!(defs.starts_with("TYPE "), "{defs}");
    let row = defs
        .lines()
        .find(|l| l.starts_with("order-saga "))
        .expect("order-saga listed");
    assert!(row.contains(order_saga::FINGERPRINT), "{row}");
    let json = saga(&["--store", s, "definitions", "-o", "json"]).await;
    let json: Value = serde_json::from_str(json.ok()).unwrap();
    let order = json
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["workflow_type"] == "order-saga")
        .unwrap();
    assert_eq!(order["checkpoints"][2]["variant"], "Approval");
    assert_eq!(order["checkpoints"][2]["kind"], "Signal");
}

/// `start`, `signal` and `cancel` write what the engine writes: a worker started later
/// runs them to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_signal_cancel_are_run_by_workers() {
    let (_dir, url, store) = filled().await;
    let s = url.as_str();
    let input = serde_json::to_string(&approval_order("cli")).unwrap();

    let started = saga(&[
        "--store",
        s,
        "start",
        "order-saga",
        "--input",
        &input,
        "--id",
        "cli-1",
    ])
    .await;
    assert_eq!(
        started.ok().trim(),
        format!(
            "started cli-1 (order-saga, fingerprint {})",
            order_saga::FINGERPRINT
        )
    );
    let json = saga(&[
        "--store",
        s,
        "-o",
        "json",
        "start",
        "order-saga",
        "--input",
        &input,
        "--id",
        "cli-2",
    ])
    .await;
    let json: Value = serde_json::from_str(json.ok()).unwrap();
    assert_eq!(json["saga_id"], "cli-2");
    assert_eq!(json["fingerprint"], order_saga::FINGERPRINT);
    let fresh = saga(&["--store", s, "show", "cli-1"]).await;
    let fresh = fresh.ok();
    assert_eq!(field(fresh, "status"), "Running");
    assert_eq!(field(fresh, "checkpoint"), "Start");
    assert_eq!(field(fresh, "events"), "1");

    // A worker picks both up and parks them on the approval signal.
    let engine = engine(&store).await;
    for id in ["cli-1", "cli-2"] {
        wait_until(&engine, id, |d| d.waiting_for_signals == ["approval"]).await;
    }
    engine.shutdown().await;
    let parked = saga(&["--store", s, "show", "cli-1"]).await;
    assert_eq!(field(parked.ok(), "checkpoint"), "Approval");

    let signalled = saga(&[
        "--store",
        s,
        "signal",
        "cli-1",
        "approval",
        "--payload",
        r#"{"granted":true}"#,
    ])
    .await;
    assert_eq!(signalled.ok().trim(), "signal `approval` recorded on cli-1");
    let cancelled = saga(&["--store", s, "cancel", "cli-2"]).await;
    assert_eq!(cancelled.ok().trim(), "cancellation requested for cli-2");

    // Follow cli-1 while a new worker finishes it: the command returns when it closes.
    let follow = tokio::task::spawn_blocking({
        let url = url.clone();
        move || -> Run {
            saga_command()
                .args([
                    "--store",
                    &url,
                    "history",
                    "cli-1",
                    "--follow",
                    "--interval",
                    "50",
                ])
                .output()
                .expect("run saga")
                .into()
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let engine = common::engine(&store).await;
    engine
        .result::<order_saga>("cli-1")
        .await
        .expect("cli-1 completes");
    let err = engine.result::<order_saga>("cli-2").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    let followed = follow.await.unwrap();
    let followed = followed.ok();
    assert!(followed.contains("SignalReceived"), "{followed}");
    assert!(
        followed
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .contains("WorkflowExecutionCompleted"),
        "{followed}"
    );
    assert_eq!(
        followed.lines().filter(|l| l.starts_with("ID ")).count(),
        1,
        "one header: {followed}"
    );
    let h = engine.history("cli-1").await.unwrap();
    let events_printed = followed.lines().count() - 1;
    assert_eq!(events_printed, h.len(), "every event once: {followed}");

    let cancelled = saga(&["--store", s, "show", "cli-2", "-o", "json"]).await;
    let cancelled: Value = serde_json::from_str(cancelled.ok()).unwrap();
    assert_eq!(cancelled["status"], "Cancelled");
    assert_eq!(
        cancelled["compensations_done"],
        serde_json::json!(["refund-payment", "release-inventory"])
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_on_a_task_queue() {
    let (_dir, url, store) = filled().await;
    let s = url.as_str();
    let input = serde_json::to_string(&approval_order("q")).unwrap();
    // `saga start` with `--task-queue QUEUE`, or without the flag for `None`.
    let start = |id: &'static str, queue: Option<&'static str>| {
        let input = input.clone();
        async move {
            let mut args = vec![
                "--store",
                s,
                "-o",
                "json",
                "start",
                "order-saga",
                "--input",
                &input,
                "--id",
                id,
            ];
            args.extend(queue.map(|q| ["--task-queue", q]).into_iter().flatten());
            saga(&args).await
        }
    };
    let started = start("billing-1", Some("billing-eu_2")).await;
    let started: Value = serde_json::from_str(started.ok()).unwrap();
    assert_eq!(started["task_queue"], "billing-eu_2");
    // Recorded in `WorkflowExecutionStarted`, where workers read it.
    let history = saga(&["--store", s, "-o", "json", "history", "billing-1"]).await;
    // One event per line.
    let first: Value = serde_json::from_str(history.ok().lines().next().unwrap()).unwrap();
    assert_eq!(first["event_type"], "WorkflowExecutionStarted", "{first}");
    assert_eq!(first["attributes"]["task_queue"], "billing-eu_2", "{first}");
    let stored = store.history(&"billing-1".into()).await.unwrap();
    assert_eq!(stored[0].attr_str("task_queue"), Some("billing-eu_2"));

    // Without the flag: the default queue.
    let plain = start("plain-1", None).await;
    let plain: Value = serde_json::from_str(plain.ok()).unwrap();
    assert_eq!(plain["task_queue"], "default");

    // A workflow type registered with a queue of its own goes there, unless the
    // start names another.
    let vaulted = |id: &'static str, queue: Option<&'static str>| async move {
        let mut args = vec![
            "--store", s, "-o", "json", "start", "vaulted", "--input", "5", "--id", id,
        ];
        args.extend(queue.map(|q| ["--task-queue", q]).into_iter().flatten());
        let out = saga(&args).await;
        serde_json::from_str::<Value>(out.ok()).unwrap()["task_queue"].clone()
    };
    assert_eq!(vaulted("vaulted-1", None).await, VAULT_QUEUE);
    assert_eq!(vaulted("vaulted-2", Some("default")).await, "default");

    // A name no adapter could serve: bad input (2), nothing started.
    start("empty-1", Some(""))
        .await
        .fails(2, "a task queue name cannot be empty");
    start("dots-1", Some("billing.eu")).await.fails(
        2,
        "invalid task queue name \"billing.eu\": use 1 to 128 letters",
    );
    let long: &'static str = "q".repeat(129).leak();
    start("long-1", Some(long))
        .await
        .fails(2, "invalid task queue name");
    for id in ["empty-1", "dots-1", "long-1"] {
        saga(&["--store", s, "show", id])
            .await
            .fails(3, &format!("no execution with id `{id}`"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_line_and_an_exit_code() {
    let (dir, url, store) = filled().await;
    let s = url.as_str();
    let before = store.list_executions(&Default::default()).await.unwrap();

    // Not found: 3.
    for args in [
        vec!["show", "nope"],
        vec!["history", "nope"],
        vec!["signal", "nope", "go"],
        vec!["cancel", "nope"],
    ] {
        let mut full = vec!["--store", s];
        full.extend(args);
        saga(&full).await.fails(3, "no execution with id `nope`");
    }
    saga(&["--store", s, "diagram", "nope"])
        .await
        .fails(3, "no execution or registered workflow type named `nope`");
    saga(&["--store", s, "start", "no-such-type", "--input", "{}"])
        .await
        .fails(3, "workflow type `no-such-type` is not registered");

    // Bad input: 2.
    saga(&["--store", s, "start", "order-saga", "--input", "{bad"])
        .await
        .fails(2, "--input is not valid JSON");
    saga(&[
        "--store",
        s,
        "signal",
        "parked-1",
        "approval",
        "--payload",
        "{\"granted\":",
    ])
    .await
    .fails(2, "--payload is not valid JSON");
    saga(&["--store", s, "list", "--status", "Sleeping"])
        .await
        .fails(2, "unknown status `Sleeping`");
    saga(&["--store", s, "list", "--since", "yesterday"])
        .await
        .fails(2, "--since `yesterday` is not a time");
    saga(&["--store", s, "list", "--attr", "region"])
        .await
        .fails(2, "--attr `region` is not KEY=VALUE");
    saga(&["--store", "mysql://localhost/db", "list"])
        .await
        .fails(2, "unsupported store URL `mysql://localhost/db`");
    saga(&["list"]).await.fails(2, "no store given");
    saga(&["--store", s, "--schema", "x", "list"])
        .await
        .fails(2, "--schema applies to PostgreSQL stores only");
    saga(&["--store", s, "diagram", "waiter"])
        .await
        .fails(2, "has no diagram");
    let usage = saga(&["--store", s, "frobnicate"]).await;
    assert_eq!(usage.code, 2, "{usage:#?}");

    // Refused: 1.
    saga(&["--store", s, "signal", "done-1", "approval"])
        .await
        .fails(1, "execution `done-1` is closed (Completed)");
    saga(&["--store", s, "cancel", "comp-1"])
        .await
        .fails(1, "execution `comp-1` is closed (Cancelled)");
    saga(&[
        "--store",
        s,
        "start",
        "order-saga",
        "--input",
        "{}",
        "--id",
        "done-1",
    ])
    .await
    .fails(1, "an execution with id `done-1` already exists");

    // Unreachable: 4, and no file is created by the attempt.
    let missing = dir.path().join("missing.db");
    saga(&[
        "--store",
        &format!("sqlite://{}", missing.display()),
        "list",
    ])
    .await
    .fails(4, "does not exist");
    assert!(!Path::new(&missing).exists());

    // The environment variable names the store too.
    let via_env = tokio::task::spawn_blocking({
        let url = url.clone();
        move || -> Run {
            saga_command()
                .env("SAGA_STORE", &url)
                .args(["show", "done-1"])
                .output()
                .unwrap()
                .into()
        }
    })
    .await
    .unwrap();
    assert_eq!(field(via_env.ok(), "status"), "Completed");

    // Nothing recorded was changed by any of it.
    let after = store.list_executions(&Default::default()).await.unwrap();
    assert_eq!(before, after);
}

/// Findings of `saga watchdog` as (detector, saga id, action) triples.
fn findings(json_out: &str) -> Vec<(String, String, String)> {
    let v: Value = serde_json::from_str(json_out).expect("findings JSON");
    v.as_array()
        .expect("an array")
        .iter()
        .map(|f| {
            (
                f["detector"].as_str().unwrap().to_owned(),
                f["saga_id"].as_str().unwrap_or("-").to_owned(),
                f["action"]["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_reports_stalls_and_deadlocks() {
    let (_dir, url, store) = filled().await;
    write_deadlock(&store).await;
    let s = url.as_str();

    // Written ten minutes ago and idle since: stalled past 5 minutes, and in a cycle.
    let out = saga(&["--store", s, "watchdog", "-o", "json"]).await;
    let found = findings(out.ok());
    let deadlock = ("deadlock".into(), "loop-b".into(), "cancel".into());
    assert!(found.contains(&deadlock), "{found:?}");
    for id in ["loop-a", "loop-b"] {
        assert!(
            found.contains(&("stall".into(), id.into(), "none".into())),
            "{found:?}"
        );
    }
    // The executions the fixtures ran a moment ago are not stalled after 5 minutes...
    assert!(!found.iter().any(|f| f.1 == "tagged-1"), "{found:?}");
    // ...but are after 0 seconds (`parked-1` waits for a signal with a timeout timer
    // that is not due: a timer moves it, so it is never stalled).
    let out = saga(&[
        "--store",
        s,
        "watchdog",
        "--stall-after",
        "0s",
        "-o",
        "json",
    ])
    .await;
    let found = findings(out.ok());
    assert!(
        found.contains(&("stall".into(), "tagged-1".into(), "none".into())),
        "{found:?}"
    );

    let table = saga(&["--store", s, "watchdog"]).await;
    let table = table.ok();
    assert!(table.starts_with("DETECTOR"), "{table}");
    assert!(
        table.contains("loop-a -> loop-b -> loop-a"),
        "the cycle is named: {table}"
    );

    saga(&["--store", s, "watchdog", "--stall-after", "5x"])
        .await
        .fails(2, "--stall-after `5x` is not an age");
}
