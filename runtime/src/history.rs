//! The event history: the append-only record of everything an instance did,
//! from which replay rebuilds its state. This is the vocabulary every other
//! layer speaks (events, payloads, failures, runtime status); it depends on
//! nothing above it.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A JSON-encoded value: an input, an output, an event's data.
///
/// Kept as raw JSON text so it is encoded once when produced and decoded once
/// into the type its reader asks for.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload(Box<RawValue>);

impl Payload {
    /// Encodes `value`, refusing more than `limit` bytes of JSON.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        value: &T,
        what: &str,
        limit: usize,
    ) -> Result<Self, PayloadError> {
        let raw = serde_json::value::to_raw_value(value).map_err(|source| PayloadError::Json {
            what: format!("encoding {what}"),
            source,
        })?;
        let size = raw.get().len();
        if size > limit {
            return Err(PayloadError::TooLarge {
                what: what.to_owned(),
                size,
                limit,
            });
        }
        Ok(Self(raw))
    }

    /// Decodes into `T`.
    pub(crate) fn decode<T: DeserializeOwned>(&self, what: &str) -> Result<T, PayloadError> {
        serde_json::from_str(self.0.get()).map_err(|source| PayloadError::Json {
            what: format!("decoding {what}"),
            source,
        })
    }

    /// Parses stored JSON text, checking that it is JSON.
    pub(crate) fn from_json(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Self)
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json())
    }
}

/// Why a value could not be encoded or decoded; the client turns it into
/// [`Error::Payload`](crate::Error::Payload) or
/// [`Error::PayloadTooLarge`](crate::Error::PayloadTooLarge).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PayloadError {
    /// Not JSON of the expected shape.
    #[error("{what}: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    /// Over the payload limit.
    #[error("{what} is {size} bytes of JSON, over the payload limit of {limit} bytes: store large data elsewhere and pass a reference")]
    TooLarge {
        what: String,
        size: usize,
        limit: usize,
    },
}

/// How an activity call ended without a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ActivityFailure {
    /// It returned `Err`; the encoded error.
    Error(Payload),
    /// It returned an `Err` that its type marks as not worth retrying
    /// ([`Retryable`](crate::Retryable)); the encoded error.
    Final(Payload),
    /// An attempt ran past its timeout, or the call's total timeout passed;
    /// which one.
    TimedOut(String),
    /// It panicked; the message.
    Panic(String),
    /// It could not be run; the reason.
    Aborted(String),
    /// Its attempts were lost too often (each crashed or stalled its worker).
    Poisoned(String),
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
    /// A turn ran past the runtime's `turn_timeout` without yielding (a
    /// loop with no `.await`, blocking code in the orchestrator).
    TurnTimeout,
    /// The orchestrator called an entity type this runtime does not have;
    /// or an entity's type is not registered where its messages are taken.
    UnregisteredEntity,
}

impl Failure {
    /// A failure of `kind` with a message.
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
            FailureKind::UnregisteredEntity => "unregistered entity",
            FailureKind::Payload => "payload",
            FailureKind::NonDurableAwait => "non-durable await",
            FailureKind::Poisoned => "poisoned",
            FailureKind::Corrupt => "corrupt store data",
            FailureKind::TurnTimeout => "turn timeout",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RuntimeStatus {
    /// Started, not yet picked up.
    Pending,
    /// Running or waiting on durable operations.
    Running,
    /// Suspended by a client: it runs no turns, and keeps what arrives for
    /// it, until resumed.
    Suspended,
    /// Cannot go on with the code this runtime has (nondeterminism, or its
    /// orchestrator is not registered); nothing is lost, and it resumes when
    /// code that fits is deployed. [`InstanceStatus::failure`](crate::InstanceStatus::failure)
    /// says why.
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
            Self::Suspended => "suspended",
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
            "suspended" => Self::Suspended,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "terminated" => Self::Terminated,
            other => return Err(format!("unknown runtime status `{other}`")),
        })
    }
}

