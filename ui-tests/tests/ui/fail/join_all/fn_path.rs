use saga_runtime::prelude::*;
use ui_tests::acts::double;

fn twice(n: &u64) -> u64 {
    n * 2
}

#[workflow]
async fn flow(ctx: &mut WorkflowContext, items: Vec<u64>) -> Result<u64, SagaError> {
    let all = ctx.join_all(items.iter().map(twice)).await;
    Ok(all.len() as u64)
}

fn main() {}
