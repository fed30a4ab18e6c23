//! `#[nondeterministic(reason = "..")]` on a statement, and a `#[deterministic]` helper.
use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[deterministic]
fn bucket(n: u64) -> u64 {
    let mut m = std::collections::BTreeMap::new();
    m.insert(n % 3, n);
    m.into_keys().sum()
}

#[workflow]
async fn hatch(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    #[nondeterministic(reason = "only measured, never decides anything")]
    let started = std::time::Instant::now();
    let _ = started.elapsed();
    let d = ctx.activity(double, bucket(n)).await?;
    Ok(d)
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    assert_eq!(ui_tests::check::<hatch>(5, script).result, Ok(serde_json::json!(4)));
}
