//! NATS goes silent without closing its connections (a host gone, a network cut, a
//! failover to a server at the same address): the task queue's calls time out, and
//! after a couple of round trips without an answer the queue connects again, to
//! whichever server the address reaches now, instead of timing out call after call
//! until the kernel gives the connection up (the client pings only while it sends
//! nothing, and a worker keeps sending pulls).
//!
//! The silence is `common::proxy` in front of the machine's NATS server. Without NATS
//! the test skips, unless `CI` is set, where it fails.
#![cfg(feature = "nats")]

mod common;

use std::time::{Duration, Instant};

use common::nats::with_namespace;
use common::proxy::Proxy;
use saga_adapters::NatsTaskQueue;
use saga_runtime::domain::SagaId;
use saga_runtime::port::{Task, TaskKind, TaskQueue};

fn task(n: u32) -> Task {
    Task {
        kind: TaskKind::Activity,
        saga_id: SagaId::new(format!("silent-{n}")),
        queue: "silent".to_owned(),
        dedup_id: format!("silent-{n}:1"),
        payload: format!("payload {n}").into_bytes(),
    }
}

/// Fetches from `queue` until `want` (by dedup id) came, acking everything.
async fn fetch_all(q: &NatsTaskQueue, want: &[String]) {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !want.iter().all(|w| seen.contains(w)) {
        assert!(
            Instant::now() < deadline,
            "fetched {seen:?}, wanted {want:?}"
        );
        let Ok(got) = q.fetch("silent", 10, Duration::from_secs(1)).await else {
            continue;
        };
        for d in got {
            q.ack(&d.tag).await.expect("ack");
            seen.push(d.task.dedup_id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_queue_connects_again() {
    with_namespace(
        |c| saga_adapters::NatsConfig {
            request_timeout: Duration::from_secs(1),
            ..c
        },
        |config| async move {
            let url = common::nats::url();
            let upstream = url.trim_start_matches("nats://").to_owned();
            let proxy = Proxy::start(upstream).await;
            let q =
                NatsTaskQueue::connect(&format!("nats://127.0.0.1:{}", proxy.port), config.clone())
                    .await
                    .expect("connect through the proxy");
            q.publish(task(0)).await.expect("publish");
            fetch_all(&q, &["silent-0:1".to_owned()]).await;

            proxy.cut();
            // The old connection answers nothing: publishes time out, until the queue
            // has connected again (two round trips without an answer in a row).
            let began = Instant::now();
            let mut failed = 0;
            let mut n = 1;
            loop {
                match q.publish(task(n)).await {
                    Ok(()) => break,
                    Err(e) => {
                        failed += 1;
                        assert!(
                            began.elapsed() < Duration::from_secs(30),
                            "publishes still fail after {:?} ({failed} tries): {e}",
                            began.elapsed()
                        );
                        n += 1;
                    }
                }
            }
            assert!(failed >= 1, "no publish on the old connection failed");
            // The new connection works for everything: more publishes, pulls, acks.
            q.publish(task(100)).await.expect("publish");
            let want = vec![format!("silent-{n}:1"), "silent-100:1".to_owned()];
            fetch_all(&q, &want).await;

            // A worker that only pulls: its pulls get no answer, and it connects again
            // the same way. (The task comes from a queue connected directly.)
            proxy.cut();
            let direct = common::nats::queue(&config).await;
            direct.publish(task(200)).await.expect("publish");
            let began = Instant::now();
            fetch_all(&q, &["silent-200:1".to_owned()]).await;
            assert!(
                began.elapsed() >= Duration::from_secs(1),
                "fetched through the old connection?"
            );
        },
    )
    .await;
}
