//! The storage contract: what the runtime needs from a durable store, with
//! one transaction per call, and the neutral error every backend reports.
//!
//! The trait is synchronous on purpose: a call is one transaction, and the
//! runtime runs calls on tokio's blocking pool behind a bound
//! (`StoreHandle`), never on an async worker. A
//! backend with an async driver serves it from its own threads the same way
//! (the PostgreSQL store will), so the dispatcher and the worker never learn
//! which backend they talk to.
//!
//! **Clocks.** Lease and lock lengths are passed as durations and expiry is
//! computed with the store's own clock ([`Store::now`]): the SQLite store's
//! is the machine's, a shared server's is the database's, so clock skew
//! between machines cannot expire a lease early. Turn times (`TurnCommit`
//! status times, timer due times) are the orchestration's deterministic
//! times and are stored as given.
//!
//! **Message order.** Every message gets a per-instance sequence number when
//! it is committed, increasing in commit order. Messages of one instance are
//! handed out and must be consumed in that order among those due: a turn
//! that would pass over an older due message is refused.
//!
//! Times are microseconds since the Unix epoch. `owner` names one runtime
//! process: leases and locks it holds expire on their own if it dies.

pub mod conformance;
mod error;
pub(crate) mod handle;
#[cfg(feature = "postgres")]
mod postgres;
mod rows;
mod sqlite;

use std::time::Duration;

pub use error::StoreError;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresError, PostgresOptions, PostgresStore};
pub use sqlite::{SqliteError, SqliteOptions, SqliteStore, Synchronous};

use crate::history::{
    ActivityFailure, Event, Failure, HistoryRecord, ParentRef, Payload, RuntimeStatus,
};
use crate::retry::RetryPolicy;
use crate::status::InstanceStatus;

/// An instance to create, with its `Started` message.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewInstance {
    /// Its id.
    pub id: String,
    /// Its orchestrator's stored name.
    pub name: String,
    /// The encoded input.
    pub input: Payload,
    /// The time of creation.
    pub now: i64,
    /// The seed of its deterministic random source, recorded in `Started`.
    pub seed: Option<u64>,
    /// The owner it is created locked to, and for how long (on the store's
    /// clock): the creating process runs its first turn from memory, and no
    /// other process may take it meanwhile. `None`: any process takes it.
    pub lock: Option<(String, Duration)>,
    /// The instance that starts it as a child, and the call there.
    pub parent: Option<ParentRef>,
    /// When its `Started` message falls due (microseconds since the Unix
    /// epoch; 0: at once): a scheduled start.
    pub visible_at: i64,
    /// An instance of this id that has finished is deleted and this one
    /// created in its place (one that has not finished is left as it is).
    pub replace_finished: bool,
    /// The orchestrator's version it runs on, recorded in `Started`.
    pub version: u32,
}

impl NewInstance {
    /// An instance of orchestrator `name` with `input`, created at `now`,
    /// without a seed of its own.
    pub fn new(id: impl Into<String>, name: impl Into<String>, input: Payload, now: i64) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            input,
            now,
            seed: None,
            lock: None,
            parent: None,
            visible_at: 0,
            replace_finished: false,
            version: 1,
        }
    }

    /// The same instance, created locked to `owner` for `lock`.
    #[must_use]
    pub fn locked_to(mut self, owner: impl Into<String>, lock: Duration) -> Self {
        self.lock = Some((owner.into(), lock));
        self
    }

    /// The `Started` message it begins with.
    pub fn started(&self) -> Event {
        Event::Started {
            name: self.name.clone(),
            input: self.input.clone(),
            seed: self.seed,
            first_seq: 0,
            parent: self.parent.clone(),
            version: self.version,
        }
    }
}

/// An instance's messages with their sequence numbers, oldest first.
pub type Messages = Vec<(u64, Event)>;

