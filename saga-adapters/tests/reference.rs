//! The workflow store checks against the reference (in-memory) store: the suite
//! itself must pass on the step-by-step default `commit`.

use std::sync::Arc;

use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_store_conformance_in_memory() {
    conformance::run_all_workflow_store(&Arc::new(InMemoryStore::new())).await;
}
