use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let reply = ctx.signal("reply").await?;
    let d = ctx.activity(double, n).await?;
    let _: u64 = reply;
    Ok(d)
}

fn main() {}
