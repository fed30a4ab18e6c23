use saga_runtime::prelude::*;
use ui_tests::acts::double;

fn checked(n: u64) -> Result<u64, SagaError> {
    Ok(n)
}

#[workflow]
async fn flow(ctx: &mut WorkflowContext, items: Vec<u64>) -> Result<u64, SagaError> {
    let all = ctx
        .join_all(items.iter().map(|n| {
            let m = checked(*n)?;
            ctx.activity(double, m)
        }))
        .await;
    Ok(all.len() as u64)
}

fn main() {}
