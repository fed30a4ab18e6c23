//! `match` with checkpoints in its arms, and a checkpoint as the scrutinee.
use saga_runtime::prelude::*;
use ui_tests::acts::{double, not_seven};

#[workflow]
async fn classify(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let total: u64 = match n % 3 {
        0 => ctx.activity(double, n).await?,
        1 => {
            let a = ctx.activity(double, n).await?;
            let b = ctx.activity(double, a).await?;
            b
        }
        _ => n,
    };
    match ctx.activity(not_seven, total).await {
        Ok(v) => Ok(v),
        Err(e) if e.retryable => Err(SagaError::new("retry", e.to_string())),
        Err(_) => Ok(7),
    }
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    for (n, want) in [(3u64, 6u64), (4, 16), (5, 5), (14, 7), (7, 7)] {
        assert_eq!(ui_tests::check::<classify>(n, script.clone()).result, Ok(serde_json::json!(want)), "n = {n}");
    }
}
