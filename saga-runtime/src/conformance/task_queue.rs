//! Conformance checks for [`TaskQueue`]: at-least-once delivery, ack, delayed nak,
//! ack-wait redelivery, progress and dead letters.
//!
//! The checks need the adapter's delivery settings: `ack_wait` (how long a delivery may
//! stay un-acked before it is redelivered) and `max_deliver` (deliveries before a task
//! is dead-lettered). Configure the adapter with a short ack wait (a few hundred
//! milliseconds) and a small `max_deliver` (at least 2; say 3) to keep the suite fast. Every check
//! uses its own queue name.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use super::{ok, unique};
use crate::domain::SagaId;
use crate::port::{DeadLetter, Delivery, DeliveryTag, Task, TaskKind, TaskQueue};

/// How long a check waits for something that must happen (generous: a slow broker).
const PATIENCE: Duration = Duration::from_secs(3);
/// Extra time past a deadline before a check concludes that nothing will arrive.
const SLACK: Duration = Duration::from_millis(100);
/// The `nak` delay the checks use.
const NAK_DELAY: Duration = Duration::from_millis(250);

/// Runs every task queue check, in turn, on `queue`, an adapter configured with
/// `ack_wait` and `max_deliver`.
pub async fn run_all_task_queue<Q: TaskQueue>(queue: &Q, ack_wait: Duration, max_deliver: u32) {
    check_publish_fetch_ack(queue, ack_wait).await;
    check_fetch_waits_when_empty(queue).await;
    check_fetch_wakes_on_publish(queue).await;
    check_queues_are_isolated(queue).await;
    check_nak_delays_redelivery(queue).await;
    check_unacked_task_is_redelivered(queue, ack_wait).await;
    check_progress_extends_ack_wait(queue, ack_wait).await;
    check_terminate_dead_letters(queue, ack_wait).await;
    check_max_deliver_after_naks(queue, max_deliver).await;
    check_max_deliver_after_ack_wait(queue, ack_wait, max_deliver).await;
}

/// Published tasks are fetched unchanged (at most `max` per fetch, first delivery
/// counted 1); an acked task is never delivered again, even after the ack wait.
pub async fn check_publish_fetch_ack<Q: TaskQueue>(q: &Q, ack_wait: Duration) {
    let queue = unique("tq-ack");
    let tasks: Vec<Task> = (0..3).map(|n| task(&queue, n)).collect();
    for t in &tasks {
        ok("publish", q.publish(t.clone()).await);
    }
    let first = ok("fetch", q.fetch(&queue, 2, PATIENCE).await);
    assert!(
        (1..=2).contains(&first.len()),
        "fetch(max = 2) with 3 tasks queued must return 1 or 2, got {}",
        first.len()
    );
    let mut got = first;
    got.extend(fetch_n(q, &queue, 3 - got.len(), PATIENCE).await);

    let delivered: BTreeSet<&str> = got.iter().map(|d| d.task.dedup_id.as_str()).collect();
    let published: BTreeSet<&str> = tasks.iter().map(|t| t.dedup_id.as_str()).collect();
    assert_eq!(
        delivered, published,
        "every published task must be delivered once"
    );
    for d in &got {
        let sent = tasks.iter().find(|t| t.dedup_id == d.task.dedup_id);
        assert_eq!(Some(&d.task), sent, "a task must be delivered unchanged");
        assert_eq!(d.delivery_count, 1, "a first delivery must count 1");
    }
    let tags: HashSet<&DeliveryTag> = got.iter().map(|d| &d.tag).collect();
    assert_eq!(tags.len(), 3, "deliveries must have distinct tags");
    for d in &got {
        ok("ack", q.ack(&d.tag).await);
    }
    assert_nothing(
        q,
        &queue,
        ack_wait + SLACK,
        "an acked task must never be delivered again",
    )
    .await;
    assert!(ok("dead_letters", q.dead_letters(&queue).await).is_empty());
}

