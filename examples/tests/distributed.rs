//! Many machines (issue 5): three `worker` processes over PostgreSQL + NATS JetStream
//! run 1 000 shop order sagas, 10 % of them told to fail and compensate, while the test
//! kills one worker with SIGKILL twice (restarting it each time), restarts the NATS
//! server, and deletes the task stream (the broker losing acknowledged messages).
//!
//! Every saga must end in the right status with a dense history that replays; every
//! effect (the ledger the activities write under their idempotency key) must have
//! happened exactly once, compensations included; the workers must stop gracefully on
//! SIGTERM at the end.
//!
//! The NATS server is the test's own (JetStream in a temporary directory, on a free
//! port), so restarting it and deleting its stream disturb no one; the store is a new
//! PostgreSQL schema, dropped at the end. Without PostgreSQL or a nats-server binary
//! the test skips with the reason, unless `CI` is set, where it fails.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use examples::shop::{self, shop_order, ShopOrder};
use saga_adapters::{async_nats, NatsConfig, NatsTaskQueue, PostgresConfig, PostgresStore};
use saga_runtime::conformance::engine::assert_history_sound;
use saga_runtime::domain::{EventType, WorkflowStatus};
use saga_runtime::engine::{SagaEngine, StartOptions};
use saga_runtime::port::{EventStore, ExecutionFilter, Outbox};
use sqlx::{Connection, PgConnection, Row};

const SAGAS: usize = 1_000;
const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The tests of this file run one at a time: each starts worker processes and a
/// nats-server of its own, and the long one must not share the 2 cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fresh schema and NATS namespace name.
fn fresh_names(prefix: &str) -> (String, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (
        format!("saga_{prefix}_{nanos:x}_{}", std::process::id()),
        format!("{prefix}{nanos:x}"),
    )
}

