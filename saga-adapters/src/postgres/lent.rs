//! [`Lent`]: a connection of the pool lent to one call, and closed rather than given
//! back when the call did not finish or lost the server.
//!
//! Why: sqlx pings a connection before taking it back into the pool, and that ping
//! has no time limit. A call that timed out on a server gone silent
//! (`PostgresConfig::reply_timeout`) would leave its connection pinging that server,
//! holding a slot of the pool until the kernel gives the connection up (about a
//! quarter of an hour): enough such calls and the pool has no slot left, even for a
//! connection to a server that answers again at another address (a failover). A
//! closed connection frees its slot at once, and the pool opens a new one when a call
//! needs it.

use std::ops::{Deref, DerefMut};

use saga_runtime::Result;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Postgres};

use super::unavailable;

/// A pooled connection in use by one call. Dropped without [`Lent::give_back`] (its
/// call was cancelled half-way, or timed out), it is closed.
pub(super) struct Lent(Option<PoolConnection<Postgres>>);

impl Lent {
    /// A connection of `pool` (which waits for a free one, or for the database).
    pub(super) async fn acquire(pool: &PgPool) -> Result<Lent> {
        pool.acquire()
            .await
            .map(|c| Lent(Some(c)))
            .map_err(|e| unavailable("connect to PostgreSQL", e))
    }

    /// Gives the connection back to its pool after its call returned `last`, unless
    /// that call lost the server (`code=unavailable`): the connection is then closed.
    pub(super) fn give_back<T>(mut self, last: &Result<T>) {
        let lost = matches!(last, Err(e) if e.context("code") == Some("unavailable"));
        if !lost {
            // Dropped normally: back to the pool.
            drop(self.0.take());
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            // Out of the pool (its slot is free), then closed by its drop.
            drop(conn.detach());
        }
    }
}

impl Deref for Lent {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.0.as_ref().expect("a lent connection until given back")
    }
}

impl DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.0.as_mut().expect("a lent connection until given back")
    }
}
