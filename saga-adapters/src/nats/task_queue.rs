//! [`NatsTaskQueue`]: the [`TaskQueue`] port on NATS JetStream.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{Client, Message, Request};
use async_trait::async_trait;
use saga_runtime::port::{DeadLetter, Delivery, DeliveryTag, Task, TaskQueue};
use saga_runtime::{Error, ErrorKind, Result};
use tokio::time::Instant;

use super::config::TaskRetention;
use super::dead_letter::DeadLetterStream;
use super::pull::{pull, Inboxes, Wait};
use super::signals::NatsSignalDispatcher;
use super::tag::{self, AckSubject};
use super::{envelope, subject, NatsConfig};

/// A [`TaskQueue`] on NATS JetStream, for many workers on many machines.
///
/// Layout (names from [`NatsConfig`]):
/// - stream `SAGA_TASKS`, file storage, subjects `saga.tasks.<queue>.<kind>`, keeping
///   each task for the duplicate window, acked or not, by default
///   ([`TaskRetention`](super::TaskRetention): an ack ends the delivery, and the
///   outbox, not the stream, brings back what is not done in time);
/// - one durable pull consumer per queue, `saga-workers-<queue>`, filtered on
///   `saga.tasks.<queue>.*`. One consumer per queue (rather than one `saga-workers`
///   over everything) is what lets a worker serve a subset of queues: a pull on a
///   shared consumer would hand it any queue's task. Per-queue filters never overlap,
///   so each task goes to one consumer (work-queue retention requires it);
/// - stream `SAGA_DLQ`, file storage, subjects `saga.dlq.<queue>`: one JSON record per
///   dead letter (the task, the reason, the delivery count).
///
/// Every task carries `Nats-Msg-Id = dedup_id`, so a task published twice within the
/// duplicate window (a reconciler re-publishing an outbox row) is stored once.
///
/// `max_deliver` is enforced here, not by the server. JetStream's own limit stops
/// redelivering and only emits an advisory on a core subject, which nobody may be
/// listening to: the task would sit in the stream, neither delivered nor dead. So the
/// consumer redelivers without limit and this adapter moves a task to the dead-letter
/// stream when a worker naks its last allowed delivery, when a fetch receives it past
/// the limit (the worker of its last delivery died), or when the ack wait of a last
/// delivery fetched by this process runs out (checked on `fetch` and `dead_letters`).
/// The record is written before the original is terminated, and its own
/// `Nats-Msg-Id` (stream and sequence) makes a second attempt a no-op: a crash in
/// between costs a duplicate attempt, never a lost task.
///
/// A [`DeliveryTag`] is the delivery's stream sequence plus its JetStream ack subject,
/// so any clone (or any process) can ack it; a tag from elsewhere is a `Validation`
/// error. Naks, terms and progress wait for the server's confirmation; an ack does not
/// (JetStream's plain ack, not its "double ack"). The engine acks a delivery only after
/// the commit that recorded its result, so an ack lost with a dropped connection costs
/// one redelivery, which the worker that gets it drops (the result is in history);
/// while waiting for the confirmation was an extra message per task, 11-12 % of the
/// broker's CPU per saga in saga-5 (BENCHMARKS.md).
/// JetStream acks by stream sequence: acking through the tag of an earlier, expired
/// delivery of a task still finishes the task (and its current redelivery), and acking
/// a task already acked is a no-op, not an error.
///
/// Clones share the connection.
///
/// ```no_run
/// use std::time::Duration;
/// use saga_adapters::{NatsConfig, NatsTaskQueue};
/// use saga_runtime::port::TaskQueue;
///
/// # async fn run() -> saga_runtime::Result<()> {
/// let queue = NatsTaskQueue::connect("nats://127.0.0.1:4222", NatsConfig::default()).await?;
/// for delivery in queue.fetch("payments", 32, Duration::from_secs(5)).await? {
///     // ... run the task, calling `queue.progress(&delivery.tag)` while it runs long ...
///     queue.ack(&delivery.tag).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NatsTaskQueue {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    js: jetstream::Context,
    config: NatsConfig,
    tasks: stream::Stream,
    dead: DeadLetterStream,
    /// Queues whose consumer this process has created or checked.
    consumers: tokio::sync::Mutex<HashSet<String>>,
    /// Deliveries fetched here on their last allowed attempt, by stream sequence: if
    /// the ack wait runs out, they are dead-lettered (see the type's docs).
    last_attempts: Mutex<HashMap<u64, LastAttempt>>,
    /// Reply subscriptions of finished pulls, for the next ones.
    inboxes: Inboxes,
    /// Held while this process replaces a broken task stream.
    replacing: tokio::sync::Mutex<()>,
    /// Set while a probe of the connection runs ([`NatsTaskQueue::unanswered`]).
    probing: Arc<AtomicBool>,
}

