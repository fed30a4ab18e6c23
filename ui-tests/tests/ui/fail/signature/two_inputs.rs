use saga_runtime::prelude::*;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, a: u64, b: u64) -> Result<u64, SagaError> {
    let _ = ctx;
    Ok(a + b)
}

fn main() {}
