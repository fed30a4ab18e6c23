use saga_runtime::prelude::*;

#[workflow]
async fn flow<T: Clone>(ctx: &mut WorkflowContext, n: T) -> Result<T, SagaError> {
    let _ = ctx;
    Ok(n)
}

fn main() {}
