//! The dead-letter stream: where tasks go that no worker can finish, for people (and
//! the CLI's re-drive) to look at. One JSON record per dead letter on
//! `<dead_letter_prefix>.<queue>`, kept until deleted.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use saga_runtime::port::DeadLetter;
use saga_runtime::{Error, ErrorKind, Result};

use super::pull::{pull, Wait};
use super::task_queue::ensure_stream;
use super::{envelope, subject, NatsConfig};

/// Records read per pull when listing.
const LIST_BATCH: usize = 256;

pub(crate) struct DeadLetterStream {
    name: String,
    prefix: String,
    stream: stream::Stream,
    request_timeout: Duration,
}

impl DeadLetterStream {
    pub(crate) async fn open(js: &jetstream::Context, c: &NatsConfig) -> Result<Self> {
        let stream = ensure_stream(
            js,
            stream::Config {
                name: c.dead_letter_stream.clone(),
                subjects: vec![format!("{}.*", c.dead_letter_prefix)],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                duplicate_window: c.duplicate_window,
                ..Default::default()
            },
            &[stream::RetentionPolicy::Limits],
        )
        .await?;
        Ok(DeadLetterStream {
            name: c.dead_letter_stream.clone(),
            prefix: c.dead_letter_prefix.clone(),
            stream,
            request_timeout: c.request_timeout,
        })
    }

    fn subject(&self, queue: &str) -> String {
        // A malformed message's queue may be anything; a valid queue name is unchanged.
        format!("{}.{}", self.prefix, subject::escape_token(queue))
    }

    /// Stores `dead`, deduplicated on `record_id` (one record per original message).
    pub(crate) async fn write(
        &self,
        js: &jetstream::Context,
        dead: &DeadLetter,
        record_id: &str,
    ) -> Result<()> {
        let body = envelope::encode_dead(dead)?;
        let failed = |e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::TaskQueue,
                format!("cannot write a dead letter to NATS: {e}"),
            )
            .with("stream", &self.name)
            .with("saga_id", &dead.task.saga_id)
            .with("dedup_id", &dead.task.dedup_id)
        };
        js.send_publish(
            self.subject(&dead.task.queue),
            jetstream::message::PublishMessage::build()
                .payload(body)
                .message_id(record_id),
        )
        .await
        .map_err(|e| failed(&e))?
        .await
        .map_err(|e| failed(&e))?;
        Ok(())
    }

    /// Every dead letter of `queue`, oldest first.
    pub(crate) async fn list(
        &self,
        client: &async_nats::Client,
        queue: &str,
    ) -> Result<Vec<DeadLetter>> {
        Ok(self
            .records(client, queue)
            .await?
            .into_iter()
            .map(|(_, dead)| dead)
            .collect())
    }

    /// Every dead letter of `queue` with its stream sequence (what [`Self::remove`]
    /// takes), oldest first: read through a short-lived ephemeral consumer filtered
    /// on the queue's subject.
    pub(crate) async fn records(
        &self,
        client: &async_nats::Client,
        queue: &str,
    ) -> Result<Vec<(u64, DeadLetter)>> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::TaskQueue,
                format!("cannot list dead letters: {what}: {e}"),
            )
            .with("stream", &self.name)
            .with("queue", queue)
        };
        let reader = self
            .stream
            .create_consumer(consumer::pull::Config {
                filter_subject: self.subject(queue),
                ack_policy: consumer::AckPolicy::None,
                deliver_policy: consumer::DeliverPolicy::All,
                // Deleted below; this only covers a crash before that.
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .map_err(|e| failed("create a reader", &e))?;
        let name = reader.cached_info().name.clone();
        let total = reader.cached_info().num_pending;
        let mut out = Vec::new();
        let listed = async {
            while (out.len() as u64) < total {
                let msgs = pull(
                    client,
                    None,
                    &self.name,
                    &name,
                    LIST_BATCH,
                    Wait::NoWait,
                    self.request_timeout,
                )
                .await?
                .msgs;
                if msgs.is_empty() {
                    break;
                }
                for m in msgs {
                    let seq = m
                        .reply
                        .as_ref()
                        .and_then(|r| super::tag::parse_ack_subject(r.as_str()))
                        .map_or(0, |a| a.stream_seq);
                    out.push((seq, envelope::decode_dead(&m.payload, &self.name, seq)?));
                }
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = self.stream.delete_consumer(&name).await {
            tracing::debug!(error = %e, consumer = name, "could not delete a dead-letter reader");
        }
        listed?;
        Ok(out)
    }

    /// Deletes the record at stream sequence `seq` (a re-driven dead letter); a record
    /// already gone is not an error.
    pub(crate) async fn remove(&self, seq: u64) -> Result<()> {
        match self.stream.delete_message(seq).await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(e.kind(), stream::DeleteMessageErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::new(
                ErrorKind::TaskQueue,
                format!("cannot remove a dead letter from its stream: {e}"),
            )
            .with("stream", &self.name)
            .with("seq", seq)),
        }
    }
}
