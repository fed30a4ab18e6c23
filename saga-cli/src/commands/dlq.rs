//! `dlq list`, `dlq redrive`: the NATS task queue's dead letters.

use saga_adapters::NatsTaskQueue;
use saga_runtime::client::SagaClient;

use crate::args::Format;
use crate::error::CliError;
use crate::ops::dead_letters::{self as ops, DeadLetterView};
use crate::output::{self, print};

/// `with_store`: the letters were annotated from the store; the table then shows the
/// saga's status and the task's state too.
fn print_letters(
    letters: &[DeadLetterView],
    with_store: bool,
    format: Format,
) -> Result<(), CliError> {
    match format {
        Format::Json => print(&output::json(letters)?),
        Format::Table => {
            let rows: Vec<Vec<String>> = letters
                .iter()
                .map(|d| {
                    let mut row = vec![
                        d.dedup_id.clone(),
                        d.saga_id.clone(),
                        d.kind.to_owned(),
                        d.delivery_count.to_string(),
                    ];
                    if with_store {
                        row.push(d.saga_status.clone().unwrap_or_else(|| "-".to_owned()));
                        row.push(d.task.map_or("-", |t| t.name()).to_owned());
                    }
                    row.push(d.reason.clone());
                    row
                })
                .collect();
            let headers: &[&str] = if with_store {
                &[
                    "DEDUP ID",
                    "SAGA",
                    "KIND",
                    "DELIVERIES",
                    "SAGA STATUS",
                    "TASK",
                    "REASON",
                ]
            } else {
                &["DEDUP ID", "SAGA", "KIND", "DELIVERIES", "REASON"]
            };
            print(&output::table(headers, &rows))
        }
    }
}

/// `store`: the client of `--store`, if given, to say what became of each letter's task.
pub(crate) async fn list(
    nats: &NatsTaskQueue,
    store: Option<&SagaClient>,
    queue: &str,
    format: Format,
) -> Result<(), CliError> {
    let mut letters = ops::list(nats, queue).await?;
    if let Some(client) = store {
        ops::annotate(client, &mut letters).await?;
    }
    print_letters(&letters, store.is_some(), format)
}

pub(crate) async fn redrive(
    nats: &NatsTaskQueue,
    queue: &str,
    id: Option<&str>,
    format: Format,
) -> Result<(), CliError> {
    let redriven = ops::redrive(nats, queue, id).await?;
    match format {
        Format::Json => print(&output::json(&redriven)?),
        Format::Table => {
            let mut text = format!(
                "re-drove {} dead letter(s) to queue `{queue}`\n",
                redriven.len()
            );
            for d in &redriven {
                text.push_str(&format!("  {} ({})\n", d.dedup_id, d.saga_id));
            }
            print(&text)
        }
    }
}
