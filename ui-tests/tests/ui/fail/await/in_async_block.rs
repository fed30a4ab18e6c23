use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let fut = async { ctx.activity(double, n).await };
    fut.await
}

fn main() {}
