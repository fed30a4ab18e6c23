//! Executions and workflow definitions: list, describe, history, diagrams, start,
//! signal, cancel.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use saga_runtime::client::SagaClient;
use saga_runtime::domain::{HistoryEvent, SagaId, WorkflowStatus};
use saga_runtime::engine::{ExecutionDescription, StartOptions};
use saga_runtime::port::{ExecutionFilter, ExecutionSummary, WorkflowDefinition};
use serde::Serialize;
use serde_json::{json, Value};

use crate::args::ListArgs;
use crate::error::CliError;
use crate::output;

/// The filter of `list`, or why the arguments do not make one.
pub(crate) fn filter(args: &ListArgs) -> Result<ExecutionFilter, CliError> {
    let status = args
        .status
        .as_deref()
        .map(|s| {
            WorkflowStatus::ALL
                .into_iter()
                .find(|st| st.name().eq_ignore_ascii_case(s))
                .ok_or_else(|| {
                    let names: Vec<&str> = WorkflowStatus::ALL.iter().map(|s| s.name()).collect();
                    CliError::bad_input(format!(
                        "unknown status `{s}`: use one of {}",
                        names.join(", ")
                    ))
                })
        })
        .transpose()?;
    let mut search_attributes = BTreeMap::new();
    for pair in &args.attrs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| CliError::bad_input(format!("--attr `{pair}` is not KEY=VALUE")))?;
        // `--attr region=eu` and `--attr priority=3` both read as meant.
        let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        search_attributes.insert(key.to_owned(), value);
    }
    let now = Utc::now();
    Ok(ExecutionFilter {
        workflow_type: args.workflow_type.clone(),
        status,
        started_after: args
            .since
            .as_deref()
            .map(|t| parse_time("--since", t, now))
            .transpose()?,
        started_before: args
            .until
            .as_deref()
            .map(|t| parse_time("--until", t, now))
            .transpose()?,
        updated_before: None,
        search_attributes,
        limit: args.limit,
    })
}

/// RFC 3339, a date (midnight UTC), or an age before `now` (`90s`, `15m`, `2h`, `7d`).
fn parse_time(option: &str, text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, CliError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let age = text.char_indices().last().and_then(|(i, unit)| {
        let n: i64 = text[..i].parse().ok()?;
        match unit {
            's' => TimeDelta::try_seconds(n),
            'm' => TimeDelta::try_minutes(n),
            'h' => TimeDelta::try_hours(n),
            'd' => TimeDelta::try_days(n),
            _ => None,
        }
    });
    // An age too large for a date (`99999999999d`) is bad input, not a panic.
    match age.and_then(|age| now.checked_sub_signed(age)) {
        Some(t) => Ok(t),
        None => Err(CliError::bad_input(format!(
            "{option} `{text}` is not a time: use RFC 3339 (2026-01-15T10:30:00Z), a date \
             (2026-01-15) or an age (90s, 15m, 2h, 7d)"
        ))),
    }
}

/// Parses a JSON argument; malformed JSON is bad input naming where it came from.
pub(crate) fn parse_json(option: &str, text: &str) -> Result<Value, CliError> {
    serde_json::from_str(text)
        .map_err(|e| CliError::bad_input(format!("{option} is not valid JSON: {e}")))
}

/// Executions matching `filter`, oldest start first.
pub(crate) async fn list(
    client: &SagaClient,
    filter: &ExecutionFilter,
) -> Result<Vec<ExecutionSummary>, CliError> {
    Ok(client.list(filter).await?)
}

/// What the execution is doing now.
pub(crate) async fn describe(
    client: &SagaClient,
    id: &str,
) -> Result<ExecutionDescription, CliError> {
    Ok(client.describe(id).await?)
}

/// The execution's full history.
pub(crate) async fn history(client: &SagaClient, id: &str) -> Result<Vec<HistoryEvent>, CliError> {
    Ok(client.history(id).await?)
}

/// Every registered workflow definition.
pub(crate) async fn definitions(client: &SagaClient) -> Result<Vec<WorkflowDefinition>, CliError> {
    Ok(client.definitions().await?)
}

/// A Mermaid diagram and what it shows.
#[derive(Debug, Serialize)]
pub(crate) struct Diagram {
    /// The execution drawn (its current checkpoint highlighted), if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) saga_id: Option<String>,
    /// The workflow type drawn, if a type is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) workflow_type: Option<String>,
    /// Mermaid `stateDiagram-v2`.
    pub(crate) diagram: String,
}

/// The diagram of execution `id`, where it is now highlighted.
pub(crate) async fn execution_diagram(client: &SagaClient, id: &str) -> Result<Diagram, CliError> {
    Ok(Diagram {
        diagram: client.execution_diagram(id).await?,
        saga_id: Some(id.to_owned()),
        workflow_type: None,
    })
}

/// The diagram of `workflow_type`'s newest definition.
pub(crate) async fn workflow_diagram(
    client: &SagaClient,
    workflow_type: &str,
) -> Result<Diagram, CliError> {
    Ok(Diagram {
        diagram: client.workflow_diagram(workflow_type).await?,
        saga_id: None,
        workflow_type: Some(workflow_type.to_owned()),
    })
}

/// The diagram of `target`: an execution id first, else a workflow type.
pub(crate) async fn diagram(client: &SagaClient, target: &str) -> Result<Diagram, CliError> {
    match execution_diagram(client, target).await {
        Err(e) if e.code == crate::error::Code::NotFound => {
            match workflow_diagram(client, target).await {
                Err(e) if e.code == crate::error::Code::UnknownWorkflow => {
                    Err(CliError::not_found(format!(
                        "no execution or registered workflow type named `{target}`"
                    )))
                }
                other => other,
            }
        }
        other => other,
    }
}

