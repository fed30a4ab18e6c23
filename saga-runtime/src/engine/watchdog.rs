//! The engine's watchdog loop (manual section 15): runs the detectors of
//! [`crate::watchdog`] every round and takes their actions through the engine's own
//! paths, so that a forced timeout or a cancellation is recorded exactly as a timer's
//! or an operator's would be.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;

use super::worker::Input;
use super::{HealthReport, Inner};
use crate::domain::{Error, ErrorKind, EventType, SagaId};
use crate::watchdog::capacity::{self, Backlog};
use crate::watchdog::{
    deadlock, health, stall, Action, Detector, Finding, OpenExecutions, Severity, WatchdogConfig,
};

/// What the loop remembers between rounds.
#[derive(Default)]
struct Memory {
    open: OpenExecutions,
    /// The version at which each stalled execution was last reported: a stall is
    /// reported once, until the execution moves (or the action made it move).
    reported: HashMap<SagaId, u64>,
}

impl Inner {
    pub(super) async fn watchdog_loop(self: Arc<Self>, config: WatchdogConfig) {
        let mut shutdown = self.shutdown.subscribe();
        let mut memory = Memory::default();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(config.every) => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
            let findings = self.watchdog_round(&config, &mut memory).await;
            self.publish_findings(&config, findings);
        }
    }

    /// One round: health first (with a port down the other detectors cannot read),
    /// then stalls, deadlocks and the backlog; each finding with its action taken.
    async fn watchdog_round(&self, config: &WatchdogConfig, memory: &mut Memory) -> Vec<Finding> {
        let now = self.clock.now();
        let report = self.health().await;
        let mut findings = health::detect(&report, now);
        let healthy = findings.is_empty();
        if config.circuit_breaker {
            let was_paused = *self.paused.borrow();
            if !healthy {
                if !was_paused {
                    self.paused.send_replace(true);
                    self.counter(&self.counters.watchdog_actions);
                }
                // The breaker holds the workers as long as the port is down.
                for f in &mut findings {
                    f.action_taken = true;
                }
            } else if was_paused {
                self.paused.send_replace(false);
                self.counter(&self.counters.watchdog_actions);
                let mut f = Finding::new(
                    Detector::Health,
                    Severity::Info,
                    None,
                    "every port answers again; workers resumed".to_owned(),
                    Action::ResumeWorkers,
                    now,
                );
                f.action_taken = true;
                findings.push(f);
            }
        }
        if !healthy {
            return findings;
        }

        let idle_since = chrono::TimeDelta::from_std(config.stall_after)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        match memory.open.refresh_idle(&*self.store, idle_since).await {
            Ok(()) => {
                memory
                    .reported
                    .retain(|id, v| memory.open.get(id).is_some_and(|x| x.version == *v));
                for mut f in stall::detect(&memory.open, now, config.stall_after) {
                    let Some(id) = f.saga_id.clone() else {
                        continue;
                    };
                    let version = memory.open.get(&id).map_or(0, |x| x.version);
                    if memory.reported.insert(id.clone(), version) == Some(version) {
                        continue;
                    }
                    if let (true, Action::ForceActivityTimeout { seq, attempt }) =
                        (config.force_timeouts, &f.action)
                    {
                        f.action_taken = self.force_timeout(&id, *seq, *attempt).await;
                    }
                    findings.push(f);
                }
                for mut f in deadlock::detect(&memory.open, now) {
                    if let (true, Action::Cancel { saga_id }) = (config.break_deadlocks, &f.action)
                    {
                        f.action_taken = self.cancel_deadlocked(saga_id, &f.message).await;
                    }
                    findings.push(f);
                }
            }
            Err(e) => {
                self.note(&e);
                tracing::warn!(error = %e, "watchdog could not list the open executions");
            }
        }

        match Backlog::measure(
            &*self.store,
            Some((&*self.queue, self.config.queue.as_str())),
        )
        .await
        {
            Ok(backlog) => {
                findings.extend(capacity::detect(backlog, config.backlog_threshold, now))
            }
            Err(e) => tracing::warn!(error = %e, "watchdog could not measure the backlog"),
        }
        findings
    }

    /// Records `ActivityTaskTimedOut` for the attempt if the execution still waits for
    /// it, as the attempt's timeout timer would; true if recorded.
    async fn force_timeout(&self, saga_id: &SagaId, seq: u64, attempt: u32) -> bool {
        let attrs = json!({"seq": seq, "attempt": attempt, "source": "watchdog"});
        let input = Input::new(EventType::ActivityTaskTimedOut, attrs, self.clock.now());
        let r = self
            .record_if(
                saga_id,
                |exec| exec.accepts_result(seq, attempt),
                vec![input],
            )
            .await;
        match r {
            Ok(super::worker::Processed::Appended) => {
                self.counter(&self.counters.watchdog_actions);
                true
            }
            // The attempt reported back meanwhile: nothing to force.
            Ok(super::worker::Processed::Dropped) => false,
            Err(e) => {
                tracing::warn!(saga_id = %saga_id, error = %e, "watchdog could not force the activity timeout");
                false
            }
        }
    }

    /// Cancels an execution of a deadlocked cycle through the cancellation path (which
    /// cancels its children and compensates); true if the request was recorded.
    async fn cancel_deadlocked(&self, saga_id: &SagaId, why: &str) -> bool {
        let attrs = json!({"reason": format!("watchdog: {why}")});
        match self
            .input_from_outside(saga_id, EventType::WorkflowExecutionCancelRequested, attrs)
            .await
        {
            Ok(()) => {
                self.counter(&self.counters.watchdog_actions);
                true
            }
            Err(e) => {
                tracing::warn!(saga_id = %saga_id, error = %e, "watchdog could not cancel a deadlocked execution");
                false
            }
        }
    }

    /// Logs, counts and keeps the round's findings.
    fn publish_findings(&self, config: &WatchdogConfig, findings: Vec<Finding>) {
        if findings.is_empty() {
            return;
        }
        for f in &findings {
            self.counter(&self.counters.watchdog_findings);
            tracing::warn!(
                detector = %f.detector,
                severity = %f.severity,
                saga_id = f.saga_id.as_ref().map(SagaId::as_str),
                action = %f.action,
                action_taken = f.action_taken,
                "watchdog: {}",
                f.message
            );
        }
        let mut kept = self.findings.lock().unwrap_or_else(|p| p.into_inner());
        kept.extend(findings);
        while kept.len() > config.keep_findings {
            kept.pop_front();
        }
    }
}

impl Inner {
    /// Pings every port once: [`SagaEngine::health`](super::SagaEngine::health), and
    /// the health detector's input.
    pub(super) async fn health(&self) -> HealthReport {
        let probe = SagaId::new("__health_probe__");
        let as_kind = |kind: ErrorKind, port: &'static str| {
            move |e: Error| {
                if e.kind == kind {
                    e
                } else {
                    Error::new(kind, format!("{port} is unhealthy: {}", e.message)).with_source(e)
                }
            }
        };
        HealthReport {
            event_store: self
                .store
                .version(&probe)
                .await
                .map(|_| ())
                .map_err(as_kind(ErrorKind::EventStore, "event store")),
            timer_store: self
                .store
                .next_fire_at()
                .await
                .map(|_| ())
                .map_err(as_kind(ErrorKind::TimerStore, "timer store")),
            task_queue: self
                .queue
                .dead_letters(&self.config.queue)
                .await
                .map(|_| ())
                .map_err(as_kind(ErrorKind::TaskQueue, "task queue")),
            signals: self
                .signals
                .subscribe(&probe)
                .await
                .map(|_| ())
                .map_err(as_kind(ErrorKind::SignalDispatcher, "signal dispatcher")),
        }
    }
}
