use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let d = ctx.activity(double, "ten".to_string()).await?;
    Ok(d)
}

fn main() {}
