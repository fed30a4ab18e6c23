//! Conformance checks for [`SignalDispatcher`]: per-saga, ordered, fan-out delivery.

use std::time::Duration;

use super::{ok, unique};
use crate::domain::{SagaId, WorkflowStatus};
use crate::port::{Notification, SignalDispatcher, SignalSubscription, CARRIED_OUTPUT_BYTES};
use serde_json::{json, Value};

/// How long a check waits for a notification that must arrive.
const PATIENCE: Duration = Duration::from_secs(3);
/// How long a check listens before concluding that nothing more will arrive.
const QUIET: Duration = Duration::from_millis(100);

/// Runs every signal dispatcher check, in turn, on `dispatcher`.
pub async fn run_all_signal_dispatcher<D: SignalDispatcher>(dispatcher: &D) {
    check_notifications_arrive_in_order(dispatcher).await;
    check_notifications_are_per_saga(dispatcher).await;
    check_every_subscriber_receives(dispatcher).await;
    check_dropped_subscription_does_not_break_notify(dispatcher).await;
    check_completion_outputs_are_carried(dispatcher).await;
    check_inbox_waiters_receive_what_is_sent_there(dispatcher).await;
}

/// What is sent to a dispatcher's inbox reaches its waiters for that saga, in order,
/// and the saga's subscribers too; nothing for another saga does, nor (where the
/// dispatcher has an inbox) what is sent to another inbox or to none. Without an inbox,
/// `watch_inbox` is a subscription and `notify_inbox` a notification.
pub async fn check_inbox_waiters_receive_what_is_sent_there<D: SignalDispatcher>(d: &D) {
    let (x, y) = (
        SagaId::new(unique("sd-inbox-x")),
        SagaId::new(unique("sd-inbox-y")),
    );
    let inbox = d.inbox();
    let to = inbox.clone().unwrap_or_else(|| "no-inbox".to_owned());
    let mut waiter = ok("watch_inbox", d.watch_inbox(&x).await);
    let mut subscriber = ok("subscribe", d.subscribe(&x).await);
    ok(
        "notify_inbox for another saga",
        d.notify_inbox(&y, &to, signal("for-y")).await,
    );
    let sent = sample(6);
    for n in &sent {
        ok("notify_inbox", d.notify_inbox(&x, &to, n.clone()).await);
    }
    for (name, sub) in [("waiter", &mut waiter), ("subscriber", &mut subscriber)] {
        for (i, want) in sent.iter().enumerate() {
            assert_eq!(
                &recv(sub, &x).await,
                want,
                "the inbox's {name} of {x}: notification {i} sent to the inbox"
            );
        }
    }
    if inbox.is_some() {
        ok(
            "notify_inbox to another inbox",
            d.notify_inbox(&x, "elsewhere", signal("elsewhere")).await,
        );
        ok("notify", d.notify(&x, signal("no-inbox")).await);
        for want in ["elsewhere", "no-inbox"] {
            assert_eq!(recv(&mut subscriber, &x).await, signal(want));
        }
    }
    assert_quiet(&mut waiter, &x).await;

    // A waiter that left does not stop the next one, for the same saga, hearing.
    drop(waiter);
    ok(
        "notify_inbox with the waiter gone",
        d.notify_inbox(&x, &to, signal("nobody-waits")).await,
    );
    let mut late = ok("watch_inbox", d.watch_inbox(&x).await);
    ok(
        "notify_inbox",
        d.notify_inbox(&x, &to, signal("late")).await,
    );
    let mut got = recv(&mut late, &x).await;
    // One sent just before the waiter came may still have been on its way to the inbox.
    if got == signal("nobody-waits") {
        got = recv(&mut late, &x).await;
    }
    assert_eq!(got, signal("late"));
}

/// `here` and `there` as the dispatchers of two processes: what `there` sends to
/// `here`'s inbox right after a `watch_inbox` on `here` returned reaches that waiter,
/// every time, and no waiter at `there`'s own (different) inbox.
pub async fn check_inboxes_across_dispatchers<D: SignalDispatcher>(here: &D, there: &D) {
    let to = here.inbox().unwrap_or_else(|| "no-inbox".to_owned());
    let separate = here.inbox().is_some() && here.inbox() != there.inbox();
    let x = SagaId::new(unique("sd-inbox-there"));
    let mut elsewhere = ok("watch_inbox", there.watch_inbox(&x).await);
    for i in 0..50 {
        let mut waiter = ok("watch_inbox", here.watch_inbox(&x).await);
        let n = signal(&format!("sent-from-there-{i}"));
        ok("notify_inbox", there.notify_inbox(&x, &to, n.clone()).await);
        assert_eq!(recv(&mut waiter, &x).await, n, "round {i}");
        if !separate {
            assert_eq!(recv(&mut elsewhere, &x).await, n, "round {i}");
        }
    }
    if separate {
        assert_quiet(&mut elsewhere, &x).await;
    }
}

/// A subscriber of X receives every notification sent to X, in order.
pub async fn check_notifications_arrive_in_order<D: SignalDispatcher>(d: &D) {
    let x = SagaId::new(unique("sd-order"));
    let mut sub = ok("subscribe", d.subscribe(&x).await);
    let sent = sample(8);
    for n in &sent {
        ok("notify", d.notify(&x, n.clone()).await);
    }
    for (i, want) in sent.iter().enumerate() {
        let got = recv(&mut sub, &x).await;
        assert_eq!(&got, want, "notification {i} for {x} arrived out of order");
    }
    assert_quiet(&mut sub, &x).await;
}

