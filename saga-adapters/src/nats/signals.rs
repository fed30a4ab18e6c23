//! [`NatsSignalDispatcher`]: the [`SignalDispatcher`] port on core NATS subjects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, RequestError, RequestErrorKind};
use async_trait::async_trait;
use futures_util::StreamExt;
use saga_runtime::domain::SagaId;
use saga_runtime::port::{Notification, SignalDispatcher, SignalSubscription};
use saga_runtime::{Error, ErrorKind, Result};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::{watch, OnceCell};

use super::subject;

/// Wakes whoever waits on an execution, across processes: a notification for saga X is
/// a JSON message on `<prefix>.<inbox>.<X>` (the id escaped into one subject token;
/// `<inbox>` is `_` but for a close sent to a starter's inbox), and a subscription is
/// a NATS subscription to `<prefix>.*.<X>`.
///
/// Core NATS, not JetStream: a wake-up is worth nothing once the waiter is gone, and
/// the store, not the message, says what happened. A notification sent while nobody
/// listens is dropped, as the port allows. `subscribe` returns only after the server
/// has registered the subscription (a round trip), so a notification sent after it
/// returns, from any connection, is received. Notifications from one connection
/// arrive in the order they were sent.
///
/// The dispatcher's inbox ([`SignalDispatcher::inbox`]) is one subscription, to
/// `<prefix>.<inbox>.*`, made (and confirmed) on its first
/// [`watch_inbox`](SignalDispatcher::watch_inbox); every later waiter is an entry in
/// a table here, with nothing sent to the server. That spares the server a
/// subscription, its confirmation and its removal for every execution that an engine
/// starts and awaits (`SagaEngine::execute`).
///
/// Clones share the connection and the inbox.
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
    inbox: Arc<Inbox>,
}

/// The inbox token of a notification sent to no inbox: never a NUID, which is what
/// inboxes are.
const NO_INBOX: &str = "_";

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
        // The connection's own unique inbox name, without its `_INBOX.` prefix.
        let token = client
            .new_inbox()
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        NatsSignalDispatcher {
            client,
            prefix: prefix.to_owned(),
            inbox: Arc::new(Inbox::new(token)),
        }
    }

    /// The subject of a notification for `saga_id` sent to `inbox`.
    fn subject(&self, inbox: &str, saga_id: &SagaId) -> Result<String> {
        check_prefix(&self.prefix)?;
        Ok(format!(
            "{}.{inbox}.{}",
            self.prefix,
            subject::escape_token(saga_id.as_str())
        ))
    }

    async fn publish(&self, inbox: &str, saga_id: &SagaId, n: Notification) -> Result<()> {
        let subject = self.subject(inbox, saga_id)?;
        let encode = |n: &Notification| {
            serde_json::to_vec(n).map_err(|e| {
                Error::new(ErrorKind::Codec, "cannot encode a notification")
                    .with("saga_id", saga_id)
                    .with_source(e)
            })
        };
        let mut body = encode(&n)?;
        if body.len() > self.client.server_info().max_payload {
            // Too large for one message: the waiter reads the output from the store.
            body = encode(&n.without_output())?;
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

    /// A subscription to `subject` (`what` it is to, for errors, which also carry
    /// `context`), returned once the server has it ([`confirm_subscription`]).
    async fn subscribe_confirmed(
        &self,
        subject: String,
        what: &str,
        context: (&'static str, &str),
    ) -> Result<async_nats::Subscriber> {
        let failed = |step: &str, e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::SignalDispatcher,
                format!("cannot {step} to {what} on NATS: {e}"),
            )
            .with(context.0, context.1)
        };
        let sub = self
            .client
            .subscribe(subject)
            .await
            .map_err(|e| failed("subscribe", &e))?;
        confirm_subscription(&self.client)
            .await
            .map_err(|e| failed("confirm a subscription", &e))?;
        Ok(sub)
    }

    /// The inbox's subscription, made and confirmed on first use; its messages go to
    /// the waiters in the table.
    async fn open_inbox(&self) -> Result<()> {
        self.inbox
            .open
            .get_or_try_init(|| async {
                check_prefix(&self.prefix)?;
                let subject = format!("{}.{}.*", self.prefix, self.inbox.token);
                let mut sub = self
                    .subscribe_confirmed(subject, "an inbox", ("inbox", &self.inbox.token))
                    .await?;
                // The task holds the table only weakly, and ends (unsubscribing) with
                // the last clone of the dispatcher.
                let inbox = Arc::downgrade(&self.inbox);
                let mut gone = self.inbox.gone.subscribe();
                tokio::spawn(async move {
                    loop {
                        let msg = tokio::select! {
                            msg = sub.next() => msg,
                            _ = gone.changed() => None,
                        };
                        let (Some(msg), Some(inbox)) = (msg, inbox.upgrade()) else {
                            break;
                        };
                        let saga = msg.subject.rsplit('.').next().unwrap_or_default();
                        match serde_json::from_slice::<Notification>(&msg.payload) {
                            Ok(n) => inbox.deliver(saga, n),
                            Err(e) => tracing::warn!(
                                subject = %msg.subject,
                                error = %e,
                                "ignored a message in the signal inbox that is not a notification"
                            ),
                        }
                    }
                });
                Ok(())
            })
            .await
            .map(|_| ())
    }
}

