//! `ctx.join_all` over a dynamic list (also an empty one): one result per item.
use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn fan_out(ctx: &mut WorkflowContext, items: Vec<u64>) -> Result<u64, SagaError> {
    let offset: u64 = 1000;
    let results = ctx.join_all(items.iter().map(|i| ctx.activity(double, *i))).await;
    let mut sum: u64 = offset;
    for r in results {
        sum += r?;
    }
    let again = ctx.join_all((0u64..2).map(|i| ctx.activity(double, i + sum))).await;
    Ok(again.into_iter().map(|r| r.unwrap_or(0)).sum())
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    // 1000 + 2 + 4 + 6 = 1012; then 2*1012 + 2*1013 = 4050
    assert_eq!(ui_tests::check::<fan_out>(vec![1, 2, 3], script.clone()).result, Ok(serde_json::json!(4050)));
    assert_eq!(ui_tests::check::<fan_out>(vec![], script).result, Ok(serde_json::json!(4002)));
}
