//! The commands: reading (`list`, `show`, `history`, `diagram`, `definitions`) and
//! writing (`start`, `signal`, `cancel`), and `watchdog`.

mod read;
pub(crate) mod watchdog;
mod write;

use serde_json::Value;

use crate::args::{Cli, Command};
use crate::error::CliError;
use crate::store;

/// Runs the command line.
pub(crate) async fn run(cli: Cli) -> Result<(), CliError> {
    let format = cli.global.output;
    // Bad input is reported before the store is opened: no connection for a typo.
    let json = match &cli.command {
        Command::Start { input, .. } => Some(parse_json("--input", input)?),
        Command::Signal { payload, .. } => Some(parse_json("--payload", payload)?),
        _ => None,
    };
    let stall_after = match &cli.command {
        Command::Watchdog(args) => Some(watchdog::parse_age(&args.stall_after)?),
        _ => None,
    };
    let filter = match &cli.command {
        Command::List(args) => Some(read::filter(args)?),
        _ => None,
    };
    let opened = store::open(&cli.global).await?;
    match cli.command {
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
            ..
        } => {
            let input = json.unwrap_or_default();
            write::start(&opened, &workflow_type, input, id, timeout, format).await
        }
        Command::Signal { id, name, .. } => {
            let payload = json.unwrap_or_default();
            write::signal(opened, &id, &name, payload, format).await
        }
        Command::Cancel { id } => write::cancel(&opened, &id, format).await,
        Command::Watchdog(args) => {
            let stall_after = stall_after.unwrap_or_default();
            watchdog::run(&opened.client, stall_after, args.backlog_threshold, format).await
        }
    }
}

/// Parses a JSON argument; malformed JSON is bad input naming the option.
fn parse_json(option: &str, text: &str) -> Result<Value, CliError> {
    serde_json::from_str(text)
        .map_err(|e| CliError::bad_input(format!("{option} is not valid JSON: {e}")))
}
