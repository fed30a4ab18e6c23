//! The NATS task queue and signal dispatcher against the real server: the conformance
//! suites unchanged, then what only a broker shared by many workers has to get right
//! (poison tasks, deduplication, per-queue isolation, competing consumers, a worker
//! that dies on a task's last delivery). Each test uses its own streams and subjects,
//! deleted at the end. Without a server the tests skip, unless `CI` is set, where they
//! fail.
//!
//! Not here: restarting the server mid-run. It is the machine's shared server (other
//! test runs and services use it at the same time), so a test must not stop it.
#![cfg(feature = "nats")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::nats::{queue, unique_namespace, url, with_namespace};
use saga_adapters::async_nats::jetstream;
use saga_adapters::{NatsConfig, NatsSignalDispatcher, NatsTaskQueue, TaskRetention};
use saga_runtime::conformance;
use saga_runtime::domain::SagaId;
use saga_runtime::port::{
    Delivery, DeliveryTag, Notification, SignalDispatcher, SignalSubscription, Task, TaskKind,
    TaskQueue,
};
use saga_runtime::ErrorKind;

/// The conformance suite's delivery settings: short, so it runs in seconds.
const ACK_WAIT: Duration = Duration::from_millis(500);
const MAX_DELIVER: u32 = 3;

fn fast(config: NatsConfig) -> NatsConfig {
    NatsConfig {
        ack_wait: ACK_WAIT,
        max_deliver: MAX_DELIVER,
        ..config
    }
}

fn task(queue: &str, saga: &str, n: u32, payload: &[u8]) -> Task {
    Task {
        kind: if n % 2 == 0 {
            TaskKind::Activity
        } else {
            TaskKind::Workflow
        },
        saga_id: SagaId::new(saga),
        queue: queue.to_owned(),
        dedup_id: format!("{saga}:{n}"),
        payload: payload.to_vec(),
    }
}

/// Fetches from `queue` until `n` deliveries arrived or `within` passed.
async fn fetch_until(q: &NatsTaskQueue, queue: &str, n: usize, within: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        got.extend(q.fetch(queue, n - got.len(), left).await.expect("fetch"));
    }
    got
}

/// `q.unacked(queue)` once it is `want`, or after two seconds. An ack is not
/// confirmed: the broker drops the task a moment after `ack` returns.
async fn unacked_once_acked(q: &NatsTaskQueue, queue: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let n = q.unacked(queue).await.expect("unacked");
        if n == want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_queue_conformance() {
    with_namespace(fast, |config| async move {
        let q = queue(&config).await;
        conformance::run_all_task_queue(&q, ACK_WAIT, MAX_DELIVER).await;
    })
    .await;
}

/// A second connection to the same streams finds them (and the consumers) as they
/// are, and the suite passes again among the first run's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_queue_conformance_twice_across_reconnect() {
    with_namespace(fast, |config| async move {
        conformance::run_all_task_queue(&queue(&config).await, ACK_WAIT, MAX_DELIVER).await;
        conformance::run_all_task_queue(&queue(&config).await, ACK_WAIT, MAX_DELIVER).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_dispatcher_conformance() {
    with_namespace(fast, |config| async move {
        // On the task queue's connection, and on a connection of its own.
        conformance::run_all_signal_dispatcher(&queue(&config).await.signal_dispatcher()).await;
        let own = NatsSignalDispatcher::connect(&url(), &config.signal_prefix)
            .await
            .expect("connect the dispatcher");
        conformance::run_all_signal_dispatcher(&own).await;
        let (here, there) = two_dispatchers(&config).await;
        conformance::check_inboxes_across_dispatchers(&here, &there).await;
    })
    .await;
}

/// Two signal dispatchers on connections of their own, as in two processes.
async fn two_dispatchers(config: &NatsConfig) -> (NatsSignalDispatcher, NatsSignalDispatcher) {
    let url = url();
    let connect = || NatsSignalDispatcher::connect(&url, &config.signal_prefix);
    (connect().await.unwrap(), connect().await.unwrap())
}

/// `subscribe` returns only once the server has the subscription: a notification
/// sent at once from another connection is never missed, however busy the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_right_after_subscribe_arrives() {
    with_namespace(fast, |config| async move {
        let (here, there) = two_dispatchers(&config).await;
        for i in 0..300 {
            let id = SagaId::new(format!("right-after-{i}"));
            let mut sub = here.subscribe(&id).await.unwrap();
            let n = Notification::SignalReceived {
                name: i.to_string(),
            };
            there.notify(&id, n.clone()).await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(3), sub.recv())
                .await
                .unwrap_or_else(|_| panic!("notification {i} missed"))
                .expect("open subscription");
            assert_eq!(got, n);
        }
    })
    .await;
}

/// Saga ids that are not subject tokens (dots, spaces, wildcards), and one that is.
const ODD_IDS: [&str; 5] = ["order.42", "order 42", "order.*", "order.>", "order"];

/// The notification that names `id`, so a receiver can tell whose it got.
fn naming(id: &str) -> Notification {
    Notification::SignalReceived {
        name: id.to_owned(),
    }
}

/// Each of `receivers` (the `who` of one of [`ODD_IDS`], in order) gets exactly the
/// notification naming its own id.
async fn each_hears_only_its_own(who: &str, receivers: &mut [SignalSubscription]) {
    for (id, rx) in ODD_IDS.iter().zip(receivers) {
        let got = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .expect("a notification within 3s")
            .expect("still open");
        assert_eq!(
            got,
            naming(id),
            "the {who} of {id:?} got another saga's notification"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(100), rx.recv())
                .await
                .is_err(),
            "the {who} of {id:?} got a second notification"
        );
    }
}