/// The waiters at a dispatcher's inbox, by escaped saga id.
struct Inbox {
    token: String,
    /// Set once the subscription is in place.
    open: OnceCell<()>,
    waiters: Mutex<Waiters>,
    /// Dropped with the inbox: its subscription's task then ends.
    gone: watch::Sender<()>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("token", &self.token)
            .field("open", &self.open.initialized())
            .field("sagas_awaited", &self.lock().by_saga.len())
            .finish()
    }
}

struct Waiters {
    by_saga: HashMap<String, Vec<UnboundedSender<Notification>>>,
    /// The table's size at which waiters gone without a notification are dropped.
    sweep_at: usize,
}

/// The least `sweep_at`: below it the table is never swept.
const SWEEP_FROM: usize = 64;

impl Inbox {
    fn new(token: String) -> Self {
        Inbox {
            token,
            open: OnceCell::new(),
            waiters: Mutex::new(Waiters {
                by_saga: HashMap::new(),
                sweep_at: SWEEP_FROM,
            }),
            gone: watch::channel(()).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, saga: String, tx: UnboundedSender<Notification>) {
        let mut w = self.lock();
        w.by_saga.entry(saga).or_default().push(tx);
        // A waiter that gave up before its notification came leaves a closed sender:
        // drop those whenever the table has doubled, so it stays as large as the
        // waiters it holds (amortized: each entry is looked at once per doubling).
        if w.by_saga.len() >= w.sweep_at {
            w.by_saga.retain(|_, txs| {
                txs.retain(|tx| !tx.is_closed());
                !txs.is_empty()
            });
            w.sweep_at = (w.by_saga.len() * 2).max(SWEEP_FROM);
        }
    }

    fn deliver(&self, saga: &str, n: Notification) {
        let mut w = self.lock();
        let Some(txs) = w.by_saga.get_mut(saga) else {
            return;
        };
        txs.retain(|tx| tx.send(n.clone()).is_ok());
        if txs.is_empty() {
            w.by_saga.remove(saga);
        }
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
        self.publish(NO_INBOX, saga_id, notification).await
    }

    async fn subscribe(&self, saga_id: &SagaId) -> Result<SignalSubscription> {
        let subject = self.subject("*", saga_id)?;
        let mut sub = self
            .subscribe_confirmed(subject, "an execution", ("saga_id", saga_id.as_str()))
            .await?;
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

    fn inbox(&self) -> Option<String> {
        Some(self.inbox.token.clone())
    }

    async fn notify_inbox(
        &self,
        saga_id: &SagaId,
        inbox: &str,
        notification: Notification,
    ) -> Result<()> {
        // A name read back from a history that is not one of ours (edited, or from
        // another dispatcher): the subscribers still hear it.
        let inbox = if subject::is_name(inbox) {
            inbox
        } else {
            tracing::warn!(saga_id = %saga_id, inbox, "not a NATS inbox name; notified without it");
            NO_INBOX
        };
        self.publish(inbox, saga_id, notification).await
    }

    async fn watch_inbox(&self, saga_id: &SagaId) -> Result<SignalSubscription> {
        self.open_inbox().await?;
        let (tx, rx) = unbounded_channel();
        self.inbox.add(subject::escape_token(saga_id.as_str()), tx);
        Ok(rx)
    }
}
