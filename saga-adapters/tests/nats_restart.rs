//! NATS restarted while workers run (issue 5): calls during the outage fail with a
//! `TaskQueue` error, the clients reconnect when the server is back, the durable
//! stream and consumers are still there, and every task is processed.
//!
//! The test runs a private nats-server (JetStream in a temporary directory, on a free
//! port), so that stopping it disturbs no one: the machine's shared server on 4222 is
//! never touched. The restart is a graceful one (SIGTERM), as an operator's restart
//! is; losing acknowledged data is the outbox reconciler's case, not this one. Without
//! the nats-server binary the test skips, unless `CI` is set, where it fails.
#![cfg(feature = "nats")]

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use saga_adapters::{NatsConfig, NatsTaskQueue};
use saga_runtime::domain::SagaId;
use saga_runtime::port::{Task, TaskKind, TaskQueue};
use saga_runtime::ErrorKind;

/// A nats-server of our own.
struct Server {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

fn nats_server_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return Some(bin.into());
    }
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

impl Server {
    fn create() -> Option<Server> {
        let Some(bin) = nats_server_bin() else {
            let why = "no nats-server binary (set NATS_SERVER_BIN)";
            if std::env::var_os("CI").is_some() {
                panic!("{why} (CI is set)");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::Builder::new()
            .prefix("saga-nats-restart-")
            .tempdir()
            .expect("a temporary directory");
        Some(Server {
            bin,
            dir,
            port,
            child: None,
        })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
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
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A graceful stop (SIGTERM, so the server flushes its stores), of our child only.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                _ if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn task(n: u32) -> Task {
    let saga = format!("restart-{n}");
    Task {
        kind: TaskKind::Activity,
        dedup_id: format!("{saga}:1"),
        saga_id: SagaId::new(saga),
        queue: "work".to_owned(),
        payload: n.to_be_bytes().to_vec(),
    }
}

/// Publishes, retrying while the client reconnects; panics after `within`.
async fn publish_retrying(q: &NatsTaskQueue, t: Task, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match q.publish(t.clone()).await {
            Ok(()) => return,
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::TaskQueue, "{e}");
                assert!(
                    Instant::now() < deadline,
                    "publish still failing after {within:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn wait_done(done: &Mutex<BTreeSet<u32>>, want: u32, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        // Counting only the wanted ones: the publish that failed while the server was
        // down may still have reached it (the client resends what it had buffered).
        let have = done.lock().unwrap().range(..want).count();
        if have == want as usize {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{have} of {want} tasks processed within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_carry_on_across_a_server_restart() {
    let Some(mut server) = Server::create() else {
        return;
    };
    server.start();
    let config = NatsConfig {
        ack_wait: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        ..NatsConfig::default()
    };
    let publisher = NatsTaskQueue::connect(&server.url(), config.clone())
        .await
        .expect("connect the publisher");
    let worker = NatsTaskQueue::connect(&server.url(), config.clone())
        .await
        .expect("connect the worker");

    // A worker loop that keeps going through errors, as a worker process does.
    let done = Arc::new(Mutex::new(BTreeSet::new()));
    let errors = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let worker_loop = {
        let (done, errors, stop) = (done.clone(), errors.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match worker.fetch("work", 16, Duration::from_millis(200)).await {
                    Ok(got) => {
                        for d in got {
                            let n = u32::from_be_bytes(d.task.payload[..4].try_into().unwrap());
                            match worker.ack(&d.tag).await {
                                Ok(()) => {
                                    done.lock().unwrap().insert(n);
                                }
                                // Redelivered after the ack wait, and acked then.
                                Err(_) => {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        assert_eq!(e.kind, ErrorKind::TaskQueue, "{e}");
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    };

    for n in 0..50 {
        publish_retrying(&publisher, task(n), Duration::from_secs(5)).await;
    }
    wait_done(&done, 50, Duration::from_secs(10)).await;

    server.stop();
    let down = publisher.publish(task(1000)).await;
    let e = down.expect_err("a publish while the server is down must fail");
    assert_eq!(e.kind, ErrorKind::TaskQueue, "{e}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.start();

    // The clients reconnect by themselves; the stream and the consumer are durable.
    for n in 50..100 {
        publish_retrying(&publisher, task(n), Duration::from_secs(20)).await;
    }
    wait_done(&done, 100, Duration::from_secs(20)).await;
    stop.store(true, Ordering::Relaxed);
    worker_loop.await.expect("the worker loop");

    let done = done.lock().unwrap().clone();
    let missing: Vec<u32> = (0..100).filter(|n| !done.contains(n)).collect();
    assert!(missing.is_empty(), "never processed: {missing:?}");
    eprintln!(
        "calls that failed during the restart and were retried: {}",
        errors.load(Ordering::Relaxed)
    );
    server.stop();
}