/// What `start` is asked to do.
#[derive(Debug)]
pub(crate) struct StartRequest {
    pub(crate) workflow_type: String,
    pub(crate) input: Value,
    /// Default: `<type>-<time>`.
    pub(crate) id: Option<String>,
    /// Default: the workflow's own timeout, if any.
    pub(crate) timeout_secs: Option<u64>,
    /// Default: the workflow type's queue, as registered; else the client's (`default`).
    pub(crate) task_queue: Option<String>,
}

/// A started execution.
#[derive(Debug, Serialize)]
pub(crate) struct Started {
    pub(crate) saga_id: SagaId,
    pub(crate) workflow_type: String,
    pub(crate) fingerprint: String,
    pub(crate) trace_id: String,
    /// The queue its tasks go to.
    pub(crate) task_queue: String,
    pub(crate) started_at: String,
}

/// The longest timeout a start accepts: ten years (beyond, deadlines overflow dates).
pub(crate) const MAX_TIMEOUT_SECS: u64 = 10 * 365 * 24 * 3600;

/// The longest task queue name a start accepts.
pub(crate) const MAX_QUEUE_LEN: usize = 128;

/// A task queue name every adapter accepts: it becomes a NATS subject token and part
/// of a consumer name, so only `[A-Za-z0-9_-]`, 1 to [`MAX_QUEUE_LEN`] of them (the
/// OpenAPI document's `task_queue` pattern says the same).
fn check_task_queue(queue: &str) -> Result<(), CliError> {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if (1..=MAX_QUEUE_LEN).contains(&queue.len()) && queue.bytes().all(safe) {
        return Ok(());
    }
    let what = if queue.is_empty() {
        "a task queue name cannot be empty".to_owned()
    } else {
        format!("invalid task queue name {queue:?}")
    };
    Err(CliError::bad_input(format!(
        "{what}: use 1 to {MAX_QUEUE_LEN} letters, digits, `_` or `-`"
    )))
}

/// Starts an execution of a registered workflow type.
pub(crate) async fn start(client: &SagaClient, req: StartRequest) -> Result<Started, CliError> {
    if let Some(t) = req.timeout_secs {
        if !(1..=MAX_TIMEOUT_SECS).contains(&t) {
            return Err(CliError::bad_input(format!(
                "timeout {t}s is out of range: use 1 to {MAX_TIMEOUT_SECS} seconds"
            )));
        }
    }
    if let Some(q) = &req.task_queue {
        check_task_queue(q)?;
    }
    let workflow_type = req.workflow_type;
    let id = req.id.unwrap_or_else(|| {
        let now = Utc::now();
        format!("{workflow_type}-{}", now.format("%Y%m%d-%H%M%S%.3f"))
    });
    let options = StartOptions {
        timeout: req.timeout_secs.map(Duration::from_secs),
        task_queue: req.task_queue,
        ..StartOptions::default()
    };
    let started = client
        .start(&workflow_type, id.as_str(), req.input, options)
        .await?;
    Ok(Started {
        fingerprint: started
            .attr_str("fingerprint")
            .unwrap_or_default()
            .to_owned(),
        task_queue: started
            .attr_str("task_queue")
            .unwrap_or_default()
            .to_owned(),
        saga_id: started.saga_id,
        workflow_type,
        trace_id: started.trace_id,
        started_at: output::time(started.timestamp),
    })
}

/// A recorded signal.
#[derive(Debug, Serialize)]
pub(crate) struct Signalled {
    pub(crate) saga_id: String,
    pub(crate) signal: String,
}

/// Delivers signal `name` with `payload`. `client` notifies waiters in other processes
/// when it has the store's dispatcher (see [`crate::store::Opened::with_signals`]).
pub(crate) async fn signal(
    client: &SagaClient,
    id: &str,
    name: &str,
    payload: Value,
) -> Result<Signalled, CliError> {
    if name.is_empty() {
        return Err(CliError::bad_input("a signal name cannot be empty"));
    }
    client.signal(id, name, payload).await?;
    Ok(Signalled {
        saga_id: id.to_owned(),
        signal: name.to_owned(),
    })
}

/// A recorded cancellation request.
#[derive(Debug, Serialize)]
pub(crate) struct CancelRequested {
    pub(crate) saga_id: String,
    pub(crate) cancel_requested: bool,
}

/// Requests cancellation: completed steps are compensated, last first.
pub(crate) async fn cancel(client: &SagaClient, id: &str) -> Result<CancelRequested, CliError> {
    client.cancel(id).await?;
    Ok(CancelRequested {
        saga_id: id.to_owned(),
        cancel_requested: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_form() {
        let now = DateTime::parse_from_rfc3339("2026-01-15T10:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| parse_time("--since", s, now).map(output::time);
        assert_eq!(
            at("2026-01-14T08:00:00+01:00").unwrap(),
            "2026-01-14T07:00:00.000Z"
        );
        assert_eq!(at("2026-01-14").unwrap(), "2026-01-14T00:00:00.000Z");
        assert_eq!(at("90s").unwrap(), "2026-01-15T10:28:30.000Z");
        assert_eq!(at("2h").unwrap(), "2026-01-15T08:30:00.000Z");
        assert_eq!(at("7d").unwrap(), "2026-01-08T10:30:00.000Z");
        assert!(at("yesterday").is_err());
        assert!(at("5w").is_err());
        assert!(at("").is_err());
        assert!(at("9999999999999d").is_err());
    }
}
