use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    ctx.sleep(Duration::from_secs(1)).await?;
    Ok(n)
}

fn main() {}
