//! Workflows shared by the example binaries and their tests.

pub mod shop;
