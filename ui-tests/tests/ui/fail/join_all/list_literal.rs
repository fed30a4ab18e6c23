use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let all = ctx.join_all(vec![ctx.activity(double, n), ctx.activity(double, n + 1)]).await;
    Ok(all.len() as u64)
}

fn main() {}
