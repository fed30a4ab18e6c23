use saga_runtime::prelude::*;

#[workflow(retries = 3)]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let _ = ctx;
    Ok(n)
}

#[workflow(timeout = "forever")]
async fn other(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let _ = ctx;
    Ok(n)
}

#[workflow(task_queue = "orders/eu")]
async fn third(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let _ = ctx;
    Ok(n)
}

fn main() {}
