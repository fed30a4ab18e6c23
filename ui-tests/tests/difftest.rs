//! The differential test: 200 generated workflow bodies, each compiled twice — as a
//! plain async fn run against scripted activity results, and through `#[workflow]` —
//! whose command traces and results must be identical, with the machine's state
//! round-tripped through serde (JSON, bincode, postcard in turn) at every checkpoint.
//! See `ui_tests::difftest`. The bodies are generated (and not formatted by rustfmt,
//! which does not reach `include!`d files).
#![allow(unused_mut, unused_variables, unreachable_code, clippy::all)]

include!("generated/difftest_bodies.rs");
