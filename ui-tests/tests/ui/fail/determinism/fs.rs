use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let config = std::fs::read_to_string("config.toml");
    let _ = config;
    ctx.activity(double, n).await
}

fn main() {}
