//! `start`, `signal`, `cancel`: written as the engine writes them (see
//! `saga_runtime::client`); a worker folds them on its next workflow task.

use std::time::Duration;

use saga_runtime::engine::StartOptions;
use serde_json::{json, Value};

use crate::args::Format;
use crate::error::CliError;
use crate::output::{self, print};
use crate::store::Opened;

pub(crate) async fn start(
    opened: &Opened,
    workflow_type: &str,
    input: Value,
    id: Option<String>,
    timeout_secs: Option<u64>,
    format: Format,
) -> Result<(), CliError> {
    let id = id.unwrap_or_else(|| {
        let now = chrono::Utc::now();
        format!("{workflow_type}-{}", now.format("%Y%m%d-%H%M%S%.3f"))
    });
    let options = StartOptions {
        timeout: timeout_secs.map(Duration::from_secs),
        trace_id: None,
        task_queue: None,
    };
    let started = opened
        .client
        .start(workflow_type, id.as_str(), input, options)
        .await?;
    let fingerprint = started.attr_str("fingerprint").unwrap_or_default();
    match format {
        Format::Json => print(&output::json(&json!({
            "saga_id": started.saga_id,
            "workflow_type": workflow_type,
            "fingerprint": fingerprint,
            "trace_id": started.trace_id,
            "started_at": output::time(started.timestamp),
        }))?),
        Format::Table => print(&format!(
            "started {} ({workflow_type}, fingerprint {fingerprint})",
            started.saga_id
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
    let client = match &opened.postgres {
        // Wakes whoever waits on the execution in another process, as the engine does.
        Some(pg) => opened.client.clone().signals(pg.signal_dispatcher().await?),
        None => opened.client.clone(),
    };
    client.signal(id, name, payload).await?;
    match format {
        Format::Json => print(&output::json(&json!({"saga_id": id, "signal": name}))?),
        Format::Table => print(&format!("signal `{name}` recorded on {id}")),
    }
}

pub(crate) async fn cancel(opened: &Opened, id: &str, format: Format) -> Result<(), CliError> {
    opened.client.cancel(id).await?;
    match format {
        Format::Json => print(&output::json(
            &json!({"saga_id": id, "cancel_requested": true}),
        )?),
        Format::Table => print(&format!("cancellation requested for {id}")),
    }
}