/// A subscriber of X receives nothing sent to Y, and notifying a saga nobody
/// subscribed to succeeds.
pub async fn check_notifications_are_per_saga<D: SignalDispatcher>(d: &D) {
    let (x, y) = (SagaId::new(unique("sd-x")), SagaId::new(unique("sd-y")));
    let mut sub = ok("subscribe", d.subscribe(&x).await);
    ok(
        "notify a saga nobody subscribed to",
        d.notify(&y, signal("for-y")).await,
    );
    let marker = signal("for-x");
    ok("notify", d.notify(&x, marker.clone()).await);
    assert_eq!(
        recv(&mut sub, &x).await,
        marker,
        "a subscriber of {x} must not receive notifications for {y}"
    );
    assert_quiet(&mut sub, &x).await;
}

/// Two subscribers of X both receive every notification for X.
pub async fn check_every_subscriber_receives<D: SignalDispatcher>(d: &D) {
    let x = SagaId::new(unique("sd-fanout"));
    let mut first = ok("subscribe", d.subscribe(&x).await);
    let mut second = ok("subscribe", d.subscribe(&x).await);
    let sent = sample(3);
    for n in &sent {
        ok("notify", d.notify(&x, n.clone()).await);
    }
    for (name, sub) in [("first", &mut first), ("second", &mut second)] {
        for want in &sent {
            assert_eq!(
                &recv(sub, &x).await,
                want,
                "the {name} subscriber of {x} must receive every notification, in order"
            );
        }
    }
}

/// Dropping a subscription does not break `notify`, nor the other subscribers, nor
/// later subscriptions.
pub async fn check_dropped_subscription_does_not_break_notify<D: SignalDispatcher>(d: &D) {
    let x = SagaId::new(unique("sd-drop"));
    let dropped = ok("subscribe", d.subscribe(&x).await);
    let mut kept = ok("subscribe", d.subscribe(&x).await);
    drop(dropped);
    let first = signal("after-drop");
    ok(
        "notify after a subscription was dropped",
        d.notify(&x, first.clone()).await,
    );
    assert_eq!(recv(&mut kept, &x).await, first);

    // The only subscriber goes away; notify still works and a new subscriber hears.
    drop(kept);
    ok(
        "notify with every subscription dropped",
        d.notify(&x, signal("nobody-listens")).await,
    );
    let mut late = ok("subscribe", d.subscribe(&x).await);
    let second = signal("late");
    ok("notify", d.notify(&x, second.clone()).await);
    assert_eq!(
        recv(&mut late, &x).await,
        second,
        "a subscription made after the others were dropped must receive notifications"
    );
}

/// A completion's output of up to [`CARRIED_OUTPUT_BYTES`] arrives with it; a larger
/// one may be dropped from the notification, but the notification still arrives (in
/// order with the others).
pub async fn check_completion_outputs_are_carried<D: SignalDispatcher>(d: &D) {
    let x = SagaId::new(unique("sd-output"));
    let mut sub = ok("subscribe", d.subscribe(&x).await);
    let completed = |output: Value| Notification::StatusChanged {
        status: WorkflowStatus::Completed,
        output: Some(output),
    };
    // The carried limit counts the output's JSON: a string of n bytes is n + 2.
    let fits = json!("f".repeat(CARRIED_OUTPUT_BYTES - 2));
    let huge = json!("h".repeat(64 * 1024));
    ok("notify", d.notify(&x, completed(fits.clone())).await);
    ok("notify", d.notify(&x, completed(huge.clone())).await);
    ok("notify", d.notify(&x, signal("after")).await);
    assert_eq!(
        recv(&mut sub, &x).await,
        completed(fits),
        "an output of {CARRIED_OUTPUT_BYTES} bytes must arrive with its notification"
    );
    let got = recv(&mut sub, &x).await;
    assert!(
        got == completed(huge.clone()) || got == completed(huge).without_output(),
        "a 64 KiB output must arrive whole or not at all, with its notification; got {}",
        format!("{got:?}").chars().take(120).collect::<String>()
    );
    assert_eq!(recv(&mut sub, &x).await, signal("after"));
    assert_quiet(&mut sub, &x).await;
}

fn signal(name: &str) -> Notification {
    Notification::SignalReceived {
        name: name.to_owned(),
    }
}

/// `n` distinct notifications of every kind.
fn sample(n: usize) -> Vec<Notification> {
    (0..n)
        .map(|i| match i % 3 {
            0 => signal(&format!("signal-{i}")),
            1 => Notification::TimerFired {
                timer_id: format!("timer-{i}"),
            },
            _ => Notification::StatusChanged {
                status: WorkflowStatus::ALL[i % WorkflowStatus::ALL.len()],
                output: (i % 2 == 0).then(|| json!({"order": i, "total": 12.5})),
            },
        })
        .collect()
}

async fn recv(sub: &mut SignalSubscription, saga: &SagaId) -> Notification {
    match tokio::time::timeout(PATIENCE, sub.recv()).await {
        Ok(Some(n)) => n,
        Ok(None) => panic!("the subscription to {saga} closed while waiting"),
        Err(_) => panic!("no notification for {saga} within {PATIENCE:?}"),
    }
}

async fn assert_quiet(sub: &mut SignalSubscription, saga: &SagaId) {
    if let Ok(Some(n)) = tokio::time::timeout(QUIET, sub.recv()).await {
        panic!("unexpected notification for {saga}: {n:?}");
    }
}
