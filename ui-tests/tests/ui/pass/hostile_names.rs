//! Generated code under `#![deny(warnings)]` in a crate that shadows the prelude's
//! names, with user bindings named like the generated ones, and an activity named
//! `start`.
#![deny(warnings)]
#![allow(dead_code)]

use ::saga_runtime::prelude::{
    activity as register, ActivityError, Duration, SagaError, WorkflowContext,
};
use ::saga_runtime::prelude::{activity, workflow};

struct Result;
struct Option;
struct Vec;
struct Box;
struct Some;
struct None;
struct Ok;
struct Err;
struct Transition;
struct Wake;
struct Command;
struct Checkpoint;
struct Cursor;
struct From;
fn drop() {}
fn panic() {}
mod core {}
mod std {}
mod serde {}
mod saga_runtime {}

#[activity]
async fn start(n: u64) -> ::core::result::Result<u64, ActivityError> {
    ::core::result::Result::Ok(n + 1)
}

#[activity(name = "finished")]
async fn r#finished(n: u64) -> ::core::result::Result<u64, ActivityError> {
    ::core::result::Result::Ok(n * 10)
}

#[workflow(name = "hostile")]
async fn r#loop(ctx: &mut WorkflowContext, state: u64) -> ::core::result::Result<u64, SagaError> {
    let wake: u64 = ctx.activity(start, state).await?;
    let commands: u64 = ctx.activity(r#finished, wake).await?;
    let __state: u64 = commands + state;
    ctx.sleep(Duration::from_millis(1)).await;
    let r#type: u64 = ctx.activity(start, __state).await?;
    ::core::result::Result::Ok(r#type + wake)
}

/// A workflow whose context is not called `ctx`, and whose locals are named like
/// the generated code's.
#[workflow]
async fn renamed(context: &mut WorkflowContext, __wake: u64) -> ::core::result::Result<u64, SagaError> {
    let __value: u64 = context.activity(start, __wake).await?;
    let __commands: u64 = context.activity(start, __value).await?;
    ::core::result::Result::Ok(__commands + __value)
}

fn main() {
    let script = ui_tests::Script::new().activities([register::<start>, register::<r#finished>]);
    let run = ui_tests::check::<r#loop>(1, script);
    assert_eq!(run.result, ::core::result::Result::Ok(serde_json::json!(24)));
    let variants: ::std::vec::Vec<&str> = <r#loop as ::saga_runtime::workflow::Workflow>::checkpoints().iter().map(|c| c.variant).collect();
    assert_eq!(variants, ["Start2", "Finished2", "Sleep", "Start3"]);
    let script = ui_tests::Script::new().activities([register::<start> as fn() -> _]);
    let run = ui_tests::check::<renamed>(1, script);
    assert_eq!(run.result, ::core::result::Result::Ok(serde_json::json!(5)));
}