/// What [`Store::create_instances`] did for one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Created {
    /// The instance was created; the sequence number of its `Started`
    /// message (always 0).
    Created {
        /// The message's per-instance sequence number.
        message: u64,
    },
    /// An instance with that id already exists; nothing was written for it.
    Exists,
}

/// What [`Store::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Enqueued {
    /// The message is queued under this sequence number (`None`: a message
    /// with the same key was queued before, and this one was not).
    Queued {
        /// The message's per-instance sequence number.
        message: Option<u64>,
    },
    /// No such instance; nothing was written.
    NotFound,
    /// The instance has finished; nothing was written.
    Finished(RuntimeStatus),
}

/// What a client's command to one instance did ([`Store::set_suspended`],
/// [`Store::purge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transition {
    /// Done.
    Done,
    /// No such instance; nothing was written.
    NotFound,
    /// The instance's status does not allow it (suspending a finished or
    /// suspended one, resuming one not suspended, purging one not
    /// finished); nothing was written.
    Refused(RuntimeStatus),
}

/// Which instances [`Store::list`] returns: every condition set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListQuery {
    /// Any of these statuses (empty: any status).
    pub statuses: Vec<RuntimeStatus>,
    /// This orchestrator's stored name.
    pub name: Option<String>,
    /// Ids that start with this.
    pub id_prefix: Option<String>,
    /// Created at or after this time (microseconds since the Unix epoch).
    pub created_from: Option<i64>,
    /// Created before this time.
    pub created_before: Option<i64>,
    /// Only instances listed after this one (its creation time and id): the
    /// next page.
    pub after: Option<(i64, String)>,
    /// At most this many.
    pub limit: usize,
}

/// Messages waiting for one instance, with what a turn needs to know of it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InstanceWork {
    /// The instance.
    pub id: String,
    /// Its orchestrator's stored name.
    pub name: String,
    /// Its status.
    pub status: RuntimeStatus,
    /// Events in its history.
    pub history_len: u64,
    /// Its current execution's number (drawn from the seed of its
    /// `Started`: every start and continue-as-new has its own).
    pub execution: u64,
    /// How often its turn has been taken since the last commit, this time
    /// included: a turn that keeps crashing its process is poison.
    pub attempts: u32,
    /// The highest message sequence number consumed so far.
    pub consumed_through: Option<u64>,
    /// The due messages, in sequence order: (sequence number, event).
    pub messages: Vec<(u64, Event)>,
    /// Its stored output: for an entity, its record (state, lock and
    /// deferred operations), which its turn replaces.
    pub output: Option<Payload>,
    /// Set when a row of the instance (itself or one of its messages) does
    /// not decode: the runtime sets the instance aside instead of running it.
    pub damage: Option<StoreError>,
}

/// How far an instance has come: what a turn built from memory checks
/// before it runs code ([`Store::progress`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Events in its history.
    pub history_len: u64,
    /// The highest message sequence number consumed so far.
    pub consumed_through: Option<u64>,
    /// Its status.
    pub status: RuntimeStatus,
    /// Its orchestrator's stored name.
    pub name: String,
    /// Whether an owner other than the asking one holds it locked now: its
    /// messages are that owner's to run.
    pub held_elsewhere: bool,
    /// Its execution (see [`InstanceWork::execution`]).
    pub execution: u64,
}

/// An activity call to queue.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewTask {
    /// The call's sequence number.
    pub seq: u64,
    /// The activity's stored name.
    pub name: String,
    /// The encoded input.
    pub input: Payload,
    /// How often to attempt it.
    pub retry: RetryPolicy,
}

impl NewTask {
    /// A call of activity `name` as step `seq`.
    pub fn new(seq: u64, name: impl Into<String>, input: Payload, retry: RetryPolicy) -> Self {
        Self {
            seq,
            name: name.into(),
            input,
            retry,
        }
    }
}

/// A message to deliver to an instance at a time (a timer).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewMessage {
    /// What to deliver.
    pub event: Event,
    /// Not before this time.
    pub visible_at: i64,
}

