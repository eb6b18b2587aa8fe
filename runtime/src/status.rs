//! What a client can learn about an instance.

use std::time::SystemTime;

use serde::Serialize;

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
    /// The value the orchestrator last set with
    /// [`Context::set_custom_status`](crate::Context::set_custom_status).
    pub custom_status: Option<Payload>,
}