struct LastAttempt {
    queue: String,
    reply: String,
    delivered: u32,
    deadline: Instant,
}

impl std::fmt::Debug for NatsTaskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTaskQueue")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl NatsTaskQueue {
    /// Connects to the NATS server at `url` and creates the streams if they do not
    /// exist. A bad setting is a `Configuration` error; an unreachable server, or one
    /// without JetStream, a `TaskQueue` error.
    pub async fn connect(url: &str, config: NatsConfig) -> Result<Self> {
        config.validate()?;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(config.request_timeout)
            .request_timeout(Some(config.request_timeout))
            .connect(url)
            .await
            .map_err(|e| {
                Error::new(ErrorKind::TaskQueue, "cannot connect to NATS")
                    .with("url", url)
                    .with_source(e)
            })?;
        Self::with_client(client, config).await
    }

    /// Uses an existing connection (shared, for example, with a
    /// [`NatsSignalDispatcher`]); creates the streams if they do not exist.
    pub async fn with_client(client: Client, config: NatsConfig) -> Result<Self> {
        config.validate()?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());
        let tasks = ensure_stream(&js, task_stream_config(&config), TASK_RETENTIONS).await?;
        let dead = DeadLetterStream::open(&js, &config).await?;
        Ok(NatsTaskQueue {
            inner: Arc::new(Inner {
                client,
                js,
                config,
                tasks,
                dead,
                consumers: tokio::sync::Mutex::new(HashSet::new()),
                last_attempts: Mutex::new(HashMap::new()),
                inboxes: Inboxes::default(),
                replacing: tokio::sync::Mutex::new(()),
                probing: Arc::new(AtomicBool::new(false)),
            }),
        })
    }

    /// The settings this queue runs with.
    pub fn config(&self) -> &NatsConfig {
        &self.inner.config
    }

    /// The connection, to share with other NATS users.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// A signal dispatcher on this queue's connection, publishing under
    /// [`NatsConfig::signal_prefix`]. Each call makes a dispatcher with an inbox of its
    /// own (one subscription once used): take one per engine, and clone it to share.
    pub fn signal_dispatcher(&self) -> NatsSignalDispatcher {
        NatsSignalDispatcher::new(self.inner.client.clone(), &self.inner.config.signal_prefix)
    }

    /// Deletes the task stream and the dead-letter stream, with everything in them
    /// (tests use it to clean up their isolated streams).
    pub async fn delete_streams(&self) -> Result<()> {
        let c = &self.inner.config;
        for name in [&c.stream, &c.dead_letter_stream] {
            self.inner.js.delete_stream(name).await.map_err(|e| {
                Error::new(ErrorKind::TaskQueue, "cannot delete a NATS stream")
                    .with("stream", name)
                    .with_source(e)
            })?;
        }
        self.inner.consumers.lock().await.clear();
        Ok(())
    }

    fn consumer_name(&self, queue: &str) -> String {
        format!("{}-{queue}", self.inner.config.consumer_prefix)
    }

    /// Creates `queue`'s durable consumer if needed (once per process and queue), and
    /// checks that an existing one has this queue's settings.
    async fn ensure_consumer(&self, queue: &str) -> Result<String> {
        let name = self.consumer_name(queue);
        let mut known = self.inner.consumers.lock().await;
        if known.contains(queue) {
            return Ok(name);
        }
        let c = &self.inner.config;
        let wanted = consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: format!("{}.{queue}.*", c.subject_prefix),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            ack_wait: c.ack_wait,
            // Unlimited: the adapter enforces `max_deliver` itself (see the type docs).
            max_deliver: -1,
            max_ack_pending: i64::from(c.max_ack_pending),
            ..Default::default()
        };
        let mut consumer = self
            .inner
            .tasks
            .get_or_create_consumer(&name, wanted.clone())
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::TaskQueue,
                    "cannot create the queue's NATS consumer",
                )
                .with("consumer", &name)
                .with_source(e)
            })?;
        let info = consumer.info().await.map_err(|e| {
            Error::new(
                ErrorKind::TaskQueue,
                "cannot read the queue's NATS consumer",
            )
            .with("consumer", &name)
            .with_source(e)
        })?;
        let have = &info.config;
        if have.ack_wait != wanted.ack_wait
            || have.filter_subject != wanted.filter_subject
            || have.max_deliver != wanted.max_deliver
        {
            return Err(Error::new(
                ErrorKind::Configuration,
                "the queue's NATS consumer exists with other settings; delete it or use the same settings",
            )
            .with("consumer", &name)
            .with("ack_wait", format!("{:?} (configured {:?})", have.ack_wait, wanted.ack_wait))
            .with("filter_subject", &have.filter_subject));
        }
        known.insert(queue.to_owned());
        Ok(name)
    }

    /// Turns a pulled message into a delivery, or dead-letters it (past `max_deliver`,
    /// or not a task at all) and returns `None`.
    async fn accept(&self, msg: Message) -> Result<Option<Delivery>> {
        let Some(reply) = msg.reply.as_ref().map(|r| r.as_str().to_owned()) else {
            tracing::warn!(subject = %msg.subject, "a pulled NATS message has no ack subject; ignored");
            return Ok(None);
        };
        let Some(ack) = tag::parse_ack_subject(&reply) else {
            tracing::warn!(
                reply,
                "a pulled NATS message has an unknown ack subject; ignored"
            );
            return Ok(None);
        };
        let c = &self.inner.config;
        let task = envelope::decode(
            &c.subject_prefix,
            msg.subject.as_str(),
            msg.headers.as_ref(),
            &msg.payload,
        );
        let task = match task {
            Ok(task) => task,
            Err(bad) => {
                // Nobody can run it; hand it to people instead of to workers.
                let reason = format!("not a task message: {}", bad.reason);
                self.dead_letter(bad.best_effort, reason, ack.delivered, &reply, &ack)
                    .await?;
                return Ok(None);
            }
        };
        if ack.delivered > c.max_deliver {
            // Its last allowed delivery was neither acked nor nak'ed in time (its
            // worker died, or did not report progress): it has had its chances.
            let count = ack.delivered - 1;
            let reason = format!(
                "ack wait expired on delivery {count}; max_deliver ({}) reached",
                c.max_deliver
            );
            self.dead_letter(task, reason, count, &reply, &ack).await?;
            return Ok(None);
        }
        if ack.delivered == c.max_deliver {
            self.lock_last().insert(
                ack.stream_seq,
                LastAttempt {
                    queue: task.queue.clone(),
                    reply: reply.clone(),
                    delivered: ack.delivered,
                    deadline: Instant::now() + c.ack_wait,
                },
            );
        }
        Ok(Some(Delivery {
            tag: tag::tag_for(&reply, &ack),
            delivery_count: ack.delivered,
            task,
        }))
    }

    /// Pulls once from `queue`'s consumer and accepts what came. If the server did not
    /// answer at all, the consumer or its stream is gone (deleted, or the broker lost
    /// its data): both are recreated for the next pull. Tasks that were in the lost
    /// stream come back through the outbox reconciler (DESIGN.md section 6).
    async fn pull_into(
        &self,
        queue: &str,
        batch: usize,
        wait: Wait,
        out: &mut Vec<Delivery>,
    ) -> Result<()> {
        let c = &self.inner.config;
        let consumer = self.ensure_consumer(queue).await?;
        let pulled = pull(
            &self.inner.client,
            Some(&self.inner.inboxes),
            &c.stream,
            &consumer,
            batch,
            wait,
            c.request_timeout,
        )
        .await?;
        if !pulled.answered {
            self.unanswered();
            self.heal(queue).await?;
        }
        for msg in pulled.msgs {
            match self.accept(msg).await {
                Ok(Some(d)) => out.push(d),
                Ok(None) => {}
                // A failed dead-lettering must not cost the other deliveries of the
                // batch: the message comes back after its ack wait and is tried again.
                Err(e) => tracing::warn!(error = %e, queue, "could not dead-letter a message"),
            }
        }
        Ok(())
    }

    /// Recreates `queue`'s consumer, and the streams if they are missing, when the
    /// consumer cannot be read.
    async fn heal(&self, queue: &str) -> Result<()> {
        let c = &self.inner.config;
        let consumer = self.consumer_name(queue);
        if let Err(e) = self.inner.tasks.consumer_info(&consumer).await {
            tracing::warn!(error = %e, consumer, stream = %c.stream, "NATS did not answer a pull and the consumer cannot be read; recreating it");
            self.inner.consumers.lock().await.remove(queue);
            self.inner.inboxes.forget(&consumer);
            ensure_stream(&self.inner.js, task_stream_config(c), TASK_RETENTIONS).await?;
            DeadLetterStream::open(&self.inner.js, c).await?;
            self.ensure_consumer(queue).await?;
        }
        Ok(())
    }

    /// Publishes `task` (recreating the streams if they are gone) and returns the
    /// server's acknowledgement, which says whether it dropped the task as a duplicate.
    async fn publish_task(&self, task: &Task) -> Result<jetstream::publish::PublishAck> {
        let c = &self.inner.config;
        let (subject, headers, body) = envelope::encode(&c.subject_prefix, task)?;
        let max = self.inner.client.server_info().max_payload;
        if body.len() > max {
            return Err(Error::new(
                ErrorKind::Validation,
                format!(
                    "task payload of {} bytes exceeds the NATS server's max_payload ({max} bytes)",
                    body.len()
                ),
            )
            .with("saga_id", &task.saga_id)
            .with("queue", &task.queue));
        }
        let failed = |e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::TaskQueue,
                format!("cannot publish a task to NATS: {e}"),
            )
            .with("saga_id", &task.saga_id)
            .with("queue", &task.queue)
            .with("stream", &c.stream)
        };
        match self.publish_once(&subject, &headers, &body).await {
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound => {
                self.recreate_streams().await?;
                self.publish_once(&subject, &headers, &body).await
            }
            Err(e) if store_failed(&e) => {
                self.replace_broken_stream().await?;
                self.publish_once(&subject, &headers, &body).await
            }
            other => other,
        }
        .map_err(|e| failed(&e))
    }

    /// The task stream exists but the server cannot read or write its storage (its
    /// files went missing: seen when a stream is deleted and at once recreated under
    /// the same name while the server still removes the old files). Such a stream
    /// never recovers, and what it held is lost already; the outbox re-drives those
    /// tasks. So it is deleted and created anew, once per process at a time, unless it
    /// was created in the last few seconds (checked before and after a short pause:
    /// another worker may have replaced it already).
    async fn replace_broken_stream(&self) -> Result<()> {
        let _one_at_a_time = self.inner.replacing.lock().await;
        // Publishes that failed together queue up here: once the first has replaced
        // the stream, the others see it new and retry at once, without the pause.
        if self.task_stream_is_new().await {
            return Ok(());
        }
        let c = &self.inner.config;
        let jitter = u64::from(std::process::id() % 200);
        tokio::time::sleep(Duration::from_millis(200 + jitter)).await;
        if self.task_stream_is_new().await {
            return Ok(());
        }
        tracing::warn!(stream = %c.stream, "the NATS task stream cannot store messages; deleting and recreating it");
        if let Err(e) = self.inner.js.delete_stream(&c.stream).await {
            // Gone already, or the recreate below finds it and the next publish tells.
            tracing::debug!(stream = %c.stream, error = %e, "could not delete the broken stream");
        }
        self.recreate_streams().await
    }

    /// Whether the task stream was created in the last few seconds (replaced a moment
    /// ago, by another worker or by this one for another publish).
    async fn task_stream_is_new(&self) -> bool {
        match self.inner.js.get_stream(&self.inner.config.stream).await {
            Ok(stream) => {
                let created = stream.cached_info().created.unix_timestamp();
                chrono::Utc::now().timestamp() - created < 5
            }
            Err(_) => false,
        }
    }

    /// Tasks of `queue` published and not yet acked, whether waiting for a worker or
    /// in flight (delivered, or nak'ed and waiting for their redelivery).
    ///
    /// Read off the queue's consumer (not yet delivered plus delivered and not acked),
    /// not off the stream: a stream with [`TaskRetention::MaxAge`] still holds the
    /// tasks acked within its age. A queue without a consumer yet (no worker has
    /// served it) has had nothing delivered: all its tasks in the stream count. Asking
    /// creates nothing, so an operator's typo leaves no consumer behind.
    pub async fn unacked(&self, queue: &str) -> Result<u64> {
        use futures_util::TryStreamExt;

        subject::check_queue(queue)?;
        let c = &self.inner.config;
        let name = self.consumer_name(queue);
        let failed = |e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::TaskQueue,
                format!("cannot read the depth of a queue from NATS: {e}"),
            )
            .with("stream", &c.stream)
            .with("consumer", &name)
            .with("queue", queue)
        };
        match self.inner.tasks.consumer_info(&name).await {
            Ok(info) => return Ok(info.num_pending + info.num_ack_pending as u64),
            Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => {}
            Err(e) => return Err(failed(&e)),
        }
        let mut subjects = self
            .inner
            .tasks
            .info_with_subjects(format!("{}.{queue}.*", c.subject_prefix))
            .await
            .map_err(|e| failed(&e))?;
        let mut held = 0u64;
        while let Some((_, count)) = subjects.try_next().await.map_err(|e| failed(&e))? {
            held += count as u64;
        }
        Ok(held)
    }

    /// Publishes `queue`'s dead letters to the queue again, oldest first, and removes
    /// each from the dead-letter stream once the task stream has it; with `dedup_id`,
    /// only the dead letter of that task. Returns the re-driven dead letters.
    ///
    /// A task keeps its dedup id (workers and the outbox know it by it), so the broker
    /// drops it if it was first published less than the stream's duplicate window
    /// ago: that is a `Concurrency` error (`code=duplicate`), the dead letter stays, and
    /// a later re-drive succeeds. A crash between the publish and the removal leaves
    /// the dead letter in place: re-driving it again costs a duplicate task, which
    /// workers drop (its result is in history).
    pub async fn redrive(&self, queue: &str, dedup_id: Option<&str>) -> Result<Vec<DeadLetter>> {
        subject::check_queue(queue)?;
        let records = self.inner.dead.records(&self.inner.client, queue).await?;
        let mut redriven = Vec::new();
        for (seq, dead) in records {
            if dedup_id.is_some_and(|id| id != dead.task.dedup_id) {
                continue;
            }
            let ack = self.publish_task(&dead.task).await?;
            if ack.duplicate {
                return Err(Error::new(
                    ErrorKind::Concurrency,
                    format!(
                        "NATS dropped re-driven task `{}` as a duplicate: it was published \
                         less than the stream's duplicate window ({:?} configured) ago; \
                         re-drive it later",
                        dead.task.dedup_id, self.inner.config.duplicate_window
                    ),
                )
                .with("dedup_id", &dead.task.dedup_id)
                .with("queue", queue)
                .with("code", "duplicate"));
            }
            self.inner.dead.remove(seq).await?;
            tracing::info!(saga_id = %dead.task.saga_id, dedup_id = %dead.task.dedup_id, queue, "dead letter re-driven");
            redriven.push(dead);
        }
        if let (Some(id), true) = (dedup_id, redriven.is_empty()) {
            return Err(Error::new(
                ErrorKind::Validation,
                format!("queue `{queue}` has no dead letter with dedup id `{id}`"),
            )
            .with("queue", queue)
            .with("dedup_id", id)
            .with("code", "not_found"));
        }
        Ok(redriven)
    }

    /// Recreates the streams after a publish found none.
    async fn recreate_streams(&self) -> Result<()> {
        let c = &self.inner.config;
        tracing::warn!(stream = %c.stream, "the NATS task stream is gone; recreating it");
        self.inner.consumers.lock().await.clear();
        ensure_stream(&self.inner.js, task_stream_config(c), TASK_RETENTIONS).await?;
        DeadLetterStream::open(&self.inner.js, c).await?;
        Ok(())
    }

    async fn publish_once(
        &self,
        subject: &str,
        headers: &async_nats::HeaderMap,
        body: &bytes::Bytes,
    ) -> std::result::Result<jetstream::publish::PublishAck, jetstream::context::PublishError> {
        let acked = self
            .inner
            .js
            .send_publish(
                subject.to_owned(),
                jetstream::message::PublishMessage::build()
                    .payload(body.clone())
                    .headers(headers.clone()),
            )
            .await?
            .await;
        if matches!(&acked, Err(e) if e.kind() == jetstream::context::PublishErrorKind::TimedOut) {
            self.unanswered();
        }
        acked
    }

    /// A round trip (a publish's acknowledgement, a nak's or a progress report's
    /// confirmation, a pull) got no answer in time: probes the connection in the
    /// background, and makes it anew, to whichever server the address reaches now, if
    /// the server is silent.
    ///
    /// Why: the client pings the server only while it sends nothing (every command it
    /// sends puts its ping off), so a worker that keeps pulling from a server gone
    /// silent without a reset (a host gone, a network cut, a failover) would never
    /// notice: its calls would time out one after the other until the kernel gives the
    /// connection up, about a quarter of an hour later.
    ///
    /// The probe asks JetStream for the account's information (a call every worker is
    /// allowed), with the queue's `request_timeout`: a server that answers it, even
    /// with an error, is there. One probe at a time per connection.
    fn unanswered(&self) {
        if self.inner.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let probing = self.inner.probing.clone();
        let client = self.inner.client.clone();
        let js = self.inner.js.clone();
        tokio::spawn(async move {
            let probe = js.query_account().await;
            if matches!(&probe, Err(e) if e.kind() == jetstream::context::AccountErrorKind::TimedOut)
            {
                tracing::warn!("NATS does not answer on this connection; connecting again");
                if let Err(e) = client.force_reconnect().await {
                    tracing::warn!(error = %e, "could not ask the NATS client to reconnect");
                }
            }
            probing.store(false, Ordering::Release);
        });
    }

    /// Writes the dead letter, then terminates the delivery so it is not delivered
    /// again. Idempotent: a second call for the same message is deduplicated.
    async fn dead_letter(
        &self,
        task: Task,
        reason: String,
        delivery_count: u32,
        reply: &str,
        ack: &AckSubject<'_>,
    ) -> Result<()> {
        let seq = ack.stream_seq;
        tracing::warn!(
            saga_id = %task.saga_id,
            queue = %task.queue,
            dedup_id = %task.dedup_id,
            delivery_count,
            reason,
            "task dead-lettered"
        );
        let dead = DeadLetter {
            task,
            reason,
            delivery_count,
        };
        let record_id = format!("{}-{seq}", self.inner.config.stream);
        self.inner
            .dead
            .write(&self.inner.js, &dead, &record_id)
            .await?;
        self.forget(seq);
        if let Err(e) = self.reply(reply, "+TERM", "terminate").await {
            // The record is written; if the delivery comes back, a fetch finds it past
            // `max_deliver` (or terminates it again) and the record is deduplicated.
            tracing::warn!(error = %e, seq, "could not terminate a dead-lettered delivery");
        }
        Ok(())
    }

    /// The task stored at stream sequence `seq` (still there until acked).
    async fn stored_task(&self, seq: u64) -> Result<Option<Task>> {
        match self.inner.tasks.get_raw_message(seq).await {
            Ok(m) => Ok(Some(
                match envelope::decode(
                    &self.inner.config.subject_prefix,
                    m.subject.as_str(),
                    Some(&m.headers),
                    &m.payload,
                ) {
                    Ok(task) => task,
                    Err(bad) => bad.best_effort,
                },
            )),
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(
                Error::new(ErrorKind::TaskQueue, "cannot read a task from its stream")
                    .with("stream", &self.inner.config.stream)
                    .with("seq", seq)
                    .with_source(e),
            ),
        }
    }

    /// Dead-letters the task of a delivery (`terminate`, or a nak on the last allowed
    /// delivery).
    async fn dead_letter_delivery(
        &self,
        reply: &str,
        ack: &AckSubject<'_>,
        reason: String,
    ) -> Result<()> {
        let Some(task) = self.stored_task(ack.stream_seq).await? else {
            self.forget(ack.stream_seq);
            return Err(Error::new(
                ErrorKind::TaskQueue,
                "the task of this delivery is no longer in the stream (acked or dead-lettered already)",
            )
            .with("delivery", ack.stream_seq));
        };
        self.dead_letter(task, reason, ack.delivered, reply, ack)
            .await
    }

    /// Dead-letters `queue`'s last deliveries fetched here whose ack wait ran out.
    async fn sweep(&self, queue: &str) -> Result<()> {
        let now = Instant::now();
        let due: Vec<(u64, LastAttempt)> = {
            let mut last = self.lock_last();
            let seqs: Vec<u64> = last
                .iter()
                .filter(|(_, a)| a.queue == queue && a.deadline <= now)
                .map(|(seq, _)| *seq)
                .collect();
            seqs.into_iter()
                .filter_map(|seq| last.remove(&seq).map(|a| (seq, a)))
                .collect()
        };
        for (seq, attempt) in due {
            // Acked in the meantime (by a clone, or after a redelivery elsewhere): gone.
            let Some(task) = self.stored_task(seq).await? else {
                continue;
            };
            let Some(ack) = tag::parse_ack_subject(&attempt.reply) else {
                continue;
            };
            let reason = format!(
                "ack wait expired on delivery {}; max_deliver ({}) reached",
                attempt.delivered, self.inner.config.max_deliver
            );
            self.dead_letter(task, reason, attempt.delivered, &attempt.reply, &ack)
                .await?;
        }
        Ok(())
    }

    fn lock_last(&self) -> std::sync::MutexGuard<'_, HashMap<u64, LastAttempt>> {
        self.inner
            .last_attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn forget(&self, seq: u64) {
        self.lock_last().remove(&seq);
    }

    /// Sends an ack-kind message to a delivery's ack subject and waits for JetStream's
    /// confirmation, so that a returned `Ok` means the server has it.
    async fn reply(&self, ack_subject: &str, body: &'static str, what: &str) -> Result<()> {
        self.reply_bytes(ack_subject, body.into(), what).await
    }

    async fn reply_bytes(&self, ack_subject: &str, body: bytes::Bytes, what: &str) -> Result<()> {
        let request = Request::new()
            .payload(body)
            .timeout(Some(self.inner.config.request_timeout));
        let confirmed = self
            .inner
            .client
            .send_request(ack_subject.to_owned(), request)
            .await;
        if matches!(&confirmed, Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut) {
            self.unanswered();
        }
        confirmed.map(|_| ()).map_err(|e| {
            Error::new(
                ErrorKind::TaskQueue,
                format!("JetStream did not confirm the {what} of a delivery"),
            )
            .with("ack_subject", ack_subject)
            .with_source(e)
        })
    }

    fn check_tag<'a>(&self, tag: &'a DeliveryTag) -> Result<(&'a str, AckSubject<'a>)> {
        tag::check(tag, &self.inner.config.stream)
    }
}