impl NewMessage {
    /// `event`, delivered not before `visible_at`.
    pub fn new(event: Event, visible_at: i64) -> Self {
        Self { event, visible_at }
    }
}

/// Everything one turn of one instance writes, all or nothing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TurnCommit {
    /// The instance.
    pub instance: String,
    /// The history length the turn was computed on; the commit is refused
    /// if the store holds another (someone else advanced the instance).
    pub expected_len: u64,
    /// The execution the turn was computed on; the commit is refused if the
    /// instance has continued as new since (lengths repeat across
    /// executions, executions never do).
    pub execution: u64,
    /// New history events, numbered from `expected_len`.
    pub events: Vec<HistoryRecord>,
    /// Sequence numbers of the messages the turn consumed; the turn is
    /// refused if one of them is gone (consumed by another turn), or if an
    /// older message of the instance, due by the turn's time, is not among
    /// them.
    pub consumed: Vec<u64>,
    /// Activity calls to queue.
    pub tasks: Vec<NewTask>,
    /// Delayed messages to the instance itself (timers).
    pub messages: Vec<NewMessage>,
    /// Timers the orchestrator stopped waiting for, by sequence number:
    /// their `TimerFired` messages are deleted (after `messages` are
    /// queued), so they never fire into a later turn.
    pub cancel_timers: Vec<u64>,
    /// Activity calls the orchestrator stopped waiting for, by sequence
    /// number: a queued one is dropped; a leased one is marked cancelled
    /// (its renewal fails, so its worker tells the attempt; its result is
    /// dropped; it is not attempted again).
    pub cancel_tasks: Vec<u64>,
    /// Activity attempts whose results the turn consumed straight from the
    /// worker: deleted with the turn, which is refused if one of them is no
    /// longer leased to the committing owner at that attempt.
    pub finished_tasks: Vec<TaskRef>,
    /// How many of `tasks` (the first ones) to queue already leased to the
    /// committing owner for `lease` (attempt 1), for its own worker to run at
    /// once; the rest are queued for any process to take.
    pub lease_tasks: usize,
    /// The new status; `None` leaves it (messages dropped for a finished
    /// instance).
    pub status: Option<StatusUpdate>,
    /// The instance ends with this turn: drop everything still queued for
    /// it (messages, keys, tasks, leased or not) before queuing `tasks`.
    pub discard_queued: bool,
    /// Refuse the turn if a due message of the instance is not among
    /// `consumed`: set when the orchestrator returns, so that an event a
    /// client was told is queued ends in history, never silently dropped.
    pub take_all_due: bool,
    /// The instance continues as new with this turn: see [`Restart`].
    pub restart: Option<Restart>,
    /// Keep the instance locked to the committing owner for this long
    /// (unless another owner holds it), instead of releasing it: set when
    /// the turn's next one will be driven from memory (results of tasks
    /// leased to the owner's own worker), so that no other process runs
    /// that turn's code too. Another owner may still take the instance once
    /// the lock lapses.
    pub keep_lock: Option<Duration>,
    /// Child instances the turn starts, each with its parent set. One whose
    /// id belongs to an instance already is not created; instead its parent
    /// is sent `ChildFailed` with [`ChildFailure::IdTaken`](crate::ChildFailure::IdTaken) at once.
    pub children: Vec<NewInstance>,
    /// Messages to other instances, queued with the turn; one for an
    /// instance that is gone or finished is dropped.
    pub sends: Vec<Outgoing>,
    /// The instance was terminated with this turn: queue `Terminated` with
    /// this reason to every live instance it started as a child (in any of
    /// its executions), resuming or releasing them as a client's
    /// termination would.
    pub terminate_children: Option<String>,
    /// An entity's turn: `status.output` is its new record and no events
    /// are written; the stored history length counts the entity's turns
    /// instead (one more with each), so a turn computed on an older record
    /// is refused like any stale turn.
    pub entity_turn: bool,
}

