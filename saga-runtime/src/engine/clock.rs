//! The engine's clock: wall time derived from tokio's clock, so that tests on tokio's
//! paused clock see timers fire in virtual time, truncated to milliseconds because
//! stored timestamps are (replay recomputes deadlines from them and must agree).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use tokio::time::Instant;

/// Maps tokio instants to UTC.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base_utc: DateTime<Utc>,
    base: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            base_utc: Utc::now(),
            base: Instant::now(),
        }
    }

    /// Now, in milliseconds.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        let elapsed = TimeDelta::from_std(self.base.elapsed()).unwrap_or(TimeDelta::MAX);
        let t = self.base_utc + elapsed;
        t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
    }

    /// The tokio instant at which `t` is reached.
    pub(crate) fn instant_at(&self, t: DateTime<Utc>) -> Instant {
        let now_utc = self.now();
        let now = Instant::now();
        match (t - now_utc).to_std() {
            Ok(ahead) => now + ahead,
            Err(_) => now,
        }
    }
}
