//! [`DefinitionStore`] on SQLite: the `saga_definitions` table.
//!
//! Registration is rare (once per workflow type when an engine starts), so it does not
//! go through the group-commit writer: it runs as one autocommit statement on a read
//! connection, which takes the file's write lock like any other writer (waiting up to
//! `busy_timeout` while the writer holds it).

use async_trait::async_trait;
use saga_runtime::port::{CheckpointRow, DefinitionStore, WorkflowDefinition};
use saga_runtime::{Error, ErrorKind, Result};
use sqlx::sqlite::SqliteRow;

use super::{col, from_us, to_us, SqliteStore};
use crate::common::db_error;

const COLUMNS: &str = "SELECT workflow_type, fingerprint, checkpoints, diagram, timeout_ms, \
                       registered_at_us, task_queue FROM saga_definitions";

fn definition_from_row(row: &SqliteRow) -> Result<WorkflowDefinition> {
    let workflow_type: String = col(row, 0, "definition", ("workflow_type", "?"))?;
    let key = ("workflow_type", workflow_type.as_str());
    let checkpoints: String = col(row, 2, "checkpoint table", key)?;
    let checkpoints: Vec<CheckpointRow> = serde_json::from_str(&checkpoints).map_err(|e| {
        Error::new(
            ErrorKind::Codec,
            format!("stored checkpoint table of `{workflow_type}` does not decode: {e}"),
        )
        .with("workflow_type", &workflow_type)
        .with("code", "corrupted_row")
    })?;
    let timeout_ms: Option<i64> = col(row, 4, "definition timeout", key)?;
    Ok(WorkflowDefinition {
        fingerprint: col(row, 1, "definition fingerprint", key)?,
        checkpoints,
        diagram: col(row, 3, "definition diagram", key)?,
        timeout_ms: timeout_ms.and_then(|ms| u64::try_from(ms).ok()),
        task_queue: col(row, 6, "definition task queue", key)?,
        registered_at: from_us(col(row, 5, "definition time", key)?),
        workflow_type,
    })
}

#[async_trait]
impl DefinitionStore for SqliteStore {
    async fn register_definition(&self, definition: WorkflowDefinition) -> Result<()> {
        let checkpoints = serde_json::to_string(&definition.checkpoints)?;
        let mut conn = self.read().await?;
        sqlx::query(
            "INSERT INTO saga_definitions (workflow_type, fingerprint, checkpoints, diagram, \
             timeout_ms, registered_at_us, task_queue) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (workflow_type, fingerprint) DO UPDATE SET \
             checkpoints = excluded.checkpoints, diagram = excluded.diagram, \
             timeout_ms = excluded.timeout_ms, registered_at_us = excluded.registered_at_us, \
             task_queue = excluded.task_queue",
        )
        .bind(&definition.workflow_type)
        .bind(&definition.fingerprint)
        .bind(checkpoints)
        .bind(&definition.diagram)
        .bind(
            definition
                .timeout_ms
                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
        )
        .bind(to_us(definition.registered_at))
        .bind(&definition.task_queue)
        .execute(conn.conn())
        .await
        .map_err(|e| db_error(ErrorKind::EventStore, "register a workflow definition", e))?;
        Ok(())
    }

    async fn definitions(&self) -> Result<Vec<WorkflowDefinition>> {
        let mut conn = self.read().await?;
        let rows = sqlx::query(&format!(
            "{COLUMNS} ORDER BY workflow_type, registered_at_us, fingerprint"
        ))
        .fetch_all(conn.conn())
        .await
        .map_err(|e| db_error(ErrorKind::EventStore, "list workflow definitions", e))?;
        rows.iter().map(definition_from_row).collect()
    }

    async fn definition(&self, workflow_type: &str) -> Result<Option<WorkflowDefinition>> {
        let mut conn = self.read().await?;
        let row = sqlx::query(&format!(
            "{COLUMNS} WHERE workflow_type = ? \
             ORDER BY registered_at_us DESC, fingerprint DESC LIMIT 1"
        ))
        .bind(workflow_type)
        .fetch_optional(conn.conn())
        .await
        .map_err(|e| db_error(ErrorKind::EventStore, "read a workflow definition", e))?;
        row.as_ref().map(definition_from_row).transpose()
    }
}