/// With nothing queued, `fetch` waits `wait` and returns nothing.
pub async fn check_fetch_waits_when_empty<Q: TaskQueue>(q: &Q) {
    let queue = unique("tq-empty");
    let wait = Duration::from_millis(200);
    let t0 = Instant::now();
    let got = ok("fetch", q.fetch(&queue, 10, wait).await);
    let waited = t0.elapsed();
    assert!(got.is_empty(), "fetch on an empty queue returned {got:?}");
    assert!(
        waited >= wait.mul_f64(0.9),
        "fetch on an empty queue must wait ~{wait:?} before giving up, returned after {waited:?}"
    );
    assert!(
        waited < wait + PATIENCE,
        "fetch must give up after {wait:?}, took {waited:?}"
    );
}

/// A fetch waiting on a queue returns as soon as a task is published to it, even while
/// another fetch waits on another queue.
pub async fn check_fetch_wakes_on_publish<Q: TaskQueue>(q: &Q) {
    let (queue, other) = (unique("tq-wake"), unique("tq-wake-other"));
    let long = Duration::from_secs(4);
    let sent = task(&queue, 0);
    let t0 = Instant::now();
    let (on_other, on_queue, ()) = tokio::join!(
        // Polled first, so it is the first waiter.
        q.fetch(&other, 1, Duration::from_millis(300)),
        async {
            let got = ok("fetch", q.fetch(&queue, 1, long).await);
            let waited = t0.elapsed();
            for d in &got {
                ok("ack", q.ack(&d.tag).await);
            }
            (got, waited)
        },
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ok("publish", q.publish(sent.clone()).await);
        },
    );
    assert!(ok("fetch", on_other).is_empty(), "queue {other} got a task");
    let (got, waited) = on_queue;
    assert_eq!(
        got.iter().map(|d| &d.task).collect::<Vec<_>>(),
        [&sent],
        "the waiting fetch must receive the published task"
    );
    assert!(
        waited < Duration::from_millis(500),
        "a waiting fetch must wake when a task is published to its queue \
         (published after 100ms, received after {waited:?}; fetch wait {long:?})"
    );
}

/// A task published to queue `a` is not fetched from queue `b`.
pub async fn check_queues_are_isolated<Q: TaskQueue>(q: &Q) {
    let (a, b) = (unique("tq-iso-a"), unique("tq-iso-b"));
    let sent = task(&a, 0);
    ok("publish", q.publish(sent.clone()).await);
    assert_nothing(
        q,
        &b,
        Duration::from_millis(150),
        "a task published to another queue must not be fetched",
    )
    .await;
    let d = next(q, &a).await;
    assert_eq!(d.task, sent);
    ok("ack", q.ack(&d.tag).await);
}

/// `nak(delay)` redelivers the task no earlier than `delay`, with a higher
/// `delivery_count`.
pub async fn check_nak_delays_redelivery<Q: TaskQueue>(q: &Q) {
    let queue = unique("tq-nak");
    let sent = task(&queue, 0);
    ok("publish", q.publish(sent.clone()).await);
    let first = next(q, &queue).await;
    let t0 = Instant::now();
    ok("nak", q.nak(&first.tag, NAK_DELAY).await);
    assert_nothing(
        q,
        &queue,
        NAK_DELAY / 2,
        "a nak'ed task must not be redelivered before its delay",
    )
    .await;
    let again = next(q, &queue).await;
    let waited = t0.elapsed();
    assert!(
        waited >= NAK_DELAY,
        "nak({NAK_DELAY:?}) redelivered after only {waited:?}"
    );
    assert_eq!(again.task, sent, "a redelivery must carry the same task");
    assert_eq!(
        again.delivery_count,
        first.delivery_count + 1,
        "a redelivery must increase delivery_count"
    );
    ok("ack", q.ack(&again.tag).await);
}

/// A delivery that is neither acked nor nak'ed is delivered again after the ack wait
/// (not before), with a higher `delivery_count`; once acked it is gone.
pub async fn check_unacked_task_is_redelivered<Q: TaskQueue>(q: &Q, ack_wait: Duration) {
    let queue = unique("tq-ackwait");
    let sent = task(&queue, 0);
    ok("publish", q.publish(sent.clone()).await);
    let t0 = Instant::now();
    let first = next(q, &queue).await;
    let again = fetch_n(q, &queue, 1, ack_wait + PATIENCE).await.remove(0);
    let waited = t0.elapsed();
    assert!(
        waited >= ack_wait,
        "an un-acked task was redelivered after {waited:?}, before the ack wait {ack_wait:?}"
    );
    assert_eq!(again.task, sent);
    assert_eq!(
        again.delivery_count,
        first.delivery_count + 1,
        "a redelivery after the ack wait must increase delivery_count"
    );
    ok("ack", q.ack(&again.tag).await);
    assert_nothing(
        q,
        &queue,
        ack_wait + SLACK,
        "an acked redelivery must not be delivered again",
    )
    .await;
}

