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
//! re-reads the store on a timer), never correctness: the store is the truth. A
//! listening connection can also go silent without dropping (its server gone without
//! a word, after a failover): nothing arrives on it, and nothing tells. A `subscribe`
//! whose marker does not come back therefore has a new listener made, on a new
//! connection. A `NOTIFY` waits for its answer at most the store's
//! `PostgresConfig::reply_timeout`, and the connection of one that timed out is closed.
//!
//! Neither connection is a pooled one: sqlx pings a pooled connection on its way back
//! to the pool, with no time limit, and a ping on a silent connection would hold the
//! pool's slot until the kernel gives the connection up (about a quarter of an hour).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use saga_runtime::domain::SagaId;
use saga_runtime::port::{Notification, SignalDispatcher, SignalSubscription};
use saga_runtime::{Error, ErrorKind, Result};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::{oneshot, Notify};

use super::unavailable;

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
    options: PgConnectOptions,
    /// The connection `NOTIFY`s go on, one at a time; none after one failed.
    notifier: tokio::sync::Mutex<Option<PgConnection>>,
    channel: String,
    /// How long a `NOTIFY`, or making a new listener, waits for PostgreSQL.
    reply_timeout: Duration,
    /// Asks the listening task for a new listener (the current one may be silent).
    relisten: Arc<Relisten>,
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

/// A listener on `channel`, on a new connection to the database `options` reach.
///
/// `PgListener` takes its connection from a pool, and gives it back (after an
/// `UNLISTEN`) when dropped; so each listener has a pool of its own, and a replaced
/// listener whose connection went silent holds nothing but its own pool.
async fn listener(
    options: &PgConnectOptions,
    channel: &str,
) -> std::result::Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
        .connect_with(options.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

impl PgSignalDispatcher {
    /// A dispatcher on `channel` of the database `options` reach, whose statements wait
    /// at most `reply_timeout` for an answer. Listening has begun when this returns.
    pub(crate) async fn connect_with(
        options: PgConnectOptions,
        channel: String,
        reply_timeout: Duration,
    ) -> Result<Self> {
        let notifier = PgConnection::connect_with(&options)
            .await
            .map_err(|e| dispatch_error("connect to PostgreSQL", e))?;
        let first = listener(&options, &channel)
            .await
            .map_err(|e| dispatch_error("LISTEN", e))?;
        let subscribers = Subscribers::default();
        let relisten = Arc::new(Relisten::default());
        let task = tokio::spawn(listen(
            Listening {
                options: options.clone(),
                channel: channel.clone(),
                reply_timeout,
                relisten: relisten.clone(),
                subscribers: subscribers.clone(),
            },
            first,
        ));
        Ok(PgSignalDispatcher {
            inner: Arc::new(Inner {
                options,
                notifier: tokio::sync::Mutex::new(Some(notifier)),
                channel,
                reply_timeout,
                relisten,
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

    /// `pg_notify` of `payload` on the channel, waiting at most the reply timeout. The
    /// connection is kept for the next unless this one failed or timed out: it is then
    /// closed, and the next opens a new one.
    async fn send(&self, payload: String, what: &str) -> Result<()> {
        let limit = self.inner.reply_timeout;
        let call = async {
            let mut kept = self.inner.notifier.lock().await;
            let mut conn = match kept.take() {
                Some(conn) => conn,
                None => PgConnection::connect_with(&self.inner.options)
                    .await
                    .map_err(|e| unavailable("connect to PostgreSQL", e))?,
            };
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(self.inner.channel.as_str())
                .bind(payload)
                .execute(&mut conn)
                .await
                .map_err(|e| unavailable(what, e))?;
            *kept = Some(conn);
            Ok(())
        };
        let outcome = match tokio::time::timeout(limit, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::new(
                ErrorKind::SignalDispatcher,
                format!("cannot {what}: PostgreSQL did not answer within {limit:?}"),
            )
            .with("code", "unavailable")),
        };
        outcome.map_err(|mut e| {
            e.kind = ErrorKind::SignalDispatcher;
            e
        })
    }
}

/// Requests for a new listener, from subscriptions whose marker did not come back.
#[derive(Default)]
struct Relisten {
    /// Listeners made after the first.
    generation: AtomicU64,
    /// The generation last found silent.
    silent: AtomicU64,
    asked: Notify,
}

impl Relisten {
    /// The generation of the listener in use.
    fn current(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The listener of `generation` let a marker go: have it replaced, unless it has
    /// been already (a new listener may simply have come after the marker).
    fn ask(&self, generation: u64) {
        if self.current() == generation {
            self.silent.store(generation, Ordering::Release);
            self.asked.notify_one();
        }
    }

    /// Resolves when the listener in use is to be replaced.
    async fn wanted(&self) {
        loop {
            self.asked.notified().await;
            if self.silent.load(Ordering::Acquire) == self.current() {
                return;
            }
        }
    }

    /// A new listener is in use.
    fn replaced(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// What the listening task needs.
struct Listening {
    options: PgConnectOptions,
    channel: String,
    reply_timeout: Duration,
    relisten: Arc<Relisten>,
    subscribers: Subscribers,
}

async fn listen(l: Listening, mut listener: PgListener) {
    loop {
        tokio::select! {
            received = listener.try_recv() => match received {
                Ok(Some(n)) => deliver(&l.subscribers, n.payload()),
                Ok(None) => {
                    tracing::warn!("LISTEN connection lost and re-established; notifications sent meanwhile are lost");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection down; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
            _ = l.relisten.wanted() => {
                listener = l.relisten_until_done().await;
                l.relisten.replaced();
            }
        }
    }
}

impl Listening {
    /// A new listener on a new connection, once one can be made (the old one is
    /// dropped; notifications sent meanwhile are lost).
    async fn relisten_until_done(&self) -> PgListener {
        tracing::warn!("a subscription marker did not come back on the LISTEN connection; listening on a new one");
        loop {
            match tokio::time::timeout(self.reply_timeout, listener(&self.options, &self.channel))
                .await
            {
                Ok(Ok(listener)) => return listener,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot listen on a new connection; retrying")
                }
                Err(_) => {
                    tracing::warn!(timeout = ?self.reply_timeout, "no answer to LISTEN on a new connection; retrying")
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
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
        self.send(payload, "NOTIFY").await
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
        // Which listener the marker is for: one made after it was sent misses it too.
        let listening = self.inner.relisten.current();
        let marker = json!({ "marker": token }).to_string();
        let sent = self.send(marker, "NOTIFY (subscribe marker)").await;
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
            return Err(e);
        }
        if tokio::time::timeout(MARKER_PATIENCE, registered)
            .await
            .is_err()
        {
            // The listener lost the marker (its connection dropped, or went silent):
            // register now, and have the listener replaced in case it is silent.
            tracing::warn!(saga_id = %saga_id, "subscribe marker not seen; registering without it");
            self.inner.relisten.ask(listening);
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