/// Engines in different processes: a notification sent on one connection reaches a
/// subscriber on another, as soon as `subscribe` has returned; ids that are not subject
/// tokens (dots, spaces, wildcards) stay apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_cross_connections() {
    with_namespace(fast, |config| async move {
        let (here, there) = two_dispatchers(&config).await;
        let mut subs = Vec::new();
        for id in ODD_IDS {
            subs.push(here.subscribe(&SagaId::new(id)).await.unwrap());
        }
        for id in ODD_IDS {
            there.notify(&SagaId::new(id), naming(id)).await.unwrap();
        }
        each_hears_only_its_own("subscriber", &mut subs).await;
    })
    .await;
}

/// Waiters at an inbox for ids that are not subject tokens stay apart, as
/// subscribers do; and a close sent to an inbox that is not a NATS name (a history
/// edited by hand) still reaches the execution's subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_waiters_stay_apart_and_a_bad_inbox_name_falls_back() {
    with_namespace(fast, |config| async move {
        let (here, there) = two_dispatchers(&config).await;
        let inbox = here.inbox().expect("an inbox");
        let mut waiters = Vec::new();
        for id in ODD_IDS {
            waiters.push(here.watch_inbox(&SagaId::new(id)).await.unwrap());
        }
        for id in ODD_IDS {
            let saga = SagaId::new(id);
            there.notify_inbox(&saga, &inbox, naming(id)).await.unwrap();
        }
        each_hears_only_its_own("waiter", &mut waiters).await;

        let x = SagaId::new("edited");
        let mut sub = here.subscribe(&x).await.unwrap();
        let n = naming("bad inbox");
        there
            .notify_inbox(&x, "not a.name*", n.clone())
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(3), sub.recv()).await;
        assert_eq!(got.ok().flatten(), Some(n));
    })
    .await;
}

/// The broker deduplicates on `Nats-Msg-Id = dedup_id`: a task published again (a
/// reconciler re-driving an outbox row, a retried publish) is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republished_task_is_delivered_once() {
    with_namespace(fast, |config| async move {
        // No redelivery while the test looks for duplicates.
        let q = queue(&NatsConfig {
            ack_wait: Duration::from_secs(30),
            ..config
        })
        .await;
        let queue_name = "dedup";
        let first = task(queue_name, "order-1", 7, b"first");
        let mut again = first.clone();
        // Even with another body: the id is what says "the same task".
        again.payload = b"again".to_vec();
        let other = task(queue_name, "order-1", 8, b"other");
        for t in [&first, &again, &first, &other] {
            q.publish(t.clone()).await.expect("publish");
        }
        let mut got = fetch_until(&q, queue_name, 2, Duration::from_secs(2)).await;
        got.extend(
            q.fetch(queue_name, 10, Duration::from_millis(300))
                .await
                .unwrap(),
        );
        let ids: Vec<&str> = got.iter().map(|d| d.task.dedup_id.as_str()).collect();
        assert_eq!(ids, ["order-1:7", "order-1:8"], "one delivery per dedup id");
        assert_eq!(got[0].task, first, "the first publish is the one kept");
        for d in &got {
            q.ack(&d.tag).await.unwrap();
        }
        // Publishing it yet again (the original already acked) is still a duplicate
        // within the window: a late reconciler cannot re-run a finished step.
        q.publish(first.clone()).await.unwrap();
        let late = q
            .fetch(queue_name, 10, Duration::from_millis(300))
            .await
            .unwrap();
        assert!(
            late.is_empty(),
            "a re-published finished task came back: {late:?}"
        );
    })
    .await;
}

