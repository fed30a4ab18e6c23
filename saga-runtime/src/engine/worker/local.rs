//! Local activities: run in the worker's own process right after the commit that
//! schedules them (manual: local activities), with their retries, and recorded on the
//! execution; and the set of those running here, so that a workflow task does not run
//! one again while it still runs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::super::execution::Execution;
use super::super::Inner;
use super::{attempt_outcome, raw, BoxedTask, Input, Processed};
use crate::activity::{ActivityContext, ActivityError};
use crate::domain::{EventType, SagaId};

/// A local activity to run.
#[derive(Debug, Clone)]
pub(super) struct LocalRun {
    pub(super) seq: u64,
    pub(super) activity_type: String,
    pub(super) input: Value,
    pub(super) retry: crate::activity::RetryPolicy,
    pub(super) timeout_ms: Option<u64>,
    /// With the outbox on, the dedup id of the execution's workflow task that the
    /// outbox holds while the run lasts: no message carries a local activity, so if
    /// this process dies before recording the outcome, that task comes due and
    /// re-drives the run on another worker. The outcome's commit settles it.
    pub(super) redrive: Option<String>,
}

impl Inner {
    pub(super) fn run_local_task(self: Arc<Self>, saga_id: SagaId, run: LocalRun) -> BoxedTask {
        Box::pin(async move {
            let seq = run.seq;
            self.run_local(saga_id.clone(), run).await;
            // Only now: until its outcome is recorded it is still pending in history.
            self.locals.leave(&saga_id, seq);
        })
    }

    /// Runs a local activity in this process, with its retries, then records the
    /// outcome on the execution.
    async fn run_local(&self, saga_id: SagaId, run: LocalRun) {
        let started_at = self.clock.now();
        let attempts = self.local_attempts(&saga_id, &run);
        let row = run.redrive.as_deref();
        let (attempt, result) = self.keeping_alive(&saga_id, attempts, None, row).await;
        let finished = self.clock.now();
        let (event_type, attributes) = match result {
            Ok(output) => (
                EventType::LocalActivityCompleted,
                json!({"seq": run.seq, "attempts": attempt, "output": output}),
            ),
            Err(None) => (
                EventType::LocalActivityTimedOut,
                json!({"seq": run.seq, "attempts": attempt, "timeout_ms": run.timeout_ms}),
            ),
            Err(Some(error)) => (
                EventType::LocalActivityFailed,
                json!({"seq": run.seq, "attempts": attempt, "error": error}),
            ),
        };
        let started = json!({"seq": run.seq, "activity_type": run.activity_type});
        let inputs = vec![
            Input::new(EventType::LocalActivityStarted, started, started_at),
            Input::new(event_type, attributes, finished),
        ];
        let pending = |exec: &Execution| exec.s.activities.get(&run.seq).is_some_and(|p| p.local);
        match self
            .record_settling_if(&saga_id, row, pending, inputs)
            .await
        {
            Ok(Processed::Appended) => {}
            // Recorded by another run: nothing left for the task to re-drive.
            Ok(Processed::Dropped) => self.settle_row(&saga_id, row).await,
            Err(e) => {
                // Its workflow task in the outbox (or, without one, recovery) runs it
                // again: local activities are at-least-once.
                tracing::warn!(saga_id = %saga_id, error = %e, "local activity result not recorded");
            }
        }
    }

    /// A local activity's attempts, with its retries: the number made and the last
    /// one's outcome.
    async fn local_attempts(
        &self,
        saga_id: &SagaId,
        run: &LocalRun,
    ) -> (u32, std::result::Result<Value, Option<ActivityError>>) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.counter(&self.counters.activity_attempts);
            let ctx = ActivityContext {
                saga_id: saga_id.clone(),
                seq: run.seq,
                attempt,
                activity_type: run.activity_type.clone(),
            };
            let began = Instant::now();
            let r = self
                .execute(ctx, raw(Some(&run.input)), run.timeout_ms, None)
                .await;
            self.counters.by_type.activity_attempt(
                &run.activity_type,
                attempt_outcome(&r),
                began.elapsed(),
            );
            let failure = match &r {
                Ok(_) => None,
                Err(None) => Some(ActivityError::timeout(Duration::from_millis(
                    run.timeout_ms.unwrap_or(0),
                ))),
                Err(Some(e)) => Some(e.clone()),
            };
            match failure {
                Some(e) if run.retry.should_retry(attempt, &e) => {
                    tokio::time::sleep(run.retry.delay_before(attempt + 1)).await;
                }
                _ => return (attempt, r),
            }
        }
    }
}

/// The local activities running in this process, by execution and sequence number:
/// a workflow task that finds one still pending in history does not run it again
/// while it runs here (it is pending until its outcome's commit).
#[derive(Debug, Default)]
pub(in crate::engine) struct RunningLocals(Mutex<HashSet<(SagaId, u64)>>);

impl RunningLocals {
    pub(super) fn enter(&self, saga_id: &SagaId, seq: u64) {
        self.lock().insert((saga_id.clone(), seq));
    }

    pub(super) fn leave(&self, saga_id: &SagaId, seq: u64) {
        self.lock().remove(&(saga_id.clone(), seq));
    }

    pub(super) fn running(&self, saga_id: &SagaId, seq: u64) -> bool {
        self.lock().contains(&(saga_id.clone(), seq))
    }

    /// The set (a poisoned lock still holds a valid set).
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(SagaId, u64)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
