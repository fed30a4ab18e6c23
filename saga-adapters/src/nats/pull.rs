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
) -> Result<Vec<Message>> {
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

    let mut got = Vec::new();
    let give_up = tokio::time::Instant::now() + deadline;
    while got.len() < batch {
        let msg = match tokio::time::timeout_at(give_up, sub.next()).await {
            Ok(Some(msg)) => msg,
            // The subscription closed (connection lost) or the server never ended the
            // pull: return what arrived; what did not is redelivered after the ack wait.
            Ok(None) | Err(_) => break,
        };
        match msg.status {
            None | Some(StatusCode::OK) => got.push(msg),
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
            Some(StatusCode::NO_RESPONDERS) => {
                return Err(Error::new(
                    ErrorKind::TaskQueue,
                    "JetStream did not answer a pull request (is JetStream enabled on the server?)",
                )
                .with("stream", stream)
                .with("consumer", consumer));
            }
            Some(status) => {
                return Err(Error::new(
                    ErrorKind::TaskQueue,
                    format!(
                        "JetStream refused a pull request: {status} {}",
                        msg.description.as_deref().unwrap_or("")
                    ),
                )
                .with("stream", stream)
                .with("consumer", consumer));
            }
        }
    }
    Ok(got)
}

fn failed(what: &str, consumer: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::TaskQueue, format!("cannot {what}"))
        .with("consumer", consumer)
        .with_source(e)
}