/// A worker serving queue A never sees queue B's tasks, of either kind; B's tasks wait
/// for B's workers. One consumer per queue, so a queue nobody serves holds its tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_serve_only_their_queues() {
    with_namespace(fast, |config| async move {
        let q = queue(&config).await;
        for n in 0..6 {
            q.publish(task("payments", &format!("p{n}"), n, b"p"))
                .await
                .unwrap();
            q.publish(task("emails", &format!("e{n}"), n, b"e"))
                .await
                .unwrap();
        }
        let payments = fetch_until(&q, "payments", 6, Duration::from_secs(3)).await;
        assert_eq!(payments.len(), 6);
        assert!(
            payments.iter().all(|d| d.task.queue == "payments"),
            "a payments worker received {:?}",
            payments.iter().map(|d| &d.task.queue).collect::<Vec<_>>()
        );
        let kinds: BTreeSet<&str> = payments.iter().map(|d| d.task.kind.name()).collect();
        assert_eq!(kinds, BTreeSet::from(["activity", "workflow"]));
        for d in &payments {
            q.ack(&d.tag).await.unwrap();
        }
        assert!(q
            .fetch("payments", 10, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty());
        let emails = fetch_until(&q, "emails", 6, Duration::from_secs(3)).await;
        assert_eq!(
            emails.len(),
            6,
            "the other queue's tasks waited for its worker"
        );
        assert!(emails.iter().all(|d| d.task.queue == "emails"));
        for d in &emails {
            q.ack(&d.tag).await.unwrap();
        }
    })
    .await;
}

/// Workers in several processes compete for one queue: every task is delivered to
/// exactly one of them (no duplicates while they ack in time, none lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_workers_share_a_queue() {
    with_namespace(fast, |config| async move {
        let config = NatsConfig {
            ack_wait: Duration::from_secs(30),
            ..config
        };
        let publisher = queue(&config).await;
        let total = 300u32;
        for n in 0..total {
            publisher
                .publish(task("work", &format!("s{n}"), n, b"x"))
                .await
                .unwrap();
        }
        let mut workers = Vec::new();
        for _ in 0..3 {
            // Each its own connection, as separate processes would have.
            let q = queue(&config).await;
            workers.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let got = q
                        .fetch("work", 16, Duration::from_millis(300))
                        .await
                        .unwrap();
                    if got.is_empty() {
                        return seen;
                    }
                    for d in got {
                        q.ack(&d.tag).await.unwrap();
                        seen.push(d.task.dedup_id);
                    }
                }
            }));
        }
        let mut count: BTreeMap<String, u32> = BTreeMap::new();
        let mut per_worker = Vec::new();
        for w in workers {
            let seen = w.await.unwrap();
            per_worker.push(seen.len());
            for id in seen {
                *count.entry(id).or_default() += 1;
            }
        }
        assert_eq!(count.len(), total as usize, "every task delivered");
        assert!(
            count.values().all(|&c| c == 1),
            "duplicates: {:?}",
            count.iter().filter(|(_, &c)| c > 1).collect::<Vec<_>>()
        );
        eprintln!("tasks per worker: {per_worker:?}");
    })
    .await;
}

