//! The errors users see: one enum for the runtime and client, one for
//! storage, and the recorded reason an instance failed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Everything the runtime and the client can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed; nothing half-done was committed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An instance with this id already exists.
    #[error("instance `{id}` already exists")]
    InstanceExists {
        /// The id that was asked for.
        id: String,
    },
    /// No instance has this id.
    #[error("instance `{id}` not found")]
    InstanceNotFound {
        /// The id that was asked for.
        id: String,
    },
    /// The instance has already finished, so it takes no more events.
    #[error("instance `{id}` has already finished ({status})")]
    InstanceFinished {
        /// The finished instance.
        id: String,
        /// How it finished.
        status: crate::RuntimeStatus,
    },
    /// The orchestrator is not registered with this runtime.
    #[error("orchestrator `{name}` is not registered: add `.orchestrator({name})` to the runtime builder")]
    UnregisteredOrchestrator {
        /// The orchestrator's stored name.
        name: String,
    },
    /// A registered orchestrator calls an activity that is not registered.
    #[error("orchestrator `{orchestrator}` calls activity `{activity}`, which is not registered: add `.activity({activity})` to the runtime builder")]
    UnregisteredActivity {
        /// The calling orchestrator.
        orchestrator: String,
        /// The missing activity's stored name.
        activity: String,
    },
    /// A value did not encode to, or decode from, its stored JSON.
    #[error("{what}: {source}")]
    Payload {
        /// What was being encoded or decoded.
        what: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A value encodes to more JSON than the runtime's payload limit allows;
    /// nothing was written.
    #[error("{what} is {size} bytes of JSON, over the payload limit of {limit} bytes: store large data elsewhere and pass a reference")]
    PayloadTooLarge {
        /// What was being encoded.
        what: String,
        /// Its encoded size.
        size: usize,
        /// The limit (`Builder::max_payload`).
        limit: usize,
    },
    /// The instance failed for a reason outside its own code's return value
    /// (a panic, nondeterminism, an unregistered activity, ...).
    #[error("instance `{id}` failed: {failure}")]
    Failed {
        /// The failed instance.
        id: String,
        /// What went wrong, as recorded.
        failure: Failure,
    },
    /// The instance was terminated.
    #[error("instance `{id}` was terminated: {reason}")]
    Terminated {
        /// The terminated instance.
        id: String,
        /// The reason given to `terminate`.
        reason: String,
    },
    /// The runtime was shut down while the call waited.
    #[error("the runtime has shut down")]
    Shutdown,
    /// The instance is of another orchestrator than the handle's type says.
    #[error("instance `{id}` runs orchestrator `{found}`, not `{expected}`")]
    WrongOrchestrator {
        /// The instance.
        id: String,
        /// The handle's orchestrator.
        expected: String,
        /// The instance's orchestrator.
        found: String,
    },
    /// An instance id or event name is not acceptable.
    #[error("invalid {what}: {reason}")]
    InvalidName {
        /// Which kind of name.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A builder setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn payload(what: impl Into<String>, source: serde_json::Error) -> Self {
        Self::Payload {
            what: what.into(),
            source,
        }
    }
}

/// A storage failure, classified so callers can act on it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file exists but is not a SQLite database.
    #[error("`{path}` is not a SQLite database")]
    NotADatabase {
        /// The file.
        path: String,
    },
    /// The database belongs to another application.
    #[error("`{path}` is a SQLite database of another application (application_id {found:#x}); durable will not touch it")]
    ForeignDatabase {
        /// The file.
        path: String,
        /// Its `PRAGMA application_id`.
        found: i32,
    },
    /// The database was written by another version of durable's schema.
    #[error("`{path}` has schema version {found}, this release reads version {supported}{hint}", hint = if *found > *supported { ": it was written by a newer release" } else { "" })]
    SchemaVersion {
        /// The file.
        path: String,
        /// The version in the file.
        found: i64,
        /// The version this release reads and writes.
        supported: i64,
    },
    /// A pragma did not take the value asked for.
    #[error("PRAGMA {name} is `{found}` after setting it to `{expected}`")]
    Pragma {
        /// The pragma.
        name: &'static str,
        /// The value asked for.
        expected: String,
        /// The value read back.
        found: String,
    },
    /// The database is locked by another connection for longer than the busy timeout.
    #[error("the database is busy or locked by another process")]
    Busy,
    /// The disk or file system refused a write.
    #[error("the database cannot be written: {0}")]
    Full(String),
    /// The file is read-only.
    #[error("the database is read-only: {0}")]
    ReadOnly(String),
    /// A stored row does not decode: the file is damaged or was edited.
    #[error("corrupt store data in {what}: {detail}")]
    Corrupt {
        /// Which row or column.
        what: String,
        /// The decoder's complaint.
        detail: String,
    },
    /// Any other SQLite error.
    #[error("sqlite: {0}")]
    Sqlite(std::sync::Arc<rusqlite::Error>),
    /// Another write in the same group commit failed so that SQLite gave up
    /// the whole transaction; nothing of this call was written. Retry it.
    #[error(
        "the transaction was rolled back with another write of its group; nothing was written"
    )]
    RolledBack,
    /// The store's worker thread is gone.
    #[error("the store is closed")]
    Closed,
}

/// Why an instance failed, as recorded in its history and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The class of failure.
    pub kind: FailureKind,
    /// A human-readable account.
    pub message: String,
}

/// The class of an instance failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FailureKind {
    /// The orchestrator's code panicked.
    Panic,
    /// On replay the code scheduled something other than its history records.
    Nondeterminism,
    /// The orchestrator called an activity this runtime does not have.
    UnregisteredActivity,
    /// The instance's orchestrator is not registered.
    UnregisteredOrchestrator,
    /// An input, output or event payload did not decode.
    Payload,
    /// The orchestrator awaited something that is not a durable operation.
    NonDurableAwait,
    /// Its turn was lost too often (a crashed process, a panic on replay).
    Poisoned,
    /// A stored row of it is damaged; it waits, stuck, until repaired.
    Corrupt,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FailureKind::Panic => "panic",
            FailureKind::Nondeterminism => "nondeterminism",
            FailureKind::UnregisteredActivity => "unregistered activity",
            FailureKind::UnregisteredOrchestrator => "unregistered orchestrator",
            FailureKind::Payload => "payload",
            FailureKind::NonDurableAwait => "non-durable await",
            FailureKind::Poisoned => "poisoned",
            FailureKind::Corrupt => "corrupt store data",
        };
        write!(f, "{kind}: {}", self.message)
    }
}