#[async_trait]
impl TaskQueue for NatsTaskQueue {
    async fn publish(&self, task: Task) -> Result<()> {
        if self.publish_task(&task).await?.duplicate {
            tracing::debug!(dedup_id = %task.dedup_id, "task already in the stream (deduplicated)");
        }
        Ok(())
    }

    async fn fetch(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        subject::check_queue(queue)?;
        let give_up = Instant::now() + wait;
        if let Err(e) = self.sweep(queue).await {
            // The deliveries come back past `max_deliver` and are dead-lettered then.
            tracing::warn!(error = %e, queue, "could not dead-letter expired last deliveries");
        }
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        // What is ready now, in one round trip: the busy case. Not for one task with
        // time to wait: the waiting pull below is answered as soon as one is there, in
        // the same round trip, while a no-wait pull that finds nothing costs the server
        // a pull and a status message for nothing. With a hundred worker loops waiting
        // in each process a new task goes to a waiting pull at once, so a loop's
        // no-wait pull nearly always found nothing: leaving it out cut the broker's CPU
        // per saga by 10-15 % (saga-5, one and three processes, BENCHMARKS.md).
        if max > 1 || wait < MIN_SERVER_WAIT {
            self.pull_into(queue, max, Wait::NoWait, &mut out).await?;
        }
        while out.is_empty() {
            let left = give_up.saturating_duration_since(Instant::now());
            if left < MIN_SERVER_WAIT {
                break;
            }
            // Wait for the first task only: a pull for `max` would hold the caller until
            // `max` arrived or the wait ran out, while the contract is "return as soon as
            // there is one". And for at most a second at a time: a pull to a consumer
            // that is gone (the broker lost it) goes unanswered until its wait and the
            // grace run out, and only then is the consumer recreated.
            let chunk = left.min(MAX_SERVER_WAIT);
            let started = Instant::now();
            self.pull_into(queue, 1, Wait::Expires(chunk), &mut out)
                .await?;
            if !out.is_empty() && max > 1 {
                // And whatever else is ready by now.
                self.pull_into(queue, max - 1, Wait::NoWait, &mut out)
                    .await?;
            }
            if out.is_empty() && started.elapsed() < chunk / 2 {
                // The server ended the wait early (409: `max_ack_pending` deliveries in
                // flight) or everything that came was dead-lettered: pause rather than
                // ask again at once.
                tokio::time::sleep(Duration::from_millis(50).min(left)).await;
            }
        }
        Ok(out)
    }

