use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let r: u64 = rand::random();
    ctx.activity(double, n + r).await
}

fn main() {}
