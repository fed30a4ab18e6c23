use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let total = loop {
        let d = ctx.activity(double, n).await?;
        break d;
    };
    Ok(total)
}

fn main() {}
