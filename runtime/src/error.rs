//! The errors users see: one enum for the runtime and client, and the
//! store's neutral one, re-exported from [`crate::store`].

use crate::history::{PayloadError, RuntimeStatus};

use crate::store::StoreError;

/// Everything the runtime and the client can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed; nothing half-done was committed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An instance with this id already exists.
    #[error("instance `{}` already exists", crate::ids::Escaped(id))]
    InstanceExists {
        /// The id that was asked for.
        id: String,
    },
    /// No instance has this id.
    #[error("instance `{}` not found", crate::ids::Escaped(id))]
    InstanceNotFound {
        /// The id that was asked for.
        id: String,
    },
    /// The instance has already finished, so it takes no more events.
    #[error(
        "instance `{}` has already finished ({status})",
        crate::ids::Escaped(id)
    )]
    InstanceFinished {
        /// The finished instance.
        id: String,
        /// How it finished.
        status: RuntimeStatus,
    },
    /// The instance's status does not allow the command: suspending one that
    /// is finished or suspended, resuming one that is not suspended, purging
    /// one that has not finished.
    #[error(
        "cannot {operation} instance `{}`: it is {status}",
        crate::ids::Escaped(id)
    )]
    InvalidState {
        /// The instance.
        id: String,
        /// Its status.
        status: RuntimeStatus,
        /// What was asked: `suspend`, `resume` or `purge`.
        operation: &'static str,
    },
    /// A list query's continuation token is not one a list returned.
    #[error("invalid continuation token: {reason}")]
    InvalidToken {
        /// Why.
        reason: String,
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
    /// A registered orchestrator starts a child orchestrator that is not
    /// registered.
    #[error("orchestrator `{orchestrator}` starts child orchestration `{child}`, which is not registered: add `.orchestrator({child})` to the runtime builder")]
    UnregisteredChild {
        /// The calling orchestrator.
        orchestrator: String,
        /// The missing child's stored name.
        child: String,
    },
    /// A test runtime's wait found the instance unfinished, nothing under
    /// way and nothing scheduled: no time will finish it.
    #[error("instance `{id}` waits for something no time will bring (an event nobody raised?): nothing is under way and no timer is set")]
    WaitsForever {
        /// The instance.
        id: String,
    },
    /// An entity type that is not registered with this runtime.
    #[error(
        "entity type `{name}` is not registered: add `.entity::<{name}>()` to the runtime builder"
    )]
    UnregisteredEntity {
        /// The entity type's stored name.
        name: String,
    },
    /// A signal sent by name (`Client::signal_json`) names no operation of
    /// the entity type, or its arguments do not decode into the
    /// operation's: refused before anything is queued.
    #[error("entity `{entity}`: {reason}")]
    BadOperation {
        /// The entity type's stored name.
        entity: String,
        /// What does not fit.
        reason: String,
    },
    /// An entity's stored state no longer decodes into its type (the code
    /// changed): it is set aside as it is, never reset.
    #[error("the state of entity `{id}` does not decode: {reason}; deploy code that reads it (the entity waits, its state and queued operations kept)")]
    EntityState {
        /// The entity's instance id.
        id: String,
        /// Why.
        reason: String,
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
    #[error("instance `{}` failed: {failure}", crate::ids::Escaped(id))]
    Failed {
        /// The failed instance.
        id: String,
        /// What went wrong, as recorded.
        failure: crate::Failure,
    },
    /// The instance was terminated.
    #[error("instance `{}` was terminated: {reason}", crate::ids::Escaped(id))]
    Terminated {
        /// The terminated instance.
        id: String,
        /// The reason given to `terminate`.
        reason: String,
    },
    /// The runtime was shut down while the call waited.
    #[error("the runtime has shut down")]
    Shutdown,
    /// A part of the engine (the dispatcher or the activity worker) died;
    /// the runtime accepts no more work. Start a new one: nothing committed
    /// is lost.
    #[error("the runtime's {part} stopped unexpectedly: {reason}; start a new runtime")]
    EngineFailed {
        /// Which part: `dispatcher` or `activity worker`.
        part: &'static str,
        /// What it died of (a panic message).
        reason: String,
    },
    /// The wait ran past the deadline given; the instance goes on.
    #[error(
        "instance `{}` did not finish within {waited:?}",
        crate::ids::Escaped(id)
    )]
    Timeout {
        /// The instance waited for.
        id: String,
        /// How long the call waited.
        waited: std::time::Duration,
    },
    /// The instance is of another orchestrator than the handle's type says.
    #[error(
        "instance `{}` runs orchestrator `{found}`, not `{expected}`",
        crate::ids::Escaped(id)
    )]
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
    /// Two registered functions share one stored name.
    #[error("`{name}` is registered twice: two functions share one stored name (pin one with `name = \"..\"`)")]
    DuplicateName {
        /// The stored name registered twice.
        name: String,
    },
    /// The builder was given no store.
    #[error("no store: call `.sqlite(path)` or `.store(..)` on the runtime builder")]
    NoStore,
    /// A builder setting is out of range or does not apply.
    #[error("invalid setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The builder method.
        setting: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
}

impl Error {
    /// `Err(EngineFailed)` once a part of the engine died.
    pub(crate) fn check_health(health: &crate::shutdown::Health) -> Result<(), Self> {
        match health.death() {
            None => Ok(()),
            Some((part, reason)) => Err(Self::EngineFailed { part, reason }),
        }
    }
}

impl From<crate::ids::NameError> for Error {
    fn from(e: crate::ids::NameError) -> Self {
        Self::InvalidName {
            what: e.what,
            reason: e.reason,
        }
    }
}

impl From<PayloadError> for Error {
    fn from(e: PayloadError) -> Self {
        match e {
            PayloadError::Json { what, source } => Self::Payload { what, source },
            PayloadError::TooLarge { what, size, limit } => {
                Self::PayloadTooLarge { what, size, limit }
            }
        }
    }
}
