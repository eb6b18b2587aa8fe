//! What a client can learn about an instance.

use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::history::{Failure, Payload, RuntimeStatus};

/// A snapshot of one instance, from [`Client::status`](crate::Client::status).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
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
    /// Decodes the return value as `T` (the orchestrator's return type):
    /// `Ok(None)` while there is no output (the instance has not returned).
    ///
    /// # Errors
    /// [`Error::Payload`] when the output is not a `T`.
    pub fn output<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        self.output
            .as_ref()
            .map(|p| {
                p.decode(&format!(
                    "the output of instance `{}`",
                    crate::ids::Escaped(&self.id)
                ))
                .map_err(Error::from)
            })
            .transpose()
    }
}