/// A poison task: its payload does not decode, so the worker loop naks it every time.
/// After `max_deliver` deliveries it is in the dead-letter stream, with the reason and
/// the count, while the queue's other tasks (published before and after it) all flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_task_is_dead_lettered_and_nothing_stalls() {
    #[derive(serde::Deserialize)]
    struct Order {
        n: u32,
    }
    with_namespace(fast, |config| async move {
        let max_deliver = 4;
        let config = NatsConfig {
            max_deliver,
            ack_wait: Duration::from_secs(5),
            ..config
        };
        let q = Arc::new(queue(&config).await);
        let good = |n: u32| {
            task(
                "orders",
                &format!("order-{n}"),
                n,
                format!(r#"{{"n":{n}}}"#).as_bytes(),
            )
        };
        for n in 0..10 {
            q.publish(good(n)).await.unwrap();
        }
        let poison = task("orders", "order-poison", 0, b"\x00 not json");
        q.publish(poison.clone()).await.unwrap();

        // The worker loop: decode, ack; a payload that does not decode is nak'ed with a
        // short backoff, like any failed attempt.
        let worker = {
            let q = Arc::clone(&q);
            tokio::spawn(async move {
                let mut done = BTreeSet::new();
                let mut poison_deliveries = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(20);
                while (done.len() < 20 || poison_deliveries.len() < max_deliver as usize)
                    && Instant::now() < deadline
                {
                    for d in q
                        .fetch("orders", 4, Duration::from_millis(200))
                        .await
                        .unwrap()
                    {
                        match serde_json::from_slice::<Order>(&d.task.payload) {
                            Ok(order) => {
                                q.ack(&d.tag).await.unwrap();
                                assert!(done.insert(order.n), "order {} done twice", order.n);
                            }
                            Err(_) => {
                                poison_deliveries.push(d.delivery_count);
                                q.nak(&d.tag, Duration::from_millis(50)).await.unwrap();
                            }
                        }
                    }
                }
                (done, poison_deliveries)
            })
        };
        // More tasks arrive while the poison task is being retried.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for n in 10..20 {
            q.publish(good(n)).await.unwrap();
        }
        let (done, poison_deliveries) = worker.await.unwrap();
        assert_eq!(done, (0..20).collect(), "every good task was processed");
        assert_eq!(
            poison_deliveries,
            (1..=max_deliver).collect::<Vec<_>>(),
            "the poison task is delivered max_deliver times, counted 1, 2, ..."
        );
        let dead = q.dead_letters("orders").await.unwrap();
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(
            dead[0].task, poison,
            "the dead letter carries the task unchanged"
        );
        assert_eq!(dead[0].delivery_count, max_deliver);
        assert!(
            dead[0].reason.contains("max_deliver (4)") && dead[0].reason.contains("nak"),
            "the reason says why: {}",
            dead[0].reason
        );
        // Gone from the queue for good.
        assert!(q
            .fetch("orders", 10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

/// A worker dies holding a task's last allowed delivery (it never acks, naks or reports
/// progress, and its process, with what it remembered, is gone). The next worker to
/// fetch the queue, in another process, dead-letters the task instead of running it a
/// fourth time, and receives the queue's other tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_delivery_of_a_dead_worker_is_dead_lettered_elsewhere() {
    with_namespace(fast, |config| async move {
        let doomed = task("jobs", "job-1", 1, b"job");
        {
            let dying = queue(&config).await;
            dying.publish(doomed.clone()).await.unwrap();
            for n in 1..=MAX_DELIVER {
                let got = fetch_until(&dying, "jobs", 1, ACK_WAIT * 3).await;
                assert_eq!(got.len(), 1);
                assert_eq!(got[0].delivery_count, n);
            }
            // Dropped without a word: the process died.
        }
        let survivor = queue(&config).await;
        let next = task("jobs", "job-2", 2, b"next");
        survivor.publish(next.clone()).await.unwrap();
        let got = fetch_until(&survivor, "jobs", 1, ACK_WAIT * 4).await;
        assert_eq!(
            got.iter().map(|d| &d.task).collect::<Vec<_>>(),
            [&next],
            "the survivor must get the next task, not a fourth delivery of the dead one"
        );
        survivor.ack(&got[0].tag).await.unwrap();
        // The dead worker's task is dead-lettered as soon as it comes back, which is
        // one ack wait after its last delivery.
        let deadline = Instant::now() + ACK_WAIT * 6;
        let dead = loop {
            let extra = survivor.fetch("jobs", 10, ACK_WAIT).await.unwrap();
            assert!(extra.is_empty(), "delivered past max_deliver: {extra:?}");
            let dead = survivor.dead_letters("jobs").await.unwrap();
            if !dead.is_empty() || Instant::now() > deadline {
                break dead;
            }
        };
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].task, doomed);
        assert_eq!(dead[0].delivery_count, MAX_DELIVER);
        assert!(
            dead[0].reason.contains("ack wait expired"),
            "{}",
            dead[0].reason
        );
    })
    .await;
}

/// A message on a task subject that this adapter did not publish (no `Saga-Id`, say)
/// cannot be run; it is dead-lettered with what is wrong, and the queue flows on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_message_is_dead_lettered() {
    with_namespace(fast, |config| async move {
        let q = queue(&config).await;
        let js = async_nats::jetstream::new(q.client().clone());
        js.publish(
            format!("{}.mixed.activity", config.subject_prefix),
            "raw".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        let good = task("mixed", "s", 1, b"ok");
        q.publish(good.clone()).await.unwrap();
        let got = fetch_until(&q, "mixed", 1, Duration::from_secs(2)).await;
        assert_eq!(got.iter().map(|d| &d.task).collect::<Vec<_>>(), [&good]);
        q.ack(&got[0].tag).await.unwrap();
        let dead = q.dead_letters("mixed").await.unwrap();
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert!(
            dead[0].reason.contains("not a task message") && dead[0].reason.contains("Saga-Id"),
            "{}",
            dead[0].reason
        );
        assert_eq!(dead[0].task.payload, b"raw");
    })
    .await;
}

/// `depth` counts a queue's tasks until they are acked; `redrive` publishes dead
/// letters to their queue again (one by dedup id, or all) and removes them from the
/// dead-letter stream; a task re-driven within the duplicate window of its first
/// publish would be dropped by the broker, so that is refused and the letter kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_and_redrive() {
    let window = Duration::from_secs(3);
    let tune = move |c: NatsConfig| NatsConfig {
        max_deliver: 1,
        duplicate_window: window,
        ..fast(c)
    };
    with_namespace(tune, |config| async move {
        let q = queue(&config).await;
        assert_eq!(q.unacked("orders").await.unwrap(), 0);
        let tasks: Vec<Task> = (1..=3).map(|n| task("orders", "s", n, b"{}")).collect();
        for t in &tasks {
            q.publish(t.clone()).await.unwrap();
        }
        q.publish(task("other", "s", 9, b"{}")).await.unwrap();
        assert_eq!(q.unacked("orders").await.unwrap(), 3);
        assert_eq!(q.unacked("other").await.unwrap(), 1);
        // Counted off the stream: no worker took a task of `other`, and asking made
        // no consumer for it.
        let stream = jetstream::new(q.client().clone())
            .get_stream(&config.stream)
            .await
            .unwrap();
        let other = format!("{}-other", config.consumer_prefix);
        assert!(stream.consumer_info(&other).await.is_err());
        // Naked on their last allowed delivery: dead letters, out of the queue.
        for d in fetch_until(&q, "orders", 3, Duration::from_secs(3)).await {
            q.nak(&d.tag, Duration::ZERO).await.unwrap();
        }
        assert_eq!(q.unacked("orders").await.unwrap(), 0);
        let dead = q.dead_letters("orders").await.unwrap();
        assert_eq!(dead.len(), 3, "{dead:?}");

        // Within the duplicate window the broker would drop it: refused, kept.
        let early = q.redrive("orders", Some("s:1")).await.unwrap_err();
        assert_eq!(early.kind, ErrorKind::Concurrency, "{early}");
        assert_eq!(early.context("code"), Some("duplicate"));
        assert_eq!(q.dead_letters("orders").await.unwrap().len(), 3);
        tokio::time::sleep(window + Duration::from_millis(500)).await;

        let one = q.redrive("orders", Some("s:2")).await.unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].task, tasks[1]);
        let left: Vec<String> = q
            .dead_letters("orders")
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.task.dedup_id)
            .collect();
        assert_eq!(left, ["s:1", "s:3"]);
        assert_eq!(q.unacked("orders").await.unwrap(), 1);
        let unknown = q.redrive("orders", Some("s:2")).await.unwrap_err();
        assert_eq!(unknown.context("code"), Some("not_found"), "{unknown}");

        let rest = q.redrive("orders", None).await.unwrap();
        assert_eq!(rest.len(), 2);
        assert!(q.dead_letters("orders").await.unwrap().is_empty());
        assert_eq!(q.unacked("orders").await.unwrap(), 3);
        // Workers get them again, as new tasks.
        let again = fetch_until(&q, "orders", 3, Duration::from_secs(3)).await;
        let mut got: Vec<Task> = again.iter().map(|d| d.task.clone()).collect();
        got.sort_by(|a, b| a.dedup_id.cmp(&b.dedup_id));
        assert_eq!(got, tasks);
        for d in &again {
            q.ack(&d.tag).await.unwrap();
        }
        assert_eq!(unacked_once_acked(&q, "orders", 0).await, 0);
        assert!(q.redrive("orders", None).await.unwrap().is_empty());
        assert_eq!(
            q.unacked("no.such").await.unwrap_err().kind,
            ErrorKind::Validation
        );
    })
    .await;
}

