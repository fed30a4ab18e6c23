//! The ways a Rust developer writes `ctx.join_all`: over `.iter()`, `.into_iter()`, a
//! range or an adapted iterator (`enumerate`, `filter`); a closure with a pattern, a
//! block body or an `async` block; collected first, or bound to a local in the
//! statement right before the join.
use saga_runtime::prelude::*;
use ui_tests::acts::{double, greet};

#[workflow]
async fn forms(ctx: &mut WorkflowContext, items: Vec<u64>) -> Result<String, SagaError> {
    // `.iter()`, a block body with a plain statement before the checkpoint.
    let doubled = ctx
        .join_all(items.iter().map(|n| {
            let bumped = n + 1;
            ctx.activity(double, bumped)
        }))
        .await;
    let mut total: u64 = 0;
    for d in doubled {
        total += d?;
    }
    // A range, collected first.
    let ranged = ctx
        .join_all((1..=2u64).map(|i| ctx.activity(double, i * total)).collect::<Vec<_>>())
        .await;
    // `.into_iter().enumerate()` with a tuple pattern; an `async move` block.
    let names: Vec<String> = vec!["ann".to_owned(), "bo".to_owned()];
    let greetings = ctx
        .join_all(
            names
                .into_iter()
                .enumerate()
                .map(|(i, name)| async move { ctx.activity(greet, format!("{name}#{i}")).await }),
        )
        .await;
    // Bound to a local right before the join; filtered first; a `&x` pattern.
    let calls: Vec<_> = items
        .iter()
        .filter(|n| **n % 2 == 1)
        .map(|&n| ctx.activity(double, n))
        .collect();
    let odd = ctx.join_all(calls).await;
    let ranged: Vec<u64> = ranged.into_iter().map(|r| r.unwrap_or(0)).collect();
    let greetings: Vec<String> = greetings.into_iter().map(|g| g.unwrap_or_default()).collect();
    let odd: u64 = odd.into_iter().map(|r| r.unwrap_or(0)).sum();
    Ok(format!("{total} {ranged:?} {} {odd}", greetings.join(", ")))
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    // items 1, 2, 3: (2+3+4)*2 = 18; ranged [36, 72]; odd items 1, 3 doubled: 2 + 6.
    let run = ui_tests::check::<forms>(vec![1, 2, 3], script.clone());
    assert_eq!(run.result, Ok(serde_json::json!("18 [36, 72] hello ann#0, hello bo#1 8")));
    // One command per item: 3 + 2 + 2 + 2.
    assert_eq!(run.trace.len(), 3 + 2 + 2 + 2);
    let empty = ui_tests::check::<forms>(vec![], script);
    assert_eq!(empty.result, Ok(serde_json::json!("0 [0, 0] hello ann#0, hello bo#1 0")));
    assert!(forms::checkpoints().iter().all(|c| c.kind == CheckpointKind::JoinAll));
}
