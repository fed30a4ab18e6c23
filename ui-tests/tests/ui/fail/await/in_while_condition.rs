use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let mut i: u64 = 0;
    while ctx.activity(double, i).await? < n {
        i += 1;
    }
    Ok(i)
}

fn main() {}