/// The broker loses its data (the stream is deleted under running workers): the next
/// publish recreates the stream, and a fetch whose consumer vanished recreates it, so
/// workers carry on with what is published from then on. (What was in the lost stream
/// comes back through the outbox reconciler, which is the store's side.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_recover_when_the_stream_is_lost() {
    with_namespace(fast, |config| async move {
        let config = NatsConfig {
            request_timeout: Duration::from_secs(1),
            ..config
        };
        let worker = queue(&config).await;
        let publisher = queue(&config).await;
        let js = async_nats::jetstream::new(worker.client().clone());
        for (round, publish_first) in [(1u32, true), (2, false)] {
            // Both have their consumer (and stream) in hand.
            assert!(worker
                .fetch("h", 1, Duration::ZERO)
                .await
                .unwrap()
                .is_empty());
            publisher.fetch("h", 1, Duration::ZERO).await.unwrap();
            js.delete_stream(&config.stream)
                .await
                .expect("delete the stream");
            let sent = task("h", &format!("after-loss-{round}"), round, b"x");
            let got = if publish_first {
                // A publish finds no stream and recreates it.
                publisher
                    .publish(sent.clone())
                    .await
                    .expect("publish after the loss");
                fetch_until(&worker, "h", 1, Duration::from_secs(5)).await
            } else {
                // A fetch gets no answer, finds its consumer gone, and recreates it.
                let fetching = {
                    let worker = worker.clone();
                    tokio::spawn(async move {
                        fetch_until(&worker, "h", 1, Duration::from_secs(8)).await
                    })
                };
                tokio::time::sleep(Duration::from_secs(2)).await;
                publisher
                    .publish(sent.clone())
                    .await
                    .expect("publish after the loss");
                fetching.await.unwrap()
            };
            assert_eq!(
                got.iter().map(|d| &d.task).collect::<Vec<_>>(),
                [&sent],
                "round {round}: the worker must receive tasks published after the loss"
            );
            worker.ack(&got[0].tag).await.unwrap();
        }
    })
    .await;
}

