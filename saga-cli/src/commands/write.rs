//! `start`, `signal`, `cancel`: written as the engine writes them (see
//! `saga_runtime::client`); a worker folds them on its next workflow task.

use serde_json::Value;

use crate::args::Format;
use crate::error::CliError;
use crate::ops::executions::{self as ops, StartRequest};
use crate::output::{self, print};
use crate::store::Opened;

pub(crate) async fn start(
    opened: &Opened,
    req: StartRequest,
    format: Format,
) -> Result<(), CliError> {
    let started = ops::start(&opened.client, req).await?;
    match format {
        Format::Json => print(&output::json(&started)?),
        Format::Table => print(&format!(
            "started {} ({}, fingerprint {})",
            started.saga_id, started.workflow_type, started.fingerprint
        )),
    }
}

pub(crate) async fn signal(
    opened: Opened,
    id: &str,
    name: &str,
    payload: Value,
    format: Format,
) -> Result<(), CliError> {
    let opened = opened.with_signals().await?;
    let sent = ops::signal(&opened.client, id, name, payload).await?;
    match format {
        Format::Json => print(&output::json(&sent)?),
        Format::Table => print(&format!("signal `{name}` recorded on {id}")),
    }
}

pub(crate) async fn cancel(opened: &Opened, id: &str, format: Format) -> Result<(), CliError> {
    let cancelled = ops::cancel(&opened.client, id).await?;
    match format {
        Format::Json => print(&output::json(&cancelled)?),
        Format::Table => print(&format!("cancellation requested for {id}")),
    }
}
