//! `for` over a range with typed bounds: the range itself is the stored cursor.
use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn sum_doubles(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let mut sum: u64 = 0;
    for i in 0..n {
        sum += ctx.activity(double, i).await?;
    }
    for j in 1u64..=2 {
        sum += ctx.activity(double, j * 100).await?;
    }
    Ok(sum)
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    assert_eq!(ui_tests::check::<sum_doubles>(4, script.clone()).result, Ok(serde_json::json!(12 + 600)));
    assert_eq!(ui_tests::check::<sum_doubles>(0, script).result, Ok(serde_json::json!(600)));
}
