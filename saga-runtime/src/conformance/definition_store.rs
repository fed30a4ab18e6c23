//! Conformance checks for [`DefinitionStore`]: definitions upsert by type and
//! fingerprint, list in order, and the newest registration is the type's definition.
//!
//! Every check registers workflow types unique to the call, so the suite passes again
//! on a store that holds earlier runs' definitions.

use std::sync::Arc;

use chrono::Duration;

use super::{now_s, ok, unique};
use crate::port::{CheckpointRow, DefinitionStore, WorkflowDefinition};
use crate::workflow::CheckpointKind;

/// Runs every definition store check, in turn, on `store`.
pub async fn run_all_definition_store<S: DefinitionStore>(store: &Arc<S>) {
    let s = store.as_ref();
    check_registered_definition_reads_back(s).await;
    check_same_fingerprint_replaces(s).await;
    check_new_fingerprint_adds_and_wins(s).await;
    check_unknown_type_is_none(s).await;
}

fn definition(workflow_type: &str, fingerprint: &str, seconds_ago: i64) -> WorkflowDefinition {
    WorkflowDefinition {
        workflow_type: workflow_type.to_owned(),
        fingerprint: fingerprint.to_owned(),
        checkpoints: vec![
            CheckpointRow {
                id: 0,
                variant: "ReserveInventory".into(),
                line: 12,
                kind: CheckpointKind::Activity,
                awaits: "reserve_inventory".into(),
            },
            CheckpointRow {
                id: 1,
                variant: "Approval".into(),
                line: 14,
                kind: CheckpointKind::Signal,
                awaits: "approval".into(),
            },
        ],
        diagram: "stateDiagram-v2\n    [*] --> Start\n    Start --> ReserveInventory\n".into(),
        timeout_ms: Some(60_000),
        task_queue: Some("orders".into()),
        registered_at: now_s() - Duration::seconds(seconds_ago),
    }
}

fn of_type(all: Vec<WorkflowDefinition>, workflow_type: &str) -> Vec<WorkflowDefinition> {
    all.into_iter()
        .filter(|d| d.workflow_type == workflow_type)
        .collect()
}

/// A registered definition reads back unchanged, by type and in the list.
pub async fn check_registered_definition_reads_back<S: DefinitionStore>(store: &S) {
    let ty = unique("def-read");
    let def = definition(&ty, "fp-1", 10);
    ok(
        "register_definition",
        store.register_definition(def.clone()).await,
    );
    assert_eq!(
        ok("definition", store.definition(&ty).await),
        Some(def.clone()),
        "a registered definition must read back unchanged"
    );
    let mut no_timeout = definition(&ty, "fp-2", 5);
    no_timeout.timeout_ms = None;
    no_timeout.task_queue = None;
    no_timeout.checkpoints.clear();
    no_timeout.diagram.clear();
    ok(
        "register_definition",
        store.register_definition(no_timeout.clone()).await,
    );
    assert_eq!(
        of_type(ok("definitions", store.definitions().await), &ty),
        [def, no_timeout],
        "definitions must list every fingerprint of a type, oldest registration first"
    );
}

/// Registering the same `(type, fingerprint)` again replaces it: one row, the new
/// contents and time.
pub async fn check_same_fingerprint_replaces<S: DefinitionStore>(store: &S) {
    let ty = unique("def-replace");
    ok(
        "register_definition",
        store.register_definition(definition(&ty, "fp", 60)).await,
    );
    let mut again = definition(&ty, "fp", 0);
    again.diagram = "stateDiagram-v2\n    [*] --> Start\n".into();
    again.checkpoints.truncate(1);
    again.timeout_ms = Some(5);
    ok(
        "register_definition",
        store.register_definition(again.clone()).await,
    );
    assert_eq!(
        of_type(ok("definitions", store.definitions().await), &ty),
        [again.clone()],
        "re-registering a fingerprint must replace its row, not add one"
    );
    assert_eq!(ok("definition", store.definition(&ty).await), Some(again));
}

/// A new fingerprint of a known type is added; the type's definition is the one
/// registered last, even when an older fingerprint is registered again before it.
pub async fn check_new_fingerprint_adds_and_wins<S: DefinitionStore>(store: &S) {
    let ty = unique("def-new");
    let old = definition(&ty, "fp-b-old", 30);
    let new = definition(&ty, "fp-a-new", 20);
    ok(
        "register_definition",
        store.register_definition(old.clone()).await,
    );
    ok(
        "register_definition",
        store.register_definition(new.clone()).await,
    );
    assert_eq!(
        ok("definition", store.definition(&ty).await),
        Some(new.clone()),
        "the definition registered last must win (not the greatest fingerprint)"
    );
    // A worker still running the old code registers it again, later.
    let old_again = definition(&ty, "fp-b-old", 10);
    ok(
        "register_definition",
        store.register_definition(old_again.clone()).await,
    );
    assert_eq!(
        ok("definition", store.definition(&ty).await),
        Some(old_again.clone()),
        "registered_at decides which definition is the type's"
    );
    assert_eq!(
        of_type(ok("definitions", store.definitions().await), &ty),
        [new, old_again],
        "both fingerprints stay listed, oldest registration first"
    );
}

/// A type nobody registered has no definition, and is not listed.
pub async fn check_unknown_type_is_none<S: DefinitionStore>(store: &S) {
    let ty = unique("def-unknown");
    assert_eq!(ok("definition", store.definition(&ty).await), None);
    assert!(
        of_type(ok("definitions", store.definitions().await), &ty).is_empty(),
        "an unregistered type must not be listed"
    );
}
