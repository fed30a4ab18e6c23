//! The capacity detector: more tasks waiting than a threshold.
//!
//! The backlog is the queue's depth where the queue can tell
//! ([`TaskQueue::depth`]) plus the store's unsettled outbox tasks
//! ([`Outbox::outbox_len`]): tasks the workers have not caught up with. A growing
//! backlog means too few workers (or slow activities); the finding carries the numbers
//! to scale on, which the engine cannot do itself.

use chrono::{DateTime, Utc};

use super::{Action, Detector, Finding, Severity};
use crate::domain::Result;
use crate::port::{Outbox, TaskQueue};

/// What the backlog is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Tasks waiting in the queue, when the queue can tell.
    pub queue_depth: Option<u64>,
    /// Tasks written to the outbox and not settled yet.
    pub outbox: u64,
}

impl Backlog {
    /// Reads the backlog: the depth of `queue` (named `queue_name`), if given and if it
    /// can tell, and the store's outbox length.
    pub async fn measure<O: Outbox + ?Sized>(
        outbox: &O,
        queue: Option<(&dyn TaskQueue, &str)>,
    ) -> Result<Backlog> {
        let queue_depth = match queue {
            Some((q, name)) => q.depth(name).await?,
            None => None,
        };
        Ok(Backlog {
            queue_depth,
            outbox: outbox.outbox_len().await?,
        })
    }

    /// Queue depth plus outbox length.
    ///
    /// A task in the outbox may be in the queue too (the outbox keeps it until its
    /// result is recorded), so this counts it twice at most: an upper bound, which is
    /// what a threshold for "too much waiting" wants.
    pub fn total(&self) -> u64 {
        self.queue_depth.unwrap_or(0) + self.outbox
    }
}

/// A finding when the backlog is above `threshold`.
pub fn detect(backlog: Backlog, threshold: u64, now: DateTime<Utc>) -> Option<Finding> {
    let total = backlog.total();
    if total <= threshold {
        return None;
    }
    let depth = backlog
        .queue_depth
        .map_or_else(|| "unknown".to_owned(), |d| d.to_string());
    let mut f = Finding::new(
        Detector::Capacity,
        Severity::Warning,
        None,
        format!(
            "{total} tasks waiting (queue {depth}, outbox {}), above the threshold of {threshold}",
            backlog.outbox
        ),
        Action::ScaleWorkers,
        now,
    )
    .with("backlog", total as f64)
    .with("outbox", backlog.outbox as f64)
    .with("threshold", threshold as f64);
    if let Some(d) = backlog.queue_depth {
        f = f.with("queue_depth", d as f64);
    }
    Some(f)
}
