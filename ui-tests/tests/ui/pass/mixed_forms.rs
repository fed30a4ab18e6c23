//! The remaining statement forms around checkpoints: a labelled block left with
//! `break`, `let .. else` and a typed tuple pattern on a checkpoint, assignment to an
//! existing binding, `else if let`, a join mixing a child workflow, a local activity
//! and a signal with a timeout, and a checkpoint just before an early `return`.
use saga_runtime::prelude::*;
use ui_tests::acts::{add_one, double, greet};

#[workflow]
async fn halve(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let d = ctx.activity(double, n).await?;
    Ok(d / 4)
}

#[workflow]
async fn mixed(ctx: &mut WorkflowContext, input: (u64, Option<String>)) -> Result<String, SagaError> {
    let (n, name): (u64, Option<String>) = input;
    let mut count: u64 = n;
    'scan: {
        if count > 100 {
            break 'scan;
        }
        count = ctx.activity(add_one, count).await?;
        if count % 2 == 0 {
            break 'scan;
        }
        count = ctx.activity(double, count).await?;
    }
    let Some(who) = ctx.signal::<Option<String>>("who").await? else {
        return Err(SagaError::rejected("nobody"));
    };
    let label: String = if let Some(name) = name {
        name
    } else if let Some(first) = who.chars().next() {
        first.to_string()
    } else {
        String::from("?")
    };
    let (halved, local, reply) = ctx
        .join((
            ctx.child(halve, count),
            ctx.local_activity(greet, label.clone()),
            ctx.signal::<String>("reply").timeout(Duration::from_secs(30)),
        ))
        .await;
    let summary = format!(
        "{label}: {} {} {}",
        halved?,
        local?,
        reply.unwrap_or_else(|e| e.to_string())
    );
    if summary.len() > 1000 {
        let shortened = ctx.activity(greet, summary).await?;
        return Ok(shortened);
    }
    Ok(summary)
}

fn main() {
    let script = ui_tests::Script::new()
        .activities(ui_tests::acts::all())
        .child::<halve>()
        .signal("who", Some("zed"));
    assert_eq!(ui_tests::check::<halve>(8, script.clone()).result, Ok(serde_json::json!(4)));
    let run = ui_tests::check::<mixed>((3, None), script.clone().signal("reply", "hi"));
    // 3 → add_one 4 (even: leave the block) → halve(4) = 2
    assert_eq!(run.result, Ok(serde_json::json!("z: 2 hello z hi")));
    let run = ui_tests::check::<mixed>((4, Some("amy".into())), script.clone().signal_times_out("reply"));
    // 4 → 5 (odd) → double 10 → halve(10) = 5
    assert_eq!(run.result, Ok(serde_json::json!("amy: 5 hello amy signal `reply` timed out")));
    let none: Option<String> = None;
    let run = ui_tests::check::<mixed>((200, None), ui_tests::Script::new().activities(ui_tests::acts::all()).signal("who", none));
    assert_eq!(run.result, Err("rejected: nobody".to_owned()));
}
