use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    use std::time::Instant as Clock;
    let t = Clock::now();
    let _ = t;
    ctx.activity(double, n).await
}

fn main() {}
