use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    if let Some(x) = n.checked_sub(1) {
        let d = ctx.activity(double, n).await?;
        return Ok(d + x);
    }
    Ok(0)
}

fn main() {}
