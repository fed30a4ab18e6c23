//! One pull request to a JetStream pull consumer, written against the wire protocol
//! (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`) rather than the client's batch
//! helpers: the end of a pull comes as a status message (404 nothing there, 408 the
//! wait ran out, 409 too many un-acked deliveries, 100 heartbeat), and the queue
//! treats most of those as "no more for now", not as failures.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::{Client, Message, StatusCode, Subscriber};
use futures_util::StreamExt;
use saga_runtime::{Error, ErrorKind, Result};

/// How a pull waits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Take what is ready now; do not wait.
    NoWait,
    /// Wait up to this long for the batch to fill; the server ends the pull then.
    Expires(Duration),
}

/// What a pull brought.
#[derive(Debug, Default)]
pub(crate) struct Pulled {
    /// The messages, in delivery order.
    pub(crate) msgs: Vec<Message>,
    /// False if the server said nothing at all (no message, no status) before the
    /// deadline: a server that lost the consumer or its stream (deleted, or data lost)
    /// does not answer pulls, so silence means "go and look".
    pub(crate) answered: bool,
}

/// Reply subscriptions of finished pulls, kept per consumer for the next pulls.
///
/// Why: a subscription made and dropped for every pull is a SUB and an UNSUB for the
/// server, which updates its subject index for each; with a hundred workers pulling,
/// keeping them raised saga-5 on PostgreSQL + NATS by 6-29 % in four paired runs
/// (BENCHMARKS.md). Only a subscription whose pull ended cleanly (the batch filled, or
/// the server's end-of-pull status came) is kept, so nothing of an earlier pull can
/// arrive on it later; one whose pull went silent is dropped. Per consumer, because a
/// message that did arrive late would be a task of that consumer's queue.
#[derive(Default)]
pub(crate) struct Inboxes {
    free: Mutex<HashMap<String, Vec<(String, Subscriber)>>>,
}

/// Kept subscriptions per consumer, at most (more pulls at once make new ones).
const KEPT_INBOXES: usize = 256;

impl Inboxes {
    fn take(&self, consumer: &str) -> Option<(String, Subscriber)> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.get_mut(consumer).and_then(Vec::pop)
    }

    fn give(&self, consumer: &str, inbox: (String, Subscriber)) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let kept = free.entry(consumer.to_owned()).or_default();
        if kept.len() < KEPT_INBOXES {
            kept.push(inbox);
        }
    }

    /// Drops every kept subscription of `consumer` (it is being recreated).
    pub(crate) fn forget(&self, consumer: &str) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.remove(consumer);
    }
}

/// Pulls up to `batch` messages from `consumer` of `stream`, on a kept reply
/// subscription from `inboxes` if there is one. `grace` bounds how long we wait past
/// the server's own deadline for its end-of-pull status (a lost status must not hang
/// the caller).
pub(crate) async fn pull(
    client: &Client,
    inboxes: Option<&Inboxes>,
    stream: &str,
    consumer: &str,
    batch: usize,
    wait: Wait,
    grace: Duration,
) -> Result<Pulled> {
    let (inbox, mut sub) = match inboxes.and_then(|i| i.take(consumer)) {
        Some(kept) => kept,
        None => {
            let inbox = client.new_inbox();
            let sub = client
                .subscribe(inbox.clone())
                .await
                .map_err(|e| failed("subscribe to a pull inbox", consumer, e))?;
            (inbox, sub)
        }
    };
    let (body, deadline) = match wait {
        Wait::NoWait => (format!(r#"{{"batch":{batch},"no_wait":true}}"#), grace),
        Wait::Expires(d) => (
            format!(r#"{{"batch":{batch},"expires":{}}}"#, d.as_nanos()),
            d + grace,
        ),
    };
    client
        .publish_with_reply(
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            inbox.clone(),
            body.into(),
        )
        .await
        .map_err(|e| failed("send a pull request", consumer, e))?;

    let mut out = Pulled::default();
    let give_up = tokio::time::Instant::now() + deadline;
    // Whether the pull ended as the server sees it too (its subscription can be kept).
    let mut ended = false;
    while out.msgs.len() < batch {
        let msg = match tokio::time::timeout_at(give_up, sub.next()).await {
            Ok(Some(msg)) => msg,
            // The subscription closed (connection lost) or the server never ended the
            // pull: return what arrived; what did not is redelivered after the ack wait.
            Ok(None) | Err(_) => break,
        };
        out.answered = true;
        match msg.status {
            None | Some(StatusCode::OK) => out.msgs.push(msg),
            Some(StatusCode::IDLE_HEARTBEAT) => {}
            // 404: nothing to deliver now (no_wait); 408: the wait ran out; 409: the
            // consumer has `max_ack_pending` deliveries in flight, or the pull was
            // superseded. None of these is an error for a queue: nothing more for now.
            Some(StatusCode::NOT_FOUND)
            | Some(StatusCode::TIMEOUT)
            | Some(StatusCode::REQUEST_TERMINATED) => {
                tracing::trace!(consumer, status = ?msg.status, description = ?msg.description, "pull ended");
                ended = true;
                break;
            }
            Some(status) => {
                let what = if status == StatusCode::NO_RESPONDERS {
                    "JetStream did not answer a pull request (is JetStream enabled on the server?)"
                        .to_owned()
                } else {
                    format!(
                        "JetStream refused a pull request: {status} {}",
                        msg.description.as_deref().unwrap_or("")
                    )
                };
                if !out.msgs.is_empty() {
                    // What arrived is delivered: hand it out rather than let it wait a
                    // whole ack wait for redelivery; the next pull reports the problem.
                    tracing::warn!(consumer, "{what}");
                    break;
                }
                return Err(Error::new(ErrorKind::TaskQueue, what)
                    .with("stream", stream)
                    .with("consumer", consumer));
            }
        }
    }
    if let Some(inboxes) = inboxes {
        if ended || out.msgs.len() == batch {
            inboxes.give(consumer, (inbox, sub));
        }
    }
    Ok(out)
}

fn failed(what: &str, consumer: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::TaskQueue, format!("cannot {what}"))
        .with("consumer", consumer)
        .with_source(e)
}
