//! PostgreSQL goes silent without closing its connections (a host gone, a network
//! cut): a call of the store (commit, read, timer or outbox claim, listing) waiting
//! for its answer fails after
//! `PostgresConfig::reply_timeout` with `code=unavailable` instead of hanging until the
//! kernel gives the connection up, its connection is dropped, and once the server
//! answers again the store works on new connections. A commit that timed out may or
//! may not have been written; the version check settles it, nothing is lost or doubled.
//!
//! The silence is a proxy between the store and the machine's PostgreSQL that stops
//! passing bytes while keeping both sides open. Without PostgreSQL the test skips,
//! unless `CI` is set, where it fails.
#![cfg(feature = "postgres")]

mod common;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::pg::with_schema;
use saga_adapters::{PostgresConfig, PostgresStore};
use saga_runtime::domain::{EventType, HistoryEvent, SagaId};
use saga_runtime::port::{Commit, EventStore, ExecutionFilter, Outbox, TimerStore, WorkflowStore};
use saga_runtime::{Error, ErrorKind};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to `upstream` that can go silent: while `silent`, it holds what it
/// reads and passes nothing on, and closes nothing.
struct Proxy {
    port: u16,
    silent: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("an address").port();
        let silent = Arc::new(AtomicBool::new(false));
        let flag = silent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, flag.clone()));
                tokio::spawn(pump(server_read, client_write, flag.clone()));
            }
        });
        Proxy { port, silent }
    }

    fn go_silent(&self, yes: bool) {
        self.silent.store(yes, Ordering::SeqCst);
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, silent: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while silent.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The commit that starts `saga`.
fn start(saga: &SagaId) -> Commit {
    let started = HistoryEvent::new(
        saga.clone(),
        0,
        EventType::WorkflowExecutionStarted,
        Utc::now(),
        json!({"workflow_type": "silent", "fingerprint": "silent:v1", "input": null}),
        "trace-silent".to_owned(),
    );
    Commit {
        saga_id: saga.clone(),
        expected_version: 0,
        events: vec![started],
        create_timers: Vec::new(),
        cancel_timers: Vec::new(),
        snapshot: None,
        max_snapshots: 0,
        tasks: Vec::new(),
        redeliver_at: chrono::DateTime::<Utc>::UNIX_EPOCH,
        settle_tasks: Vec::new(),
    }
}

const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(30);

/// Runs `call` while the proxy is silent: it must fail as unavailable, after the
/// reply timeout (on a connection it had) or the acquire timeout (waiting for a new
/// one), and well before the kernel would have given up.
async fn fails_in_time<T: std::fmt::Debug>(
    what: &str,
    call: impl std::future::Future<Output = saga_runtime::Result<T>>,
) -> Error {
    let began = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .unwrap_or_else(|_| panic!("{what} still waits after 20 s"));
    let took = began.elapsed();
    let e = outcome.expect_err(what);
    assert_eq!(e.context("code"), Some("unavailable"), "{what}: {e}");
    assert!(
        e.message.contains("did not answer") || e.message.contains("timed out"),
        "{what}: {e}"
    );
    assert!(
        took >= REPLY_TIMEOUT && took < Duration::from_secs(10),
        "{what} failed after {took:?}"
    );
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_when_the_server_goes_silent_and_work_again_after() {
    with_schema(|config| async move {
        let options = PgConnectOptions::from_str(&config.url).expect("a PostgreSQL url");
        let upstream = format!("{}:{}", options.get_host(), options.get_port());
        let proxy = Proxy::start(upstream.clone()).await;
        let url = config
            .url
            .replacen(&upstream, &format!("127.0.0.1:{}", proxy.port), 1);
        assert_ne!(url, config.url, "the url names {upstream}");
        let store = PostgresStore::connect_with(PostgresConfig {
            url,
            reply_timeout: REPLY_TIMEOUT,
            acquire_timeout: Duration::from_secs(2),
            ..config
        })
        .await
        .expect("connect through the proxy");

        let first = SagaId::new("silent-1");
        let second = SagaId::new("silent-2");
        assert_eq!(store.commit(start(&first)).await.expect("commit"), 1);
        assert_eq!(store.version(&first).await.expect("read"), 1);

        // Pooled connections open and idle, as a running engine's are.
        store.claim_due(Utc::now(), 10, LEASE).await.expect("claim");
        store
            .claim_tasks(Utc::now(), LEASE, 10)
            .await
            .expect("claim");

        proxy.go_silent(true);
        // On the kept connection the first read used: the reply timeout.
        let e = fails_in_time("a version read", store.version(&first)).await;
        assert!(e.message.contains("did not answer"), "{e}");
        assert_eq!(e.kind, ErrorKind::EventStore, "{e}");
        fails_in_time("a history read", store.history(&first)).await;
        // On the kept connection the first commit used: the reply timeout.
        let e = fails_in_time("a commit", store.commit(start(&second))).await;
        assert!(e.message.contains("did not answer"), "{e}");
        // Statements on the pool: the timer loop's, the reconciler's, a listing.
        let e = fails_in_time("a timer claim", store.claim_due(Utc::now(), 10, LEASE)).await;
        assert_eq!(e.kind, ErrorKind::TimerStore, "{e}");
        fails_in_time("an outbox claim", store.claim_tasks(Utc::now(), LEASE, 10)).await;
        fails_in_time(
            "a listing",
            store.list_executions(&ExecutionFilter::default()),
        )
        .await;

        proxy.go_silent(false);
        assert_eq!(store.version(&first).await.expect("read again"), 1);
        assert_eq!(store.history(&first).await.expect("history").len(), 1);
        // The timed-out commit's statement reached the server once it answered again,
        // or never did: the retry writes it, or finds it written. Either way once.
        match store.commit(start(&second)).await {
            Ok(v) => assert_eq!(v, 1),
            Err(e) => assert_eq!(e.kind, ErrorKind::Concurrency, "{e}"),
        }
        assert_eq!(store.history(&second).await.expect("history").len(), 1);
        assert!(store
            .claim_due(Utc::now(), 10, LEASE)
            .await
            .expect("claim")
            .is_empty());
        assert_eq!(
            store
                .list_executions(&ExecutionFilter::default())
                .await
                .expect("listing")
                .len(),
            2
        );
    })
    .await;
}