    async fn ack(&self, tag: &DeliveryTag) -> Result<()> {
        let (reply, ack) = self.check_tag(tag)?;
        self.forget(ack.stream_seq);
        // Not confirmed (see the type's docs): JetStream's plain ack.
        self.inner
            .client
            .publish(reply.to_owned(), bytes::Bytes::from_static(b"+ACK"))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::TaskQueue, "cannot send the ack of a delivery")
                    .with("ack_subject", reply)
                    .with_source(e)
            })
    }

    async fn nak(&self, tag: &DeliveryTag, delay: Duration) -> Result<()> {
        let (reply, ack) = self.check_tag(tag)?;
        let max = self.inner.config.max_deliver;
        if ack.delivered >= max {
            let reason = format!(
                "nak'ed on delivery {}; max_deliver ({max}) reached",
                ack.delivered
            );
            return self.dead_letter_delivery(reply, &ack, reason).await;
        }
        self.forget(ack.stream_seq);
        let body = if delay.is_zero() {
            bytes::Bytes::from_static(b"-NAK")
        } else {
            format!(r#"-NAK {{"delay":{}}}"#, delay.as_nanos()).into()
        };
        self.reply_bytes(reply, body, "nak").await
    }

    async fn terminate(&self, tag: &DeliveryTag, reason: &str) -> Result<()> {
        let (reply, ack) = self.check_tag(tag)?;
        self.dead_letter_delivery(reply, &ack, reason.to_owned())
            .await
    }

    async fn progress(&self, tag: &DeliveryTag) -> Result<()> {
        let (reply, ack) = self.check_tag(tag)?;
        self.reply(reply, "+WPI", "progress report").await?;
        if let Some(last) = self.lock_last().get_mut(&ack.stream_seq) {
            last.deadline = Instant::now() + self.inner.config.ack_wait;
        }
        Ok(())
    }

    /// The queue consumer's `num_pending`: tasks the broker holds and has not delivered
    /// yet (a delivery in flight, or nak'ed and waiting for its redelivery, is not
    /// counted).
    async fn depth(&self, queue: &str) -> Result<Option<u64>> {
        subject::check_queue(queue)?;
        let name = self.ensure_consumer(queue).await?;
        let info = self.inner.tasks.consumer_info(&name).await.map_err(|e| {
            Error::new(
                ErrorKind::TaskQueue,
                "cannot read the queue's NATS consumer",
            )
            .with("consumer", &name)
            .with_source(e)
        })?;
        Ok(Some(info.num_pending))
    }

    async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>> {
        subject::check_queue(queue)?;
        self.sweep(queue).await?;
        self.inner.dead.list(&self.inner.client, queue).await
    }
}