/// One thing that happened to an instance.
///
/// Events that arrive from outside (`Started`, completions, `TimerFired`,
/// `EventRaised`, `Terminated`) travel as messages first and are appended in
/// the turn that consumes them; the others are what the orchestrator did in
/// that turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// The instance was started with this orchestrator and input.
    Started {
        /// The orchestrator's stored name.
        name: String,
        /// The encoded input.
        input: Payload,
        /// The seed of `ctx.random()` and `ctx.uuid()`, drawn when the
        /// instance was started (histories written before it had none: those
        /// instances keep drawing from their id).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<u64>,
        /// The first sequence number of this execution: above every number
        /// an execution before it (continued as new) used, so that a late
        /// result of one of its calls can never match a call of this one.
        #[serde(default, skip_serializing_if = "is_zero")]
        first_seq: u64,
        /// The instance that started this one as its child, and the call's
        /// sequence number there: told when this one ends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<ParentRef>,
        /// The orchestrator's version the instance runs on, for life
        /// (histories written before versions were 1).
        #[serde(default = "version_one", skip_serializing_if = "is_version_one")]
        version: u32,
    },
    /// The orchestrator called an activity.
    ActivityScheduled {
        /// The call's sequence number.
        seq: u64,
        /// The activity's stored name.
        name: String,
        /// The encoded input.
        input: Payload,
        /// Where in the source the call was made.
        site: String,
    },
    /// An activity call returned a value.
    ActivityCompleted {
        /// The call's sequence number.
        seq: u64,
        /// The encoded value.
        output: Payload,
    },
    /// An activity call failed for good.
    ActivityFailed {
        /// The call's sequence number.
        seq: u64,
        /// How.
        failure: ActivityFailure,
    },
    /// The orchestrator started a child orchestration.
    ChildScheduled {
        /// The call's sequence number.
        seq: u64,
        /// The child's orchestrator's stored name.
        name: String,
        /// The child's instance id.
        id: String,
        /// The encoded input.
        input: Payload,
        /// Where in the source the call was made.
        site: String,
        /// The child's orchestrator's version (histories written before
        /// children's versions were recorded read as 1).
        #[serde(default = "version_one", skip_serializing_if = "is_version_one")]
        version: u32,
    },
    /// A child orchestration returned (its return value, `Err` included).
    ChildCompleted {
        /// The call's sequence number.
        seq: u64,
        /// The encoded return value.
        output: Payload,
    },
    /// A child orchestration ended without returning.
    ChildFailed {
        /// The call's sequence number.
        seq: u64,
        /// How.
        failure: ChildFailure,
    },
    /// The orchestrator started a durable timer.
    TimerCreated {
        /// The timer's sequence number.
        seq: u64,
        /// When it fires, in microseconds since the Unix epoch.
        fire_at: i64,
        /// Where in the source the timer was made.
        site: String,
    },
    /// The orchestrator recorded a value computed outside replay
    /// (`Context::side_effect`).
    SideEffect {
        /// The side effect's sequence number.
        seq: u64,
        /// The encoded value.
        value: Payload,
        /// Where in the source it was made.
        site: String,
    },
    /// The orchestrator stopped waiting for a timer that had not fired (it
    /// lost a race): the timer will not fire.
    TimerCancelled {
        /// The timer's sequence number.
        seq: u64,
    },
    /// A durable timer fired.
    TimerFired {
        /// The timer's sequence number.
        seq: u64,
    },
    /// An external event reached the instance.
    EventRaised {
        /// The event's name.
        name: String,
        /// Its encoded data.
        data: Payload,
    },
    /// The orchestrator returned.
    Completed {
        /// The encoded return value.
        output: Payload,
        /// Whether the value is a failure (an `Err`).
        failed: bool,
    },
    /// The instance failed outside its code's return value.
    Failed {
        /// Why.
        failure: Failure,
    },
    /// A client suspended the instance: it ran no turns until resumed.
    Suspended {
        /// The reason given.
        reason: String,
    },
    /// A client resumed the suspended instance.
    Resumed {
        /// The reason given.
        reason: String,
    },
    /// The instance was terminated from outside.
    Terminated {
        /// The reason given.
        reason: String,
    },
    /// The orchestrator called an operation of an entity and waits for its
    /// result.
    EntityCalled {
        /// The call's sequence number.
        seq: u64,
        /// The entity's instance id (see [`entity_id`]).
        entity: String,
        /// The operation's name.
        op: String,
        /// The encoded arguments.
        input: Payload,
        /// Where in the source the call was made.
        site: String,
    },
    /// The orchestrator signalled an entity (one-way).
    EntitySignaled {
        /// The signal's sequence number.
        seq: u64,
        /// The entity's instance id.
        entity: String,
        /// The operation's name.
        op: String,
        /// The encoded arguments.
        input: Payload,
        /// When it is to be applied (microseconds since the Unix epoch; 0:
        /// at once).
        at: i64,
        /// Where in the source the signal was sent.
        site: String,
    },
    /// An entity operation the orchestrator called returned.
    EntityCompleted {
        /// The call's sequence number.
        seq: u64,
        /// The encoded return value (an `Err` included).
        output: Payload,
    },
    /// An entity operation the orchestrator called did not return.
    EntityFailed {
        /// The call's sequence number.
        seq: u64,
        /// Why.
        failure: EntityError,
    },
    /// The orchestrator asked for the locks of a set of entities (a
    /// critical section), in the global order.
    LockRequested {
        /// The request's sequence number.
        seq: u64,
        /// The entities' instance ids, sorted, without duplicates.
        entities: Vec<String>,
        /// Where in the source the request was made.
        site: String,
    },
    /// Every lock of the request was granted.
    LockGranted {
        /// The request's sequence number.
        seq: u64,
    },
    /// The orchestrator released the locks of its critical section.
    LocksReleased {
        /// The release's sequence number.
        seq: u64,
        /// The sequence number of the request that locked them.
        lock: u64,
        /// The entities released.
        entities: Vec<String>,
    },
    /// The orchestrator took the new path of patch `patch`
    /// ([`Context::patched`](crate::Context::patched)): replay takes it again.
    Patched {
        /// The marker's sequence number.
        seq: u64,
        /// The patch's id.
        patch: String,
    },
    /// A message to an entity: an operation to apply. Entities keep no
    /// history; this only travels in their queue.
    Operation {
        /// The operation's name.
        op: String,
        /// The encoded arguments.
        input: Payload,
        /// The orchestration waiting for the result, and its call's
        /// sequence number (`None`: a signal, nobody waits).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<ParentRef>,
        /// The orchestration that sends it from inside a critical section
        /// holding this entity's lock.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        holder: Option<String>,
    },
    /// A message to an entity: lock it for `holder`, then pass the request
    /// on to the next entity of the set (the last one tells the holder).
    LockEntity {
        /// The orchestration asking.
        holder: String,
        /// The sequence number of its request.
        seq: u64,
        /// The whole set, sorted.
        entities: Vec<String>,
        /// This entity's place in it.
        index: usize,
    },
    /// A message to an entity: `holder` releases the lock its request
    /// `seq` took (or gives the request up, if it has not reached the
    /// entity yet: the orchestration ended first).
    UnlockEntity {
        /// The orchestration releasing.
        holder: String,
        /// The sequence number of its lock request.
        seq: u64,
    },
}