/// A missing service fails the test in CI and skips it (with the reason) elsewhere.
fn skip_or_fail(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{why} (CI is set)");
    }
    eprintln!("SKIPPED: {why}");
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The test's own nats-server.
struct Nats {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Nats {
    fn start() -> Option<Nats> {
        let bin = [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
        let Some(bin) = bin else {
            skip_or_fail("no nats-server binary");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut nats = Nats {
            bin,
            dir: tempfile::tempdir().expect("a temporary directory"),
            port,
            child: None,
        };
        nats.up();
        Some(nats)
    }

    fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let child = Command::new(&self.bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let port = self.port;
        wait_until("nats-server", Duration::from_secs(20), || port_open(port));
    }

    /// A graceful restart (SIGTERM, then the same storage directory again).
    fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        std::thread::sleep(Duration::from_millis(500));
        self.up();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `worker` process of the examples.
struct Worker {
    child: Child,
    /// Where it serves its metrics (`SAGA_METRICS_ADDR` on a free port).
    metrics: String,
}

impl Worker {
    /// The `worker` binary on the run's schema and NATS namespace.
    fn command(schema: &str, nats: &Nats, namespace: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
        command
            .env("SAGA_DATABASE_URL", PG_URL)
            .env("SAGA_SCHEMA", schema)
            .env("SAGA_NATS_URL", nats.url())
            .env("SAGA_NATS_NAMESPACE", namespace);
        command
    }

    fn spawn(schema: &str, nats: &Nats, namespace: &str) -> Worker {
        Worker::spawn_on(schema, nats, namespace, None)
    }

    /// A worker serving `queue` (`SAGA_TASK_QUEUE`; `None`: the default queue).
    fn spawn_on(schema: &str, nats: &Nats, namespace: &str, queue: Option<&str>) -> Worker {
        let mut command = Worker::command(schema, nats, namespace);
        if let Some(q) = queue {
            command.env("SAGA_TASK_QUEUE", q);
        }
        let mut child = command
            .env("SAGA_CONCURRENCY", "16")
            .env("SAGA_REDELIVER_AFTER_MS", "3000")
            .env("SAGA_NATS_ACK_WAIT_MS", "3000")
            .env("SAGA_METRICS_ADDR", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the worker starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
        let metrics = first
            .split_once(" metrics at http://")
            .and_then(|(_, rest)| rest.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("worker said {first:?}"))
            .to_owned();
        let second = lines.next().and_then(|l| l.ok()).unwrap_or_default();
        assert!(second.ends_with("ready"), "worker said {second:?}");
        // Keep reading, so the worker never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Worker { child, metrics }
    }

    /// `GET /metrics`: the body.
    fn scrape(&self) -> String {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(&self.metrics).expect("connect to /metrics");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).expect("a response");
        let (head, body) = out.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        body.to_owned()
    }

    fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

/// A failed test must not leave workers behind (they would hold its output open).
impl Drop for Worker {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Worker {
    /// SIGTERM; the worker must exit 0.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let code = self.child.wait().expect("the worker exits");
        assert!(code.success(), "graceful shutdown must exit 0, got {code}");
    }
}

fn order(i: usize) -> (String, ShopOrder) {
    let id = format!("shop-{i:04}");
    let order = ShopOrder {
        id: id.clone(),
        amount_cents: 100 + i as u64,
        carrier_rejects: i % 10 == 7,
    };
    (id, order)
}

async fn start_range(client: &SagaEngine, range: std::ops::Range<usize>) {
    for chunk in range.collect::<Vec<_>>().chunks(50) {
        let starts = chunk.iter().map(|&i| {
            let (id, o) = order(i);
            async move {
                // During the NATS restart a start still commits (with its outbox task)
                // even if its publish fails: the reconciler publishes it later.
                client.start::<shop_order>(id.as_str(), o).await.map(|_| ())
            }
        });
        for r in futures_util::future::join_all(starts).await {
            r.expect("start is recorded");
        }
    }
}

async fn closed_count(store: &PostgresStore) -> usize {
    let all = store
        .list_executions(&ExecutionFilter::default())
        .await
        .unwrap_or_default();
    all.iter().filter(|s| s.status.is_closed()).count()
}

async fn wait_closed(store: &PostgresStore, at_least: usize, limit: Duration) {
    let start = Instant::now();
    loop {
        let n = closed_count(store).await;
        if n >= at_least {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "only {n} of {at_least} sagas closed after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The run's store (a fresh schema) and task queue (a fresh NATS namespace), and the
/// test's own client on them: it starts sagas and reads them, and runs no workers.
async fn client_of(
    schema: &str,
    nats: &Nats,
    namespace: &str,
) -> (PostgresStore, NatsTaskQueue, SagaEngine) {
    let store = PostgresStore::connect_with(PostgresConfig::new(PG_URL).schema(schema))
        .await
        .expect("store");
    let queue = NatsTaskQueue::connect(&nats.url(), NatsConfig::namespaced(namespace))
        .await
        .expect("queue");
    let client = shop::builder()
        .store(store.clone())
        .queue(queue.clone())
        .signals(queue.signal_dispatcher())
        .client_only()
        .build()
        .await
        .expect("client");
    (store, queue, client)
}

/// Deletes what a run made: its streams and its schema.
async fn clean_up(admin: &mut PgConnection, queue: &NatsTaskQueue, schema: &str) {
    let _ = queue.delete_streams().await;
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_survive_kills_broker_restart_and_stream_loss() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Ok(mut admin) = PgConnection::connect(PG_URL).await else {
        return skip_or_fail(&format!("PostgreSQL at {PG_URL} is unreachable"));
    };
    let Some(mut nats) = Nats::start() else {
        return;
    };
    let (schema, namespace) = fresh_names("dist");

    let (store, queue, client) = client_of(&schema, &nats, &namespace).await;

    let mut workers: Vec<Worker> = (0..3)
        .map(|_| Worker::spawn(&schema, &nats, &namespace))
        .collect();
    let started = Instant::now();
    let quarter = SAGAS / 4;
    let limit = Duration::from_secs(240);

    // 1. SIGKILL a worker mid-run, and restart it.
    start_range(&client, 0..quarter).await;
    wait_closed(&store, quarter / 5, limit).await;
    workers[0].sigkill();
    workers[0] = Worker::spawn(&schema, &nats, &namespace);

    // 2. Restart the NATS server while sagas run.
    start_range(&client, quarter..2 * quarter).await;
    nats.restart();

    // 3. SIGKILL the same worker again.
    start_range(&client, 2 * quarter..3 * quarter).await;
    wait_closed(&store, 2 * quarter, limit).await;
    workers[0].sigkill();
    workers[0] = Worker::spawn(&schema, &nats, &namespace);

    // 4. The broker loses its tasks: delete the stream under the running workers.
    start_range(&client, 3 * quarter..SAGAS).await;
    let js = async_nats::jetstream::new(queue.client().clone());
    js.delete_stream(&queue.config().stream)
        .await
        .expect("delete the task stream");

    wait_closed(&store, SAGAS, limit).await;
    let elapsed = started.elapsed();
    // Each worker's own metrics (since it last started): its attempts, each timed.
    let mut scraped_attempts = 0.0;
    for w in &workers {
        let text = w.scrape();
        let sample = |series: &str| -> Vec<f64> {
            text.lines()
                .filter(|l| l.starts_with(series))
                .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
                .collect()
        };
        let attempts = sample("saga_engine_activity_attempts_total ")[0];
        let timed: f64 = sample("saga_engine_activity_attempt_duration_seconds_count{")
            .iter()
            .sum();
        assert_eq!(timed, attempts, "every attempt timed:\n{text}");
        assert!(
            text.contains("# TYPE saga_engine_activity_attempt_duration_seconds histogram"),
            "{text}"
        );
        scraped_attempts += attempts;
    }
    for w in workers {
        w.stop();
    }

    // Every saga ended as told, with a sound history that replays.
    let summaries: BTreeMap<String, WorkflowStatus> = store
        .list_executions(&ExecutionFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.saga_id.to_string(), s.status))
        .collect();
    assert_eq!(summaries.len(), SAGAS);
    let mut compensated = 0;
    for i in 0..SAGAS {
        let (id, o) = order(i);
        let want = if o.carrier_rejects {
            compensated += 1;
            WorkflowStatus::Cancelled
        } else {
            WorkflowStatus::Completed
        };
        assert_eq!(summaries[&id], want, "{id}");
        let h = client.history(id.as_str()).await.unwrap();
        assert_history_sound(&h);
        let completions = h
            .iter()
            .filter(|e| e.event_type == EventType::ActivityTaskCompleted)
            .count();
        assert_eq!(completions, if o.carrier_rejects { 6 } else { 3 }, "{id}");
        client.verify_replay(id.as_str()).await.unwrap();
    }

    // Every effect exactly once: one ledger row per step (the key is unique), and
    // nothing for steps that never ran.
    let effects: BTreeMap<String, i64> = sqlx::query(&format!(
        "SELECT action, count(*) FROM \"{schema}\".shop_effects GROUP BY action"
    ))
    .fetch_all(&mut admin)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
    .collect();
    let n = SAGAS as i64;
    let c = compensated as i64;
    let want: BTreeMap<String, i64> = [
        ("reserve", n),
        ("charge", n),
        ("ship", n),
        ("cancel-shipment", c),
        ("refund", c),
        ("release", c),
    ]
    .into_iter()
    .map(|(a, k)| (a.to_owned(), k))
    .collect();
    assert_eq!(effects, want, "every effect once, compensations included");
    let attempts: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".shop_attempts"))
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(
        store.outbox_len().await.unwrap(),
        0,
        "closed sagas leave no task in the outbox"
    );
    // The live workers ran some of the attempts (the killed ones' are gone with them).
    assert!(
        scraped_attempts > 0.0 && scraped_attempts <= attempts as f64,
        "workers' metrics count {scraped_attempts} attempts of {attempts}"
    );
    println!(
        "{SAGAS} sagas ({compensated} compensated) in {elapsed:?}: {} effects, {attempts} \
         activity runs ({} duplicates absorbed by idempotency keys)",
        effects.values().sum::<i64>(),
        attempts - effects.values().sum::<i64>()
    );

    drop(client);
    clean_up(&mut admin, &queue, &schema).await;
}

/// `SAGA_TASK_QUEUE`: a worker serves only its queue. Sagas started on `eu` complete on
/// it; one started on the default queue, which no worker serves here, waits untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_only_its_task_queue() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Ok(mut admin) = PgConnection::connect(PG_URL).await else {
        return skip_or_fail(&format!("PostgreSQL at {PG_URL} is unreachable"));
    };
    let Some(nats) = Nats::start() else {
        return;
    };
    let (schema, namespace) = fresh_names("queue");
    let (_store, queue, client) = client_of(&schema, &nats, &namespace).await;
    let worker = Worker::spawn_on(&schema, &nats, &namespace, Some("eu"));

    let on_eu = StartOptions {
        task_queue: Some("eu".into()),
        ..StartOptions::default()
    };
    let (stray_id, stray) = order(1);
    client
        .start::<shop_order>(stray_id.as_str(), stray)
        .await
        .expect("start on the default queue");
    for i in 2..5 {
        let (id, o) = order(i);
        let run = client
            .start_with::<shop_order>(id.as_str(), o, on_eu.clone())
            .await
            .expect("start on eu");
        tokio::time::timeout(Duration::from_secs(30), run.result())
            .await
            .expect("the eu worker finishes it")
            .expect("it completes");
    }
    let stray = client.history(stray_id.as_str()).await.unwrap();
    assert_eq!(
        stray.iter().map(|e| e.event_type).collect::<Vec<_>>(),
        [
            EventType::WorkflowExecutionStarted,
            EventType::ActivityTaskScheduled
        ],
        "the default-queue saga waits: no worker serves its queue"
    );
    worker.stop();

    // A name NATS cannot carry stops the worker at start, with the reason.
    let bad = Worker::command(&schema, &nats, &namespace)
        .env("SAGA_TASK_QUEUE", "eu.west")
        .output()
        .expect("the worker runs");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "{stderr}");
    assert!(stderr.contains("invalid task queue name"), "{stderr}");

    drop(client);
    clean_up(&mut admin, &queue, &schema).await;
}
