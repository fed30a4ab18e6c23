//! `saga`: operate saga executions in any store, without the workflow code.
//!
//! Workers register each workflow's definition in the store; this tool reads it from
//! there and works through [`saga_runtime::client::SagaClient`]. One module per
//! concern: `args` (the command line), `store` (opening a store from its URL),
//! `output` (tables and JSON), `commands` (one module per command group), `error`
//! (one line on stderr, an exit code per kind of failure).

mod args;
mod commands;
mod error;
mod output;
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
