//! [`PgSignalDispatcher`]: per-saga notifications over PostgreSQL `LISTEN/NOTIFY`, so a
//! process waiting on an execution that another process runs wakes without polling.
//!
//! All notifications of one store go through one channel (`saga_signals`, or
//! `saga_signals_<schema>` for a store in a schema), as `{"saga_id": .., "notification":
//! ..}` JSON. Each dispatcher keeps one listening connection and fans the channel out
//! to its in-process subscribers by saga id. PostgreSQL delivers notifications in
//! commit order, so the notifications one caller sends arrive in order.
//!
//! `subscribe` sends a marker through the channel and registers the subscriber when the
//! listener sees the marker come back: notifications committed before the marker are
//! not delivered to it, every one committed after `subscribe` returned is (the
//! contract of `SignalDispatcher`).
//!
//! If the listening connection drops, sqlx reconnects it and listens again;
//! notifications sent meanwhile are lost, which costs waiters latency only (the engine
//! re-reads the store on a timer), never correctness: the store is the truth.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use saga_runtime::domain::SagaId;
use saga_runtime::port::{Notification, SignalDispatcher, SignalSubscription};
use saga_runtime::{Error, ErrorKind, Result};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::oneshot;

/// PostgreSQL refuses a `NOTIFY` payload of this many bytes or more.
const NOTIFY_MAX_BYTES: usize = 8000;

/// How long `subscribe` waits for its marker before registering without it.
const MARKER_PATIENCE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Registry {
    subscribers: HashMap<SagaId, Vec<UnboundedSender<Notification>>>,
    /// Subscriptions waiting for their marker: token -> (saga, sender, ready).
    pending: HashMap<String, (SagaId, UnboundedSender<Notification>, oneshot::Sender<()>)>,
}

impl Registry {
    fn add(&mut self, saga_id: SagaId, tx: UnboundedSender<Notification>) {
        let list = self.subscribers.entry(saga_id).or_default();
        list.retain(|tx| !tx.is_closed());
        list.push(tx);
    }
}

type Subscribers = Arc<Mutex<Registry>>;

/// A [`SignalDispatcher`] on PostgreSQL `LISTEN/NOTIFY`. Clones share the listener.
#[derive(Clone)]
pub struct PgSignalDispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    channel: String,
    /// Prefix of this dispatcher's marker tokens (unique across processes).
    token_prefix: String,
    next_token: AtomicU64,
    subscribers: Subscribers,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl std::fmt::Debug for PgSignalDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSignalDispatcher")
            .field("channel", &self.inner.channel)
            .finish_non_exhaustive()
    }
}

fn dispatch_error(what: &str, e: sqlx::Error) -> Error {
    Error::new(ErrorKind::SignalDispatcher, format!("{what}: {e}")).with_source(e)
}

impl PgSignalDispatcher {
    /// A dispatcher on `channel` of the database `options` reach. Listening has begun
    /// when this returns.
    pub(crate) async fn connect_with(options: PgConnectOptions, channel: String) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| dispatch_error("connect to PostgreSQL", e))?;
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(|e| dispatch_error("connect the listener", e))?;
        listener
            .listen(&channel)
            .await
            .map_err(|e| dispatch_error("LISTEN", e))?;
        let subscribers = Subscribers::default();
        let task = tokio::spawn(listen(listener, subscribers.clone()));
        Ok(PgSignalDispatcher {
            inner: Arc::new(Inner {
                pool,
                channel,
                token_prefix: format!(
                    "{:x}-{:x}",
                    std::process::id(),
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos())
                ),
                next_token: AtomicU64::new(0),
                subscribers,
                listener: task,
            }),
        })
    }
}

async fn listen(mut listener: PgListener, subscribers: Subscribers) {
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => deliver(&subscribers, n.payload()),
            Ok(None) => {
                tracing::warn!("LISTEN connection lost and re-established; notifications sent meanwhile are lost");
            }
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection down; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn deliver(subscribers: &Subscribers, payload: &str) {
    let message: Value = match serde_json::from_str(payload) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, payload, "notification does not decode; dropped");
            return;
        }
    };
    let mut registry = subscribers.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(token) = message.get("marker").and_then(Value::as_str) {
        // Another dispatcher's markers are not in our map.
        if let Some((saga_id, tx, ready)) = registry.pending.remove(token) {
            registry.add(saga_id, tx);
            let _ = ready.send(());
        }
        return;
    }
    let decoded = (
        serde_json::from_value::<SagaId>(message["saga_id"].clone()),
        serde_json::from_value::<Notification>(message["notification"].clone()),
    );
    let (Ok(saga_id), Ok(notification)) = decoded else {
        tracing::warn!(payload, "notification does not decode; dropped");
        return;
    };
    if let Some(list) = registry.subscribers.get_mut(&saga_id) {
        list.retain(|tx| tx.send(notification.clone()).is_ok());
        if list.is_empty() {
            registry.subscribers.remove(&saga_id);
        }
    }
}

#[async_trait]
impl SignalDispatcher for PgSignalDispatcher {
    async fn notify(&self, saga_id: &SagaId, notification: Notification) -> Result<()> {
        let mut payload = json!({"saga_id": saga_id, "notification": notification}).to_string();
        if payload.len() >= NOTIFY_MAX_BYTES {
            // Too large for NOTIFY: the waiter reads the output from the store.
            let notification = notification.without_output();
            payload = json!({"saga_id": saga_id, "notification": notification}).to_string();
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(self.inner.channel.as_str())
            .bind(payload)
            .execute(&self.inner.pool)
            .await
            .map_err(|e| dispatch_error("NOTIFY", e))?;
        Ok(())
    }

    async fn subscribe(&self, saga_id: &SagaId) -> Result<SignalSubscription> {
        let (tx, rx) = unbounded_channel();
        let (ready, registered) = oneshot::channel();
        let token = format!(
            "{}-{}",
            self.inner.token_prefix,
            self.inner.next_token.fetch_add(1, Ordering::Relaxed)
        );
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending
            .insert(token.clone(), (saga_id.clone(), tx, ready));
        let marker = json!({ "marker": token }).to_string();
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(self.inner.channel.as_str())
            .bind(marker)
            .execute(&self.inner.pool)
            .await;
        let take_pending = || {
            self.inner
                .subscribers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pending
                .remove(&token)
        };
        if let Err(e) = sent {
            take_pending();
            return Err(dispatch_error("NOTIFY (subscribe marker)", e));
        }
        if tokio::time::timeout(MARKER_PATIENCE, registered)
            .await
            .is_err()
        {
            // The listener lost the marker (its connection dropped): register now.
            tracing::warn!(saga_id = %saga_id, "subscribe marker not seen; registering without it");
            if let Some((saga_id, tx, _)) = take_pending() {
                self.inner
                    .subscribers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .add(saga_id, tx);
            }
        }
        Ok(rx)
    }
}
