//! Where the commands read and steer instances: a database through a
//! runtime of the command's own that has nothing registered (so it takes no
//! work), or a server through the HTTP API. Both answer in the same shapes.

use std::path::PathBuf;
use std::time::Duration;

use durable::history::HistoryRecord;
use durable::{Failure, InstanceStatus, RuntimeStatus};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::error::CliError;
use crate::time::{micros, rfc3339};

mod local;
mod remote;

pub(crate) use local::Local;
pub(crate) use remote::Remote;

/// The store the command works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A SQLite file that must exist.
    Sqlite(PathBuf),
    /// A PostgreSQL URL and schema.
    Postgres { url: String, schema: Option<String> },
    /// The HTTP API at a base URL, with a bearer token or none.
    Http { url: String, token: Option<String> },
}

/// One instance as the commands show it, whichever backend read it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Instance {
    pub(crate) id: String,
    pub(crate) orchestrator: String,
    pub(crate) status: RuntimeStatus,
    /// Microseconds since the Unix epoch.
    pub(crate) created_at: i64,
    /// Microseconds since the Unix epoch.
    pub(crate) updated_at: i64,
    pub(crate) history_len: u64,
    pub(crate) output: Option<Value>,
    pub(crate) failure: Option<Failure>,
    pub(crate) terminated: Option<String>,
    pub(crate) custom_status: Option<Value>,
}

impl Instance {
    /// The runtime's status, as the commands show it.
    pub(crate) fn from_status(s: &InstanceStatus) -> Self {
        let json = |p: &durable::history::Payload| {
            serde_json::from_str(p.json()).unwrap_or_else(|_| Value::String(p.json().to_owned()))
        };
        Self {
            id: s.id.clone(),
            orchestrator: s.name.clone(),
            status: s.runtime_status,
            created_at: micros(s.created_at),
            updated_at: micros(s.updated_at),
            history_len: s.history_len,
            output: s.output.as_ref().map(json),
            failure: s.failure.clone(),
            terminated: s.terminated.clone(),
            custom_status: s.custom_status.as_ref().map(json),
        }
    }

    /// As JSON for scripts: the HTTP API's status shape, without its URLs.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "orchestrator": self.orchestrator,
            "status": self.status,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "history_len": self.history_len,
            "output": self.output,
            "failure": self.failure,
            "terminated": self.terminated,
            "custom_status": self.custom_status,
        })
    }
}

/// Which instances a list selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) statuses: Vec<RuntimeStatus>,
    pub(crate) orchestrator: Option<String>,
    pub(crate) prefix: Option<String>,
}

/// One page of a list, newest first.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub(crate) instances: Vec<Instance>,
    /// The token of the next page, if there is one.
    pub(crate) next: Option<String>,
}

/// What every backend does. Each call is one request or one store call.
pub(crate) trait Backend {
    /// One page of the instances `filter` selects.
    fn list(
        &mut self,
        filter: &Filter,
        page_size: usize,
        after: Option<&str>,
    ) -> Result<Page, CliError>;

    /// One instance's status.
    fn status(&mut self, id: &str) -> Result<Instance, CliError>;

    /// Its history from event `from` on.
    fn history(&mut self, id: &str, from: u64) -> Result<Vec<HistoryRecord>, CliError>;

    /// Its history's first event alone (its `Started`): which execution
    /// runs, to see a continue-as-new between two reads.
    fn first_event(&mut self, id: &str) -> Result<Option<HistoryRecord>, CliError>;

    /// What it waits on, in the HTTP API's shape (see `waiting`).
    fn waiting_on(&mut self, id: &str) -> Result<Vec<Value>, CliError>;

    /// Whether [`Backend::waiting_on`] names the events an instance's code
    /// waits for (found by replaying its code, which a server has).
    fn knows_event_waits(&self) -> bool;

    /// Raises event `name` with `data`, at most once per `key` when given.
    fn raise(
        &mut self,
        id: &str,
        name: &str,
        data: &RawValue,
        key: Option<&str>,
    ) -> Result<(), CliError>;

    /// Queues a termination with `reason`.
    fn terminate(&mut self, id: &str, reason: &str) -> Result<(), CliError>;

    /// Suspends it with `reason`.
    fn suspend(&mut self, id: &str, reason: &str) -> Result<(), CliError>;

    /// Resumes it with `reason`.
    fn resume(&mut self, id: &str, reason: &str) -> Result<(), CliError>;

    /// Deletes a finished instance.
    fn purge(&mut self, id: &str) -> Result<(), CliError>;

    /// Waits until it has finished, at most `timeout`: `None` when it had
    /// not by then.
    fn wait(&mut self, id: &str, timeout: Option<Duration>) -> Result<Option<Instance>, CliError>;

    /// Lets go of the store or the server.
    fn close(self: Box<Self>) -> Result<(), CliError>;
}

/// Opens the backend `target` names.
///
/// # Errors
/// A store that cannot be opened, a URL that is not one.
pub(crate) fn open(target: &Target) -> Result<Box<dyn Backend>, CliError> {
    Ok(match target {
        Target::Http { url, token } => Box::new(Remote::new(url, token.clone())?),
        _ => Box::new(Local::open(target)?),
    })
}
