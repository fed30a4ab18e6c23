use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, items: Vec<u64>) -> Result<u64, SagaError> {
    let mut calls = Vec::new();
    for n in items {
        calls.push(ctx.activity(double, n));
    }
    let all = ctx.join_all(calls).await;
    Ok(all.len() as u64)
}

fn main() {}
