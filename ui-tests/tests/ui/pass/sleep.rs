//! Durable sleeps in a loop (the engine runs them on tokio's paused clock).
use saga_runtime::prelude::*;

#[workflow]
async fn ticker(ctx: &mut WorkflowContext, ticks: u32) -> Result<u32, SagaError> {
    let mut done: u32 = 0;
    while done < ticks {
        ctx.sleep(Duration::from_secs(3600)).await;
        done += 1;
    }
    Ok(done)
}

fn main() {
    let run = ui_tests::check::<ticker>(3, ui_tests::Script::new());
    assert_eq!(run.result, Ok(serde_json::json!(3)));
    assert_eq!(run.trace.len(), 3);
}
