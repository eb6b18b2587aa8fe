//! What a client can learn about an instance.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::de::DeserializeOwned;

use crate::error::{Error, Failure};
use crate::history::Payload;

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuntimeStatus {
    /// Started, not yet picked up.
    Pending,
    /// Running or waiting on durable operations.
    Running,
    /// Cannot go on with the code this runtime has (nondeterminism, or its
    /// orchestrator is not registered); nothing is lost, and it resumes when
    /// code that fits is deployed. [`InstanceStatus::failure`] says why.
    Stuck,
    /// The orchestrator returned a value that is not an `Err`.
    Completed,
    /// The orchestrator returned an `Err`, or the instance failed.
    Failed,
    /// Terminated from outside.
    Terminated,
}

impl RuntimeStatus {
    /// Whether the instance has ended.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Terminated)
    }

    /// The stored spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Stuck => "stuck",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Terminated => "terminated",
        }
    }
}

impl fmt::Display for RuntimeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RuntimeStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "stuck" => Self::Stuck,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "terminated" => Self::Terminated,
            other => return Err(format!("unknown runtime status `{other}`")),
        })
    }
}

/// A snapshot of one instance, from [`Client::status`](crate::Client::status).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceStatus {
    /// The instance's id.
    pub id: String,
    /// Its orchestrator's stored name.
    pub name: String,
    /// Where it is in its life.
    pub runtime_status: RuntimeStatus,
    /// The orchestrator's return value, once it returned.
    pub output: Option<Payload>,
    /// Why it failed or is stuck.
    pub failure: Option<Failure>,
    /// Reason given when terminated.
    pub terminated: Option<String>,
    /// When it was started.
    pub created_at: SystemTime,
    /// When its last turn was committed.
    pub updated_at: SystemTime,
    /// The number of events in its history.
    pub history_len: u64,
}

impl InstanceStatus {
    /// Decodes the return value as `T` (the orchestrator's return type).
    ///
    /// # Errors
    /// [`Error::Payload`] when there is no output yet, or it is not a `T`.
    pub fn output<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        self.output
            .as_ref()
            .map(|p| p.decode(&format!("the output of instance `{}`", self.id)))
            .transpose()
    }
}
