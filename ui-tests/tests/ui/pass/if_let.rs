//! `if let` with a checkpoint inside; a pattern binding used after the checkpoint is
//! rebound with its type.
use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn maybe_double(ctx: &mut WorkflowContext, input: Option<u64>) -> Result<u64, SagaError> {
    if let Some(n) = input {
        let n: u64 = n;
        let d = ctx.activity(double, n).await?;
        return Ok(d + n);
    } else {
        ctx.sleep(Duration::from_secs(1)).await;
    }
    Ok(0)
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    assert_eq!(ui_tests::check::<maybe_double>(Some(4), script.clone()).result, Ok(serde_json::json!(12)));
    assert_eq!(ui_tests::check::<maybe_double>(None, script).result, Ok(serde_json::json!(0)));
}
