//! `loop` with a checkpoint, `break`, a labelled `continue`, and a counter live
//! across the back-edge.
use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn doubling(ctx: &mut WorkflowContext, limit: u64) -> Result<(u64, u32), SagaError> {
    let mut value: u64 = 1;
    let mut rounds: u32 = 0;
    'outer: loop {
        rounds += 1;
        if rounds > 50 {
            break;
        }
        value = ctx.activity(double, value).await?;
        if value % 3 == 0 {
            continue 'outer;
        }
        if value >= limit {
            break 'outer;
        }
    }
    Ok((value, rounds))
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    let run = ui_tests::check::<doubling>(100, script);
    assert_eq!(run.result, Ok(serde_json::json!([128, 7])));
}
