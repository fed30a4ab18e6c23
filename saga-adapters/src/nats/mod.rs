//! NATS adapters (feature `nats`): [`NatsTaskQueue`], the task queue on JetStream, for
//! many workers on many machines, and [`NatsSignalDispatcher`], wake-ups on core NATS
//! subjects, so an engine waits for signals and timers without polling its database.
//!
//! The store stays the only source of truth (DESIGN.md section 6): a task lost by the
//! broker costs latency (the outbox reconciler publishes it again), a duplicated one
//! nothing (the broker drops a re-published `Nats-Msg-Id`, and a worker drops a task
//! whose result is already in history).

mod config;
mod dead_letter;
mod envelope;
mod pull;
mod signals;
mod subject;
mod tag;
mod task_queue;

pub use config::{NatsConfig, TaskRetention};
pub use signals::NatsSignalDispatcher;
pub use task_queue::NatsTaskQueue;
