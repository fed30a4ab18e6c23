use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let id = Uuid::new_v4();
    let _ = id;
    ctx.activity(double, n).await
}

fn main() {}