impl Event {
    /// Whether the instance is over once this event is recorded.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Completed { .. } | Self::Failed { .. } | Self::Terminated { .. }
        )
    }

    /// Whether this event is something the orchestrator did (as opposed to
    /// something delivered to it).
    pub(crate) fn is_decision(&self) -> bool {
        matches!(
            self,
            Self::ActivityScheduled { .. }
                | Self::ChildScheduled { .. }
                | Self::EntityCalled { .. }
                | Self::EntitySignaled { .. }
                | Self::LockRequested { .. }
                | Self::LocksReleased { .. }
                | Self::Patched { .. }
                | Self::TimerCreated { .. }
                | Self::SideEffect { .. }
                | Self::Completed { .. }
                | Self::Failed { .. }
        )
    }
}

/// The number that tells one execution of an instance from every other,
/// as the store keeps it: drawn from the execution's seed, which is random
/// for every start and continue-as-new (so an instance purged or replaced
/// under the same id is another execution too); 0 for histories without a
/// seed.
pub(crate) fn execution_of(seed: Option<u64>) -> u64 {
    seed.map_or(0, |s| s >> 1)
}

/// Where a child instance reports: its parent and the call there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    /// The parent's instance id.
    pub id: String,
    /// The sequence number of the parent's `call_child`.
    pub seq: u64,
}

/// How a child orchestration ended without returning a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ChildFailure {
    /// It failed (a panic, poison, nondeterminism, a payload, ...).
    Failed(Failure),
    /// It was terminated; the reason.
    Terminated(String),
    /// Its id belongs to another instance already: it was never started.
    IdTaken(String),
}

impl fmt::Display for ChildFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(failure) => write!(f, "the child failed: {failure}"),
            Self::Terminated(reason) => write!(f, "the child was terminated: {reason}"),
            Self::IdTaken(id) => write!(
                f,
                "the child was not started: id {id:?} belongs to another instance"
            ),
        }
    }
}

/// Why an entity operation an orchestrator called did not return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EntityError {
    /// The operation panicked; its change was rolled back.
    Panicked(String),
    /// The arguments did not decode into the operation's, the operation is
    /// not one of the entity's, or its result could not be encoded.
    BadInput(String),
    /// The entity's stored state no longer decodes into its type (the
    /// code changed): it is set aside, not reset.
    BadState(String),
    /// No entity type of that name is registered with the runtime that
    /// took the message.
    Unregistered(String),
    /// The operation killed its process every time it ran (an abort, a
    /// stack overflow): it was given up after `.poison_after(n)` attempts
    /// without running again.
    Poisoned(String),
}

