//! `saga`: operate saga executions in any store, without the workflow code.
//!
//! Workers register each workflow's definition in the store; this tool reads it from
//! there and works through [`saga_runtime::client::SagaClient`]. One module per
//! concern: `args` (the command line), `store` (opening a store from its URL), `nats`
//! (connecting to the task queue), `ops` (the operations, shared by the commands and
//! the REST API), `output` (tables and JSON), `commands` (one module per command
//! group), `serve` (the REST API and `/metrics`), `error` (one line on stderr and an
//! exit code, or a JSON body and an HTTP status, per kind of failure).

mod args;
mod commands;
mod error;
mod nats;
mod ops;
mod output;
mod serve;
mod store;

use clap::Parser;

fn main() {
    let args = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => error::exit(error::CliError::other(format!(
            "cannot start the runtime: {e}"
        ))),
    };
    if let Err(e) = runtime.block_on(commands::run(args)) {
        error::exit(e);
    }
}
