//! The commands: reading (`list`, `show`, `history`, `diagram`, `definitions`),
//! writing (`start`, `signal`, `cancel`), the dead-letter queue (`dlq`), `serve`, and
//! `watchdog`.

mod dlq;
mod read;
pub(crate) mod watchdog;
mod write;

use crate::args::{Cli, Command, DlqCommand};
use crate::error::CliError;
use crate::ops::executions::{filter, parse_json, StartRequest};
use crate::{nats, serve, store};

/// Runs the command line.
pub(crate) async fn run(cli: Cli) -> Result<(), CliError> {
    let format = cli.global.output;
    // Commands that do not read the store.
    let command = match cli.command {
        Command::Serve(args) => return serve::run(&cli.global, args).await,
        Command::Dlq(dlq) => return run_dlq(dlq, &cli.global).await,
        other => other,
    };
    // Bad input is reported before the store is opened: no connection for a typo.
    let json = match &command {
        Command::Start { input, .. } => Some(parse_json("--input", input)?),
        Command::Signal { payload, .. } => Some(parse_json("--payload", payload)?),
        _ => None,
    };
    let stall_after = match &command {
        Command::Watchdog(args) => Some(watchdog::parse_age(&args.stall_after)?),
        _ => None,
    };
    let filter = match &command {
        Command::List(args) => Some(filter(args)?),
        _ => None,
    };
    let opened = store::open(&cli.global).await?;
    match command {
        Command::List(_) => read::list(&opened.client, &filter.unwrap_or_default(), format).await,
        Command::Show { id } => read::show(&opened.client, &id, format).await,
        Command::History {
            id,
            follow,
            interval,
        } => read::history(&opened.client, &id, follow, interval, format).await,
        Command::Diagram { target } => read::diagram(&opened.client, &target, format).await,
        Command::Definitions => read::definitions(&opened.client, format).await,
        Command::Start {
            workflow_type,
            id,
            timeout,
            task_queue,
            ..
        } => {
            let req = StartRequest {
                workflow_type,
                input: json.unwrap_or_default(),
                id,
                timeout_secs: timeout,
                task_queue,
            };
            write::start(&opened, req, format).await
        }
        Command::Signal { id, name, .. } => {
            let payload = json.unwrap_or_default();
            write::signal(opened, &id, &name, payload, format).await
        }
        Command::Cancel { id } => write::cancel(&opened, &id, format).await,
        Command::Serve(_) | Command::Dlq(_) => unreachable!("handled above"),
        Command::Watchdog(args) => {
            let stall_after = stall_after.unwrap_or_default();
            watchdog::run(&opened.client, stall_after, args.backlog_threshold, format).await
        }
    }
}

async fn run_dlq(command: DlqCommand, global: &crate::args::Global) -> Result<(), CliError> {
    let format = global.output;
    match command {
        DlqCommand::List { nats, queue } => {
            let nats_queue = nats::connect(&nats).await?;
            // The store only if one is named: the dead letters alone need none.
            let store = match global.store {
                Some(_) => Some(store::open(global).await?),
                None => None,
            };
            let client = store.as_ref().map(|s| &s.client);
            dlq::list(&nats_queue, client, &queue, format).await
        }
        DlqCommand::Redrive { nats, queue, id } => {
            dlq::redrive(&nats::connect(&nats).await?, &queue, id.as_deref(), format).await
        }
    }
}
