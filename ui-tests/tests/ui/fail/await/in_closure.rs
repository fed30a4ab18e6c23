use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let f = || ctx.activity(double, n).await;
    let _ = f;
    Ok(n)
}

fn main() {}
