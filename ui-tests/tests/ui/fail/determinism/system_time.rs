use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let started = std::time::SystemTime::now();
    let d = ctx.activity(double, n).await?;
    let _ = started;
    Ok(d)
}

fn main() {}
