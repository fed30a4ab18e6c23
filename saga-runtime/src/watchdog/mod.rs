//! The watchdog (manual section 15): detectors that find executions and ports in
//! trouble, and the actions that get them moving again.
//!
//! Each detector is a plain function over the ports, so that an engine (which runs
//! them on a timer and takes their actions, see
//! [`SagaEngineBuilder::watchdog`](crate::engine::SagaEngineBuilder::watchdog)) and a
//! tool without the workflow code (the `saga watchdog` command) find the same things:
//!
//! | detector | finds | engine's action |
//! | --- | --- | --- |
//! | [`stall`] | an open execution with no new event for too long | force the pending activity attempt's timeout; the retry policy takes over |
//! | [`deadlock`] | a cycle of executions each waiting on the next as its child | cancel one of the cycle, which compensates it |
//! | [`health`] | a port that does not answer | pause the workers until it answers again (circuit breaker) |
//! | [`capacity`] | more tasks waiting than a threshold | none: the finding carries the backlog, to scale workers on |
//!
//! The stall and deadlock detectors read the idle open executions through
//! [`OpenExecutions`]: picked out by the stores on the time of the last event,
//! their histories folded without the workflow code and kept between rounds.

pub mod capacity;
pub mod deadlock;
mod finding;
pub mod health;
mod open;
pub mod stall;

use std::time::Duration;

pub use finding::{Action, Detector, Finding, Severity};
pub use open::{OpenExecution, OpenExecutions, PendingAttempt};

/// What the engine's watchdog checks, how often, and which actions it may take.
///
/// Off unless given to
/// [`SagaEngineBuilder::watchdog`](crate::engine::SagaEngineBuilder::watchdog): its
/// actions write to histories (a forced timeout, a cancellation) and stop workers,
/// which an engine should do only when its operator chose the thresholds. The
/// defaults are conservative: a round every 30 s, a stall after 5 minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchdogConfig {
    /// Time between two rounds (default 30 s).
    pub every: Duration,
    /// An open execution with no new event for this long is stalled (default 5 min).
    /// Keep it above your longest activity: a forced timeout abandons the attempt.
    /// Deadlocks are looked for among these idle executions (a cycle never moves), so
    /// this is also how long a cycle waits before it is broken.
    pub stall_after: Duration,
    /// Force the timeout of a stalled execution's pending activity attempt (default
    /// true); otherwise only report it.
    pub force_timeouts: bool,
    /// Cancel (and so compensate) one execution of each deadlocked cycle (default
    /// true); otherwise only report it.
    pub break_deadlocks: bool,
    /// Pause the workers while a port is unhealthy (default true).
    pub circuit_breaker: bool,
    /// Report a backlog when more tasks than this wait: queue depth (where the queue
    /// can tell) plus unsettled outbox tasks (default 10 000).
    pub backlog_threshold: u64,
    /// How many recent findings the engine keeps for
    /// [`SagaEngine::watchdog_findings`](crate::engine::SagaEngine::watchdog_findings)
    /// (default 256).
    pub keep_findings: usize,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            every: Duration::from_secs(30),
            stall_after: Duration::from_secs(300),
            force_timeouts: true,
            break_deadlocks: true,
            circuit_breaker: true,
            backlog_threshold: 10_000,
            keep_findings: 256,
        }
    }
}
