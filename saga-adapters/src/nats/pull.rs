//! One pull request to a JetStream pull consumer, written against the wire protocol
//! (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`) rather than the client's batch
//! helpers: the end of a pull comes as a status message (404 nothing there, 408 the
//! wait ran out, 409 too many un-acked deliveries, 100 heartbeat), and the queue
//! treats most of those as "no more for now", not as failures.

use std::time::Duration;

use async_nats::{Client, Message, StatusCode};
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

/// Pulls up to `batch` messages from `consumer` of `stream`. `grace` bounds how long we
/// wait past the server's own deadline for its end-of-pull status (a lost status must
/// not hang the caller).
pub(crate) async fn pull(
    client: &Client,
    stream: &str,
    consumer: &str,
    batch: usize,
    wait: Wait,
    grace: Duration,
) -> Result<Pulled> {
    let inbox = client.new_inbox();
    let mut sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| failed("subscribe to a pull inbox", consumer, e))?;
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
            inbox,
            body.into(),
        )
        .await
        .map_err(|e| failed("send a pull request", consumer, e))?;

    let mut out = Pulled::default();
    let give_up = tokio::time::Instant::now() + deadline;
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
    Ok(out)
}

fn failed(what: &str, consumer: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::TaskQueue, format!("cannot {what}"))
        .with("consumer", consumer)
        .with_source(e)
}
