//! Child workflows: starting a child the parent's commit decided on, telling a closed
//! child's parent how it ended, and cancelling the children a parent gives up on. Each
//! runs as its own task right after the commit, which (with the outbox on) also wrote
//! the task that re-drives it if this process dies first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::super::execution::Execution;
use super::super::{inputs, Inner};
use super::{is_closed, BoxedTask, Input, Origin, Processed};
use crate::domain::{EventType, Result, SagaId};

/// A child workflow to start.
#[derive(Debug, Clone)]
pub(super) struct ChildStart {
    pub(super) seq: u64,
    pub(super) child_id: SagaId,
    pub(super) workflow_type: String,
    pub(super) input: Value,
    pub(super) trace_id: String,
    /// The child type's own task queue, else the parent's.
    pub(super) task_queue: String,
    /// With the outbox on, the dedup id of the parent's workflow task that the outbox
    /// holds until the start is recorded on the parent (`inputs::child_start_id`).
    pub(super) redrive: Option<String>,
}

impl Inner {
    pub(super) fn start_child_task(
        self: Arc<Self>,
        parent: SagaId,
        start: ChildStart,
    ) -> BoxedTask {
        Box::pin(async move { self.start_child(parent, start).await })
    }

    pub(super) fn deliver_to_parent_task(self: Arc<Self>, child: SagaId) -> BoxedTask {
        Box::pin(async move { self.deliver_to_parent(&child).await })
    }

    pub(super) fn cancel_child_task(
        self: Arc<Self>,
        child: SagaId,
        redrive: Option<String>,
    ) -> BoxedTask {
        Box::pin(async move {
            if let Err(e) = self.cancel_child(&child, redrive.as_deref()).await {
                tracing::debug!(child = %child, error = %e, "child not cancelled");
            }
        })
    }

    /// Records on `child` that its parent gave up on it, then settles the child's task
    /// `row` that would re-drive this. A closed child needs nothing.
    pub(super) async fn cancel_child(&self, child: &SagaId, row: Option<&str>) -> Result<()> {
        let reason = json!({"reason": "parent closed"});
        let r = self
            .input_from_outside(child, EventType::WorkflowExecutionCancelRequested, reason)
            .await;
        match r {
            Ok(()) => {}
            Err(e) if is_closed(&e) => {}
            // Not there (yet): its start may still be in flight on another worker,
            // which cancels it itself once it finds the parent let it go, unless it
            // dies right after creating it. So `row` stays: when it comes due, a
            // worker looks once more (and then, finding none, lets it go).
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        }
        self.settle_row(child, row).await;
        Ok(())
    }

