//! `#[workflow]` and `#[activity]` (DESIGN.md section 4).
//!
//! The crate reads like a small compiler. `#[workflow]` runs, in order:
//! [`workflow::parse`] (signature and body into an IR of the supported subset, with
//! every checkpoint recognised), [`workflow::determinism`] (banned calls),
//! [`workflow::lower`] (a control-flow graph split at checkpoints),
//! [`workflow::liveness`] (backward fixpoint over the CFG), [`workflow::types`] (the
//! type of every stored local), then [`workflow::codegen`] (state enum, `resume`,
//! checkpoint table), [`workflow::diagram`] (Mermaid) and [`workflow::fingerprint`].
//! Every phase reports into one [`ctxt::Ctxt`], so one compile shows every error, and
//! the expansion always produces the handle type so one mistake does not cascade.
//!
//! `#[activity]` is a small pass of its own ([`activity`]).

mod activity;
mod ctxt;
mod names;
mod workflow;

use proc_macro::TokenStream;

/// Turns `async fn f(ctx: ActivityContext, input: In) -> Result<Out, E>` into an
/// activity: the fn stays callable, and the type handle `struct f {}` implements
/// `saga_runtime::activity::Activity`.
///
/// Arguments (all optional): `compensate = undo_fn`, `retry = <RetryPolicy expr>`,
/// `timeout = "30s"`, `name = "type-id"`.
#[proc_macro_attribute]
pub fn activity(args: TokenStream, input: TokenStream) -> TokenStream {
    activity::expand(args.into(), input.into()).into()
}

/// Lowers `async fn f(ctx: &mut WorkflowContext, input: In) -> Result<Out, E>` into a
/// serializable state machine: the type handle `struct f {}` implementing
/// `saga_runtime::workflow::Workflow`, and `enum FState` with one variant per
/// checkpoint holding exactly the locals live there.
///
/// Arguments (all optional): `name = "type-id"`, `timeout = "1h"`.
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, input: TokenStream) -> TokenStream {
    workflow::expand(args.into(), input.into()).into()
}

/// Applies the workflow determinism checks to a helper fn called from workflows (the
/// `#[workflow]` pass cannot see into helpers). The fn is otherwise unchanged.
#[proc_macro_attribute]
pub fn deterministic(args: TokenStream, input: TokenStream) -> TokenStream {
    workflow::expand_deterministic(args.into(), input.into()).into()
}