/// The price of limits retention that `TaskRetention::MaxAge` documents: a consumer
/// deleted while its stream survives is recreated on the next fetch, and hands out
/// again every task the stream still keeps, acked ones included (the engine drops
/// those as done). Under work-queue retention the acked ones are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_consumer_gets_the_kept_tasks_again() {
    for (retention, again) in [
        (NatsConfig::default().task_retention, 2),
        (TaskRetention::WorkQueue, 0),
    ] {
        let tune = move |c: NatsConfig| NatsConfig {
            request_timeout: Duration::from_secs(1),
            task_retention: retention,
            ..fast(c)
        };
        with_namespace(tune, |config| async move {
            let q = queue(&config).await;
            for n in 1..=2 {
                q.publish(task("gone", "a", n, b"x")).await.unwrap();
            }
            for d in fetch_until(&q, "gone", 2, Duration::from_secs(2)).await {
                q.ack(&d.tag).await.unwrap();
            }
            assert_eq!(unacked_once_acked(&q, "gone", 0).await, 0);
            let stream = jetstream::new(q.client().clone())
                .get_stream(&config.stream)
                .await
                .unwrap();
            let consumer = format!("{}-gone", config.consumer_prefix);
            stream.delete_consumer(&consumer).await.unwrap();

            let got = fetch_until(&q, "gone", 2, Duration::from_secs(5)).await;
            assert_eq!(got.len(), again, "{retention:?}: {got:?}");
            assert!(got.iter().all(|d| d.delivery_count == 1), "{got:?}");
            for d in &got {
                q.ack(&d.tag).await.unwrap();
            }
            let more = q.fetch("gone", 10, ACK_WAIT * 3).await.unwrap();
            assert!(more.is_empty(), "{retention:?}: {more:?}");
        })
        .await;
    }
}

/// What the docs promise about tags: acking a task twice is a no-op, and acking through
/// the tag of an earlier, expired delivery finishes the task and its redelivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_and_stale_acks() {
    with_namespace(fast, |config| async move {
        let q = queue(&config).await;
        q.publish(task("acks", "a", 1, b"x")).await.unwrap();
        let d = fetch_until(&q, "acks", 1, Duration::from_secs(2))
            .await
            .remove(0);
        q.ack(&d.tag).await.expect("ack");
        q.ack(&d.tag)
            .await
            .expect("a second ack of the same delivery is a no-op");

        q.publish(task("acks", "b", 2, b"y")).await.unwrap();
        let first = fetch_until(&q, "acks", 1, Duration::from_secs(2))
            .await
            .remove(0);
        let again = fetch_until(&q, "acks", 1, ACK_WAIT * 4).await.remove(0);
        assert_eq!(again.delivery_count, 2);
        assert_ne!(first.tag, again.tag, "each delivery has its own tag");
        q.ack(&first.tag)
            .await
            .expect("ack through the expired delivery's tag");
        let more = q
            .fetch("acks", 10, ACK_WAIT + Duration::from_millis(300))
            .await
            .unwrap();
        assert!(more.is_empty(), "the task came back after an ack: {more:?}");
        assert!(q.dead_letters("acks").await.unwrap().is_empty());
    })
    .await;
}

/// Limits retention (the default, here for three seconds): an acked task stays in the
/// stream, yet is neither delivered again nor counted as unacked; the broker drops it
/// at its age. A task not done by then is dropped too, so the outbox, not the broker,
/// brings it back; ending its delivery after that (progress, nak, ack) fails or
/// succeeds at once, and never delivers it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_task_is_delivered_once_and_dropped_at_its_age() {
    // Room for the checks before the age, on a loaded machine; a duplicate window
    // well inside it, so the republish below is surely a new task.
    let age = Duration::from_secs(3);
    let tune = move |c: NatsConfig| NatsConfig {
        duplicate_window: Duration::from_secs(1),
        task_retention: TaskRetention::MaxAge(age),
        ..fast(c)
    };
    with_namespace(tune, |config| async move {
        let q = queue(&config).await;
        let js = jetstream::new(q.client().clone());
        let held = || async {
            let mut s = js.get_stream(&config.stream).await.expect("task stream");
            s.info().await.expect("stream info").state.messages
        };
        q.publish(task("kept", "a", 1, b"x")).await.unwrap();
        let d = fetch_until(&q, "kept", 1, Duration::from_secs(2))
            .await
            .remove(0);
        q.ack(&d.tag).await.unwrap();
        assert_eq!(unacked_once_acked(&q, "kept", 0).await, 0);
        assert_eq!(held().await, 1, "an acked task is kept until its age");
        let more = q.fetch("kept", 10, ACK_WAIT * 3).await.unwrap();
        assert!(more.is_empty(), "an acked task came back: {more:?}");

        // Taken and never finished: past its age the broker forgets it.
        q.publish(task("kept", "b", 2, b"y")).await.unwrap();
        let open = fetch_until(&q, "kept", 1, Duration::from_secs(2))
            .await
            .remove(0);
        assert_eq!(open.task.dedup_id, "b:2");
        let deadline = Instant::now() + Duration::from_secs(10);
        while held().await > 0 {
            assert!(Instant::now() < deadline, "nothing dropped at its age");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(q.unacked("kept").await.unwrap(), 0);
        let quick = Duration::from_secs(2);
        for (what, took) in [
            ("progress", timed(q.progress(&open.tag)).await),
            ("nak", timed(q.nak(&open.tag, Duration::ZERO)).await),
            ("ack", timed(q.ack(&open.tag)).await),
        ] {
            assert!(took < quick, "{what} of a dropped task took {took:?}");
        }
        let more = q.fetch("kept", 10, ACK_WAIT * 3).await.unwrap();
        assert!(more.is_empty(), "a dropped task came back: {more:?}");
        assert!(q.dead_letters("kept").await.unwrap().is_empty());
        // The outbox's republish, after the duplicate window, is a new task.
        q.publish(task("kept", "b", 2, b"y")).await.unwrap();
        let again = fetch_until(&q, "kept", 1, Duration::from_secs(2)).await;
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].delivery_count, 1);
        q.ack(&again[0].tag).await.unwrap();
    })
    .await;
}