    /// Starts a child workflow and records on the parent that it started (or why not).
    async fn start_child(&self, parent: SagaId, start: ChildStart) {
        let seq = start.seq;
        let link = json!({"saga_id": parent, "seq": seq});
        let outcome = match self.workflows.get(start.workflow_type.as_str()) {
            None => Err(format!(
                "workflow type `{}` is not registered",
                start.workflow_type
            )),
            Some(wf) => {
                let fingerprint = wf.fingerprint();
                let now = self.clock.now();
                let r = self
                    .process(&start.child_id, true, Origin::Worker, |exec| {
                        exec.s.trace_id = start.trace_id.clone();
                        Ok(Some(vec![Input {
                            event_type: EventType::WorkflowExecutionStarted,
                            attributes: json!({
                                "workflow_type": start.workflow_type,
                                "fingerprint": fingerprint,
                                "input": start.input,
                                "timeout_ms": null,
                                "task_queue": start.task_queue,
                                "parent": link,
                            }),
                            at: now,
                        }]))
                    })
                    .await;
                match r {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_already_started() => {
                        // Started before a crash (a re-drive) if it names this parent.
                        let first = self
                            .store
                            .history_from(&start.child_id, 0)
                            .await
                            .ok()
                            .and_then(|h| h.into_iter().next());
                        if first.is_some_and(|f| f.attributes["parent"] == link) {
                            Ok(())
                        } else {
                            Err(e.to_string())
                        }
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let started = outcome.is_ok();
        let (event_type, attributes) = match outcome {
            Ok(()) => (
                EventType::ChildWorkflowExecutionStarted,
                json!({"seq": seq, "child_id": start.child_id}),
            ),
            Err(reason) => (
                EventType::StartChildWorkflowExecutionFailed,
                json!({"seq": seq, "child_id": start.child_id, "status": "NotStarted", "reason": reason}),
            ),
        };
        let input = Input::new(event_type, attributes, self.clock.now());
        // Whether the parent, as last read, has let go of the child: it gave up on it
        // (cancelled, failed) while this start was in flight, or already has its outcome.
        let let_go = AtomicBool::new(false);
        let waiting = |exec: &Execution| {
            let child = exec.s.children.get(&seq);
            let_go.store(child.is_none(), Ordering::Relaxed);
            child.is_some_and(|c| !c.started)
        };
        let row = start.redrive.as_deref();
        match self
            .record_settling_if(&parent, row, waiting, vec![input])
            .await
        {
            Ok(Processed::Appended) => {}
            Ok(Processed::Dropped) => {
                // Recorded before (a re-drive after all), or let go of. A child the
                // parent gave up on before this start created it was not there for the
                // parent's cancellation to find: cancel it now, or it runs on as an
                // orphan whose steps nobody undoes. (One that already closed is left.)
                if started && let_go.load(Ordering::Relaxed) {
                    if let Err(e) = self.cancel_child(&start.child_id, None).await {
                        tracing::warn!(child = %start.child_id, error = %e, "orphan child not cancelled");
                    }
                }
                self.settle_row(&parent, row).await;
            }
            Err(e) => {
                tracing::warn!(parent = %parent, error = %e, "child start not recorded on the parent");
            }
        }
        if started {
            // A child that finished before its parent heard that it started.
            self.deliver_to_parent(&start.child_id).await;
        }
    }

    /// Tells a closed child's parent how it ended (idempotent: the parent drops the
    /// news once it has it).
    async fn deliver_to_parent(&self, child: &SagaId) {
        let Ok(history) = self.store.history(child).await else {
            return;
        };
        let (Some(first), Some(last)) = (history.first(), history.last()) else {
            return;
        };
        let Some((parent, seq)) = first.attributes.get("parent").and_then(|p| {
            Some((
                SagaId::new(p.get("saga_id")?.as_str()?),
                p.get("seq")?.as_u64()?,
            ))
        }) else {
            return;
        };
        let timed_out = history
            .iter()
            .any(|e| e.event_type == EventType::WorkflowExecutionTimedOut);
        let (event_type, status) = match last.event_type {
            EventType::WorkflowExecutionCompleted => {
                (EventType::ChildWorkflowExecutionCompleted, "Completed")
            }
            EventType::WorkflowExecutionCanceled if timed_out => {
                (EventType::ChildWorkflowExecutionTimedOut, "Cancelled")
            }
            EventType::WorkflowExecutionCanceled => {
                (EventType::ChildWorkflowExecutionCanceled, "Cancelled")
            }
            EventType::WorkflowExecutionTimedOut => {
                (EventType::ChildWorkflowExecutionTimedOut, "Failed")
            }
            EventType::WorkflowExecutionFailed => {
                (EventType::ChildWorkflowExecutionFailed, "Failed")
            }
            _ => return,
        };
        let mut attributes = json!({"seq": seq, "child_id": child, "status": status});
        if event_type == EventType::ChildWorkflowExecutionCompleted {
            attributes["output"] = last
                .attributes
                .get("output")
                .cloned()
                .unwrap_or(Value::Null);
        } else {
            let reason = match self.closed_error(child).await {
                Ok(e) => e.message,
                Err(e) => e.to_string(),
            };
            attributes["reason"] = json!(reason);
        }
        let input = Input::new(event_type, attributes, self.clock.now());
        let awaited = |exec: &Execution| exec.s.children.contains_key(&seq);
        match self.record_if(&parent, awaited, vec![input]).await {
            // The parent has the news (now or before): the child's task that would
            // re-drive it is done.
            Ok(_) if self.outbox => {
                let row = inputs::notify_parent_id(child);
                self.settle_row(child, Some(&row)).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(parent = %parent, child = %child, error = %e, "child outcome not recorded on the parent");
            }
        }
    }
}
