//! Durable adapters behind cargo features (`sqlite`, `postgres`, `nats`). Each passes
//! `saga_runtime::conformance` unchanged. The adapters land with the storage and
//! distribution issues; the features are declared now so dependents can name them.
#![forbid(unsafe_code)]

pub use saga_runtime;
