//! `ctx.join_all` over child workflows and over local activities.
use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn square(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let d = ctx.activity(double, n).await?;
    Ok(d * n / 2)
}

#[workflow]
async fn fan(ctx: &mut WorkflowContext, n: u64) -> Result<Vec<u64>, SagaError> {
    let squares = ctx.join_all((1..=n).map(|i| ctx.child(square, i))).await;
    let mut out: Vec<u64> = Vec::new();
    for s in squares {
        out.push(s?);
    }
    let locals = ctx.join_all(out.iter().map(|s| ctx.local_activity(double, *s))).await;
    for (slot, d) in out.iter_mut().zip(locals) {
        *slot = d?;
    }
    Ok(out)
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all()).child::<square>();
    assert_eq!(ui_tests::check::<square>(5, script.clone()).result, Ok(serde_json::json!(25)));
    let run = ui_tests::check::<fan>(3, script);
    assert_eq!(run.result, Ok(serde_json::json!([2, 8, 18])));
    assert!(matches!(run.trace[0], Command::StartChild { .. }));
    assert!(matches!(run.trace[3], Command::ScheduleLocalActivity { .. }));
}
