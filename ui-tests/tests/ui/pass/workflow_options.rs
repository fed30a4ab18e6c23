//! `#[workflow]` options: a default timeout and a task queue of its own. The check's
//! engines serve the workflow's queue, as its workers would; one that served another
//! queue would never run it.
use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow(task_queue = "orders", timeout = "1h")]
async fn queued(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let d = ctx.activity(double, n).await?;
    Ok(d + 1)
}

fn main() {
    let options = <queued as Workflow>::options();
    assert_eq!(options.task_queue.as_deref(), Some("orders"));
    assert_eq!(options.timeout, Some(Duration::from_secs(3600)));
    let script = ui_tests::Script::new().activities(ui_tests::acts::all());
    let run = ui_tests::check::<queued>(20, script);
    assert_eq!(run.result, Ok(serde_json::json!(41)));
}
