//! `saga_runtime::metrics::http::serve`, the `/metrics` endpoint a worker process runs
//! (the `worker` binary with `SAGA_METRICS_ADDR`): scraped over a real socket after
//! sagas ran on the in-memory store.

use std::time::Duration;

use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::conformance::engine::builder;
use saga_runtime::conformance::fixtures::{order_saga, Order};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One raw HTTP/1.1 exchange: the response head (status line first, in lower case)
/// and the body.
async fn request(addr: std::net::SocketAddr, head: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let (response_head, body) = out.split_once("\r\n\r\n").expect("a head and a body");
    // Header names are case-insensitive (hyper writes them in lower case).
    let response_head = response_head.to_lowercase();
    let length: usize = response_head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    if head.starts_with("HEAD ") {
        assert!(body.is_empty() && length > 0, "{response_head}");
    } else {
        assert_eq!(length, body.len(), "{response_head}");
    }
    (response_head, body.to_owned())
}

/// The value of the sample `series` (name and labels exactly as written).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no `{series}` in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_sees_the_engines_counters_and_histograms() {
    let engine = builder(InMemoryStore::new()).build().await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = engine.metrics_handle();
    let server = tokio::spawn(saga_runtime::metrics::http::serve(listener, move || {
        handle.metrics().to_prometheus()
    }));

    // Before any saga: the families are there, empty.
    let (status, body) = request(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(status.starts_with("http/1.1 200 ok"), "{status}");
    assert!(
        status.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{status}"
    );
    assert_eq!(value(&body, "saga_engine_activity_attempts_total"), 0.0);
    assert!(body.contains("# TYPE saga_engine_activity_attempt_duration_seconds histogram\n"));

    for i in 0..3 {
        let id = format!("o{i}");
        let order = Order {
            carrier_rejects: i == 2,
            ..Order::new(&id)
        };
        let run = engine
            .start::<order_saga>(id.as_str(), order)
            .await
            .unwrap();
        let _ = run.result().await;
    }

    let (_, body) = request(
        addr,
        "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let attempts = value(&body, "saga_engine_activity_attempts_total");
    // 2 completed orders x 3 steps, 1 compensated: 3 steps + 3 compensations.
    assert_eq!(attempts, 12.0, "{body}");
    let reserve = "saga_engine_activity_attempt_duration_seconds_count\
                   {activity_type=\"reserve-inventory\",outcome=\"completed\"}";
    assert_eq!(value(&body, reserve), 3.0);
    let inf = "saga_engine_activity_attempt_duration_seconds_bucket\
               {activity_type=\"cancel-shipment\",outcome=\"completed\",le=\"+Inf\"}";
    assert_eq!(value(&body, inf), 1.0);
    let sum = value(
        &body,
        "saga_engine_activity_attempt_duration_seconds_sum\
         {activity_type=\"reserve-inventory\",outcome=\"completed\"}",
    );
    assert!(
        (0.0..3.0).contains(&sum),
        "three in-process attempts took {sum} s"
    );
    // The histograms' counts add up to the attempts counter.
    let counted: f64 = body
        .lines()
        .filter(|l| l.starts_with("saga_engine_activity_attempt_duration_seconds_count{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(counted, attempts);
    let order_type = "{workflow_type=\"order-saga\"";
    assert_eq!(
        value(
            &body,
            &format!("saga_engine_workflows_started_total{order_type}}}")
        ),
        3.0
    );
    for (outcome, n) in [("completed", 2.0), ("compensated", 1.0), ("failed", 0.0)] {
        let series =
            format!("saga_engine_workflows_closed_total{order_type},outcome=\"{outcome}\"}}");
        assert_eq!(value(&body, &series), n);
    }

    // HEAD: the length, no body; other paths and methods are refused.
    let (status, body) = request(
        addr,
        "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        status.starts_with("http/1.1 200 ok") && body.is_empty(),
        "{status}"
    );
    let (status, _) = request(
        addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(status.starts_with("http/1.1 404"), "{status}");
    let (status, _) = request(
        addr,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        status.starts_with("http/1.1 405") && status.contains("allow: get, head"),
        "{status}"
    );
    // A client that sends half a request and hangs up does not stop the server.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /met").await.unwrap();
    drop(half);
    // An HTTP/1.0 client (no Host, closes by default) is answered in kind.
    let (status, _) = request(addr, "GET /metrics HTTP/1.0\r\n\r\n").await;
    assert!(status.starts_with("http/1.0 200 ok"), "{status}");

    // Keep-alive: two requests on one connection (pipelined), both answered.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut both = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut both))
        .await
        .expect("closed after the second")
        .unwrap();
    assert_eq!(both.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{both}");

    server.abort();
    engine.shutdown().await;
}