/// The shortest wait worth asking the server for: below a millisecond its wait is
/// meaningless.
const MIN_SERVER_WAIT: Duration = Duration::from_millis(1);

/// The longest wait of one pull ([`TaskQueue::fetch`] asks again for longer waits).
const MAX_SERVER_WAIT: Duration = Duration::from_secs(1);

/// Whether a publish failed because the stream's storage is broken (JetStream error
/// 10077, "error opening msg block file" and the like).
fn store_failed(e: &jetstream::context::PublishError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .is_some_and(|j| j.error_code() == jetstream::ErrorCode::STREAM_STORE_FAILED)
}

fn task_stream_config(c: &NatsConfig) -> stream::Config {
    let (retention, max_age) = match c.task_retention {
        TaskRetention::MaxAge(age) => (stream::RetentionPolicy::Limits, age),
        TaskRetention::WorkQueue => (stream::RetentionPolicy::WorkQueue, Duration::ZERO),
    };
    stream::Config {
        name: c.stream.clone(),
        subjects: vec![format!("{}.*.*", c.subject_prefix)],
        retention,
        max_age,
        storage: stream::StorageType::File,
        duplicate_window: c.duplicate_window,
        ..Default::default()
    }
}

/// The retentions a task stream this adapter finds may have, whatever this process is
/// configured with: both work the same way for the queue (a delivery ends with its
/// ack), so workers configured differently, or a deployment upgraded from work-queue
/// retention (the earlier default), share one stream.
const TASK_RETENTIONS: &[stream::RetentionPolicy] = &[
    stream::RetentionPolicy::Limits,
    stream::RetentionPolicy::WorkQueue,
];

