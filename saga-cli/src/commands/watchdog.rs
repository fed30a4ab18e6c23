//! `watchdog`: runs the watchdog's store-based detectors once (stall, deadlock,
//! capacity from the outbox) and prints what they find, with the action each one
//! suggests. Nothing is changed: acting is the engine's job (its watchdog, or an
//! operator's `saga cancel`). The health detector needs the engine's ports and runs
//! there.

use std::time::Duration;

use chrono::Utc;
use clap::Args;
use saga_runtime::client::SagaClient;
use saga_runtime::watchdog::capacity::{self, Backlog};
use saga_runtime::watchdog::{deadlock, stall, Finding, OpenExecutions};

use crate::args::Format;
use crate::error::CliError;
use crate::output::{self, print};

#[derive(Debug, Args)]
pub(crate) struct WatchdogArgs {
    /// An open execution with no new event for this long is stalled: `90s`, `5m`,
    /// `2h`, `1d`.
    #[arg(long, default_value = "5m", value_name = "AGE")]
    pub(crate) stall_after: String,
    /// Report a backlog when more outbox tasks than this are unsettled.
    #[arg(long, default_value_t = 10_000, value_name = "TASKS")]
    pub(crate) backlog_threshold: u64,
}

/// `90s`, `15m`, `2h`, `7d` as a duration; anything else is bad input.
pub(crate) fn parse_age(text: &str) -> Result<Duration, CliError> {
    let bad = || {
        CliError::bad_input(format!(
            "--stall-after `{text}` is not an age: use a number and s, m, h or d (`5m`)"
        ))
    };
    let (i, unit) = text.char_indices().last().ok_or_else(bad)?;
    let n: u64 = text[..i].parse().map_err(|_| bad())?;
    let secs = match unit {
        's' => Some(n),
        'm' => n.checked_mul(60),
        'h' => n.checked_mul(3600),
        'd' => n.checked_mul(86_400),
        _ => None,
    };
    secs.map(Duration::from_secs).ok_or_else(bad)
}

/// Runs the detectors and prints the findings.
pub(crate) async fn run(
    client: &SagaClient,
    stall_after: Duration,
    backlog_threshold: u64,
    format: Format,
) -> Result<(), CliError> {
    let store = client.store();
    let now = Utc::now();
    // A threshold beyond the calendar leaves nothing idle enough: the earliest time.
    let idle_since = chrono::TimeDelta::from_std(stall_after)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let mut open = OpenExecutions::new();
    open.refresh_idle(store, idle_since).await?;
    let mut findings = stall::detect(&open, now, stall_after);
    findings.extend(deadlock::detect(&open, now));
    let backlog = Backlog::measure(store, None).await?;
    findings.extend(capacity::detect(backlog, backlog_threshold, now));
    match format {
        Format::Json => print(&output::json(&findings)?),
        Format::Table if findings.is_empty() => print(&format!(
            "no findings ({} open executions idle for {}s or more)",
            open.len(),
            stall_after.as_secs()
        )),
        Format::Table => print(&table(&findings)),
    }
}

fn table(findings: &[Finding]) -> String {
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            vec![
                f.detector.to_string(),
                f.severity.to_string(),
                f.saga_id.as_ref().map_or("-", |s| s.as_str()).to_owned(),
                f.action.to_string(),
                f.message.clone(),
            ]
        })
        .collect();
    output::table(
        &["DETECTOR", "SEVERITY", "ID", "SUGGESTED ACTION", "FINDING"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ages() {
        assert_eq!(parse_age("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_age("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_age("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_age("1d").unwrap(), Duration::from_secs(86_400));
        for bad in ["", "m", "5", "5x", "-5m", "1.5h"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
