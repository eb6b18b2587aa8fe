//! A database read and steered through a runtime of the command's own. It
//! has nothing registered, so it takes no work: the instances' own workers
//! (other processes) run what the commands queue.

use std::time::Duration;

use durable::history::HistoryRecord;
use durable::store::PostgresOptions;
use durable::{Client, Error, Query, Runtime};
use serde_json::value::RawValue;

use super::{Backend, Filter, Instance, Page, Target};
use crate::error::{exit, CliError};

/// How often the command's runtime looks at the store for what another
/// process did (a `wait` on SQLite sees a finish within this).
const POLL: Duration = Duration::from_millis(100);

/// A runtime with nothing registered on the target store, and its client.
pub(crate) struct Local {
    threads: tokio::runtime::Runtime,
    runtime: Option<Runtime>,
    client: Client,
}

impl Local {
    /// Starts the runtime on `target` (a SQLite file or PostgreSQL).
    ///
    /// # Errors
    /// A SQLite file that does not exist or is empty (a runtime would
    /// create a database there), and a store that does not open.
    pub(crate) fn open(target: &Target) -> Result<Self, CliError> {
        let builder = match target {
            Target::Sqlite(path) => {
                let shown = path.display();
                let meta = std::fs::metadata(path).map_err(|e| {
                    CliError::new(
                        exit::UNAVAILABLE,
                        format!("there is no database at {shown}: {e}"),
                    )
                    .hint("check the path (--db or DURABLE_DB); the command line never creates a database, the runtime of your application does")
                })?;
                if !meta.is_file() {
                    return Err(
                        CliError::new(exit::UNAVAILABLE, format!("{shown} is not a file"))
                            .hint("--db takes the SQLite file your runtime was started with"),
                    );
                }
                if meta.len() == 0 {
                    return Err(CliError::new(
                        exit::UNAVAILABLE,
                        format!("{shown} is empty: it holds no durable database"),
                    )
                    .hint("--db takes the SQLite file your runtime was started with"));
                }
                Runtime::builder().sqlite(path)
            }
            Target::Postgres { url, schema } => {
                let mut options = PostgresOptions::default();
                if let Some(schema) = schema {
                    options.schema.clone_from(schema);
                }
                // A misspelled schema is an error here, never a new empty one.
                options.create_schema = false;
                options.pool_size = 2;
                Runtime::builder().postgres_with(url, options)
            }
            Target::Http { .. } => unreachable!("invariant: `backend::open` sends URLs to Remote"),
        };
        let threads = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("durable-cli")
            .enable_all()
            .build()
            .map_err(|e| {
                CliError::new(
                    exit::INTERNAL,
                    format!("cannot start the async threads: {e}"),
                )
            })?;
        let runtime = threads
            .block_on(
                builder
                    .poll_interval(POLL)
                    .activity_threads(1)
                    .cache_size(1)
                    .start(),
            )
            .map_err(|e| {
                let place = match target {
                    Target::Sqlite(path) => path.display().to_string(),
                    Target::Postgres { schema, .. } => format!(
                        "the PostgreSQL database (schema `{}`)",
                        schema.as_deref().unwrap_or("durable")
                    ),
                    Target::Http { url, .. } => url.clone(),
                };
                let mut error = CliError::from(e);
                error.message = format!("cannot open {place}: {}", error.message);
                error.code = exit::UNAVAILABLE;
                if error.hint.is_none() {
                    error.hint = Some(match target {
                        Target::Postgres { .. } => "check the URL (--postgres or DURABLE_POSTGRES) and the schema (--schema): the command line never creates one".to_owned(),
                        _ => "check that the file is the database your runtime uses".to_owned(),
                    });
                }
                error
            })?;
        let client = runtime.client();
        Ok(Self {
            threads,
            runtime: Some(runtime),
            client,
        })
    }
}

impl Backend for Local {
    fn list(
        &mut self,
        filter: &Filter,
        page_size: usize,
        after: Option<&str>,
    ) -> Result<Page, CliError> {
        let mut query = Query::new()
            .statuses(filter.statuses.iter().copied())
            .page_size(page_size);
        if let Some(o) = &filter.orchestrator {
            query = query.orchestrator(o.clone());
        }
        if let Some(p) = &filter.prefix {
            query = query.id_prefix(p.clone());
        }
        if let Some(after) = after {
            query = query.after(after);
        }
        let page = self.threads.block_on(self.client.list(&query))?;
        Ok(Page {
            instances: page.instances.iter().map(Instance::from_status).collect(),
            next: page.next,
        })
    }

    fn status(&mut self, id: &str) -> Result<Instance, CliError> {
        let status = self.threads.block_on(self.client.status(id))?;
        Ok(Instance::from_status(&status))
    }

    fn history(&mut self, id: &str, from: u64) -> Result<Vec<HistoryRecord>, CliError> {
        Ok(self
            .threads
            .block_on(self.client.history_page(id, from, usize::MAX))?)
    }

    fn first_event(&mut self, id: &str) -> Result<Option<HistoryRecord>, CliError> {
        let first = self.threads.block_on(self.client.history_page(id, 0, 1))?;
        Ok(first.into_iter().next())
    }

    fn waiting_on(&mut self, id: &str) -> Result<Vec<serde_json::Value>, CliError> {
        let blockers = self.threads.block_on(self.client.waiting_on(id))?;
        Ok(blockers.iter().map(crate::waiting::blocker_json).collect())
    }

    fn knows_event_waits(&self) -> bool {
        // Nothing is registered here: no code to replay.
        false
    }

    fn raise(
        &mut self,
        id: &str,
        name: &str,
        data: &RawValue,
        key: Option<&str>,
    ) -> Result<(), CliError> {
        let client = &self.client;
        Ok(self.threads.block_on(async {
            match key {
                Some(key) => client.raise_event_with_key(id, name, key, data).await,
                None => client.raise_event(id, name, data).await,
            }
        })?)
    }

    fn terminate(&mut self, id: &str, reason: &str) -> Result<(), CliError> {
        Ok(self.threads.block_on(self.client.terminate(id, reason))?)
    }

    fn suspend(&mut self, id: &str, reason: &str) -> Result<(), CliError> {
        Ok(self.threads.block_on(self.client.suspend(id, reason))?)
    }

    fn resume(&mut self, id: &str, reason: &str) -> Result<(), CliError> {
        Ok(self.threads.block_on(self.client.resume(id, reason))?)
    }

    fn purge(&mut self, id: &str) -> Result<(), CliError> {
        Ok(self.threads.block_on(self.client.purge(id))?)
    }

    fn wait(&mut self, id: &str, timeout: Option<Duration>) -> Result<Option<Instance>, CliError> {
        let waited = match timeout {
            Some(t) => self.threads.block_on(self.client.wait_timeout(id, t)),
            None => self.threads.block_on(self.client.wait(id)),
        };
        match waited {
            Ok(status) => Ok(Some(Instance::from_status(&status))),
            Err(Error::Timeout { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn close(mut self: Box<Self>) -> Result<(), CliError> {
        if let Some(runtime) = self.runtime.take() {
            self.threads.block_on(runtime.shutdown())?;
        }
        Ok(())
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // A runtime is dropped inside its threads' context, where its
        // tasks live.
        if let Some(runtime) = self.runtime.take() {
            let _guard = self.threads.enter();
            drop(runtime);
        }
    }
}
