//! PostgreSQL goes silent without closing its connections (a host gone, a network
//! cut): a call of the store (commit, read, timer or outbox claim, listing) waiting
//! for its answer fails after
//! `PostgresConfig::reply_timeout` with `code=unavailable` instead of hanging until the
//! kernel gives the connection up, its connection is dropped, and once the server
//! answers again the store works on new connections. A commit that timed out may or
//! may not have been written; the version check settles it, nothing is lost or doubled.
//! After a failover (the old connections silent for good, new ones answered), every
//! kind of call works again once it has failed on the connections it found open.
//!
//! The silence is a proxy between the store and the machine's PostgreSQL that stops
//! passing bytes while keeping both sides open (`common::proxy`). Without PostgreSQL
//! the test skips, unless `CI` is set, where it fails.
#![cfg(feature = "postgres")]

mod common;

use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::pg::with_schema;
use common::proxy::Proxy;
use saga_adapters::{PostgresConfig, PostgresStore};
use saga_runtime::domain::{EventType, HistoryEvent, SagaId};
use saga_runtime::port::{
    Commit, EventStore, ExecutionFilter, Notification, Outbox, SignalDispatcher,
    SignalSubscription, TimerStore, WorkflowStore,
};
use saga_runtime::{Error, ErrorKind};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;

/// A store on `config`'s database through a new [`Proxy`].
async fn behind_proxy(config: PostgresConfig) -> (Proxy, PostgresStore) {
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
    (proxy, store)
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
        let (proxy, store) = behind_proxy(config).await;

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

/// Calls `call` until it succeeds, at most `first_tries` times, each failure being an
/// `unavailable` error in time; then three more calls must succeed at once. Returns
/// how many failed.
async fn recovers<T: std::fmt::Debug, F: std::future::Future<Output = saga_runtime::Result<T>>>(
    what: &str,
    first_tries: usize,
    mut call: impl FnMut() -> F,
) -> usize {
    let mut failed = 0;
    loop {
        let began = Instant::now();
        match tokio::time::timeout(Duration::from_secs(20), call()).await {
            Ok(Ok(_)) => break,
            Ok(Err(e)) => {
                assert_eq!(e.context("code"), Some("unavailable"), "{what}: {e}");
                assert!(
                    began.elapsed() < Duration::from_secs(10),
                    "{what} failed after {:?}",
                    began.elapsed()
                );
                failed += 1;
                assert!(
                    failed < first_tries,
                    "{what} still fails after {failed} tries: {e}"
                );
            }
            Err(_) => panic!("{what} still waits after 20 s"),
        }
    }
    for _ in 0..3 {
        call()
            .await
            .unwrap_or_else(|e| panic!("{what} after the failover: {e}"));
    }
    failed
}

/// A failover: every connection the store had goes silent for good, and the address
/// answers again on new connections. Each call that was waiting on an old connection
/// fails after the reply timeout, and its connection is closed rather than pinged by
/// the pool (a ping that would wait as long, holding a slot: enough of them and no new
/// connection could be opened at all). So every kind of call works again after at
/// most one failure per connection it may have found open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_every_call_works_on_new_connections() {
    with_schema(|config| async move {
        // Two pooled connections (8 less two flushers and four kept readers).
        let (proxy, store) = behind_proxy(PostgresConfig {
            max_connections: 8,
            ..config
        })
        .await;
        let saga = SagaId::new("failover-1");
        assert_eq!(store.commit(start(&saga)).await.expect("commit"), 1);
        assert_eq!(store.version(&saga).await.expect("read"), 1);
        // Both pooled connections open and idle: two calls at once, then time for the
        // pool's pings of their return.
        let (a, b) = tokio::join!(
            store.claim_due(Utc::now(), 10, LEASE),
            store.claim_tasks(Utc::now(), LEASE, 10)
        );
        a.expect("claim");
        b.expect("claim");
        tokio::time::sleep(Duration::from_millis(300)).await;

        proxy.cut();
        // On the pool first: each old connection costs one failure, and is closed.
        // (Pinged instead, both would hold the pool's two slots, and no call below
        // could get a connection.)
        let failed = recovers("a timer claim", 3, || {
            store.claim_due(Utc::now(), 10, LEASE)
        })
        .await;
        assert_eq!(failed, 2, "a timer claim on each old pooled connection");
        recovers("an outbox claim", 3, || {
            store.claim_tasks(Utc::now(), LEASE, 10)
        })
        .await;
        let all = ExecutionFilter::default();
        recovers("a listing", 3, || store.list_executions(&all)).await;
        // Kept connections: the first failure drops the idle ones with it; new ones
        // come from the pool.
        recovers("a version read", 3, || store.version(&saga)).await;
        recovers("a history read", 3, || store.history(&saga)).await;
        let mut n = 0;
        recovers("a commit", 3, || {
            n += 1;
            store.commit(start(&SagaId::new(format!("failover-new-{n}"))))
        })
        .await;
        assert_eq!(store.history(&saga).await.expect("history").len(), 1);
    })
    .await;
}

/// The signal dispatcher after a failover: a `NOTIFY` on an old connection fails after
/// the reply timeout instead of hanging, and the next works on a new connection; the
/// listening connection, silent, delivers nothing, which the first subscription after
/// the cut finds out (its marker does not come back): it has a new listener made, and
/// from then on subscriptions are confirmed at once and hear every notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signal_dispatcher_listens_again_after_a_failover() {
    with_schema(|config| async move {
        let (proxy, store) = behind_proxy(config).await;
        let signals = store.signal_dispatcher().await.expect("a dispatcher");
        let saga = SagaId::new("signals-1");
        let signal = |name: &str| Notification::SignalReceived { name: name.into() };
        let heard = |mut sub: SignalSubscription, n: Notification| async move {
            let got = tokio::time::timeout(Duration::from_secs(10), sub.recv()).await;
            assert_eq!(got.ok().flatten(), Some(n));
        };
        let before = signals.subscribe(&saga).await.expect("subscribe");
        signals
            .notify(&saga, signal("before"))
            .await
            .expect("notify");
        heard(before, signal("before")).await;

        proxy.cut();
        let failed = recovers("a notification", 2, || {
            signals.notify(&saga, signal("lost"))
        })
        .await;
        assert_eq!(failed, 1, "a notification on the old connection");
        // Nothing comes back on the silent listener: registered without its marker.
        let began = Instant::now();
        signals
            .subscribe(&saga)
            .await
            .expect("subscribe after the cut");
        assert!(
            began.elapsed() >= Duration::from_secs(4),
            "{:?}",
            began.elapsed()
        );
        // A new listener is being made; once it listens, markers come back at once.
        let deadline = Instant::now() + Duration::from_secs(20);
        let after = loop {
            let began = Instant::now();
            let sub = signals.subscribe(&saga).await.expect("subscribe");
            if began.elapsed() < Duration::from_secs(2) {
                break sub;
            }
            assert!(Instant::now() < deadline, "no new listener after 20 s");
        };
        signals
            .notify(&saga, signal("after"))
            .await
            .expect("notify");
        heard(after, signal("after")).await;
    })
    .await;
}
