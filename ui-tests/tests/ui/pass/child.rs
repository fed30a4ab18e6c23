//! A child workflow started from a parent, its output used by the parent.
use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn quadruple(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let d = ctx.activity(double, n).await?;
    let q = ctx.activity(double, d).await?;
    Ok(q)
}

#[workflow]
async fn parent(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let a = ctx.child(quadruple, n).await?;
    let b = ctx.child(quadruple, a).await?;
    Ok(a + b)
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all()).child::<quadruple>();
    assert_eq!(ui_tests::check::<quadruple>(3, script.clone()).result, Ok(serde_json::json!(12)));
    assert_eq!(ui_tests::check::<parent>(1, script).result, Ok(serde_json::json!(4 + 16)));
    assert_eq!(parent::checkpoints()[1].variant, "Quadruple2");
}
