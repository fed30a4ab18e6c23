use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    static mut COUNTER: u64 = 0;
    ctx.activity(double, n).await
}

fn main() {}
