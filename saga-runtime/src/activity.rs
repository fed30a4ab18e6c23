//! Activities: the steps that do I/O, with retry policies, timeouts and compensation
//! links (manual section 12), and the registry the engine looks them up in.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::domain::{Error, ErrorKind, Result, SagaId};

/// One step of a saga. `#[activity]` implements it on the type handle `pub struct f {}`.
///
/// ```
/// use saga_runtime::prelude::*;
///
/// struct double {}
/// impl Activity for double {
///     const TYPE_ID: &'static str = "double";
///     type Input = u32;
///     type Output = u32;
///     async fn execute(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
///         Ok(n * 2)
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an activity",
    label = "not an activity",
    note = "annotate the async fn with `#[activity]`"
)]
pub trait Activity: Send + Sync + 'static {
    /// The name stored in history (kebab-case fn name by default).
    const TYPE_ID: &'static str;
    /// The input.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The output; a compensation of this activity takes it as input.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Runs one attempt.
    fn execute(
        ctx: ActivityContext,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ActivityError>> + Send;

    /// Retry policy, timeout and task queue.
    fn options() -> ActivityOptions {
        ActivityOptions::default()
    }

    /// The `TYPE_ID` of the activity that undoes this one, if any.
    fn compensation() -> Option<&'static str> {
        None
    }
}

/// Retry policy, timeout and task queue of an activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityOptions {
    /// How failed attempts are retried.
    pub retry: RetryPolicy,
    /// Limit on one attempt, from start to close.
    pub start_to_close_timeout: Option<Duration>,
    /// The task queue its attempts go to (like Temporal's activity `task_queue`), so
    /// that only the workers serving that queue run it: the ones that hold a payment
    /// provider's credentials, say, or a GPU. `None`: the execution's own queue.
    /// Recorded in each `ActivityTaskScheduled`, so a retry, a re-drive after a crash
    /// and the outbox all send the attempt where it was first sent. The workers that
    /// serve the queue need only the activity: one without the workflow's code
    /// records the result and hands the next decision to the execution's workers. The
    /// workers that decide need the activity registered too, for these options. A
    /// local activity (`ctx.local_activity`) runs
    /// where its workflow task runs, whatever its queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_queue: Option<String>,
}

impl Default for ActivityOptions {
    fn default() -> Self {
        ActivityOptions {
            retry: RetryPolicy::exponential(3),
            start_to_close_timeout: None,
            task_queue: None,
        }
    }
}

/// Exponential backoff retries (manual section 10: `RetryBackoff` timers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the second attempt.
    #[serde(rename = "initial_interval_ms", with = "millis")]
    pub initial_interval: Duration,
    /// Factor between consecutive delays.
    pub backoff_coefficient: f64,
    /// Cap on one delay.
    #[serde(rename = "maximum_interval_ms", with = "millis")]
    pub maximum_interval: Duration,
    /// Error kinds that never retry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_retryable_kinds: Vec<String>,
}

/// Durations as whole milliseconds: compact in every scheduled event.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().min(u64::MAX as u128) as u64)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl RetryPolicy {
    /// `max_attempts` attempts, starting at 100 ms and doubling up to 10 s.
    pub fn exponential(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            initial_interval: Duration::from_millis(100),
            backoff_coefficient: 2.0,
            maximum_interval: Duration::from_secs(10),
            non_retryable_kinds: Vec::new(),
        }
    }

    /// A single attempt.
    pub fn none() -> Self {
        RetryPolicy::exponential(1)
    }

    /// Sets the first delay.
    #[must_use]
    pub fn with_initial_interval(mut self, d: Duration) -> Self {
        self.initial_interval = d;
        self
    }

    /// Sets the delay cap.
    #[must_use]
    pub fn with_maximum_interval(mut self, d: Duration) -> Self {
        self.maximum_interval = d;
        self
    }

    /// The delay before attempt `next_attempt` (2 for the first retry).
    pub fn delay_before(&self, next_attempt: u32) -> Duration {
        let exp = next_attempt.saturating_sub(2) as i32;
        let secs = self.initial_interval.as_secs_f64() * self.backoff_coefficient.powi(exp);
        Duration::from_secs_f64(secs.min(self.maximum_interval.as_secs_f64()))
    }

    /// Whether a failure of attempt `attempt` with `error` gets another attempt.
    pub fn should_retry(&self, attempt: u32, error: &ActivityError) -> bool {
        error.retryable
            && attempt < self.max_attempts
            && !self.non_retryable_kinds.contains(&error.kind)
    }
}

/// Why an activity attempt failed. Recorded in history, so it is serializable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct ActivityError {
    /// What happened.
    pub message: String,
    /// A short kind (`error`, `timeout`, `decode`, or the user's).
    pub kind: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

impl ActivityError {
    /// A failure that another attempt may fix.
    pub fn retryable(message: impl Into<String>) -> Self {
        ActivityError {
            message: message.into(),
            kind: "error".into(),
            retryable: true,
        }
    }

    /// A failure that no retry can fix.
    pub fn non_retryable(message: impl Into<String>) -> Self {
        ActivityError {
            message: message.into(),
            kind: "error".into(),
            retryable: false,
        }
    }

    /// The attempt exceeded its start-to-close timeout.
    pub fn timeout(after: Duration) -> Self {
        ActivityError {
            message: format!("attempt timed out after {after:?}"),
            kind: "timeout".into(),
            retryable: true,
        }
    }

