//! Signals: one that arrives, one whose `.timeout(d)` expires (handled, not `?`).
use saga_runtime::prelude::*;

#[workflow]
async fn waiting(ctx: &mut WorkflowContext, _input: ()) -> Result<String, SagaError> {
    let first: String = ctx.signal("first").await?;
    let second = ctx.signal::<String>("second").timeout(Duration::from_secs(60)).await;
    let second = match second {
        Ok(s) => s,
        Err(SignalError::TimedOut { name }) => format!("{name} timed out"),
        Err(e) => return Err(e.into()),
    };
    Ok(format!("{first}, {second}"))
}

fn main() {
    let script = ui_tests::Script::new().signal("first", "one");
    let run = ui_tests::check::<waiting>((), script.clone().signal("second", "two"));
    assert_eq!(run.result, Ok(serde_json::json!("one, two")));
    let run = ui_tests::check::<waiting>((), script.signal_times_out("second"));
    assert_eq!(run.result, Ok(serde_json::json!("one, second timed out")));
}