/// How long `f` took (its result ignored: only that it returns).
async fn timed<T>(f: impl std::future::Future<Output = T>) -> Duration {
    let started = Instant::now();
    f.await;
    started.elapsed()
}

/// Workers configured with either retention share one task stream, whichever created
/// it (a deployment upgraded from work-queue retention keeps its stream, and its new
/// workers use it as it is); a stream of the same name with another retention is
/// someone else's, and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn either_retention_shares_the_stream_another_is_refused() {
    let kept = NatsConfig::default().task_retention;
    for (first, second) in [
        (TaskRetention::WorkQueue, kept),
        (kept, TaskRetention::WorkQueue),
    ] {
        let tune = move |c: NatsConfig| NatsConfig {
            task_retention: first,
            ..fast(c)
        };
        with_namespace(tune, |config| async move {
            let creator = queue(&config).await;
            let joiner = queue(&NatsConfig {
                task_retention: second,
                ..config.clone()
            })
            .await;
            creator.publish(task("shared", "a", 1, b"x")).await.unwrap();
            joiner.publish(task("shared", "b", 2, b"y")).await.unwrap();
            let mut got = fetch_until(&joiner, "shared", 1, Duration::from_secs(2)).await;
            got.extend(fetch_until(&creator, "shared", 1, Duration::from_secs(2)).await);
            let ids: BTreeSet<String> = got.iter().map(|d| d.task.dedup_id.clone()).collect();
            assert_eq!(ids, BTreeSet::from(["a:1".to_owned(), "b:2".to_owned()]));
            for d in &got {
                creator.ack(&d.tag).await.unwrap();
            }
            assert_eq!(unacked_once_acked(&joiner, "shared", 0).await, 0);
        })
        .await;
    }

    with_namespace(fast, |config| async move {
        let client = saga_adapters::async_nats::connect(url()).await.unwrap();
        let js = jetstream::new(client);
        js.create_stream(jetstream::stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.*.*", config.subject_prefix)],
            retention: jetstream::stream::RetentionPolicy::Interest,
            ..Default::default()
        })
        .await
        .unwrap();
        let err = NatsTaskQueue::connect(&url(), config.clone())
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Configuration, "{err}");
        assert!(err.to_string().contains("Interest"), "{err}");
        // Removed here: `with_namespace`'s clean-up connects a queue, which would
        // refuse it too.
        js.delete_stream(&config.stream).await.unwrap();
    })
    .await;
}

/// Bad input gets a typed error and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_with_typed_errors() {
    with_namespace(fast, |config| async move {
        let q = queue(&config).await;
        for bad in ["a.b", "", "a b", "*", ">"] {
            let e = q.publish(task(bad, "s", 1, b"x")).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation, "publish to {bad:?}: {e}");
            let e = q.fetch(bad, 1, Duration::ZERO).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation, "fetch from {bad:?}: {e}");
        }
        let mut no_id = task("q", "s", 1, b"x");
        no_id.dedup_id.clear();
        assert_eq!(
            q.publish(no_id).await.unwrap_err().kind,
            ErrorKind::Validation
        );
        let huge = task("q", "s", 2, &vec![0u8; 2 * 1024 * 1024]);
        let e = q.publish(huge).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation, "{e}");
        assert!(e.message.contains("max_payload"), "{e}");

        // Tags that are not this queue's deliveries.
        let foreign = [
            DeliveryTag {
                seq: 1,
                handle: None,
            },
            DeliveryTag {
                seq: 1,
                handle: Some("$JS.ACK.OTHER_STREAM.c.1.1.1.1.0".into()),
            },
        ];
        for tag in &foreign {
            assert_eq!(q.ack(tag).await.unwrap_err().kind, ErrorKind::Validation);
            assert_eq!(
                q.nak(tag, Duration::ZERO).await.unwrap_err().kind,
                ErrorKind::Validation
            );
            assert_eq!(
                q.progress(tag).await.unwrap_err().kind,
                ErrorKind::Validation
            );
            assert_eq!(
                q.terminate(tag, "x").await.unwrap_err().kind,
                ErrorKind::Validation
            );
        }
        assert!(q
            .fetch("q", 10, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty());

        // Settings.
        let bad = NatsConfig {
            dead_letter_prefix: config.subject_prefix.clone(),
            ..config.clone()
        };
        let e = NatsTaskQueue::connect(&url(), bad).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Configuration, "{e}");
        let e = NatsSignalDispatcher::connect(&url(), "saga.>")
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Configuration, "{e}");
        // An existing stream of the same name laid out differently is not used.
        let clash = NatsConfig {
            subject_prefix: format!("saga.{}.elsewhere", unique_namespace()),
            ..config.clone()
        };
        let e = NatsTaskQueue::connect(&url(), clash).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Configuration, "{e}");
        // So is a queue's consumer made with another ack wait.
        q.fetch("q", 1, Duration::ZERO).await.unwrap();
        let other_wait = NatsConfig {
            ack_wait: ACK_WAIT * 2,
            ..config.clone()
        };
        let e = queue(&other_wait)
            .await
            .fetch("q", 1, Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Configuration, "{e}");
    })
    .await;
}

