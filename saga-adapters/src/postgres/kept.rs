//! Connections kept out of the pool for the statements every workflow runs: its
//! commits, and the reads of a worker taking a task (version, history, snapshot).
//!
//! Why: sqlx pings a pooled connection every time it goes back to the pool (to find
//! one a cancelled call left half-way), a second round trip on the database for every
//! statement. A kept connection is owned by one call at a time and goes back only
//! after its statement finished; a call cancelled half-way drops it with the call, so
//! no connection in an unknown state is ever reused, and no ping is needed. Measured
//! on commits: 1 ms of a 5-step workflow's 3 at one in flight; on the version read of
//! each saga's first task: 15-22 % more steps/s with three processes, in two paired
//! runs (BENCHMARKS.md).
//!
//! Kept connections are set up by [`PLAN_ONCE`].

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use saga_runtime::Result;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::PgConnection;

use super::lent::Lent;
use super::unavailable;

/// How kept connections plan their statements: once per connection (a generic plan),
/// and never with a sequential scan of a table.
///
/// Why: planning the batch commit statement for each batch cost PostgreSQL about as
/// much as running it (1.1 ms against 1.2 for 64 commits, `EXPLAIN (ANALYZE)`),
/// because a custom plan looks at every element of the parameter arrays. A generic
/// plan is made from the tables' statistics at the time, and on a new schema those say
/// the tables are empty: PostgreSQL then scans whole tables, and keeps doing so while
/// they grow (in paired runs of three processes, 3 900 and 3 100 steps/s). Every
/// lookup of the statements run on kept connections has an index on its key, so no
/// sequential scan is ever the right plan once tables have rows; with them off the
/// generic plan is right whatever the statistics say (4 900 and 5 400 steps/s in those
/// pairs, against 4 500-5 000 with a custom plan per batch; BENCHMARKS.md).
const PLAN_ONCE: &str = "SELECT set_config('plan_cache_mode', 'force_generic_plan', false), \
                                set_config('enable_seqscan', 'off', false)";

/// A set of kept connections, at most `max` open at once (idle or in use).
pub(super) struct KeptConnections {
    idle: Mutex<Vec<PgConnection>>,
    open: AtomicUsize,
    max: usize,
}

impl KeptConnections {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(KeptConnections {
            idle: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            max,
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<PgConnection>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle kept connection, or a new one taken out of `pool` (which waits for the
    /// database as any call does) if fewer than `max` are open; `None` if all are in
    /// use. `setups` counts the statements a new connection's setup ran.
    async fn take(
        self: &Arc<Self>,
        pool: &PgPool,
        options: &PgConnectOptions,
        setups: impl Fn(),
    ) -> Result<Option<Kept>> {
        if let Some(conn) = self.idle().pop() {
            return Ok(Some(self.hold(conn)));
        }
        let reserved = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        if reserved.is_err() {
            return Ok(None);
        }
        // From here the slot is freed by `Slot`'s drop, whatever happens.
        let slot = Slot {
            from: Arc::clone(self),
            kept: false,
        };
        let pooled = pool
            .acquire()
            .await
            .map_err(|e| unavailable("connect to PostgreSQL", e))?
            .detach();
        setups();
        let conn = match plan_once(pooled).await {
            Ok(conn) => conn,
            // The pool keeps idle connections without checking them: after a restart
            // of the database every one is dead, and each would fail a statement. The
            // setup wrote nothing, so a new connection can take its place.
            Err(_) => {
                let conn = <PgConnection as sqlx::Connection>::connect_with(options)
                    .await
                    .map_err(|e| unavailable("connect to PostgreSQL", e))?;
                setups();
                plan_once(conn).await?
            }
        };
        Ok(Some(Kept { conn, slot }))
    }

    /// A kept connection ([`KeptConnections::take`]) or, if all are in use, a pooled
    /// one.
    pub(super) async fn get(
        self: &Arc<Self>,
        pool: &PgPool,
        options: &PgConnectOptions,
        setups: impl Fn(),
    ) -> Result<Connection> {
        if let Some(kept) = self.take(pool, options, setups).await? {
            return Ok(Connection::Kept(kept));
        }
        Lent::acquire(pool).await.map(Connection::Pooled)
    }

    fn hold(self: &Arc<Self>, conn: PgConnection) -> Kept {
        Kept {
            conn,
            slot: Slot {
                from: Arc::clone(self),
                kept: false,
            },
        }
    }
}

async fn plan_once(mut conn: PgConnection) -> Result<PgConnection> {
    sqlx::query(PLAN_ONCE)
        .execute(&mut conn)
        .await
        .map_err(|e| unavailable("set up a kept connection", e))?;
    Ok(conn)
}

/// A kept connection in use. Dropped without [`Kept::give_back`] (its call failed or
/// was cancelled), the connection is closed and its slot freed.
pub(super) struct Kept {
    conn: PgConnection,
    slot: Slot,
}

/// One of the `max` open connections of a [`KeptConnections`]; freed when dropped,
/// unless its connection went back to the idle ones.
struct Slot {
    from: Arc<KeptConnections>,
    kept: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.kept {
            self.from.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Kept {
    /// Keeps the connection for the next call, unless its last statement failed: the
    /// connection may be broken, and a new one costs little next to that. A lost
    /// connection drops the idle ones too: what lost one (a restart, an administrator
    /// ending the store's sessions) has most likely lost them all.
    pub(super) fn give_back<T>(self, last: &Result<T>) {
        let Kept { conn, mut slot } = self;
        match last {
            Ok(_) => {
                slot.from.idle().push(conn);
                slot.kept = true;
            }
            Err(e) if e.context("code") == Some("unavailable") => {
                let dropped = std::mem::take(&mut *slot.from.idle());
                slot.from.open.fetch_sub(dropped.len(), Ordering::AcqRel);
            }
            Err(_) => {}
        }
    }
}

impl Deref for Kept {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for Kept {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

/// A connection for one call: a kept one, or, when all kept ones are in use, one of
/// the pool (which pings it when it goes back).
pub(super) enum Connection {
    Kept(Kept),
    Pooled(Lent),
}

impl Connection {
    /// See [`Kept::give_back`] and [`Lent::give_back`].
    pub(super) fn give_back<T>(self, last: &Result<T>) {
        match self {
            Connection::Kept(kept) => kept.give_back(last),
            Connection::Pooled(lent) => lent.give_back(last),
        }
    }
}

impl Deref for Connection {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        match self {
            Connection::Kept(k) => k,
            Connection::Pooled(p) => p,
        }
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Connection::Kept(k) => k,
            Connection::Pooled(p) => p,
        }
    }
}
