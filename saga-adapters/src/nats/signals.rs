//! [`NatsSignalDispatcher`]: the [`SignalDispatcher`] port on core NATS subjects.

use std::time::Duration;

use async_nats::{Client, RequestError, RequestErrorKind};
use async_trait::async_trait;
use futures_util::StreamExt;
use saga_runtime::domain::SagaId;
use saga_runtime::port::{Notification, SignalDispatcher, SignalSubscription};
use saga_runtime::{Error, ErrorKind, Result};
use tokio::sync::mpsc::unbounded_channel;

use super::subject;

/// Wakes whoever waits on an execution, across processes: a notification for saga X is
/// a JSON message on `<prefix>.<X>` (the id escaped into one subject token), and a
/// subscription is a NATS subscription to that subject.
///
/// Core NATS, not JetStream: a wake-up is worth nothing once the waiter is gone, and
/// the store, not the message, says what happened. A notification sent while nobody
/// listens is dropped, as the port allows. `subscribe` returns only after the server
/// has registered the subscription (a round trip), so a notification sent after it
/// returns, from any connection, is received. Notifications from one connection
/// arrive in the order they were sent.
///
/// Clones share the connection.
///
/// ```no_run
/// use saga_adapters::NatsSignalDispatcher;
/// use saga_runtime::domain::SagaId;
/// use saga_runtime::port::{Notification, SignalDispatcher};
///
/// # async fn run() -> saga_runtime::Result<()> {
/// let signals = NatsSignalDispatcher::connect("nats://127.0.0.1:4222", "saga.signals").await?;
/// let saga = SagaId::new("order-42");
/// let mut wake = signals.subscribe(&saga).await?;
/// signals
///     .notify(&saga, Notification::SignalReceived { name: "approve".into() })
///     .await?;
/// assert!(wake.recv().await.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct NatsSignalDispatcher {
    client: Client,
    prefix: String,
}

impl NatsSignalDispatcher {
    /// A dispatcher on its own connection to `url`, publishing under `prefix` (for
    /// example `saga.signals`). A bad prefix is a `Configuration` error, an unreachable
    /// server a `SignalDispatcher` error.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        check_prefix(prefix)?;
        let client = async_nats::connect(url).await.map_err(|e| {
            Error::new(ErrorKind::SignalDispatcher, "cannot connect to NATS")
                .with("url", url)
                .with_source(e)
        })?;
        Ok(Self::new(client, prefix))
    }

    /// A dispatcher on an existing connection. `prefix` must be dot-separated tokens
    /// of letters, digits, `_` and `-` ([`NatsSignalDispatcher::connect`] checks it;
    /// here a bad one makes every call fail with a `Configuration` error).
    pub fn new(client: Client, prefix: &str) -> Self {
        NatsSignalDispatcher {
            client,
            prefix: prefix.to_owned(),
        }
    }

    fn subject(&self, saga_id: &SagaId) -> Result<String> {
        check_prefix(&self.prefix)?;
        Ok(format!(
            "{}.{}",
            self.prefix,
            subject::escape_token(saga_id.as_str())
        ))
    }
}

/// How long `subscribe` waits for the server to confirm a subscription.
const CONFIRM_WITHIN: Duration = Duration::from_secs(5);

/// Returns once the server has registered the subscriptions sent before on `client`.
///
/// Why: the server handles one connection's messages in order, so its answer to a
/// request sent after them means they are in place. The request goes to a new inbox
/// that nobody listens on, and the answer is the server's own "no responders".
/// (`Client::flush` is not enough: it only writes out the client's buffer and waits
/// for nothing from the server, so a notification sent at once from another
/// connection could overtake the subscription, and did, in CI.)
async fn confirm_subscription(client: &Client) -> std::result::Result<(), RequestError> {
    let request = async_nats::Request::new().timeout(Some(CONFIRM_WITHIN));
    match client.send_request(client.new_inbox(), request).await {
        // An answer from anyone also comes after the subscriptions.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
        Err(e) => Err(e),
    }
}

fn check_prefix(prefix: &str) -> Result<()> {
    if subject::is_prefix(prefix) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Configuration,
            "invalid NATS signal subject prefix: use dot-separated tokens of letters, digits, `_` or `-`",
        )
        .with("prefix", prefix))
    }
}

#[async_trait]
impl SignalDispatcher for NatsSignalDispatcher {
    async fn notify(&self, saga_id: &SagaId, notification: Notification) -> Result<()> {
        let subject = self.subject(saga_id)?;
        let encode = |n: &Notification| {
            serde_json::to_vec(n).map_err(|e| {
                Error::new(ErrorKind::Codec, "cannot encode a notification")
                    .with("saga_id", saga_id)
                    .with_source(e)
            })
        };
        let mut body = encode(&notification)?;
        if body.len() > self.client.server_info().max_payload {
            // Too large for one message: the waiter reads the output from the store.
            body = encode(&notification.without_output())?;
        }
        self.client
            .publish(subject, body.into())
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::SignalDispatcher,
                    "cannot publish a notification to NATS",
                )
                .with("saga_id", saga_id)
                .with_source(e)
            })
    }

    async fn subscribe(&self, saga_id: &SagaId) -> Result<SignalSubscription> {
        let subject = self.subject(saga_id)?;
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::SignalDispatcher,
                format!("cannot {what} on NATS: {e}"),
            )
            .with("saga_id", saga_id)
        };
        let mut sub = self
            .client
            .subscribe(subject)
            .await
            .map_err(|e| failed("subscribe", &e))?;
        confirm_subscription(&self.client)
            .await
            .map_err(|e| failed("confirm a subscription", &e))?;
        let (tx, rx) = unbounded_channel();
        let saga = saga_id.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    msg = sub.next() => {
                        let Some(msg) = msg else { break };
                        match serde_json::from_slice::<Notification>(&msg.payload) {
                            Ok(n) => {
                                if tx.send(n).is_err() {
                                    break;
                                }
                            }
                            Err(e) => tracing::warn!(
                                saga_id = %saga,
                                error = %e,
                                "ignored a message on a signal subject that is not a notification"
                            ),
                        }
                    }
                    // Dropping the subscription unsubscribes, even if nothing arrives.
                    () = tx.closed() => break,
                }
            }
            // Dropping `sub` sends UNSUB.
        });
        Ok(rx)
    }
}
