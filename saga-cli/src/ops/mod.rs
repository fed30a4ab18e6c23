//! The operations, as data in and data out: the CLI commands print what they return,
//! the REST API (`saga serve`) serializes it. Neither has logic of its own beyond
//! reading its input and presenting the result, so the two cannot drift apart.

pub(crate) mod dead_letters;
pub(crate) mod executions;
