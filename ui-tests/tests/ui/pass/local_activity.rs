//! A local activity (runs inside the workflow task) next to a regular one.
use saga_runtime::prelude::*;
use ui_tests::acts::{double, greet};

#[workflow]
async fn local(ctx: &mut WorkflowContext, name: String) -> Result<String, SagaError> {
    let g = ctx.local_activity(greet, name).await?;
    let n = ctx.activity(double, g.len() as u64).await?;
    Ok(format!("{g} ({n})"))
}

fn main() {
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    let run = ui_tests::check::<local>("amy".into(), script);
    assert_eq!(run.result, Ok(serde_json::json!("hello amy (18)")));
    assert!(matches!(run.trace[0], Command::ScheduleLocalActivity { .. }));
    assert_eq!(local::checkpoints()[0].kind, CheckpointKind::LocalActivity);
}