    /// Sets the kind.
    #[must_use]
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }
}

/// What an activity attempt knows about itself.
#[derive(Debug, Clone)]
pub struct ActivityContext {
    /// The execution.
    pub saga_id: SagaId,
    /// The command's sequence number in the execution.
    pub seq: u64,
    /// 1-based attempt number.
    pub attempt: u32,
    /// The activity type.
    pub activity_type: String,
}

impl ActivityContext {
    /// A key that is the same for every attempt of this step: pass it to external
    /// systems so a redelivered attempt does not act twice.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.saga_id, self.seq)
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An activity with its types erased to JSON, as the registry holds it.
pub trait DynActivity: Send + Sync {
    /// The type id.
    fn type_id(&self) -> &'static str;
    /// Its options.
    fn options(&self) -> ActivityOptions;
    /// The compensation's type id.
    fn compensation(&self) -> Option<&'static str>;
    /// Runs one attempt on an encoded input (JSON text: decoded straight into the
    /// activity's input type).
    fn execute_dyn(
        &self,
        ctx: ActivityContext,
        input: Box<serde_json::value::RawValue>,
    ) -> BoxFuture<'static, Result<serde_json::Value, ActivityError>>;
}

struct Erased<A>(std::marker::PhantomData<fn() -> A>);

impl<A: Activity> DynActivity for Erased<A> {
    fn type_id(&self) -> &'static str {
        A::TYPE_ID
    }
    fn options(&self) -> ActivityOptions {
        A::options()
    }
    fn compensation(&self) -> Option<&'static str> {
        A::compensation()
    }
    fn execute_dyn(
        &self,
        ctx: ActivityContext,
        input: Box<serde_json::value::RawValue>,
    ) -> BoxFuture<'static, Result<serde_json::Value, ActivityError>> {
        Box::pin(async move {
            let input: A::Input = serde_json::from_str(input.get()).map_err(|e| {
                ActivityError::non_retryable(format!(
                    "input of `{}` does not decode: {e}",
                    A::TYPE_ID
                ))
                .with_kind("decode")
            })?;
            let output = A::execute(ctx, input).await?;
            serde_json::to_value(output).map_err(|e| {
                ActivityError::non_retryable(format!(
                    "output of `{}` does not encode: {e}",
                    A::TYPE_ID
                ))
                .with_kind("encode")
            })
        })
    }
}

/// A registration for [`ActivityRegistry::register_all`]: `activity::<f>()`.
pub struct ActivityRegistration(Arc<dyn DynActivity>);

/// Registers activity `A` (for `SagaEngineBuilder::activities([...])`).
pub fn activity<A: Activity>() -> ActivityRegistration {
    ActivityRegistration(Arc::new(Erased::<A>(std::marker::PhantomData)))
}

/// The activities an engine can run, by type id (manual section 12).
#[derive(Clone, Default)]
pub struct ActivityRegistry {
    activities: HashMap<&'static str, Arc<dyn DynActivity>>,
}

impl fmt::Debug for ActivityRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.activities.keys().collect();
        names.sort();
        f.debug_struct("ActivityRegistry")
            .field("activities", &names)
            .finish()
    }
}

impl ActivityRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `A`.
    pub fn register_activity<A: Activity>(&mut self) {
        self.insert(activity::<A>());
    }

    /// Registers a list of registrations.
    pub fn register_all(&mut self, regs: impl IntoIterator<Item = ActivityRegistration>) {
        for r in regs {
            self.insert(r);
        }
    }

    fn insert(&mut self, r: ActivityRegistration) {
        self.activities.insert(r.0.type_id(), r.0);
    }

    /// True if `type_id` is registered.
    pub fn has_activity(&self, type_id: &str) -> bool {
        self.activities.contains_key(type_id)
    }

    /// The activity registered as `type_id`.
    pub fn get_activity(&self, type_id: &str) -> Option<&Arc<dyn DynActivity>> {
        self.activities.get(type_id)
    }

    /// The activity registered as `type_id`, or a `Validation` error.
    pub fn require(&self, type_id: &str) -> Result<&Arc<dyn DynActivity>> {
        self.get_activity(type_id).ok_or_else(|| {
            Error::new(
                ErrorKind::Validation,
                format!("unknown activity type `{type_id}`"),
            )
            .with("activity_type", type_id)
        })
    }

    /// Checks that every declared compensation is registered too.
    pub fn validate(&self) -> Result<()> {
        for a in self.activities.values() {
            if let Some(c) = a.compensation() {
                if !self.has_activity(c) {
                    return Err(Error::new(
                        ErrorKind::Configuration,
                        format!(
                            "activity `{}` is compensated by `{c}`, which is not registered",
                            a.type_id()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy::exponential(5).with_maximum_interval(Duration::from_millis(300));
        assert_eq!(p.delay_before(2), Duration::from_millis(100));
        assert_eq!(p.delay_before(3), Duration::from_millis(200));
        assert_eq!(p.delay_before(4), Duration::from_millis(300));
    }

    #[test]
    fn non_retryable_errors_and_exhausted_attempts_stop() {
        let p = RetryPolicy::exponential(3);
        assert!(p.should_retry(1, &ActivityError::retryable("x")));
        assert!(!p.should_retry(3, &ActivityError::retryable("x")));
        assert!(!p.should_retry(1, &ActivityError::non_retryable("x")));
    }
}
