use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let _ = (tx, rx);
    ctx.activity(double, n).await
}

fn main() {}
