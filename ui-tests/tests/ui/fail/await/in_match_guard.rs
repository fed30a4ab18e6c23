use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    match n {
        x if ctx.activity(double, x).await? > 10 => Ok(x),
        _ => Ok(0),
    }
}

fn main() {}
