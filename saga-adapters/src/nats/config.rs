//! Where the NATS adapters put things (stream, subject and consumer names) and how the
//! task queue delivers (ack wait, maximum deliveries).

use std::time::Duration;

use saga_runtime::{Error, ErrorKind, Result};

use super::subject;

/// Settings of [`NatsTaskQueue`](super::NatsTaskQueue) and the subjects of
/// [`NatsSignalDispatcher`](super::NatsSignalDispatcher).
///
/// The defaults are the production names (`SAGA_TASKS`, `saga.tasks`, `SAGA_DLQ`, ...).
/// [`NatsConfig::namespaced`] derives a separate set of names, so that test runs, or two
/// deployments sharing one server, never see each other's tasks.
///
/// ```
/// use std::time::Duration;
/// use saga_adapters::NatsConfig;
///
/// let config = NatsConfig {
///     ack_wait: Duration::from_secs(60),
///     max_deliver: 5,
///     ..NatsConfig::namespaced("staging")
/// };
/// assert_eq!(config.stream, "SAGA_TASKS_staging");
/// assert_eq!(config.subject_prefix, "saga.staging.tasks");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// The JetStream stream holding the tasks (file storage; how long it keeps them:
    /// [`NatsConfig::task_retention`]).
    pub stream: String,
    /// Tasks are published to `<subject_prefix>.<queue>.<kind>`.
    pub subject_prefix: String,
    /// The stream holding dead letters (file storage, kept until deleted).
    pub dead_letter_stream: String,
    /// Dead letters are published to `<dead_letter_prefix>.<queue>`.
    pub dead_letter_prefix: String,
    /// Each queue has one durable pull consumer, `<consumer_prefix>-<queue>`.
    pub consumer_prefix: String,
    /// Notifications go to `<signal_prefix>.<saga id>` (core NATS, not stored).
    pub signal_prefix: String,
    /// A fetched task neither acked, nak'ed nor kept alive with `progress` within this
    /// is delivered again.
    pub ack_wait: Duration,
    /// After this many deliveries a task goes to the dead-letter stream.
    pub max_deliver: u32,
    /// The broker drops a task published again with the same `dedup_id` within this
    /// window (JetStream's duplicate window, keyed by the `Nats-Msg-Id` header).
    pub duplicate_window: Duration,
    /// How long the task stream keeps a task: by default for the duplicate window,
    /// acked or not ([`TaskRetention`]). Applies when this process creates the stream;
    /// an existing stream keeps its own.
    pub task_retention: TaskRetention,
    /// Deliveries of one queue that may be in flight (un-acked) at once; past it a
    /// fetch returns nothing until some are acked.
    pub max_ack_pending: u32,
    /// How long a call to the server (publish acknowledgement, ack, stream lookup)
    /// may take before it fails with a `TaskQueue` error.
    pub request_timeout: Duration,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            stream: "SAGA_TASKS".to_owned(),
            subject_prefix: "saga.tasks".to_owned(),
            dead_letter_stream: "SAGA_DLQ".to_owned(),
            dead_letter_prefix: "saga.dlq".to_owned(),
            consumer_prefix: "saga-workers".to_owned(),
            signal_prefix: "saga.signals".to_owned(),
            ack_wait: Duration::from_secs(30),
            // As the in-memory queue: retries are the engine's business (backoff timers),
            // this only stops a task that keeps crashing its worker.
            max_deliver: 100,
            duplicate_window: Duration::from_secs(120),
            task_retention: TaskRetention::MaxAge(Duration::from_secs(120)),
            max_ack_pending: 10_000,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// How long the task stream keeps a task.
///
/// The store, not the broker, is the source of truth (DESIGN.md section 6): every
/// task is also an outbox row, which the reconciler publishes again when its result
/// is not recorded within `OutboxConfig::redeliver_after` (a minute by default), and
/// the broker drops such a republish only within the duplicate window. So a task the
/// stream still holds past that is one the outbox has published again already, and
/// keeping it longer buys nothing; that is why the default keeps each task for the
/// duplicate window and no longer.
///
/// Workers find an existing stream as it is, with either retention. To move a
/// deployment's stream to the other one, delete the stream: the next worker or
/// publish creates it with its own setting, and the outbox publishes again what the
/// old one held (as when the broker loses its data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRetention {
    /// Every task for this long after its publish, acked or not; then the broker
    /// drops it (JetStream limits retention with `max_age`, at least the duplicate
    /// window). The default, for two minutes.
    ///
    /// Why the default: an acked task is not deleted one by one, as under work-queue
    /// retention, but with the rest of its file block once the block is old enough.
    /// The broker used about a sixth less CPU per saga for it in saga-5 (BENCHMARKS.md).
    /// The price is disk: the tasks of the last `max_age`, acked or not (1.4 KB
    /// each as stored in saga-5, where a saga's first task carries its history:
    /// some 340 MB at 2 000 tasks/s over two minutes).
    ///
    /// What it changes: a task not finished within `max_age` (a worker down, a long
    /// activity whose worker then dies) is no longer redelivered by the broker but
    /// published again from the outbox; and a consumer recreated on a surviving
    /// stream (deleted by hand, say) is handed every task still kept, which the
    /// workers drop as done, each at the cost of a version read.
    ///
    /// It needs the engine's outbox, which is on by default with a queue outside the
    /// process: an engine with the outbox turned off would never see again a task
    /// dropped at its age. Use [`TaskRetention::WorkQueue`] there.
    MaxAge(Duration),
    /// Every task until it is acked, then at once (JetStream work-queue retention):
    /// no disk beyond the tasks not yet done, more broker CPU per task. JetStream
    /// then also refuses two consumers whose filters overlap, which guards against
    /// two deployments with different `consumer_prefix`es sharing one stream.
    WorkQueue,
}

