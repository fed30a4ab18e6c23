//! Durable timers (manual section 10).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Result, SagaId, TimerKind};

/// One durable timer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerRecord {
    /// Unique id; creating the same id twice keeps one timer.
    pub timer_id: String,
    /// The execution it wakes.
    pub saga_id: SagaId,
    /// What it is for.
    pub kind: TimerKind,
    /// When it is due.
    pub fire_at: DateTime<Utc>,
    /// What the engine needs when it fires (command sequence, attempt, ...).
    pub attributes: serde_json::Value,
}

/// Durable timers, claimed so that exactly one scheduler fires each.
///
/// Contract:
/// - `claim_due` returns timers with `fire_at <= now` that are not completed and not
///   claimed by someone else (a claim lasts `lease`; an expired claim can be taken
///   again, so a crashed claimer does not lose a timer); concurrent claimers never get
///   the same timer while a claim holds;
/// - `complete` and `cancel` remove the timer for good.
#[async_trait]
pub trait TimerStore: Send + Sync + 'static {
    /// Creates a timer (idempotent on `timer_id`).
    async fn create(&self, timer: TimerRecord) -> Result<()>;
    /// Claims up to `limit` due timers for `lease`.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<TimerRecord>>;
    /// Marks a fired timer done.
    async fn complete(&self, timer_id: &str) -> Result<()>;
    /// Cancels a pending timer; true if it existed.
    async fn cancel(&self, timer_id: &str) -> Result<bool>;
    /// The earliest `fire_at` among pending timers, claimed or not.
    async fn next_fire_at(&self) -> Result<Option<DateTime<Utc>>>;
}
