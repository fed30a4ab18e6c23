use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let a = std::time::SystemTime::now();
    let b = chrono::Utc::now();
    dbg!(n);
    let c = std::process::id();
    let _ = (a, b, c);
    ctx.activity(double, n).await
}

fn main() {}
