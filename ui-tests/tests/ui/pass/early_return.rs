//! Early returns from inside loops and branches, and a tail `match` whose arms await.
use saga_runtime::prelude::*;
use ui_tests::acts::{double, greet};

#[workflow]
async fn first_big(ctx: &mut WorkflowContext, xs: Vec<u64>) -> Result<String, SagaError> {
    for x in xs {
        let d = ctx.activity(double, x).await?;
        if d > 10 {
            return Ok(format!("first big: {d}"));
        }
        if d == 0 {
            return Err(SagaError::rejected("zero"));
        }
    }
    match ctx.signal::<Option<String>>("fallback").await? {
        Some(name) => {
            let greeting = ctx.activity(greet, name).await?;
            Ok(greeting)
        }
        None => Ok("none".to_owned()),
    }
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    let none: Option<String> = None;
    let run = ui_tests::check::<first_big>(vec![1, 8, 2], script.clone().signal("fallback", none.clone()));
    assert_eq!(run.result, Ok(serde_json::json!("first big: 16")));
    let run = ui_tests::check::<first_big>(vec![1, 0], script.clone().signal("fallback", none));
    assert_eq!(run.result, Err("rejected: zero".to_owned()));
    let run = ui_tests::check::<first_big>(vec![1], script.signal("fallback", Some("zoe")));
    assert_eq!(run.result, Ok(serde_json::json!("hello zoe")));
}
