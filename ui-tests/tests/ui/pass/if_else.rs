//! Checkpoints in `if` / `else if` / `else` branches, with locals live across them.
use saga_runtime::prelude::*;
use ui_tests::acts::{add_one, double, greet};

#[workflow]
async fn branches(ctx: &mut WorkflowContext, n: u64) -> Result<String, SagaError> {
    let label: String = format!("n={n}");
    let out: u64 = if n < 10 {
        let d = ctx.activity(double, n).await?;
        d + 1
    } else if n < 100 {
        ctx.activity(add_one, n).await?
    } else {
        n
    };
    let mut bonus: u64 = 0;
    if out % 2 == 1 {
        bonus = ctx.activity(double, 1).await?;
    } else {
        ctx.sleep(Duration::from_secs(1)).await;
    }
    let greeting = ctx.activity(greet, label).await?;
    Ok(format!("{greeting}: {}", out + bonus))
}

fn main() {
    for (n, want) in [(3u64, "hello n=3: 9"), (50, "hello n=50: 53"), (500, "hello n=500: 500")] {
        let run = ui_tests::check::<branches>(n, ui_tests::Script::new().activities(ui_tests::acts::all()));
        assert_eq!(run.result, Ok(serde_json::json!(want)));
    }
}
