use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let (a, b) = ctx.join((ctx.activity(double, n), ctx.activity(double, 1))).await?;
    Ok(a + b)
}

fn main() {}
