//! `?` on a failing checkpoint (the workflow fails and compensates), `?` on a plain
//! `Result` in between checkpoints, and `let .. else`.
use saga_runtime::prelude::*;
use ui_tests::acts::{add_one, not_seven};

fn parse(s: &str) -> Result<u64, SagaError> {
    s.parse().map_err(|_| SagaError::rejected(format!("not a number: {s}")))
}

#[workflow]
async fn checked(ctx: &mut WorkflowContext, text: String) -> Result<u64, SagaError> {
    let n = parse(&text)?;
    let added = ctx.activity(add_one, n).await?;
    let Some(half) = added.checked_div(2) else {
        return Err(SagaError::rejected("unreachable"));
    };
    let checked = ctx.activity(not_seven, half).await?;
    Ok(checked)
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    assert_eq!(ui_tests::check::<checked>("9".into(), script.clone()).result, Ok(serde_json::json!(5)));
    let failed = ui_tests::check::<checked>("13".into(), script.clone()).result.unwrap_err();
    assert!(failed.contains("7 is a multiple of 7"), "{failed}");
    let bad = ui_tests::check::<checked>("x".into(), script).result.unwrap_err();
    assert_eq!(bad, "rejected: not a number: x");
}
