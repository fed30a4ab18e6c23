//! Recorded synchronous calls: `ctx.now()`, `ctx.random()`, `ctx.uuid()` and
//! `ctx.side_effect(..)` (whose closure is not checked for determinism); their values
//! survive checkpoints and are replayed, not recomputed.
use saga_runtime::prelude::*;

#[workflow]
async fn recorded(ctx: &mut WorkflowContext, _input: ()) -> Result<(String, u64, String), SagaError> {
    let started = ctx.now();
    let random = ctx.random();
    let id = ctx.uuid();
    let clock: String = ctx.side_effect(|| format!("{:?}", std::time::SystemTime::now()));
    ctx.sleep(Duration::from_secs(10)).await;
    let stamp: String = started.to_rfc3339();
    Ok((format!("{stamp} {clock}"), random, id))
}

fn main() {
    let run = ui_tests::check::<recorded>((), ui_tests::Script::new().output_varies());
    assert_eq!(run.recorded.len(), 4);
    assert!(run.result.is_ok());
}
