//! The outbox on PostgreSQL (table `saga_outbox`): a workflow task's commit statement
//! writes and settles rows itself; here are the reconciler's claim, the explicit
//! settle, and the pieces of a commit that runs as a transaction.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use saga_runtime::domain::SagaId;
use saga_runtime::port::{Outbox, Task};
use saga_runtime::{ErrorKind, Result};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::{lease_until, unavailable, PostgresStore};
use crate::common::parse_task_kind;

#[async_trait]
impl Outbox for PostgresStore {
    async fn claim_tasks(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Task>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.pooled(ErrorKind::EventStore, "claim outbox tasks", async |conn| {
            let until = lease_until(now, lease);
            self.count(1);
            // SKIP LOCKED: reconcilers of other workers claim other rows meanwhile.
            let rows = sqlx::query(
                "UPDATE saga_outbox o SET due_at = $2 \
                   FROM (SELECT saga_id, dedup_id FROM saga_outbox WHERE due_at <= $1 \
                          ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) d \
                  WHERE o.saga_id = d.saga_id AND o.dedup_id = d.dedup_id \
                 RETURNING o.saga_id, o.dedup_id, o.kind, o.queue, o.payload",
            )
            .bind(now)
            .bind(until)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(conn)
            .await
            .map_err(|e| unavailable("claim outbox tasks", e))?;
            rows.iter().map(task_from_row).collect()
        })
        .await
    }

    async fn settle_tasks(&self, saga_id: &SagaId, dedup_ids: &[String]) -> Result<()> {
        if dedup_ids.is_empty() {
            return Ok(());
        }
        self.pooled(ErrorKind::EventStore, "settle outbox tasks", async |conn| {
            self.settle_in(conn, saga_id, dedup_ids).await
        })
        .await
    }

    async fn defer_tasks(
        &self,
        saga_id: &SagaId,
        dedup_ids: &[String],
        until: DateTime<Utc>,
    ) -> Result<()> {
        if dedup_ids.is_empty() {
            return Ok(());
        }
        self.pooled(ErrorKind::EventStore, "defer outbox tasks", async |conn| {
            self.count(1);
            sqlx::query(
                "UPDATE saga_outbox SET due_at = $3 \
                  WHERE saga_id = $1 AND dedup_id = ANY($2) AND due_at < $3",
            )
            .bind(saga_id.as_str())
            .bind(dedup_ids)
            .bind(until)
            .execute(conn)
            .await
            .map_err(|e| unavailable("defer outbox tasks", e))?;
            Ok(())
        })
        .await
    }

    async fn outbox_len(&self) -> Result<u64> {
        self.pooled(ErrorKind::EventStore, "count outbox tasks", async |conn| {
            self.count(1);
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_outbox")
                .fetch_one(conn)
                .await
                .map_err(|e| unavailable("count outbox tasks", e))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn unsettled_tasks(&self, saga_id: &SagaId) -> Result<Vec<String>> {
        self.pooled(ErrorKind::EventStore, "list outbox tasks", async |conn| {
            self.count(1);
            sqlx::query_scalar(
                "SELECT dedup_id FROM saga_outbox WHERE saga_id = $1 ORDER BY dedup_id",
            )
            .bind(saga_id.as_str())
            .fetch_all(conn)
            .await
            .map_err(|e| unavailable("list outbox tasks", e))
        })
        .await
    }
}

impl PostgresStore {
    pub(super) async fn settle_in(
        &self,
        conn: &mut sqlx::PgConnection,
        saga_id: &SagaId,
        dedup_ids: &[String],
    ) -> Result<()> {
        if dedup_ids.is_empty() {
            return Ok(());
        }
        self.count(1);
        sqlx::query("DELETE FROM saga_outbox WHERE saga_id = $1 AND dedup_id = ANY($2)")
            .bind(saga_id.as_str())
            .bind(dedup_ids)
            .execute(&mut *conn)
            .await
            .map_err(|e| unavailable("settle outbox tasks", e))?;
        Ok(())
    }

    pub(super) async fn add_tasks_in(
        &self,
        conn: &mut sqlx::PgConnection,
        tasks: &[Task],
        due_at: DateTime<Utc>,
    ) -> Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        self.count(1);
        sqlx::query(
            "INSERT INTO saga_outbox (saga_id, dedup_id, kind, queue, payload, due_at) \
             SELECT o.saga, o.id, o.kind, o.queue, o.payload, $6 \
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[]) \
                    AS o(saga, id, kind, queue, payload) \
             ON CONFLICT (saga_id, dedup_id) DO NOTHING",
        )
        .bind(tasks.iter().map(|t| t.saga_id.as_str()).collect::<Vec<_>>())
        .bind(
            tasks
                .iter()
                .map(|t| t.dedup_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(tasks.iter().map(|t| t.kind.name()).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.queue.as_str()).collect::<Vec<_>>())
        .bind(
            tasks
                .iter()
                .map(|t| t.payload.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(due_at)
        .execute(&mut *conn)
        .await
        .map_err(|e| unavailable("write outbox tasks", e))?;
        Ok(())
    }
}

/// A stored outbox row: `saga_id, dedup_id, kind, queue, payload`.
fn task_from_row(row: &PgRow) -> Result<Task> {
    let dedup_id: String = row.get(1);
    let kind: String = row.get(2);
    Ok(Task {
        kind: parse_task_kind(&dedup_id, &kind)?,
        saga_id: SagaId::new(row.get::<String, _>(0)),
        queue: row.get(3),
        payload: row.get(4),
        dedup_id,
    })
}