/// A message from one instance's turn to another instance.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Outgoing {
    /// The instance it goes to.
    pub instance: String,
    /// The message.
    pub event: Event,
    /// Deliver it whatever the instance's state, as a client's termination
    /// is: a suspended instance resumes, a stuck one is released.
    pub wake_stuck: bool,
    /// A child's report to its parent: delivered only while the committing
    /// instance is still recorded as that instance's child (a parent purged
    /// or replaced under the same id is another instance).
    pub from_child: bool,
    /// The target is an entity of this type (its stored name, `@Account`):
    /// its row is created when it does not exist yet.
    pub entity: Option<String>,
    /// Not due before this time (microseconds since the Unix epoch; 0: at
    /// once): a scheduled signal.
    pub visible_at: i64,
}

impl Outgoing {
    /// `event` for `instance`.
    pub fn new(instance: impl Into<String>, event: Event, wake_stuck: bool) -> Self {
        Self {
            instance: instance.into(),
            event,
            wake_stuck,
            from_child: false,
            entity: None,
            visible_at: 0,
        }
    }

    /// An operation (or lock message) for the entity `instance` of type
    /// `type_name` (`@Account`), due at `visible_at` (0: at once).
    pub fn to_entity(
        instance: impl Into<String>,
        type_name: impl Into<String>,
        event: Event,
        visible_at: i64,
    ) -> Self {
        Self {
            entity: Some(type_name.into()),
            visible_at,
            ..Self::new(instance, event, false)
        }
    }

    /// A child's report of how it ended, to `parent`.
    pub fn to_parent(parent: impl Into<String>, event: Event) -> Self {
        Self {
            from_child: true,
            ..Self::new(parent, event, false)
        }
    }
}

/// An instance starting afresh (continue-as-new). Its history is deleted
/// (with `events`, which are not written), and so are its timers, its
/// activity calls, queued or running (a running attempt's result is dropped
/// when it comes), and every queued message but events and terminations.
/// Then `started` and `carried` (events the old execution received but
/// never consumed) are queued, in that order, ahead of the events still
/// queued for it, which keep their order: the new execution sees what was
/// raised in the order it was raised. The history length becomes 0 and the
/// instance's execution becomes `started`'s `first_seq`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Restart {
    /// The new execution's `Started` message.
    pub started: Event,
    /// Events the old execution received and never consumed, oldest first.
    pub carried: Vec<Event>,
}

impl Restart {
    /// A restart with `started`, carrying `carried` over.
    pub fn new(started: Event, carried: Vec<Event>) -> Self {
        Self { started, carried }
    }
}

impl TurnCommit {
    /// A turn of `instance` computed on `expected_len` events, writing
    /// nothing yet: fill in the public fields.
    pub fn new(instance: impl Into<String>, expected_len: u64) -> Self {
        Self {
            instance: instance.into(),
            expected_len,
            execution: 0,
            events: Vec::new(),
            consumed: Vec::new(),
            tasks: Vec::new(),
            messages: Vec::new(),
            cancel_timers: Vec::new(),
            cancel_tasks: Vec::new(),
            finished_tasks: Vec::new(),
            lease_tasks: 0,
            status: None,
            discard_queued: false,
            take_all_due: false,
            restart: None,
            keep_lock: None,
            children: Vec::new(),
            sends: Vec::new(),
            terminate_children: None,
            entity_turn: false,
        }
    }
}

/// An instance's status after a turn.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StatusUpdate {
    /// Where it is in its life.
    pub status: RuntimeStatus,
    /// The return value, if it returned.
    pub output: Option<Payload>,
    /// Why it failed or is stuck.
    pub failure: Option<Failure>,
    /// Why it was terminated.
    pub reason: Option<String>,
    /// The custom status the turn set (`None`: unchanged).
    pub custom_status: Option<Payload>,
    /// The turn's time.
    pub now: i64,
}

impl StatusUpdate {
    /// `status` at time `now`, with no output, failure or reason.
    pub fn new(status: RuntimeStatus, now: i64) -> Self {
        Self {
            status,
            output: None,
            failure: None,
            reason: None,
            custom_status: None,
            now,
        }
    }
}

