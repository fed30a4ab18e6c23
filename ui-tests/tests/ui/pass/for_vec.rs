//! `for` over an annotated `Vec<T>`: stored as a cursor `{ items, next }`.
use saga_runtime::prelude::*;
use ui_tests::acts::greet;

#[workflow]
async fn greet_all(ctx: &mut WorkflowContext, names: Vec<String>) -> Result<Vec<String>, SagaError> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        if name.is_empty() {
            continue;
        }
        let g = ctx.activity(greet, name.clone()).await?;
        out.push(g);
    }
    Ok(out)
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    let run = ui_tests::check::<greet_all>(vec!["ann".into(), String::new(), "bob".into()], script);
    assert_eq!(run.result, Ok(serde_json::json!(["hello ann", "hello bob"])));
}