/// Gets or creates a stream, and checks that an existing one is laid out as wanted:
/// the same subjects, and one of the `accepted` retentions (another deployment's
/// stream of the same name would otherwise be used silently).
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    wanted: stream::Config,
    accepted: &[stream::RetentionPolicy],
) -> Result<stream::Stream> {
    let name = wanted.name.clone();
    let mut s = js.get_or_create_stream(wanted.clone()).await.map_err(|e| {
        Error::new(
            ErrorKind::TaskQueue,
            "cannot create or open a NATS JetStream stream (is JetStream enabled?)",
        )
        .with("stream", &name)
        .with_source(e)
    })?;
    let have = &s
        .info()
        .await
        .map_err(|e| {
            Error::new(ErrorKind::TaskQueue, "cannot read a NATS stream")
                .with("stream", &name)
                .with_source(e)
        })?
        .config;
    if have.subjects != wanted.subjects || !accepted.contains(&have.retention) {
        return Err(Error::new(
            ErrorKind::Configuration,
            "a NATS stream of this name exists with other subjects or retention",
        )
        .with("stream", &name)
        .with(
            "subjects",
            format!("{:?} (configured {:?})", have.subjects, wanted.subjects),
        )
        .with(
            "retention",
            format!("{:?} (configured {:?})", have.retention, wanted.retention),
        ));
    }
    if have.retention != wanted.retention || have.max_age != wanted.max_age {
        tracing::info!(
            stream = %name,
            retention = ?have.retention,
            max_age = ?have.max_age,
            configured_retention = ?wanted.retention,
            configured_max_age = ?wanted.max_age,
            "using an existing NATS stream as it is, with a retention other than configured"
        );
    }
    Ok(s)
}
