use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let s = format!("{}", ctx.activity(double, n).await?);
    Ok(s.len() as u64)
}

fn main() {}
