use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    if n > 3 && ctx.activity(double, n).await? > 10 {
        return Ok(1);
    }
    Ok(0)
}

fn main() {}
