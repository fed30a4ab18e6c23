//! `list`, `show`, `history`, `diagram`, `definitions`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use saga_runtime::client::SagaClient;
use saga_runtime::domain::{EventType, HistoryEvent, SagaId, WorkflowStatus};
use saga_runtime::port::ExecutionFilter;
use serde_json::{json, Value};

use crate::args::{Format, ListArgs};
use crate::error::CliError;
use crate::output::{self, print};

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
    match age {
        Some(age) => Ok(now - age),
        None => Err(CliError::bad_input(format!(
            "{option} `{text}` is not a time: use RFC 3339 (2026-01-15T10:30:00Z), a date \
             (2026-01-15) or an age (90s, 15m, 2h, 7d)"
        ))),
    }
}

pub(crate) async fn list(
    client: &SagaClient,
    filter: &ExecutionFilter,
    format: Format,
) -> Result<(), CliError> {
    let executions = client.list(filter).await?;
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
    let d = client.describe(id).await?;
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
    let events = client.history(id).await?;
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
    // An execution id first, else a workflow type.
    let (diagram, of) = match client.execution_diagram(target).await {
        Ok(d) => (d, json!({"saga_id": target})),
        Err(e) if e.is_not_found() => match client.workflow_diagram(target).await {
            Ok(d) => (d, json!({"workflow_type": target})),
            Err(e) if e.context("code") == Some("unknown_workflow") => {
                return Err(CliError::not_found(format!(
                    "no execution or registered workflow type named `{target}`"
                )))
            }
            Err(e) => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    };
    match format {
        Format::Table => print(&diagram),
        Format::Json => {
            let mut v = of;
            v["diagram"] = Value::String(diagram);
            print(&output::json(&v)?)
        }
    }
}

pub(crate) async fn definitions(client: &SagaClient, format: Format) -> Result<(), CliError> {
    let defs = client.definitions().await?;
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
    }
}
