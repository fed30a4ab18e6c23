//! `#[workflow]` and `#[activity]` (DESIGN.md section 4).
//!
//! The lowering pass lands with its own issue; until then workflows implement
//! `saga_runtime::Workflow` by hand with the state-enum shape the macro will generate.
