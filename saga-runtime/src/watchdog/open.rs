//! The open executions, as the stall and deadlock detectors see them.
//!
//! A stall needs the time of each open execution's last event, and a deadlock the
//! children each one waits on. The first is kept by every store on its execution row
//! ([`ExecutionSummary::updated_at`], filtered with
//! [`ExecutionFilter::updated_before`]), so [`OpenExecutions::refresh_idle`] lists
//! only the executions idle since before a time: on a busy store, the few that matter,
//! picked out in the database (the SQL stores do not index the column, which every
//! step rewrites, and filter the open executions found by status). The second
//! follows from the history, folded without the workflow code exactly as `saga show`
//! folds it. Kept between rounds, the view reads only the events appended since the
//! previous round, and only for executions that moved: an idle execution costs
//! nothing after its first read. A deadlocked cycle never moves, so its executions are
//! among the idle ones.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::activity::ActivityRegistry;
use crate::domain::{HistoryEvent, Result, SagaId, WorkflowStatus};
use crate::engine::execution::{Env, Execution};
use crate::port::{EventStore, ExecutionFilter, ExecutionSummary};

/// An activity attempt an open execution waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAttempt {
    /// The activity's command sequence number.
    pub seq: u64,
    /// The attempt waited for.
    pub attempt: u32,
    /// The activity type.
    pub activity_type: String,
    /// The attempt failed and waits for its retry timer (not stuck: the timer moves it).
    pub backing_off: bool,
    /// A local activity (run in the recording worker's process, not through the queue).
    pub local: bool,
}

/// One open execution: what it waits on, and since when.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenExecution {
    /// The execution.
    pub saga_id: SagaId,
    /// Its workflow type.
    pub workflow_type: String,
    /// Running or Compensating.
    pub status: WorkflowStatus,
    /// Events in its history.
    pub version: u64,
    /// The time of its last event: when it last made progress.
    pub last_event_at: DateTime<Utc>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// Activity attempts in flight.
    pub pending_activities: Vec<PendingAttempt>,
    /// The child executions it waits for.
    pub pending_children: Vec<SagaId>,
    /// The earliest of its pending timers (a sleep, a retry backoff, a signal timeout).
    pub next_timer: Option<DateTime<Utc>>,
    /// Why its history does not fold without the code (an event this version does not
    /// know, a corrupted row): then only its identity and last event time are known.
    pub fold_error: Option<String>,
}

struct Entry {
    /// `None` when the history does not fold: it is read whole again when it grows.
    exec: Option<Execution>,
    view: OpenExecution,
}

/// The open executions of a store, refreshed incrementally (see the module docs).
#[derive(Default)]
pub struct OpenExecutions {
    entries: HashMap<SagaId, Entry>,
}

impl std::fmt::Debug for OpenExecutions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenExecutions")
            .field("open", &self.entries.len())
            .finish()
    }
}

impl OpenExecutions {
    /// An empty view; [`OpenExecutions::refresh`] fills it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Brings the view up to date with `store`: lists the open executions, reads the
    /// events each one appended since the last refresh, and forgets the ones that
    /// closed. An execution whose history does not fold is kept with its
    /// [`OpenExecution::fold_error`]: it may be stalled all the same.
    pub async fn refresh<S: EventStore + ?Sized>(&mut self, store: &S) -> Result<()> {
        self.refresh_listing(store, None).await
    }

    /// [`OpenExecutions::refresh`] for the open executions whose last event is older
    /// than `idle_since` only; the others leave the view.
    pub async fn refresh_idle<S: EventStore + ?Sized>(
        &mut self,
        store: &S,
        idle_since: DateTime<Utc>,
    ) -> Result<()> {
        self.refresh_listing(store, Some(idle_since)).await
    }

    async fn refresh_listing<S: EventStore + ?Sized>(
        &mut self,
        store: &S,
        updated_before: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let mut seen = HashSet::new();
        let activities = ActivityRegistry::new();
        let env = Env {
            workflow: None,
            activities: &activities,
        };
        for status in [WorkflowStatus::Running, WorkflowStatus::Compensating] {
            let filter = ExecutionFilter {
                status: Some(status),
                updated_before,
                ..Default::default()
            };
            for summary in store.list_executions(&filter).await? {
                let id = summary.saga_id.clone();
                seen.insert(id.clone());
                let (start, from) = match self.entries.remove(&id) {
                    Some(e) if e.view.version == summary.version => {
                        self.entries.insert(id, e);
                        continue;
                    }
                    Some(Entry {
                        exec: Some(exec),
                        view,
                    }) => (Some((exec, view.last_event_at)), view.version),
                    _ => (None, 0),
                };
                let events = store.history_from(&id, from).await?;
                let folded = match start {
                    Some((mut exec, previous_at)) => events
                        .iter()
                        .try_for_each(|ev| exec.apply(&env, ev))
                        .map(|()| (exec, previous_at)),
                    None => Execution::observe(&id, &events).map(|x| (x, summary.started_at)),
                };
                let entry = match folded {
                    Ok((exec, previous_at)) => {
                        let at = events.last().map_or(previous_at, |e| e.timestamp);
                        let view = view_of(&exec, status, at);
                        Entry {
                            exec: Some(exec),
                            view,
                        }
                    }
                    Err(e) => {
                        // Read whole next time: the events before `from` are needed.
                        let events = match from {
                            0 => events,
                            _ => store.history(&id).await?,
                        };
                        Entry {
                            exec: None,
                            view: unfolded(&summary, &events, e.to_string()),
                        }
                    }
                };
                self.entries.insert(id, entry);
            }
        }
        self.entries.retain(|id, _| seen.contains(id));
        Ok(())
    }

    /// The open executions, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &OpenExecution> {
        self.entries.values().map(|e| &e.view)
    }

    /// One open execution.
    pub fn get(&self, saga_id: &SagaId) -> Option<&OpenExecution> {
        self.entries.get(saga_id).map(|e| &e.view)
    }

    /// How many executions are open.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when none is open.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What is known of an execution whose history does not fold.
fn unfolded(summary: &ExecutionSummary, events: &[HistoryEvent], error: String) -> OpenExecution {
    OpenExecution {
        saga_id: summary.saga_id.clone(),
        workflow_type: summary.workflow_type.clone(),
        status: summary.status,
        version: events.last().map_or(summary.version, |e| e.event_id + 1),
        last_event_at: events.last().map_or(summary.started_at, |e| e.timestamp),
        started_at: Some(summary.started_at),
        pending_activities: Vec::new(),
        pending_children: Vec::new(),
        next_timer: None,
        fold_error: Some(error),
    }
}

fn view_of(
    exec: &Execution,
    status: WorkflowStatus,
    last_event_at: DateTime<Utc>,
) -> OpenExecution {
    let s = &exec.s;
    OpenExecution {
        saga_id: s.saga_id.clone(),
        workflow_type: s.workflow_type.clone(),
        status: match exec.status() {
            Some(WorkflowStatus::Compensating) => WorkflowStatus::Compensating,
            _ => status,
        },
        version: exec.version(),
        last_event_at,
        started_at: s.started_at,
        pending_activities: s
            .activities
            .values()
            .map(|p| PendingAttempt {
                seq: p.seq,
                attempt: p.attempt,
                activity_type: p.activity_type.clone(),
                backing_off: p.backing_off,
                local: p.local,
            })
            .collect(),
        pending_children: s.children.values().map(|c| c.child_id.clone()).collect(),
        next_timer: s.timers.values().map(|t| t.fire_at).min(),
        fold_error: None,
    }
}
