use saga_runtime::prelude::*;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> u64 {
    let _ = ctx;
    n
}

fn main() {}
