use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let pair: (u64, u64) = (n, n);
    let (ref a, _) = pair;
    let d = ctx.activity(double, n).await?;
    Ok(d + *a)
}

fn main() {}
