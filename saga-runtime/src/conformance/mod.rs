//! The adapter conformance suite: one async test function per port contract, generic
//! over the adapter. Every adapter (in-memory, SQLite, PostgreSQL, NATS) runs it
//! unchanged; a failed check panics with what was expected.
