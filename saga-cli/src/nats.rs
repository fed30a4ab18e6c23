//! Connecting to the NATS task queue named by `--nats` and its naming options.

use saga_adapters::{NatsConfig, NatsTaskQueue};

use crate::args::NatsArgs;
use crate::error::CliError;

/// The workers' settings as the options give them: the namespace's names (or the
/// production defaults), each overridable.
pub(crate) fn config(args: &NatsArgs) -> Result<NatsConfig, CliError> {
    let mut c = match &args.namespace {
        Some(ns) => NatsConfig::namespaced(ns),
        None => NatsConfig::default(),
    };
    if let Some(s) = &args.stream {
        c.stream = s.clone();
    }
    if let Some(s) = &args.subject_prefix {
        c.subject_prefix = s.clone();
    }
    if let Some(s) = &args.dead_letter_stream {
        c.dead_letter_stream = s.clone();
    }
    if let Some(s) = &args.dead_letter_prefix {
        c.dead_letter_prefix = s.clone();
    }
    c.validate()
        .map_err(|e| CliError::bad_input(format!("{}: {}", e.message, context(&e))))?;
    Ok(c)
}

fn context(e: &saga_runtime::Error) -> String {
    [
        "stream",
        "dead_letter_stream",
        "subject_prefix",
        "dead_letter_prefix",
    ]
    .iter()
    .filter_map(|k| e.context(k).map(|v| format!("`{v}`")))
    .collect::<Vec<_>>()
    .join(", ")
}

/// Connects to the server of `--nats` (or `SAGA_NATS`).
pub(crate) async fn connect(args: &NatsArgs) -> Result<NatsTaskQueue, CliError> {
    let url = args.nats.as_deref().ok_or_else(|| {
        CliError::bad_input("no NATS server given: pass --nats URL or set SAGA_NATS")
    })?;
    let config = config(args)?;
    NatsTaskQueue::connect(url, config).await.map_err(|e| {
        let cause = std::error::Error::source(&e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        match e.kind {
            saga_runtime::ErrorKind::Configuration => CliError::bad_input(e.message),
            _ => CliError::unreachable(format!("{} at {url}{cause}", e.message)),
        }
    })
}
