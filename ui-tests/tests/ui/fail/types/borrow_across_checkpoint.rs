use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let numbers: Vec<u64> = vec![n];
    let first = &numbers[0];
    let d = ctx.activity(double, n).await?;
    Ok(d + *first)
}

fn main() {}
