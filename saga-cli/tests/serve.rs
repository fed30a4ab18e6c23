//! `saga serve` against a SQLite store filled by real engine runs: every route, with
//! the CLI's JSON output as the reference (the two share their operations), bad input
//! (status and error code), the OpenAPI document's coverage, and `/metrics`.

mod common;

use std::collections::BTreeSet;

use common::http::{serve, Server};
use common::*;
use saga_adapters::SqliteStore;
use serde_json::Value;

async fn filled() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("saga.db");
    let store = SqliteStore::open(&path).await.expect("open");
    fill(&store).await;
    (dir, format!("sqlite://{}", path.display()))
}

/// `saga <args> -o json` parsed.
async fn cli_json(url: &str, args: &[&str]) -> Value {
    let mut full = vec!["--store", url, "-o", "json"];
    full.extend_from_slice(args);
    let run = saga(&full).await;
    serde_json::from_str(run.ok()).expect("CLI JSON")
}

fn ids(v: &Value) -> Vec<&str> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|e| e["saga_id"].as_str().unwrap())
        .collect()
}

/// Runs blocking HTTP calls off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_answer_as_the_cli_does() {
    let (_dir, url) = filled().await;
    let server = {
        let url = url.clone();
        blocking(move || serve(&["--store", &url], &[])).await
    };
    let s = &server;

    let all = s.get("/executions");
    assert_eq!(all.status, 200, "{all:#?}");
    assert_eq!(all.json(), cli_json(&url, &["list"]).await);
    assert_eq!(
        ids(&all.json()),
        ["done-1", "comp-1", "parked-1", "tagged-1"]
    );
    let only = |q: &str| ids(&s.get(&format!("/executions?{q}")).json()).join(",");
    assert_eq!(only("status=completed"), "done-1");
    assert_eq!(only("status=Running"), "parked-1,tagged-1");
    assert_eq!(only("type=tagged"), "tagged-1");
    assert_eq!(only("attr=region%3Deu&attr=priority%3D3"), "tagged-1");
    assert_eq!(only("attr=region%3Dus"), "");
    assert_eq!(only("since=1h&limit=1"), "done-1");
    assert_eq!(only("until=2000-01-01"), "");

    for id in ["parked-1", "comp-1", "done-1"] {
        let got = s.get(&format!("/executions/{id}"));
        assert_eq!(got.status, 200, "{got:#?}");
        assert_eq!(got.json(), cli_json(&url, &["show", id]).await);
    }
    let parked = s.get("/executions/parked-1").json();
    assert_eq!(parked["checkpoint"], "Approval");
    assert_eq!(
        parked["waiting_for_signals"],
        serde_json::json!(["approval"])
    );

    let history = s.get("/executions/done-1/history").json();
    let cli_history = saga(&["--store", &url, "-o", "json", "history", "done-1"]).await;
    let cli_history: Vec<Value> = cli_history
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(history, Value::Array(cli_history));
    assert_eq!(history[0]["event_type"], "WorkflowExecutionStarted");

    assert_eq!(
        s.get("/workflows").json(),
        cli_json(&url, &["definitions"]).await
    );
    let by_type = s.get("/workflows/order-saga/diagram").json();
    assert_eq!(by_type, cli_json(&url, &["diagram", "order-saga"]).await);
    assert_eq!(by_type["workflow_type"], "order-saga");
    let by_id = s.get("/executions/parked-1/diagram").json();
    assert_eq!(by_id, cli_json(&url, &["diagram", "parked-1"]).await);
    assert!(by_id["diagram"]
        .as_str()
        .unwrap()
        .ends_with("    class Approval current\n"));

    // Bad input: the status and a stable code, as documented.
    s.get("/executions/nope").error(404, "not_found");
    s.get("/executions/nope/history").error(404, "not_found");
    s.get("/executions/nope/diagram").error(404, "not_found");
    let m = s
        .get("/workflows/nope/diagram")
        .error(404, "unknown_workflow");
    assert!(
        m.contains("registered: ") && m.contains("order-saga"),
        "{m}"
    );
    let m = s.get("/executions?status=bogus").error(400, "bad_input");
    assert!(m.contains("unknown status `bogus`"), "{m}");
    s.get("/executions?since=yesterday").error(400, "bad_input");
    s.get("/executions?limit=-1").error(400, "bad_input");
    s.get("/executions?limit=1&limit=2").error(400, "bad_input");
    s.get("/executions?attr=region").error(400, "bad_input");
    let m = s.get("/executions?stauts=Running").error(400, "bad_input");
    assert!(m.contains("unknown query parameter `stauts`"), "{m}");
    s.get("/executions/%FF%FE").error(400, "bad_input");
    s.get("/no/such/route").error(404, "not_found");
    let wrong_method = s.request("DELETE", "/workflows", None);
    assert_eq!(wrong_method.status, 405, "{wrong_method:#?}");
    // Without `--nats` there are no dead-letter routes.
    s.get("/dead-letters").error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_recorded_and_refused_as_documented() {
    let (_dir, url) = filled().await;
    let server = {
        let url = url.clone();
        blocking(move || serve(&["--store", &url], &[])).await
    };
    let s = &server;

    let started = s.post(
        "/executions",
        r#"{"workflow_type": "order-saga", "input": {"id": "a"}, "id": "api-1", "timeout_secs": 60}"#,
    );
    assert_eq!(started.status, 201, "{started:#?}");
    assert_eq!(started.header("location"), Some("/executions/api-1"));
    let body = started.json();
    assert_eq!(body["saga_id"], "api-1");
    assert_eq!(body["workflow_type"], "order-saga");
    assert!(body["fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("order-saga:"));
    let shown = cli_json(&url, &["show", "api-1"]).await;
    assert_eq!(shown["status"], "Running");
    assert_eq!(shown["trace_id"], body["trace_id"]);

    let m = s
        .post(
            "/executions",
            r#"{"workflow_type": "order-saga", "input": null, "id": "api-1"}"#,
        )
        .error(409, "already_started");
    assert!(m.contains("`api-1` already exists"), "{m}");
    s.post("/executions", r#"{"workflow_type": "nope", "input": 1}"#)
        .error(404, "unknown_workflow");
    let queued = s.post(
        "/executions",
        r#"{"workflow_type": "order-saga", "input": {"id": "q"}, "id": "api-q", "task_queue": "billing"}"#,
    );
    assert_eq!(queued.status, 201, "{queued:#?}");
    assert_eq!(queued.json()["task_queue"], "billing");
    assert_eq!(body["task_queue"], "default");
    // `history -o json` is one event per line; a start is one event.
    let started = cli_json(&url, &["history", "api-q"]).await;
    assert_eq!(started["event_type"], "WorkflowExecutionStarted");
    assert_eq!(started["attributes"]["task_queue"], "billing");
    let m = s
        .post(
            "/executions",
            r#"{"workflow_type": "order-saga", "input": 1, "id": "api-q2", "task_queue": ""}"#,
        )
        .error(400, "bad_input");
    assert!(m.contains("a task queue name cannot be empty"), "{m}");
    s.post("/executions", r#"{"workflow_type": "order-saga""#)
        .error(400, "bad_input");
    s.post("/executions", r#"{"workflow_type": "order-saga"}"#)
        .error(400, "bad_input");
    s.post(
        "/executions",
        r#"{"workflow_type": "order-saga", "input": 1, "colour": "red"}"#,
    )
    .error(400, "bad_input");
    s.post(
        "/executions",
        r#"{"workflow_type": "order-saga", "input": 1, "timeout_secs": 0}"#,
    )
    .error(400, "bad_input");
    s.post(
        "/executions",
        r#"{"workflow_type": "order-saga", "input": 1, "id": " "}"#,
    )
    .error(400, "bad_input");

    // Any id: the Location header carries it percent-encoded, and it leads back.
    let odd = s.post(
        "/executions",
        r#"{"workflow_type": "order-saga", "input": null, "id": "a b/ü\u0001"}"#,
    );
    assert_eq!(odd.status, 201, "{odd:#?}");
    let location = odd.header("location").expect("a Location header");
    assert_eq!(location, "/executions/a%20b%2F%C3%BC%01");
    assert_eq!(s.get(location).json()["saga_id"], "a b/ü\u{1}");

    let signalled = s.post(
        "/executions/api-1/signals",
        r#"{"name": "approval", "payload": {"granted": true}}"#,
    );
    assert_eq!(signalled.status, 202, "{signalled:#?}");
    assert_eq!(
        signalled.json(),
        serde_json::json!({"saga_id": "api-1", "signal": "approval"})
    );
    s.post("/executions/done-1/signals", r#"{"name": "approval"}"#)
        .error(409, "closed");
    s.post("/executions/nope/signals", r#"{"name": "approval"}"#)
        .error(404, "not_found");
    s.post("/executions/api-1/signals", r#"{"name": ""}"#)
        .error(400, "bad_input");
    s.post("/executions/api-1/signals", "approval")
        .error(400, "bad_input");
    // The fields in an array instead of an object (serde alone would take it).
    let m = s
        .post("/executions/api-1/signals", r#"["approval"]"#)
        .error(400, "bad_input");
    assert!(m.contains("must be a JSON object"), "{m}");
    s.post("/executions", r#"["order-saga", 1]"#)
        .error(400, "bad_input");

    let cancelled = s.post("/executions/api-1/cancel", "");
    assert_eq!(cancelled.status, 202, "{cancelled:#?}");
    assert_eq!(cancelled.json()["cancel_requested"], true);
    let m = s.post("/executions/comp-1/cancel", "").error(409, "closed");
    assert!(m.contains("is closed (Cancelled)"), "{m}");
    s.post("/executions/nope/cancel", "")
        .error(404, "not_found");

    // Recorded as the CLI records them: the events are in the history.
    let types: Vec<String> = s
        .get("/executions/api-1/history")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "WorkflowExecutionStarted",
            "SignalReceived",
            "WorkflowExecutionCancelRequested"
        ]
    );
}

/// Every route the server answers is in the OpenAPI document, with every status it
/// answers with there; and nothing else is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_covers_the_routes() {
    let (_dir, url) = filled().await;
    let server = blocking(move || serve(&["--store", &url], &[])).await;
    let doc = server.get("/openapi.json").json();
    assert_eq!(doc["openapi"], "3.0.3");
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations.insert(format!("{} {path}", method.to_uppercase()));
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("500") || path == "/openapi.json",
                "{path}"
            );
        }
    }
    let expected: BTreeSet<String> = [
        "GET /executions",
        "POST /executions",
        "GET /executions/{id}",
        "GET /executions/{id}/history",
        "GET /executions/{id}/diagram",
        "POST /executions/{id}/signals",
        "POST /executions/{id}/cancel",
        "GET /workflows",
        "GET /workflows/{workflow_type}/diagram",
        "GET /metrics",
        "GET /openapi.json",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(operations, expected);
    // Every `$ref` resolves.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &piece[..piece.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "unresolved $ref {name}"
        );
    }
    // The error codes the server uses are the documented ones.
    let codes = &doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"];
    for code in [
        "bad_input",
        "not_found",
        "unknown_workflow",
        "already_started",
        "closed",
    ] {
        assert!(
            codes.as_array().unwrap().contains(&Value::from(code)),
            "{code}"
        );
    }
}

/// The value of the sample `series` (`name{labels}`) in a text-format document.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_executions_and_the_outbox() {
    let (_dir, url) = filled().await;
    let server: Server = blocking(move || serve(&["--store", &url], &[])).await;
    let before = server.get("/metrics");
    assert_eq!(before.status, 200, "{before:#?}");
    assert_eq!(
        before.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = &before.body;
    let executions = |t: &str, st: &str| {
        sample(
            text,
            &format!("saga_executions{{workflow_type=\"{t}\",status=\"{st}\"}}"),
        )
    };
    assert_eq!(executions("order-saga", "Completed"), Some(1.0), "{text}");
    assert_eq!(executions("order-saga", "Cancelled"), Some(1.0), "{text}");
    assert_eq!(executions("order-saga", "Running"), Some(1.0), "{text}");
    assert_eq!(executions("order-saga", "Failed"), Some(0.0), "{text}");
    assert_eq!(executions("tagged", "Running"), Some(1.0), "{text}");
    assert!(text.contains("# TYPE saga_executions gauge\n"), "{text}");
    let outbox = sample(text, "saga_outbox_tasks").expect("saga_outbox_tasks");
    // No engine here: no engine counters, no task queue without `--nats`.
    assert!(!text.contains("saga_engine_"), "{text}");
    assert!(!text.contains("saga_task_queue_depth"), "{text}");

    // A start through the API writes a workflow task to the outbox (no worker runs).
    let started = server.post(
        "/executions",
        r#"{"workflow_type": "order-saga", "input": null, "id": "m-1"}"#,
    );
    assert_eq!(started.status, 201, "{started:#?}");
    let after = server.get("/metrics").body;
    assert_eq!(
        sample(&after, "saga_outbox_tasks"),
        Some(outbox + 1.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "saga_executions{workflow_type=\"order-saga\",status=\"Running\"}"
        ),
        Some(2.0),
        "{after}"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_cleanly() {
    let (_dir, url) = filled().await;
    let status = blocking(move || {
        let server = serve(&["--store", &url], &[]);
        assert_eq!(server.get("/workflows").status, 200);
        server.terminate()
    })
    .await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_what_it_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}", dir.path().join("missing.db").display());
    saga(&["--store", &missing, "serve", "--listen", "127.0.0.1:0"])
        .await
        .fails(4, "does not exist");
    saga(&["serve", "--listen", "127.0.0.1:0"])
        .await
        .fails(2, "no store given");
    let (_dir, url) = filled().await;
    // An address of another machine cannot be bound.
    saga(&["--store", &url, "serve", "--listen", "192.0.2.1:80"])
        .await
        .fails(2, "cannot listen on 192.0.2.1:80");
    saga(&["--store", &url, "serve", "--nats", "nats://127.0.0.1:1"])
        .await
        .fails(4, "cannot connect to NATS");
    saga(&[
        "--store",
        &url,
        "serve",
        "--nats",
        "nats://127.0.0.1:1",
        "--namespace",
        "a.b",
    ])
    .await
    .fails(2, "invalid NATS setting");
}
