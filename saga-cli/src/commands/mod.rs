//! The commands: reading (`list`, `show`, `history`, `diagram`, `definitions`) and
//! writing (`start`, `signal`, `cancel`).

mod read;
mod write;

use serde_json::Value;

use crate::args::{Cli, Command};
use crate::error::CliError;
use crate::store;

/// Runs the command line.
pub(crate) async fn run(cli: Cli) -> Result<(), CliError> {
    let format = cli.global.output;
    // Bad input is reported before the store is opened: no connection for a typo.
    if let Command::Start { input, .. } = &cli.command {
        parse_json("--input", input)?;
    }
    if let Command::Signal { payload, .. } = &cli.command {
        parse_json("--payload", payload)?;
    }
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
            input,
            id,
            timeout,
        } => {
            let input = parse_json("--input", &input)?;
            write::start(&opened, &workflow_type, input, id, timeout, format).await
        }
        Command::Signal { id, name, payload } => {
            let payload = parse_json("--payload", &payload)?;
            write::signal(opened, &id, &name, payload, format).await
        }
        Command::Cancel { id } => write::cancel(&opened, &id, format).await,
    }
}

/// Parses a JSON argument; malformed JSON is bad input naming the option.
fn parse_json(option: &str, text: &str) -> Result<Value, CliError> {
    serde_json::from_str(text)
        .map_err(|e| CliError::bad_input(format!("{option} is not valid JSON: {e}")))
}
