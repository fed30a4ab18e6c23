//! `ctx.join` of two activities and a timer: the variant holds the partial results.
use saga_runtime::prelude::*;
use ui_tests::acts::{double, not_seven};

#[workflow]
async fn pair(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let before: u64 = n + 1;
    let (a, b, ()) = ctx
        .join((ctx.activity(double, n), ctx.activity(not_seven, n), ctx.sleep(Duration::from_secs(5))))
        .await;
    let a = a?;
    let b = match b {
        Ok(b) => b,
        Err(_) => 0,
    };
    Ok(before + a + b)
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    assert_eq!(ui_tests::check::<pair>(3, script.clone()).result, Ok(serde_json::json!(4 + 6 + 3)));
    assert_eq!(ui_tests::check::<pair>(7, script).result, Ok(serde_json::json!(8 + 14)));
}
