use saga_runtime::prelude::*;
use ui_tests::acts::double;
use std::collections::HashMap;
#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let mut seen: HashMap<u64, u64> = HashMap::new();
    seen.insert(n, n);
    ctx.activity(double, n).await
}

fn main() {}
