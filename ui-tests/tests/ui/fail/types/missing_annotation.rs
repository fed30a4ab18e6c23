use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let mut seen = Vec::new();
    seen.push(n);
    let d = ctx.activity(double, n).await?;
    Ok(d + seen.len() as u64)
}

fn main() {}