/// One leased attempt of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskRef {
    /// The task's id.
    pub id: i64,
    /// The attempt it was leased as.
    pub attempt: u32,
}

/// Whether a turn was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitOutcome {
    /// Written; the ids of its new tasks, in the order of `tasks`.
    Committed {
        /// The new tasks' ids.
        tasks: Vec<i64>,
    },
    /// Refused: the stored history length differs, a consumed message is
    /// gone or an older due one was passed over, or a finished task's lease
    /// was lost; nothing of it was written.
    Conflict,
}

/// An activity attempt leased to a worker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LeasedTask {
    /// The task's id.
    pub id: i64,
    /// The calling instance.
    pub instance: String,
    /// The call's sequence number.
    pub seq: u64,
    /// The activity's stored name.
    pub name: String,
    /// The encoded input.
    pub input: Payload,
    /// How often to attempt it.
    pub retry: RetryPolicy,
    /// This attempt's number, from 1 (every lease counts).
    pub attempt: u32,
    /// Attempts that reported an error or a panic.
    pub failures: u32,
}

impl LeasedTask {
    /// The attempt this lease is for.
    pub fn task_ref(&self) -> TaskRef {
        TaskRef {
            id: self.id,
            attempt: self.attempt,
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TaskOutcome {
    /// For good: deliver this completion event to the instance.
    Done(Event),
    /// Attempt again after `delay` (by the store's clock); `failures` is
    /// the new count.
    Retry {
        /// How long from now.
        delay: Duration,
        /// Failed attempts so far.
        failures: u32,
        /// How this attempt failed: kept as the call's last error
        /// ([`TaskState::last_error`]), for operators asking why it waits.
        error: ActivityFailure,
    },
    /// Give the lease back without counting the attempt (shutdown).
    Release,
}

/// The result of one leased attempt.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TaskResult {
    /// The attempt: a result for an older lease is dropped.
    pub task: TaskRef,
    /// The calling instance.
    pub instance: String,
    /// How it ended.
    pub outcome: TaskOutcome,
}

impl TaskResult {
    /// The result of attempt `task` of a call from `instance`.
    pub fn new(task: TaskRef, instance: impl Into<String>, outcome: TaskOutcome) -> Self {
        Self {
            task,
            instance: instance.into(),
            outcome,
        }
    }
}

/// When the next delayed work becomes due, from now by the store's clock
/// (zero: due already).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Due {
    /// The earliest message (timer) of an instance nobody holds.
    pub message: Option<Duration>,
    /// The earliest task (retry backoff, lease expiry).
    pub task: Option<Duration>,
}

/// Where one activity call of an instance stands ([`Store::tasks_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskState {
    /// The call's sequence number.
    pub seq: u64,
    /// Attempts started.
    pub attempts: u32,
    /// Attempts that failed and were retried.
    pub failures: u32,
    /// A worker holds it now (an attempt runs).
    pub running: bool,
    /// When it is due (microseconds since the Unix epoch): the next
    /// attempt, while it waits out a retry's backoff.
    pub visible_at: i64,
    /// How the last failed attempt failed, once one has.
    pub last_error: Option<ActivityFailure>,
}

/// The work due and not yet taken ([`Store::backlog`]): the queue depth
/// operators watch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backlog {
    /// Messages due now (events, results, timers that fired, starts).
    pub messages: u64,
    /// Activity attempts due now and not leased by any process.
    pub tasks: u64,
}

/// Whether anything is happening now for one process, and when the next
/// thing will ([`Store::lookahead`]): what a test's virtual clock skips by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lookahead {
    /// Work the asking process takes or runs is under way: a message is
    /// due for a live instance it runs (not suspended, not set aside, not
    /// held by another owner, not a scheduled start still to come), or an
    /// activity attempt it leased and nobody cancelled is running (or its
    /// result is on the way), or an attempt of an activity it runs is due.
    pub busy: bool,
    /// How long until the next message of an instance it runs, or the
    /// next task (a retry's backoff) of an activity it runs, falls due,
    /// from now by the store's clock.
    pub next: Option<Duration>,
}