impl NatsConfig {
    /// The default settings with every name suffixed by `namespace` (letters, digits,
    /// `_` and `-`): streams `SAGA_TASKS_<ns>` and `SAGA_DLQ_<ns>`, subjects
    /// `saga.<ns>.tasks`, `saga.<ns>.dlq` and `saga.<ns>.signals`. Consumer names are
    /// per stream, so they stay as they are.
    pub fn namespaced(namespace: &str) -> Self {
        NatsConfig {
            stream: format!("SAGA_TASKS_{namespace}"),
            subject_prefix: format!("saga.{namespace}.tasks"),
            dead_letter_stream: format!("SAGA_DLQ_{namespace}"),
            dead_letter_prefix: format!("saga.{namespace}.dlq"),
            signal_prefix: format!("saga.{namespace}.signals"),
            ..NatsConfig::default()
        }
    }

    /// Checks every name and limit; the error names the field and what is allowed.
    pub fn validate(&self) -> Result<()> {
        for (field, name) in [
            ("stream", &self.stream),
            ("dead_letter_stream", &self.dead_letter_stream),
            ("consumer_prefix", &self.consumer_prefix),
        ] {
            if !subject::is_name(name) {
                return Err(invalid(
                    field,
                    name,
                    "must be 1 to 64 letters, digits, `_` or `-`",
                ));
            }
        }
        if self.stream == self.dead_letter_stream {
            return Err(invalid(
                "dead_letter_stream",
                &self.dead_letter_stream,
                "must differ from `stream`",
            ));
        }
        let prefixes = [
            ("subject_prefix", &self.subject_prefix),
            ("dead_letter_prefix", &self.dead_letter_prefix),
            ("signal_prefix", &self.signal_prefix),
        ];
        for (field, prefix) in prefixes {
            if !subject::is_prefix(prefix) {
                return Err(invalid(
                    field,
                    prefix,
                    "must be dot-separated tokens of letters, digits, `_` or `-`",
                ));
            }
        }
        // Each stream captures `<prefix>.*...`; if one prefix covered another, one
        // stream would swallow (or two streams would fight over) the other's subjects.
        for (i, (a_field, a)) in prefixes.iter().enumerate() {
            for (b_field, b) in &prefixes[i + 1..] {
                if subject::overlaps(a, b) {
                    return Err(Error::new(
                        ErrorKind::Configuration,
                        format!("NATS `{a_field}` and `{b_field}` overlap; give each its own subject space"),
                    )
                    .with(*a_field, a)
                    .with(*b_field, b));
                }
            }
        }
        if self.ack_wait.is_zero() {
            return Err(invalid("ack_wait", "0s", "must be positive"));
        }
        if self.max_deliver == 0 {
            return Err(invalid("max_deliver", "0", "must be at least 1"));
        }
        if self.max_ack_pending == 0 {
            return Err(invalid("max_ack_pending", "0", "must be at least 1"));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "0s", "must be positive"));
        }
        if let TaskRetention::MaxAge(age) = self.task_retention {
            // JetStream refuses a duplicate window longer than the stream's `max_age`;
            // checked here, so the error names the setting.
            if age < self.duplicate_window {
                return Err(invalid(
                    "task_retention",
                    &format!("MaxAge({age:?})"),
                    &format!(
                        "must be at least `duplicate_window` ({:?})",
                        self.duplicate_window
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn invalid(field: &str, value: &str, rule: &str) -> Error {
    Error::new(
        ErrorKind::Configuration,
        format!("invalid NATS setting `{field}`: {rule}"),
    )
    .with(field, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_namespaces_are_valid() {
        NatsConfig::default().validate().unwrap();
        NatsConfig::namespaced("t-1_a").validate().unwrap();
    }

    #[test]
    fn bad_settings_are_configuration_errors() {
        let cases = [
            NatsConfig {
                stream: "SAGA.TASKS".into(),
                ..NatsConfig::default()
            },
            NatsConfig {
                subject_prefix: "saga.*".into(),
                ..NatsConfig::default()
            },
            NatsConfig {
                dead_letter_prefix: "saga.tasks.dead".into(),
                ..NatsConfig::default()
            },
            NatsConfig {
                dead_letter_stream: "SAGA_TASKS".into(),
                ..NatsConfig::default()
            },
            NatsConfig {
                max_deliver: 0,
                ..NatsConfig::default()
            },
            NatsConfig {
                ack_wait: Duration::ZERO,
                ..NatsConfig::default()
            },
            NatsConfig {
                task_retention: TaskRetention::MaxAge(Duration::from_secs(60)),
                ..NatsConfig::default()
            },
        ];
        for config in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.kind, ErrorKind::Configuration, "{config:?}: {err}");
        }
    }
}
