//! Nested loops with checkpoints at both levels and a labelled `continue` to the outer.
use saga_runtime::prelude::*;
use ui_tests::acts::{add_one, double};

#[workflow]
async fn grid(ctx: &mut WorkflowContext, size: u64) -> Result<u64, SagaError> {
    let mut total: u64 = 0;
    'rows: for row in 0..size {
        let base = ctx.activity(double, row).await?;
        let mut col: u64 = 0;
        while col < size {
            col += 1;
            if base > 2 && col > 1 {
                continue 'rows;
            }
            total += ctx.activity(add_one, base + col).await?;
        }
    }
    Ok(total)
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    // rows 0 and 1 (base 0, 2): cols 1..=3 → (1+1)+(2+1)+(3+1) + (3+1)+(4+1)+(5+1) = 24;
    // row 2 (base 4): col 1 only → 6.
    assert_eq!(ui_tests::check::<grid>(3, script).result, Ok(serde_json::json!(30)));
}
