//! `saga dlq list|redrive`, and the dead-letter routes and gauges of `saga serve
//! --nats`, against the real NATS server. Each test uses its own namespace (streams
//! and subjects), deleted at the end. Without a server the tests skip with the reason
//! printed, unless `CI` is set, where they fail.

mod common;

use std::future::Future;
use std::panic::{resume_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::http::serve;
use common::*;
use saga_adapters::{NatsConfig, NatsTaskQueue, SqliteStore};
use saga_runtime::domain::{EventType, HistoryEvent, SagaId};
use saga_runtime::port::{Commit, Delivery, Outbox, Task, TaskKind, TaskQueue, WorkflowStore};
use serde_json::Value;

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// The broker's duplicate window in these tests: a dead letter can be re-driven once
/// its task's first publish is this old.
const WINDOW: Duration = Duration::from_secs(2);

/// Runs `f` with a fresh namespace's queue (one delivery allowed, so a nak
/// dead-letters), then deletes its streams, also when `f` fails.
async fn with_queue<Fut: Future<Output = ()>>(f: impl FnOnce(String, NatsTaskQueue) -> Fut) {
    let url = nats_url();
    if let Err(e) = reachable(&url).await {
        if std::env::var_os("CI").is_some() {
            panic!("NATS at {url} is required (CI is set) but unreachable: {e}");
        }
        eprintln!(
            "SKIPPED: NATS at {url} is unreachable ({e}); start it (see .ci/run) or set \
             NATS_URL (with CI set this test fails)"
        );
        return;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let ns = format!("cli{nanos:x}_{:x}", std::process::id());
    let config = NatsConfig {
        max_deliver: 1,
        duplicate_window: WINDOW,
        ..NatsConfig::namespaced(&ns)
    };
    let q = NatsTaskQueue::connect(&url, config)
        .await
        .expect("connect the NATS task queue");
    let outcome = AssertUnwindSafe(f(ns.clone(), q.clone()));
    let outcome = futures_catch(outcome).await;
    if let Err(e) = q.delete_streams().await {
        eprintln!("could not delete the test streams of namespace {ns}: {e}");
    }
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
}

/// Whether the server of `url` accepts TCP connections (this crate has no NATS client
/// of its own; the queue's connect would wait out its full timeout).
async fn reachable(url: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let addr = url.trim_start_matches("nats://").to_owned();
    tokio::task::spawn_blocking(move || {
        let addr = addr
            .to_socket_addrs()
            .map_err(|e| format!("bad address `{addr}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`{addr}` resolves to nothing"))?;
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

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

fn task(n: u32) -> Task {
    Task {
        kind: TaskKind::Activity,
        saga_id: SagaId::new(format!("order-{n}")),
        queue: "orders".to_owned(),
        dedup_id: format!("order-{n}:3"),
        payload: format!(r#"{{"n":{n}}}"#).into_bytes(),
    }
}

async fn fetch_n(q: &NatsTaskQueue, n: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(
            q.fetch("orders", n - got.len(), Duration::from_secs(1))
                .await
                .expect("fetch"),
        );
    }
    got
}

/// Publishes tasks 1..=n on `orders` and dead-letters them (a nak on their only
/// allowed delivery).
async fn dead_letters(q: &NatsTaskQueue, n: u32) {
    for i in 1..=n {
        q.publish(task(i)).await.unwrap();
    }
    for d in fetch_n(q, n as usize).await {
        q.nak(&d.tag, Duration::ZERO).await.unwrap();
    }
    assert_eq!(q.dead_letters("orders").await.unwrap().len(), n as usize);
}

fn dedup_ids(list_json: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(list_json).expect("JSON");
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d["dedup_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_and_redrive() {
    with_queue(|ns, q| async move {
        dead_letters(&q, 2).await;
        let url = nats_url();
        let dlq = |args: &[&str]| {
            let mut full: Vec<String> = vec!["dlq".into()];
            full.extend(args.iter().map(|s| s.to_string()));
            full.extend(
                [
                    "--nats",
                    url.as_str(),
                    "--namespace",
                    ns.as_str(),
                    "--queue",
                    "orders",
                ]
                .map(String::from),
            );
            async move {
                let refs: Vec<&str> = full.iter().map(String::as_str).collect();
                saga(&refs).await
            }
        };

        let table = dlq(&["list"]).await;
        let table = table.ok();
        assert!(table.starts_with("DEDUP ID "), "{table}");
        assert!(
            table.contains("order-1:3") && table.contains("order-2:3"),
            "{table}"
        );
        assert!(table.contains("nak'ed on delivery 1"), "{table}");
        let json = dlq(&["list", "-o", "json"]).await;
        let v: Value = serde_json::from_str(json.ok()).unwrap();
        assert_eq!(v[0]["saga_id"], "order-1");
        assert_eq!(v[0]["delivery_count"], 1);
        assert_eq!(v[0]["kind"], "activity");
        assert_eq!(v[0]["payload"], r#"{"n":1}"#);
        assert_eq!(dedup_ids(json.ok()), ["order-1:3", "order-2:3"]);

        // Published less than the duplicate window ago: refused, nothing lost.
        dlq(&["redrive", "--id", "order-1:3"])
            .await
            .fails(1, "as a duplicate");
        tokio::time::sleep(WINDOW + Duration::from_millis(500)).await;

        let one = dlq(&["redrive", "--id", "order-1:3"]).await;
        assert!(
            one.ok()
                .starts_with("re-drove 1 dead letter(s) to queue `orders`"),
            "{one:?}"
        );
        assert_eq!(
            dedup_ids(dlq(&["list", "-o", "json"]).await.ok()),
            ["order-2:3"]
        );
        dlq(&["redrive", "--id", "order-1:3"])
            .await
            .fails(3, "no dead letter with dedup id `order-1:3`");
        let back = fetch_n(&q, 1).await;
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].task, task(1));
        q.ack(&back[0].tag).await.unwrap();

        let rest = dlq(&["redrive", "-o", "json"]).await;
        assert_eq!(dedup_ids(rest.ok()), ["order-2:3"]);
        assert_eq!(dlq(&["list", "-o", "json"]).await.ok().trim(), "[]");
        assert_eq!(q.unacked("orders").await.unwrap(), 1);
    })
    .await;
}

/// Writes saga `order-<n>` as started, with the outbox row of `task(n)` (a task the
/// reconciler would publish again), settled at once if `settled` (as the commit that
/// records the task's result does).
async fn started_with_task(store: &SqliteStore, n: u32, settled: bool) {
    let id = SagaId::new(format!("order-{n}"));
    let started = HistoryEvent::new(
        id.clone(),
        0,
        EventType::WorkflowExecutionStarted,
        chrono::Utc::now(),
        serde_json::json!({"workflow_type": "order", "fingerprint": "f1", "input": null, "timeout_ms": null}),
        format!("trace-{n}"),
    );
    let mut c = Commit::events_only(&id, 0, vec![started]);
    c.tasks = vec![task(n)];
    c.redeliver_at = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    store.commit(c).await.unwrap();
    if settled {
        store.settle_tasks(&id, &[task(n).dedup_id]).await.unwrap();
    }
}

/// A dead letter whose task the saga recorded since (the reconciler published it
/// again and a worker ran it) is told apart from one that still needs an operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_with_a_store_says_which_tasks_still_matter() {
    with_queue(|ns, q| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("saga.db");
        let store = SqliteStore::open(&path).await.unwrap();
        started_with_task(&store, 1, false).await;
        started_with_task(&store, 2, true).await;
        // order-3: no such execution in this store.
        dead_letters(&q, 3).await;
        let url = nats_url();
        let store_url = format!("sqlite://{}", path.display());
        // `saga dlq list` of the test's queue, then `extra`.
        let list = |extra: &[&str]| {
            let mut args = vec!["dlq", "list", "--nats", &url, "--namespace", &ns];
            args.extend(["--queue", "orders"]);
            args.extend(extra);
            let args: Vec<String> = args.into_iter().map(String::from).collect();
            async move {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                saga(&refs).await
            }
        };

        let json = list(&["--store", &store_url, "-o", "json"]).await;
        let v: Value = serde_json::from_str(json.ok()).unwrap();
        let told: Vec<(&str, &Value, &str)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["dedup_id"].as_str().unwrap(),
                    &d["saga_status"],
                    d["task"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            told,
            [
                ("order-1:3", &Value::from("Running"), "open"),
                ("order-2:3", &Value::from("Running"), "settled"),
                ("order-3:3", &Value::Null, "unknown-saga"),
            ]
        );

        let table = list(&["--store", &store_url]).await;
        let lines: Vec<&str> = table.ok().lines().collect();
        assert!(
            lines[0].contains("SAGA STATUS") && lines[0].contains("TASK"),
            "{table:?}"
        );
        assert!(
            lines[1].contains("Running") && lines[1].contains(" open "),
            "{table:?}"
        );
        assert!(lines[2].contains(" settled "), "{table:?}");
        assert!(lines[3].contains(" unknown-saga "), "{table:?}");

        // Without a store, the letters alone, as before.
        let bare = list(&["-o", "json"]).await;
        let v: Value = serde_json::from_str(bare.ok()).unwrap();
        assert_eq!(v[0]["task"], Value::Null);
        assert_eq!(v[0]["saga_status"], Value::Null);
        // A store that cannot be opened is an error, not a list without the column.
        list(&["--store", "sqlite:///no/such/saga.db"])
            .await
            .fails(4, "does not exist");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exposes_dead_letters_and_queue_depth() {
    with_queue(|ns, q| async move {
        dead_letters(&q, 2).await;
        q.publish(task(5)).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("saga.db");
        // order-1's task is still unsettled in the store (its saga waits for it);
        // order-2's saga recorded its task's result since.
        let written = SqliteStore::open(&path).await.unwrap();
        started_with_task(&written, 1, false).await;
        started_with_task(&written, 2, true).await;
        let store = format!("sqlite://{}", path.display());
        let url = nats_url();
        let server = tokio::task::spawn_blocking(move || {
            serve(
                &["--store", &store],
                &[
                    "--nats",
                    &url,
                    "--namespace",
                    &ns,
                    "--queue",
                    "orders",
                    "--queue",
                    "default",
                ],
            )
        })
        .await
        .unwrap();
        let s = &server;

        let metrics = s.get("/metrics").body;
        assert!(
            metrics.contains("saga_task_queue_depth{queue=\"orders\"} 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("saga_task_queue_depth{queue=\"default\"} 0\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("saga_dead_letters{queue=\"orders\"} 2\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("saga_dead_letters{queue=\"default\"} 0\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("saga_dead_letters_open{queue=\"orders\"} 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("saga_dead_letters_open{queue=\"default\"} 0\n"),
            "{metrics}"
        );

        let doc = s.get("/openapi.json").json();
        assert!(doc["paths"].get("/dead-letters").is_some());
        assert!(doc["paths"].get("/dead-letters/redrive").is_some());

        let list = s.get("/dead-letters?queue=orders");
        assert_eq!(list.status, 200, "{list:#?}");
        assert_eq!(dedup_ids(&list.body), ["order-1:3", "order-2:3"]);
        let listed = list.json();
        assert_eq!(listed[0]["task"], "open");
        assert_eq!(listed[0]["saga_status"], "Running");
        assert_eq!(listed[1]["task"], "settled");
        s.get("/dead-letters?queue=no.such").error(400, "bad_input");
        s.post("/dead-letters/redrive?queue=orders&id=nope", "")
            .error(404, "not_found");
        s.post("/dead-letters/redrive?queue=orders", "")
            .error(409, "conflict");

        tokio::time::sleep(WINDOW + Duration::from_millis(500)).await;
        let redriven = s.post("/dead-letters/redrive?queue=orders", "");
        assert_eq!(redriven.status, 200, "{redriven:#?}");
        assert_eq!(dedup_ids(&redriven.body), ["order-1:3", "order-2:3"]);
        assert_eq!(s.get("/dead-letters?queue=orders").body, "[]");
        let metrics = s.get("/metrics").body;
        assert!(
            metrics.contains("saga_task_queue_depth{queue=\"orders\"} 3\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("saga_dead_letters{queue=\"orders\"} 0\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("saga_dead_letters_open{queue=\"orders\"} 0\n"),
            "{metrics}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_bad_input_and_unreachable_server() {
    saga(&["dlq", "list"])
        .await
        .fails(2, "no NATS server given");
    saga(&["dlq", "list", "--nats", "nats://127.0.0.1:1"])
        .await
        .fails(4, "cannot connect to NATS");
    saga(&[
        "dlq",
        "redrive",
        "--nats",
        "nats://127.0.0.1:1",
        "--stream",
        "A.B",
    ])
    .await
    .fails(2, "invalid NATS setting `stream`");
    with_queue(|ns, _q| async move {
        let url = nats_url();
        saga(&[
            "dlq",
            "list",
            "--nats",
            &url,
            "--namespace",
            &ns,
            "--queue",
            "a.b",
        ])
        .await
        .fails(2, "invalid task queue name");
    })
    .await;
}