impl fmt::Display for EntityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Panicked(msg) => write!(f, "the operation panicked: {msg}"),
            Self::BadInput(msg) => write!(f, "the operation was refused: {msg}"),
            Self::BadState(msg) => write!(f, "the entity's state does not decode: {msg}"),
            Self::Unregistered(msg) => write!(f, "{msg}"),
            Self::Poisoned(msg) => write!(f, "the operation was poisoned: {msg}"),
        }
    }
}

/// The stored-name prefix that marks an entity type (`@Account`): entity
/// instances live beside orchestrations and never share a name with one.
pub const ENTITY_PREFIX: char = '@';

/// The instance id of the entity of type `name` (its stored name, without
/// the prefix) with `key`: `@Account@acct-7`.
pub fn entity_id(name: &str, key: &str) -> String {
    format!("{ENTITY_PREFIX}{name}{ENTITY_PREFIX}{key}")
}

/// The stored name of entity type `name` as its instances carry it.
pub fn entity_type_name(name: &str) -> String {
    format!("{ENTITY_PREFIX}{name}")
}

/// Whether an instance's stored name is an entity type's.
pub fn is_entity_name(name: &str) -> bool {
    name.starts_with(ENTITY_PREFIX)
}

/// An event as stored: its place in the history and the turn it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// Position in the instance's history, from 0, without gaps.
    pub index: u64,
    /// The turn that recorded it, from 0.
    pub turn: u64,
    /// The turn's deterministic time, microseconds since the Unix epoch.
    pub at: i64,
    /// What happened.
    pub event: Event,
}

/// An instance's history as a stable, versioned JSON document: written by
/// [`Client::export_history`](crate::Client::export_history), kept as a test
/// fixture, checked against the current code with
/// [`Builder::check_history`](crate::Builder::check_history).
///
/// The layout (`format` 1): `{"format": 1, "instance": "..", "orchestrator":
/// "..", "version": 1, "events": [{"index": 0, "turn": 0, "at": <µs since
/// the epoch>, "event": {"Started": {..}}}, ..]}`, each event as
/// [`Event`] serializes (externally tagged). A later layout gets another
/// `format` number, and files of this one stay readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryExport {
    /// The layout's number: [`HistoryExport::FORMAT`].
    pub format: u32,
    /// The instance's id.
    pub instance: String,
    /// Its orchestrator's stored name.
    pub orchestrator: String,
    /// The orchestrator's version it runs on.
    pub version: u32,
    /// Its history (the current execution's), in order.
    pub events: Vec<HistoryRecord>,
}

impl HistoryExport {
    /// The layout this release writes and reads.
    pub const FORMAT: u32 = 1;

    /// The export of `instance`'s `events`: its orchestrator and version
    /// are read from its `Started` (empty and 1 without one).
    pub fn new(instance: impl Into<String>, events: Vec<HistoryRecord>) -> Self {
        let (orchestrator, version) = events
            .iter()
            .find_map(|r| match &r.event {
                Event::Started { name, version, .. } => Some((name.clone(), *version)),
                _ => None,
            })
            .unwrap_or_else(|| (String::new(), 1));
        Self {
            format: Self::FORMAT,
            instance: instance.into(),
            orchestrator,
            version,
            events,
        }
    }

    /// The document as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect(
            "invariant: an export is strings, integers, enums and payloads that are JSON \
             already, with no map keys or floats, which serde_json always writes",
        )
    }

    /// Reads a document written by [`HistoryExport::to_json`].
    ///
    /// # Errors
    /// Text that is not such a document, or one of another `format`.
    pub fn from_json(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Probe {
            format: u32,
        }
        let probe: Probe = serde_json::from_str(text)
            .map_err(|e| format!("not a history export (no `format`): {e}"))?;
        if probe.format != Self::FORMAT {
            return Err(format!(
                "a history export of format {}, and this release reads format {}",
                probe.format,
                Self::FORMAT
            ));
        }
        serde_json::from_str(text).map_err(|e| format!("a malformed history export: {e}"))
    }
}

/// Microseconds since the Unix epoch, the store's unit of time.
pub(crate) fn micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// The inverse of [`micros`].
pub(crate) fn system_time(us: i64) -> SystemTime {
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

/// Now, in store units.
pub(crate) fn now_micros() -> i64 {
    micros(SystemTime::now())
}

/// A duration in store units, saturating.
pub(crate) fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The version of an orchestrator that sets none.
fn version_one() -> u32 {
    1
}

/// Whether `v` is the default version.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_version_one(v: &u32) -> bool {
    *v == 1
}

/// Whether `n` is zero (serde's `skip_serializing_if` for defaults).
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}
