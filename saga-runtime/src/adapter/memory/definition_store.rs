use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::domain::Result;
use crate::port::{DefinitionStore, WorkflowDefinition};

/// A [`DefinitionStore`] in memory. Clones share the same data.
#[derive(Clone, Default)]
pub struct InMemoryDefinitionStore {
    /// Keyed by `(workflow_type, fingerprint)`.
    rows: Arc<Mutex<BTreeMap<(String, String), WorkflowDefinition>>>,
}

impl InMemoryDefinitionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), WorkflowDefinition>> {
        // Every mutation is one insert: a poisoned lock holds consistent data.
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl DefinitionStore for InMemoryDefinitionStore {
    async fn register_definition(&self, definition: WorkflowDefinition) -> Result<()> {
        let key = (
            definition.workflow_type.clone(),
            definition.fingerprint.clone(),
        );
        self.rows().insert(key, definition);
        Ok(())
    }

    async fn definitions(&self) -> Result<Vec<WorkflowDefinition>> {
        let mut all: Vec<WorkflowDefinition> = self.rows().values().cloned().collect();
        all.sort_by(|a, b| {
            (&a.workflow_type, a.registered_at, &a.fingerprint).cmp(&(
                &b.workflow_type,
                b.registered_at,
                &b.fingerprint,
            ))
        });
        Ok(all)
    }

    async fn definition(&self, workflow_type: &str) -> Result<Option<WorkflowDefinition>> {
        Ok(self
            .definitions()
            .await?
            .into_iter()
            .rfind(|d| d.workflow_type == workflow_type))
    }
}
