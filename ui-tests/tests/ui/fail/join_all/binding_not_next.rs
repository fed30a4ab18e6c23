use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, items: Vec<u64>) -> Result<u64, SagaError> {
    let calls: Vec<_> = items.iter().map(|n| ctx.activity(double, *n)).collect();
    let offset: u64 = 1;
    let all = ctx.join_all(calls).await;
    Ok(all.len() as u64 + offset)
}

fn main() {}
