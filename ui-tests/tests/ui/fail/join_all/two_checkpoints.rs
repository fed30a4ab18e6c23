use saga_runtime::prelude::*;
use ui_tests::acts::{add_one, double};

#[workflow]
async fn flow(ctx: &mut WorkflowContext, items: Vec<u64>) -> Result<u64, SagaError> {
    let all = ctx
        .join_all(items.iter().map(|n| if *n > 1 { ctx.activity(double, *n) } else { ctx.activity(add_one, *n) }))
        .await;
    Ok(all.len() as u64)
}

fn main() {}
