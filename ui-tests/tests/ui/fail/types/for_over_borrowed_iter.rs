use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let items: Vec<u64> = vec![1, 2];
    let mut sum: u64 = 0;
    for i in items.iter() {
        sum += ctx.activity(double, *i).await?;
    }
    Ok(sum + n)
}

fn main() {}
