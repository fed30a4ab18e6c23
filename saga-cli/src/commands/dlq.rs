//! `dlq list`, `dlq redrive`: the NATS task queue's dead letters.

use saga_adapters::NatsTaskQueue;

use crate::args::Format;
use crate::error::CliError;
use crate::ops::dead_letters::{self as ops, DeadLetterView};
use crate::output::{self, print};

fn print_letters(letters: &[DeadLetterView], format: Format) -> Result<(), CliError> {
    match format {
        Format::Json => print(&output::json(letters)?),
        Format::Table => {
            let rows: Vec<Vec<String>> = letters
                .iter()
                .map(|d| {
                    vec![
                        d.dedup_id.clone(),
                        d.saga_id.clone(),
                        d.kind.to_owned(),
                        d.delivery_count.to_string(),
                        d.reason.clone(),
                    ]
                })
                .collect();
            print(&output::table(
                &["DEDUP ID", "SAGA", "KIND", "DELIVERIES", "REASON"],
                &rows,
            ))
        }
    }
}

pub(crate) async fn list(
    nats: &NatsTaskQueue,
    queue: &str,
    format: Format,
) -> Result<(), CliError> {
    print_letters(&ops::list(nats, queue).await?, format)
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
