//! `while` and `while let` with checkpoints in their bodies.
use saga_runtime::prelude::*;
use ui_tests::acts::{add_one, greet};

#[workflow]
async fn counting(ctx: &mut WorkflowContext, names: Vec<String>) -> Result<(u64, Vec<String>), SagaError> {
    let mut n: u64 = 0;
    while n < 3 {
        n = ctx.activity(add_one, n).await?;
    }
    let mut names: Vec<String> = names;
    let mut greetings: Vec<String> = Vec::new();
    while let Some(name) = names.pop() {
        let g = ctx.activity(greet, name).await?;
        greetings.push(g);
    }
    Ok((n, greetings))
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    let run = ui_tests::check::<counting>(vec!["a".into(), "b".into()], script);
    assert_eq!(run.result, Ok(serde_json::json!([3, ["hello b", "hello a"]])));
}