/// A delivery kept alive with `progress` is not redelivered, for (at least) three
/// times the ack wait, and can be acked at the end; a delivery of the same queue
/// fetched at the same time without progress is redelivered after the ack wait (a dead
/// worker's task; within eight ack waits).
/// Needs `max_deliver` of at least 2.
pub async fn check_progress_extends_ack_wait<Q: TaskQueue>(q: &Q, ack_wait: Duration) {
    let queue = unique("tq-progress");
    let (kept, idle) = (task(&queue, 0), task(&queue, 1));
    ok("publish", q.publish(kept.clone()).await);
    ok("publish", q.publish(idle.clone()).await);
    let got = fetch_n(q, &queue, 2, PATIENCE).await;
    let find = |t: &Task| {
        got.iter()
            .find(|d| d.task == *t)
            .cloned()
            .unwrap_or_else(|| panic!("{} was not delivered", t.dedup_id))
    };
    let (kept_d, idle_d) = (find(&kept), find(&idle));

    // A heartbeat four times per ack wait, for three ack waits, while fetching: only
    // the idle task may come back. If it has not by then, go on (up to eight ack waits)
    // until it does: a broker checks for expired deliveries on a timer of its own and
    // hands a redelivery to a waiting pull, so it may take a couple of ack waits.
    let hold = ack_wait * 3;
    let patience = ack_wait * 8;
    let beat = ack_wait / 4;
    let t0 = Instant::now();
    let mut idle_again = Vec::new();
    while t0.elapsed() < hold || (idle_again.is_empty() && t0.elapsed() < patience) {
        ok("progress", q.progress(&kept_d.tag).await);
        for d in ok("fetch", q.fetch(&queue, 10, beat).await) {
            assert_ne!(
                d.task, kept,
                "a delivery kept alive with progress was redelivered after {:?} (ack wait {ack_wait:?})",
                t0.elapsed()
            );
            assert_eq!(d.task, idle);
            ok("ack", q.ack(&d.tag).await);
            idle_again.push(d);
        }
    }
    assert!(
        !idle_again.is_empty(),
        "a delivery without progress must be redelivered after the ack wait \
         ({ack_wait:?}); none came in {patience:?}"
    );
    // More than one more if a redelivery went to a pull that had just given up.
    assert!(
        idle_again[0].delivery_count > idle_d.delivery_count,
        "the redelivery of the idle task must count one more delivery at least: {} after {}",
        idle_again[0].delivery_count,
        idle_d.delivery_count
    );
    ok(
        "ack of a delivery kept alive with progress",
        q.ack(&kept_d.tag).await,
    );
    assert_nothing(
        q,
        &queue,
        ack_wait + SLACK,
        "an acked delivery that was kept alive must not be delivered again",
    )
    .await;
}

/// `terminate` moves the task to the queue's dead letters with the reason; it is never
/// delivered again.
pub async fn check_terminate_dead_letters<Q: TaskQueue>(q: &Q, ack_wait: Duration) {
    let queue = unique("tq-term");
    let sent = task(&queue, 0);
    ok("publish", q.publish(sent.clone()).await);
    let d = next(q, &queue).await;
    let reason = "poison: payload cannot be decoded";
    ok("terminate", q.terminate(&d.tag, reason).await);
    let dead = wait_dead_letters(q, &queue, PATIENCE).await;
    assert_eq!(
        dead,
        [DeadLetter {
            task: sent,
            reason: reason.to_owned(),
            delivery_count: 1,
        }],
        "a terminated task must be dead-lettered once, with the reason"
    );
    assert_nothing(
        q,
        &queue,
        ack_wait + SLACK,
        "a terminated task must never be delivered again",
    )
    .await;
    let other = unique("tq-term-other");
    assert!(
        ok("dead_letters", q.dead_letters(&other).await).is_empty(),
        "dead letters must be listed per queue"
    );
}

