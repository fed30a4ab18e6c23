//! Opening the store named by `--store`.

use std::path::PathBuf;
use std::time::Duration;

use saga_adapters::{PostgresConfig, PostgresStore, SqliteStore};
use saga_runtime::client::SagaClient;
use saga_runtime::{Error, ErrorKind};

use crate::args::Global;
use crate::error::CliError;

/// Where the executions are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Parses `sqlite://FILE` (also `sqlite:FILE`) or `postgres://..` (`postgresql://..`).
pub(crate) fn parse(url: &str) -> Result<StoreUrl, CliError> {
    let sqlite = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"));
    match sqlite {
        Some("") => Err(CliError::bad_input(format!(
            "store URL `{url}` names no file: use sqlite://FILE"
        ))),
        Some(path) => Ok(StoreUrl::Sqlite(PathBuf::from(path))),
        None if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(StoreUrl::Postgres(url.to_owned()))
        }
        None => Err(CliError::bad_input(format!(
            "unsupported store URL `{url}`: use sqlite://FILE or postgres://USER@HOST:PORT/DB"
        ))),
    }
}

/// How the store was opened: the PostgreSQL store is kept to open its dispatcher.
pub(crate) struct Opened {
    pub(crate) client: SagaClient,
    pub(crate) postgres: Option<PostgresStore>,
}

impl Opened {
    /// The client notifying waiters in other processes when it records a signal, as
    /// the engine does (PostgreSQL's dispatcher; a SQLite store is one process's).
    pub(crate) async fn with_signals(self) -> Result<Opened, CliError> {
        let client = match &self.postgres {
            Some(pg) => self.client.clone().signals(pg.signal_dispatcher().await?),
            None => self.client.clone(),
        };
        Ok(Opened { client, ..self })
    }
}

/// Opens the store of `--store` (or `SAGA_STORE`).
pub(crate) async fn open(global: &Global) -> Result<Opened, CliError> {
    let url = global
        .store
        .as_deref()
        .ok_or_else(|| CliError::bad_input("no store given: pass --store URL or set SAGA_STORE"))?;
    let timeout = Duration::from_secs(global.connect_timeout.max(1));
    match parse(url)? {
        StoreUrl::Sqlite(path) => {
            if global.schema.is_some() {
                return Err(CliError::bad_input(
                    "--schema applies to PostgreSQL stores only",
                ));
            }
            // Opening creates a missing file: a typo must not leave an empty store behind.
            if !path.is_file() {
                return Err(CliError::unreachable(format!(
                    "SQLite store `{}` does not exist (workers create it on first run)",
                    path.display()
                )));
            }
            let config = saga_adapters::SqliteConfig {
                read_connections: 1,
                busy_timeout: timeout,
                ..Default::default()
            };
            let store = SqliteStore::open_with(&path, config)
                .await
                .map_err(|e| unreachable(e, &format!("SQLite store `{}`", path.display())))?;
            Ok(Opened {
                client: SagaClient::new(store),
                postgres: None,
            })
        }
        StoreUrl::Postgres(url) => {
            let mut config = PostgresConfig::new(url);
            config.max_connections = 2;
            config.acquire_timeout = timeout;
            if let Some(schema) = &global.schema {
                config = config.schema(schema);
            }
            let store = PostgresStore::connect_with(config)
                .await
                .map_err(|e| unreachable(e, "PostgreSQL store"))?;
            Ok(Opened {
                client: SagaClient::new(store.clone()),
                postgres: Some(store),
            })
        }
    }
}

/// A failure to open: a bad URL or schema name stays bad input, anything else means the
/// store cannot be reached.
fn unreachable(e: Error, what: &str) -> CliError {
    if e.kind == ErrorKind::Configuration {
        CliError::bad_input(e.message)
    } else {
        CliError::unreachable(format!("cannot open the {what}: {}", e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_store_urls() {
        assert_eq!(
            parse("sqlite://saga.db").unwrap(),
            StoreUrl::Sqlite("saga.db".into())
        );
        assert_eq!(
            parse("sqlite:///tmp/x/saga.db").unwrap(),
            StoreUrl::Sqlite("/tmp/x/saga.db".into())
        );
        assert_eq!(
            parse("sqlite:saga.db").unwrap(),
            StoreUrl::Sqlite("saga.db".into())
        );
        assert_eq!(
            parse("postgresql://u@h/db").unwrap(),
            StoreUrl::Postgres("postgresql://u@h/db".into())
        );
        assert!(parse("sqlite://").is_err());
        assert!(parse("mysql://h/db").is_err());
        assert!(parse("saga.db").is_err());
    }
}