/// What another process changed in a shared store ([`Store::watch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change<'a> {
    /// Work may be due: messages, starts, tasks.
    Work,
    /// This instance finished.
    Finished(&'a str),
}

/// What a process can run: work for anything else stays for a process that
/// can (a rolling deploy, two services sharing one database). Each name
/// comes with the newest version of it the process runs: an instance of a
/// newer version was started by a newer build, and is left for it during a
/// rolling deploy (an older version no longer registered is still taken,
/// and parked with a diagnostic; so is a newer one with a termination due,
/// which ends it without its code). Activities and entity types have no
/// versions: they come with [`Names::ANY_VERSION`].
#[derive(Debug, Clone, Copy)]
pub struct Names<'a>(pub &'a [(&'a str, u32)]);

impl Names<'_> {
    /// The version of a name that has none: every instance of it is taken.
    pub const ANY_VERSION: u32 = u32::MAX;

    /// The names alone.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.iter().map(|(n, _)| *n)
    }
}

/// A durable store for instances, histories and work queues.
///
/// Every method is one transaction. [`conformance`] holds the tests a
/// backend must pass; they state each method's contract in code.
pub trait Store: Send + Sync + 'static {
    /// The store's clock, microseconds since the Unix epoch: the time
    /// leases and due times are measured against.
    ///
    /// # Errors
    /// When the store fails (a server clock could not be read).
    fn now(&self) -> Result<i64, StoreError>;

    /// Creates instances, each with its `Started` message (sequence 0), in
    /// one transaction; an id that exists is left as it is. An instance
    /// with [`NewInstance::lock`] is created locked to that owner.
    ///
    /// # Errors
    /// When the store fails; then nothing was written.
    fn create_instances(&self, instances: &[NewInstance]) -> Result<Vec<Created>, StoreError>;

    /// Queues a message for a running instance (an event, a termination),
    /// due at once (at the store's time now: a turn computed before that
    /// time may pass over it). With a `key`, a message with the same key already queued
    /// for the instance makes this a no-op answering
    /// `Enqueued::Queued { message: None }`. With `wake_stuck`, a stuck
    /// instance is released from its set-aside lock so that any process
    /// takes the message at once.
    ///
    /// # Errors
    /// When the store fails; then nothing was written.
    fn enqueue(
        &self,
        instance: &str,
        event: &Event,
        key: Option<&str>,
        wake_stuck: bool,
    ) -> Result<Enqueued, StoreError>;

    /// Takes the due messages of up to `limit` instances of the
    /// orchestrators in `names` that no other owner holds locked (nor
    /// `owner` itself, when it set them aside as stuck), and locks those
    /// instances for `owner` for `lock`. Costs what is due, not what is
    /// stored. An instance whose row or messages do not decode is returned
    /// with [`InstanceWork::damage`] set.
    ///
    /// # Errors
    /// When the store fails.
    fn fetch_work(
        &self,
        owner: &str,
        lock: Duration,
        limit: usize,
        names: Names<'_>,
    ) -> Result<Vec<InstanceWork>, StoreError>;

    /// How far each of `ids` has come (absent: no such instance), and
    /// whether an owner other than `owner` holds it locked.
    ///
    /// # Errors
    /// When the store fails or a row does not decode.
    fn progress(&self, owner: &str, ids: &[String]) -> Result<Vec<(String, Progress)>, StoreError>;

    /// The whole history of an instance, in order; `None` if there is no
    /// such instance.
    ///
    /// # Errors
    /// When the store fails or a stored event does not decode.
    fn history(&self, instance: &str) -> Result<Option<Vec<HistoryRecord>>, StoreError>;

    /// Up to `limit` events of an instance's history from index `from`, in
    /// order; `None` if there is no such instance. A page of a long
    /// history, read without the rest (the default reads it all: a store
    /// should do better).
    ///
    /// # Errors
    /// When the store fails or a stored event does not decode.
    fn history_range(
        &self,
        instance: &str,
        from: u64,
        limit: usize,
    ) -> Result<Option<Vec<HistoryRecord>>, StoreError> {
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        Ok(self
            .history(instance)?
            .map(|h| h.into_iter().skip(from).take(limit).collect()))
    }

    /// Commits turns in one transaction, each refused on its own (see
    /// [`TurnCommit`]). Releases `owner`'s locks on them; tasks leased with
    /// the turn are leased for `lease`.
    ///
    /// # Errors
    /// When the store fails; then nothing was written.
    fn commit_turns(
        &self,
        owner: &str,
        lease: Duration,
        turns: &[TurnCommit],
    ) -> Result<Vec<CommitOutcome>, StoreError>;

    /// Marks a live instance `owner` holds locked stuck with `failure`,
    /// leaving its messages queued and its output (an entity's record) as
    /// it is, and keeps it locked for `retry_after`,
    /// when any process may try it again (with code that may fit by then).
    /// An instance `owner` does not hold (its lock lapsed, or was released
    /// for a termination) is left as it is. `reset_attempts` zeroes its
    /// attempt count (it waits for code, it is not poison). A row that does
    /// not decode stays damaged.
    ///
    /// # Errors
    /// When the store fails.
    fn mark_stuck(
        &self,
        owner: &str,
        instance: &str,
        failure: &Failure,
        retry_after: Duration,
        reset_attempts: bool,
    ) -> Result<(), StoreError>;

    /// Leases up to `limit` due attempts of the activities in `names` to
    /// `owner` for `lease`. A task whose row does not decode is skipped (and
    /// looked at again after the lease).
    ///
    /// # Errors
    /// When the store fails.
    fn fetch_tasks(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        names: Names<'_>,
    ) -> Result<Vec<LeasedTask>, StoreError>;

    /// Records attempt results: completions become messages to their
    /// instance (dropped if it finished), retries are queued again, released
    /// ones are due at once without counting. A result whose lease was lost
    /// is dropped.
    ///
    /// # Errors
    /// When the store fails; then nothing was written.
    fn finish_tasks(&self, owner: &str, results: &[TaskResult]) -> Result<(), StoreError>;

    /// Extends `owner`'s leases on these attempts by `lease` from now;
    /// returns those still leased to it (the others were lost or their
    /// instance finished).
    ///
    /// # Errors
    /// When the store fails.
    fn renew_tasks(
        &self,
        owner: &str,
        tasks: &[TaskRef],
        lease: Duration,
    ) -> Result<Vec<TaskRef>, StoreError>;

    /// Releases the instance locks `owner` holds (on shutdown), so another
    /// process or the next start takes the instances at once. Stuck
    /// instances stay set aside until their retry time.
    ///
    /// # Errors
    /// When the store fails.
    fn release_instances(&self, owner: &str) -> Result<(), StoreError>;

    /// The messages of each of `ids` due by now (on the store's clock),
    /// oldest first: a read, nothing locked or consumed. The runtime reads
    /// them before a turn that results handed over in memory drive, so that
    /// the turn takes what was queued before it instead of overtaking it.
    ///
    /// # Errors
    /// When the store fails or a row does not decode.
    fn peek_due(&self, ids: &[String]) -> Result<Vec<(String, Messages)>, StoreError>;

    /// Every message queued for each of `ids`, due or not, oldest first: a
    /// read, nothing locked or consumed. The database check reads the
    /// `Started` of an instance that has not run yet (a scheduled start, a
    /// child, an execution continued as new) for the version it will run.
    ///
    /// # Errors
    /// When the store fails or a row does not decode.
    fn queued(&self, ids: &[String]) -> Result<Vec<(String, Messages)>, StoreError>;

    /// Suspends (`suspend`) or resumes a live instance, recording
    /// `Suspended` or `Resumed` with `reason` in its history (which refuses
    /// a turn computed before); an instance not started yet (no history)
    /// records nothing, so its history still opens with `Started`, and is
    /// pending again once resumed. A suspended instance is fetched by no one
    /// and keeps what arrives for it; resuming releases any lock on it.
    ///
    /// # Errors
    /// When the store fails or the row does not decode.
    fn set_suspended(
        &self,
        instance: &str,
        suspend: bool,
        reason: &str,
    ) -> Result<Transition, StoreError>;

    /// Deletes a finished instance and everything of it. An entity is
    /// deleted when nothing is queued for it (its state goes with it);
    /// with operations queued it is refused as `Running`.
    ///
    /// # Errors
    /// When the store fails.
    fn purge(&self, instance: &str) -> Result<Transition, StoreError>;

    /// Queues messages from outside any turn (a client signalling
    /// entities), in one transaction, as a turn's [`TurnCommit::sends`]
    /// would be.
    ///
    /// # Errors
    /// When the store fails; then nothing was written.
    fn send(&self, messages: &[Outgoing]) -> Result<(), StoreError>;

    /// Deletes up to `limit` instances that finished before `before`
    /// (microseconds since the Unix epoch), oldest first; returns their ids.
    ///
    /// # Errors
    /// When the store fails.
    fn purge_finished(&self, before: i64, limit: usize) -> Result<Vec<String>, StoreError>;

    /// The activity calls of `instance` still queued or running (not
    /// cancelled), by sequence number.
    ///
    /// # Errors
    /// When the store fails.
    fn tasks_of(&self, instance: &str) -> Result<Vec<TaskState>, StoreError>;

    /// The work due now and not yet taken, by the store's clock.
    ///
    /// # Errors
    /// When the store fails.
    fn backlog(&self) -> Result<Backlog, StoreError>;

    /// How many orchestration instances (not entities) there are in each
    /// status, of orchestrator `name` or of all; statuses with none are
    /// left out.
    ///
    /// # Errors
    /// When the store fails or a status does not decode.
    fn counts(&self, name: Option<&str>) -> Result<Vec<(RuntimeStatus, u64)>, StoreError>;

    /// The instances `query` selects, newest first (by creation time, then
    /// id, both descending), at most `query.limit`. Entities are listed
    /// only when `query.name` names their type.
    ///
    /// # Errors
    /// When the store fails or a row does not decode.
    fn list(&self, query: &ListQuery) -> Result<Vec<InstanceStatus>, StoreError>;

    /// When the earliest delayed message and task fall due.
    ///
    /// # Errors
    /// When the store fails.
    fn next_due(&self) -> Result<Due, StoreError>;

    /// Whether work `owner` takes or runs is under way, and when the next
    /// delayed work for it falls due (see [`Lookahead`]): `instances` are
    /// the orchestrators and entity types it runs, `activities` its
    /// activities. A test runtime moves its virtual clock only when nothing
    /// is under way, so work it would never take (another process's
    /// names, instances another owner holds, attempts cancelled while they
    /// run) must not count.
    ///
    /// # Errors
    /// When the store fails.
    fn lookahead(
        &self,
        owner: &str,
        instances: Names<'_>,
        activities: Names<'_>,
    ) -> Result<Lookahead, StoreError>;

    /// An instance's status, `None` if it does not exist.
    ///
    /// # Errors
    /// When the store fails or the row does not decode.
    fn status(&self, instance: &str) -> Result<Option<InstanceStatus>, StoreError>;

    /// Calls `wake` whenever another process may have queued work for
    /// this one, or finished an instance this one's clients may wait for,
    /// so that it looks at once instead of at its next poll. A
    /// store only one process uses, or one that cannot tell, keeps the
    /// default (which never calls it): polling finds the work.
    fn watch(&self, wake: std::sync::Arc<dyn Fn(Change<'_>) + Send + Sync>) {
        let _ = wake;
    }
}
