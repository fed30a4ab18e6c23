use saga_runtime::prelude::*;

#[workflow]
fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let _ = ctx;
    Ok(n)
}

fn main() {}
