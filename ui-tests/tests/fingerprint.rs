//! A changed workflow never resumes an execution started under another fingerprint:
//! the engine refuses it and names both (DESIGN.md 4.5), and the fingerprint is a
//! function of the lowered machine, not of formatting.

use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::prelude::*;
use ui_tests::acts::double;

mod v1 {
    use super::*;

    #[workflow(name = "evolving")]
    pub async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
        let a = ctx.activity(double, n).await?;
        let go: bool = ctx.signal("go").await?;
        Ok(if go { a } else { 0 })
    }
}

mod v1_reformatted {
    use super::*;

    #[workflow(name = "evolving")]
    pub async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
        let a = ctx.activity(double, n).await?;
        let go: bool = ctx.signal("go").await?;
        Ok(if go { a } else { 0 })
    }
}

mod v2 {
    use super::*;

    #[workflow(name = "evolving")]
    pub async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
        ctx.sleep(Duration::from_secs(1)).await;
        let a = ctx.activity(double, n).await?;
        let go: bool = ctx.signal("go").await?;
        Ok(if go { a } else { 0 })
    }
}

#[test]
fn fingerprint_is_the_machine_not_the_formatting() {
    assert_eq!(v1::flow::FINGERPRINT, v1_reformatted::flow::FINGERPRINT);
    assert_ne!(v1::flow::FINGERPRINT, v2::flow::FINGERPRINT);
    assert!(v1::flow::FINGERPRINT.starts_with("evolving:"));
}

#[tokio::test(start_paused = true)]
async fn a_changed_workflow_refuses_an_old_execution_naming_both_fingerprints() {
    let store = InMemoryStore::new();
    let old = SagaEngine::builder()
        .store(store.clone())
        .workflow::<v1::flow>()
        .activities([activity::<double>()])
        .build()
        .await
        .expect("engine builds");
    old.start::<v1::flow>("evolve-1", 4).await.expect("starts");
    // Let it run up to the signal wait.
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(old);

    let new = SagaEngine::builder()
        .store(store)
        .workflow::<v2::flow>()
        .activities([activity::<double>()])
        .client_only()
        .build()
        .await
        .expect("engine builds");
    let err = new.verify_replay("evolve-1").await.expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Replay, "{err}");
    assert!(
        err.message.contains(v1::flow::FINGERPRINT) && err.message.contains(v2::flow::FINGERPRINT),
        "names both fingerprints: {err}"
    );
}
