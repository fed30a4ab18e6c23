//! [`DefinitionStore`] on PostgreSQL: the `saga_definitions` table, one upsert per
//! registration.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use saga_runtime::port::{CheckpointRow, DefinitionStore, WorkflowDefinition};
use saga_runtime::{Error, ErrorKind, Result};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::{unavailable, PostgresStore};

const COLUMNS: &str = "SELECT workflow_type, fingerprint, checkpoints, diagram, timeout_ms, \
                       registered_at, task_queue FROM saga_definitions";

fn corrupted(workflow_type: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Codec,
        format!("stored {what} of `{workflow_type}` does not decode: {e}"),
    )
    .with("workflow_type", workflow_type)
    .with("code", "corrupted_row")
}

fn definition_from_row(row: &PgRow) -> Result<WorkflowDefinition> {
    let workflow_type: String = row
        .try_get(0)
        .map_err(|e| corrupted("?", "definition", e))?;
    let ty = workflow_type.as_str();
    let checkpoints: Value = row
        .try_get(2)
        .map_err(|e| corrupted(ty, "checkpoint table", e))?;
    let checkpoints: Vec<CheckpointRow> =
        serde_json::from_value(checkpoints).map_err(|e| corrupted(ty, "checkpoint table", e))?;
    let timeout_ms: Option<i64> = row.try_get(4).map_err(|e| corrupted(ty, "timeout", e))?;
    let registered_at: DateTime<Utc> = row
        .try_get(5)
        .map_err(|e| corrupted(ty, "registration time", e))?;
    Ok(WorkflowDefinition {
        fingerprint: row
            .try_get(1)
            .map_err(|e| corrupted(ty, "fingerprint", e))?,
        checkpoints,
        diagram: row.try_get(3).map_err(|e| corrupted(ty, "diagram", e))?,
        timeout_ms: timeout_ms.and_then(|ms| u64::try_from(ms).ok()),
        task_queue: row.try_get(6).map_err(|e| corrupted(ty, "task queue", e))?,
        registered_at,
        workflow_type,
    })
}

#[async_trait]
impl DefinitionStore for PostgresStore {
    async fn register_definition(&self, definition: WorkflowDefinition) -> Result<()> {
        self.pooled(
            ErrorKind::EventStore,
            "register a workflow definition",
            async |conn| {
                self.count(1);
                sqlx::query(
                "INSERT INTO saga_definitions (workflow_type, fingerprint, checkpoints, diagram, \
                 timeout_ms, registered_at, task_queue) VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7) \
                 ON CONFLICT (workflow_type, fingerprint) DO UPDATE SET \
                 checkpoints = excluded.checkpoints, diagram = excluded.diagram, \
                 timeout_ms = excluded.timeout_ms, registered_at = excluded.registered_at, \
                 task_queue = excluded.task_queue",
            )
            .bind(&definition.workflow_type)
            .bind(&definition.fingerprint)
            .bind(serde_json::to_string(&definition.checkpoints)?)
            .bind(&definition.diagram)
            .bind(
                definition
                    .timeout_ms
                    .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            )
            .bind(definition.registered_at)
            .bind(&definition.task_queue)
            .execute(conn)
            .await
            .map_err(|e| unavailable("register a workflow definition", e))?;
                Ok(())
            },
        )
        .await
    }

    async fn definitions(&self) -> Result<Vec<WorkflowDefinition>> {
        self.pooled(
            ErrorKind::EventStore,
            "list workflow definitions",
            async |conn| {
                self.count(1);
                let rows = sqlx::query(&format!(
                    "{COLUMNS} ORDER BY workflow_type, registered_at, fingerprint"
                ))
                .fetch_all(conn)
                .await
                .map_err(|e| unavailable("list workflow definitions", e))?;
                rows.iter().map(definition_from_row).collect()
            },
        )
        .await
    }

    async fn definition(&self, workflow_type: &str) -> Result<Option<WorkflowDefinition>> {
        self.pooled(
            ErrorKind::EventStore,
            "read a workflow definition",
            async |conn| {
                self.count(1);
                let row = sqlx::query(&format!(
                    "{COLUMNS} WHERE workflow_type = $1 \
                 ORDER BY registered_at DESC, fingerprint DESC LIMIT 1"
                ))
                .bind(workflow_type)
                .fetch_optional(conn)
                .await
                .map_err(|e| unavailable("read a workflow definition", e))?;
                row.as_ref().map(definition_from_row).transpose()
            },
        )
        .await
    }
}
