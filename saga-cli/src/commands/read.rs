//! `list`, `show`, `history`, `diagram`, `definitions`.

use std::time::Duration;

use saga_runtime::client::SagaClient;
use saga_runtime::domain::{EventType, HistoryEvent, SagaId};
use saga_runtime::port::ExecutionFilter;

use crate::args::Format;
use crate::error::CliError;
use crate::ops::executions as ops;
use crate::output::{self, print};

pub(crate) async fn list(
    client: &SagaClient,
    filter: &ExecutionFilter,
    format: Format,
) -> Result<(), CliError> {
    let executions = ops::list(client, filter).await?;
    match format {
        Format::Json => print(&output::json(&executions)?),
        Format::Table => {
            let rows: Vec<Vec<String>> = executions
                .iter()
                .map(|e| {
                    vec![
                        e.saga_id.to_string(),
                        e.workflow_type.clone(),
                        e.status.name().to_owned(),
                        output::time(e.started_at),
                        output::maybe_time(e.closed_at),
                        e.version.to_string(),
                    ]
                })
                .collect();
            print(&output::table(
                &["ID", "TYPE", "STATUS", "STARTED", "CLOSED", "EVENTS"],
                &rows,
            ))
        }
    }
}

pub(crate) async fn show(client: &SagaClient, id: &str, format: Format) -> Result<(), CliError> {
    let d = ops::describe(client, id).await?;
    if format == Format::Json {
        return print(&output::json(&d)?);
    }
    let activities: Vec<String> = d
        .pending_activities
        .iter()
        .map(|(t, attempt)| format!("{t} (attempt {attempt})"))
        .collect();
    let mut rows = vec![
        ("id", d.saga_id.to_string()),
        ("type", d.workflow_type.clone()),
        ("fingerprint", d.fingerprint.clone()),
        ("status", d.status.name().to_owned()),
        ("checkpoint", d.checkpoint.clone()),
        ("started", output::maybe_time(d.started_at)),
        ("closed", output::maybe_time(d.closed_at)),
        ("events", d.history_length.to_string()),
        ("pending activities", output::list(&activities)),
        ("pending timers", output::list(&d.pending_timers)),
        ("waiting for signals", output::list(&d.waiting_for_signals)),
        ("pending children", output::list(&d.pending_children)),
        ("compensations done", output::list(&d.compensations_done)),
        (
            "compensations pending",
            output::list(&d.compensations_pending),
        ),
    ];
    if let Some(f) = &d.failure {
        rows.push(("failure", f.clone()));
    }
    if let Some(o) = &d.output {
        rows.push(("output", o.to_string()));
    }
    if let Some(f) = &d.workflow_task_failure {
        rows.push(("workflow task failure", f.clone()));
    }
    rows.push(("trace id", d.trace_id.clone()));
    let text: String = rows
        .iter()
        .map(|(k, v)| format!("{:<22} {v}\n", format!("{k}:")))
        .collect();
    print(&text)
}

fn timeline_row(e: &HistoryEvent) -> Vec<String> {
    vec![
        e.event_id.to_string(),
        output::time(e.timestamp),
        e.event_type.name().to_owned(),
        output::short_attributes(&e.attributes),
    ]
}

fn print_events(events: &[HistoryEvent], format: Format, header: bool) -> Result<(), CliError> {
    match format {
        Format::Json => {
            let mut text = String::new();
            for e in events {
                text.push_str(&output::json_line(e)?);
                text.push('\n');
            }
            if text.is_empty() {
                return Ok(());
            }
            print(&text)
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = events.iter().map(timeline_row).collect();
            let table = output::table(&["ID", "TIME", "TYPE", "ATTRIBUTES"], &rows);
            // While following, later batches print without the header line.
            let body = if header {
                table.as_str()
            } else {
                table.split_once('\n').map_or("", |(_, rest)| rest)
            };
            if body.is_empty() {
                return Ok(());
            }
            print(body)
        }
    }
}

/// True once `last` ends the history: nothing is appended after a closing event
/// (a failure that compensates is followed by `WorkflowExecutionCompensating` in the
/// same commit, so it is never the last event read).
fn closes(last: &HistoryEvent) -> bool {
    matches!(
        last.event_type,
        EventType::WorkflowExecutionCompleted
            | EventType::WorkflowExecutionCanceled
            | EventType::WorkflowExecutionFailed
            | EventType::WorkflowExecutionTimedOut
    )
}

pub(crate) async fn history(
    client: &SagaClient,
    id: &str,
    follow: bool,
    interval_ms: u64,
    format: Format,
) -> Result<(), CliError> {
    let events = ops::history(client, id).await?;
    print_events(&events, format, true)?;
    if !follow {
        return Ok(());
    }
    let saga_id = SagaId::new(id);
    let interval = Duration::from_millis(interval_ms.max(10));
    let mut last = events.last().cloned();
    while let Some(seen) = last.take().filter(|e| !closes(e)) {
        tokio::time::sleep(interval).await;
        let new = client
            .store()
            .history_from(&saga_id, seen.event_id + 1)
            .await?;
        // Column widths differ per batch; each batch is aligned on its own.
        print_events(&new, format, false)?;
        last = Some(new.last().cloned().unwrap_or(seen));
    }
    Ok(())
}

pub(crate) async fn diagram(
    client: &SagaClient,
    target: &str,
    format: Format,
) -> Result<(), CliError> {
    let d = ops::diagram(client, target).await?;
    match format {
        Format::Table => print(&d.diagram),
        Format::Json => print(&output::json(&d)?),
    }
}

pub(crate) async fn definitions(client: &SagaClient, format: Format) -> Result<(), CliError> {
    let defs = ops::definitions(client).await?;
    match format {
        Format::Json => print(&output::json(&defs)?),
        Format::Table => {
            let rows: Vec<Vec<String>> = defs
                .iter()
                .map(|d| {
                    vec![
                        d.workflow_type.clone(),
                        d.fingerprint.clone(),
                        d.checkpoints.len().to_string(),
                        d.timeout_ms
                            .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms")),
                        output::time(d.registered_at),
                    ]
                })
                .collect();
            print(&output::table(
                &[
                    "TYPE",
                    "FINGERPRINT",
                    "CHECKPOINTS",
                    "TIMEOUT",
                    "REGISTERED",
                ],
                &rows,
            ))
        }
    }
}