/// Not a benchmark (that is `saga-bench`), but numbers to watch: publish (each waits for
/// the stream's acknowledgement), then fetch in batches and ack (each confirmed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_fetch_ack_rates() {
    with_namespace(fast, |config| async move {
        let config = NatsConfig {
            ack_wait: Duration::from_secs(30),
            ..config
        };
        let q = queue(&config).await;
        let n = 2000u32;
        let t0 = Instant::now();
        for i in 0..n {
            q.publish(task("rate", &format!("s{i}"), i, &[7; 200]))
                .await
                .unwrap();
        }
        let publish = t0.elapsed();
        let t1 = Instant::now();
        let mut fetched = 0;
        let mut acked = Vec::new();
        while fetched < n as usize {
            let got = q.fetch("rate", 64, Duration::from_secs(2)).await.unwrap();
            assert!(!got.is_empty(), "stalled after {fetched} of {n}");
            fetched += got.len();
            acked.extend(got.into_iter().map(|d| d.tag));
        }
        let fetch = t1.elapsed();
        let t2 = Instant::now();
        for tag in &acked {
            q.ack(tag).await.unwrap();
        }
        let ack = t2.elapsed();
        let rate = |d: Duration| f64::from(n) / d.as_secs_f64();
        eprintln!(
            "{n} tasks of 200 bytes, one at a time: publish {:.0}/s, fetch (batches of 64) \
             {:.0}/s, ack {:.0}/s",
            rate(publish),
            rate(fetch),
            rate(ack)
        );

        // The same with 32 calls in flight, as an engine with many executions has.
        use futures_util::StreamExt;
        let t0 = Instant::now();
        futures_util::stream::iter(0..n)
            .map(|i| q.publish(task("rate32", &format!("c{i}"), i, &[7; 200])))
            .buffer_unordered(32)
            .for_each(|r| async move { r.unwrap() })
            .await;
        let publish = t0.elapsed();
        let mut tags = Vec::new();
        while tags.len() < n as usize {
            let got = q
                .fetch("rate32", 256, Duration::from_secs(2))
                .await
                .unwrap();
            assert!(!got.is_empty(), "stalled after {} of {n}", tags.len());
            tags.extend(got.into_iter().map(|d| d.tag));
        }
        let t2 = Instant::now();
        futures_util::stream::iter(&tags)
            .map(|tag| q.ack(tag))
            .buffer_unordered(32)
            .for_each(|r| async move { r.unwrap() })
            .await;
        let ack = t2.elapsed();
        eprintln!(
            "{n} tasks, 32 in flight: publish {:.0}/s, ack {:.0}/s",
            rate(publish),
            rate(ack)
        );
    })
    .await;
}

/// `depth` counts the tasks the broker has not delivered yet, per queue (the watchdog's
/// capacity detector reads it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_counts_undelivered_tasks_per_queue() {
    with_namespace(fast, |config| async move {
        let q = queue(&config).await;
        assert_eq!(q.depth("backlog").await.unwrap(), Some(0));
        for n in 0..5 {
            q.publish(task("backlog", &format!("b{n}"), n, b"b"))
                .await
                .unwrap();
        }
        q.publish(task("other", "o", 0, b"o")).await.unwrap();
        assert_eq!(q.depth("backlog").await.unwrap(), Some(5));
        let got = fetch_until(&q, "backlog", 2, Duration::from_secs(3)).await;
        assert_eq!(got.len(), 2);
        assert_eq!(q.depth("backlog").await.unwrap(), Some(3), "two in flight");
        for d in &got {
            q.ack(&d.tag).await.unwrap();
        }
        assert_eq!(q.depth("other").await.unwrap(), Some(1));
    })
    .await;
}
