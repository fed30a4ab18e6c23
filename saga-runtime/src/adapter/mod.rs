//! Adapters that ship with the runtime. Database and broker adapters live in the
//! `saga-adapters` crate.

pub mod memory;
