use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, items: Vec<u64>) -> Result<u64, SagaError> {
    let all = ctx
        .join_all(items.iter().map(|n| async move { ctx.activity(double, *n).await? }))
        .await;
    Ok(all.len() as u64)
}

fn main() {}
