use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let m = unsafe { std::mem::transmute::<u64, i64>(n) };
    let _ = m;
    ctx.activity(double, n).await
}

fn main() {}
