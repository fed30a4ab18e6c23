use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let futures = vec![ctx.activity(double, n)];
    let all = ctx.join_all(futures).await;
    Ok(all.len() as u64)
}

fn main() {}