/// A task nak'ed on every delivery is dead-lettered after `max_deliver` deliveries.
pub async fn check_max_deliver_after_naks<Q: TaskQueue>(q: &Q, max_deliver: u32) {
    let queue = unique("tq-maxnak");
    let sent = task(&queue, 0);
    ok("publish", q.publish(sent.clone()).await);
    for n in 1..=max_deliver {
        let d = next(q, &queue).await;
        assert_eq!(d.delivery_count, n, "delivery {n} must count {n}");
        ok("nak", q.nak(&d.tag, Duration::ZERO).await);
    }
    let dead = wait_dead_letters(q, &queue, PATIENCE).await;
    assert_max_delivered(&dead, &sent, max_deliver);
    assert_nothing(
        q,
        &queue,
        Duration::from_millis(200),
        "a task past max_deliver must not be delivered again",
    )
    .await;
}

/// A task never acked is dead-lettered after `max_deliver` deliveries, each ended by
/// the ack wait, without anyone fetching the queue again.
pub async fn check_max_deliver_after_ack_wait<Q: TaskQueue>(
    q: &Q,
    ack_wait: Duration,
    max_deliver: u32,
) {
    let queue = unique("tq-maxwait");
    let sent = task(&queue, 0);
    ok("publish", q.publish(sent.clone()).await);
    for n in 1..=max_deliver {
        let d = fetch_n(q, &queue, 1, ack_wait + PATIENCE).await.remove(0);
        assert_eq!(d.delivery_count, n, "delivery {n} must count {n}");
    }
    let dead = wait_dead_letters(q, &queue, ack_wait + PATIENCE).await;
    assert_max_delivered(&dead, &sent, max_deliver);
    assert_nothing(
        q,
        &queue,
        Duration::from_millis(100),
        "a task past max_deliver must not be delivered again",
    )
    .await;
}

fn task(queue: &str, n: u32) -> Task {
    let saga_id = SagaId::new(format!("{queue}-saga"));
    Task {
        kind: if n % 2 == 0 {
            TaskKind::Activity
        } else {
            TaskKind::Workflow
        },
        dedup_id: format!("{saga_id}:{n}"),
        saga_id,
        queue: queue.to_owned(),
        payload: format!("payload-{n}").into_bytes(),
    }
}

/// Fetches until `n` deliveries arrived; panics if they do not within `within`.
async fn fetch_n<Q: TaskQueue>(q: &Q, queue: &str, n: usize, within: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "expected {n} deliveries from queue {queue} within {within:?}, got {}",
            got.len()
        );
        got.extend(ok("fetch", q.fetch(queue, n - got.len(), left).await));
    }
    got
}

/// The next delivery of `queue`, which must come within [`PATIENCE`].
async fn next<Q: TaskQueue>(q: &Q, queue: &str) -> Delivery {
    fetch_n(q, queue, 1, PATIENCE).await.remove(0)
}

/// Fetches for `wait`; panics with `why` if anything is delivered.
async fn assert_nothing<Q: TaskQueue>(q: &Q, queue: &str, wait: Duration, why: &str) {
    let got = ok("fetch", q.fetch(queue, 10, wait).await);
    assert!(
        got.is_empty(),
        "{why}: fetched {:?}",
        got.iter()
            .map(|d| (&d.task.dedup_id, d.delivery_count))
            .collect::<Vec<_>>()
    );
}

/// Polls `dead_letters(queue)` until it is non-empty; panics after `within`.
async fn wait_dead_letters<Q: TaskQueue>(q: &Q, queue: &str, within: Duration) -> Vec<DeadLetter> {
    let deadline = Instant::now() + within;
    loop {
        let dead = ok("dead_letters", q.dead_letters(queue).await);
        if !dead.is_empty() {
            return dead;
        }
        assert!(
            Instant::now() < deadline,
            "no dead letter appeared in queue {queue} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_max_delivered(dead: &[DeadLetter], sent: &Task, max_deliver: u32) {
    assert_eq!(dead.len(), 1, "exactly one dead letter expected: {dead:?}");
    assert_eq!(&dead[0].task, sent, "the dead letter must carry the task");
    assert_eq!(
        dead[0].delivery_count, max_deliver,
        "a task must be dead-lettered after exactly max_deliver deliveries"
    );
    assert!(
        !dead[0].reason.is_empty(),
        "a dead letter must say why it was dead-lettered"
    );
}
