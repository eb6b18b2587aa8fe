//! The storage contract: what the runtime needs from a durable store, with
//! one transaction per batch of turns.
//!
//! Methods are synchronous; the runtime calls them off the async executor.
//! Times are microseconds since the Unix epoch. `owner` names one runtime
//! process: leases and locks it holds expire on their own if it dies.

mod sqlite;

pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};

use crate::error::{Failure, StoreError};
use crate::history::{Event, HistoryRecord, Payload};
use crate::retry::RetryPolicy;
use crate::status::{InstanceStatus, RuntimeStatus};

/// An instance to create, with its `Started` message.
#[derive(Debug, Clone)]
pub struct NewInstance {
    /// Its id.
    pub id: String,
    /// Its orchestrator's stored name.
    pub name: String,
    /// The encoded input.
    pub input: Payload,
    /// The time of creation.
    pub now: i64,
}

/// What [`Store::create_instance`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The instance was created; the id of its `Started` message.
    Created {
        /// The message's id.
        message: i64,
    },
    /// An instance with that id already exists; nothing was written.
    Exists,
}

/// What [`Store::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The message is queued under this id (`None`: a message with the same
    /// key was queued before, and this one was not).
    Queued {
        /// The message's id.
        message: Option<i64>,
    },
    /// No such instance; nothing was written.
    NotFound,
    /// The instance has finished; nothing was written.
    Finished(RuntimeStatus),
}

/// Messages waiting for one instance, with what a turn needs to know of it.
#[derive(Debug, Clone)]
pub struct InstanceWork {
    /// The instance.
    pub id: String,
    /// Its status, `None` if the instance does not exist (stray messages).
    pub status: Option<RuntimeStatus>,
    /// Events in its history.
    pub history_len: u64,
    /// How often its turn has been taken since the last commit, this time
    /// included: a turn that keeps crashing its process is poison.
    pub attempts: u32,
    /// The messages, oldest first: (message id, event).
    pub messages: Vec<(i64, Event)>,
}

/// An activity call to queue.
#[derive(Debug, Clone)]
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

/// A message to deliver to an instance at a time (a timer).
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The receiving instance.
    pub instance: String,
    /// What to deliver.
    pub event: Event,
    /// Not before this time.
    pub visible_at: i64,
}

/// Everything one turn of one instance writes, all or nothing.
#[derive(Debug, Clone)]
pub struct TurnCommit {
    /// The instance.
    pub instance: String,
    /// The history length the turn was computed on; the commit is refused
    /// if the store holds another (someone else advanced the instance).
    pub expected_len: u64,
    /// New history events, numbered from `expected_len`.
    pub events: Vec<HistoryRecord>,
    /// Message ids consumed by the turn; the turn is refused if one of them
    /// is gone (consumed by another turn), or if an older message of the
    /// instance, due by the turn's time, is not among them (messages are
    /// consumed in the order they were queued).
    pub consumed: Vec<i64>,
    /// Activity calls to queue.
    pub tasks: Vec<NewTask>,
    /// Delayed messages to queue (timers).
    pub messages: Vec<NewMessage>,
    /// Activity attempts whose results the turn consumed straight from the
    /// worker: deleted with the turn, which is refused if one of them is no
    /// longer leased to the committing owner at that attempt.
    pub finished_tasks: Vec<TaskRef>,
    /// When set, the new tasks are queued already leased to the committing
    /// owner until then (attempt 1), for its own worker to run at once.
    pub lease_tasks_until: Option<i64>,
    /// The new status; `None` leaves it (messages dropped for a finished
    /// or unknown instance).
    pub status: Option<StatusUpdate>,
}

/// An instance's status after a turn.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    /// Where it is in its life.
    pub status: RuntimeStatus,
    /// The return value, if it returned.
    pub output: Option<Payload>,
    /// Why it failed or is stuck.
    pub failure: Option<Failure>,
    /// Why it was terminated.
    pub reason: Option<String>,
    /// The turn's time.
    pub now: i64,
}

/// One leased attempt of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRef {
    /// The task's id.
    pub id: i64,
    /// The attempt it was leased as.
    pub attempt: u32,
}

/// Whether a turn was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Written; the ids of its new tasks, in the order of `tasks`.
    Committed {
        /// The new tasks' ids.
        tasks: Vec<i64>,
    },
    /// Refused: the stored history length differs, or a finished task's
    /// lease was lost; nothing of it was written.
    Conflict,
}

/// An activity attempt leased to a worker.
#[derive(Debug, Clone)]
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

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum TaskOutcome {
    /// For good: deliver this completion event to the instance.
    Done(Event),
    /// Attempt again after `visible_at`; `failures` is the new count.
    Retry {
        /// Not before this time.
        visible_at: i64,
        /// Failed attempts so far.
        failures: u32,
    },
}

/// The result of one leased attempt.
#[derive(Debug, Clone)]
pub struct TaskResult {
    /// The task.
    pub id: i64,
    /// The attempt it was leased as: a result for an older lease is dropped.
    pub attempt: u32,
    /// The calling instance.
    pub instance: String,
    /// How it ended.
    pub outcome: TaskOutcome,
}

/// When the next delayed work becomes due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Due {
    /// The earliest message (timer) time.
    pub message: Option<i64>,
    /// The earliest task time (retry backoff, lease expiry).
    pub task: Option<i64>,
}

/// A durable store for instances, histories and work queues.
///
/// Every method is one transaction. Implementations must make
/// [`Store::commit_turns`] atomic per turn and refuse a turn whose
/// `expected_len` does not match, so that a stale worker can never append
/// twice.
pub trait Store: Send + Sync + 'static {
    /// Creates an instance and queues its `Started` message.
    ///
    /// # Errors
    /// When the store fails.
    fn create_instance(&self, instance: &NewInstance) -> Result<Created, StoreError>;

    /// Queues a message for a running instance (an event, a termination).
    /// With a `key`, a message with the same key already queued for the
    /// instance makes this a no-op answering `Enqueued::Queued { message: None }`.
    ///
    /// # Errors
    /// When the store fails.
    fn enqueue(
        &self,
        instance: &str,
        event: &Event,
        key: Option<&str>,
    ) -> Result<Enqueued, StoreError>;

    /// Takes up to `limit` visible messages, grouped by instance, of
    /// instances no other owner holds locked (nor `owner` itself, when it
    /// marked them stuck), and locks those instances for `owner` until
    /// `lock_until`.
    ///
    /// # Errors
    /// When the store fails or a stored message does not decode.
    fn fetch_work(
        &self,
        owner: &str,
        now: i64,
        lock_until: i64,
        limit: usize,
    ) -> Result<Vec<InstanceWork>, StoreError>;

    /// The whole history of an instance, in order.
    ///
    /// # Errors
    /// When the store fails or a stored event does not decode.
    fn history(&self, instance: &str) -> Result<Vec<HistoryRecord>, StoreError>;

    /// Commits turns in one transaction, each refused on its own if its
    /// `expected_len` is stale. Releases `owner`'s locks on them.
    ///
    /// # Errors
    /// When the store fails; then nothing was written.
    fn commit_turns(
        &self,
        owner: &str,
        turns: &[TurnCommit],
    ) -> Result<Vec<CommitOutcome>, StoreError>;

    /// Marks an instance stuck with `failure`, leaving its messages queued,
    /// and keeps it locked by `owner` until `retry_at`, when any process may
    /// try it again (with code that may fit by then). A nondeterminism or a
    /// missing orchestrator resets the attempt count (the instance waits for
    /// code, it is not poison); other failures keep it.
    ///
    /// # Errors
    /// When the store fails.
    fn mark_stuck(
        &self,
        owner: &str,
        instance: &str,
        failure: &Failure,
        now: i64,
        retry_at: i64,
    ) -> Result<(), StoreError>;

    /// Leases up to `limit` due activity attempts to `owner` until `lease_until`.
    ///
    /// # Errors
    /// When the store fails or a stored task does not decode.
    fn fetch_tasks(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<LeasedTask>, StoreError>;

    /// Records attempt results: completions become messages to their
    /// instance, retries are queued again. A result whose lease was lost is
    /// dropped.
    ///
    /// # Errors
    /// When the store fails; then nothing was written.
    fn finish_tasks(&self, owner: &str, results: &[TaskResult]) -> Result<(), StoreError>;

    /// Extends `owner`'s leases on these tasks.
    ///
    /// # Errors
    /// When the store fails.
    fn renew_tasks(&self, owner: &str, ids: &[i64], lease_until: i64) -> Result<(), StoreError>;

    /// Releases the instance locks `owner` holds (on shutdown), so another
    /// process or the next start takes the instances at once. Stuck
    /// instances stay set aside until their retry time.
    ///
    /// # Errors
    /// When the store fails.
    fn release_instances(&self, owner: &str) -> Result<(), StoreError>;

    /// Gives these leased tasks back, due at once (on shutdown); the
    /// attempts given back do not count as lost.
    ///
    /// # Errors
    /// When the store fails.
    fn release_tasks(&self, owner: &str, ids: &[i64]) -> Result<(), StoreError>;

    /// When the earliest delayed message and task fall due.
    ///
    /// # Errors
    /// When the store fails.
    fn next_due(&self) -> Result<Due, StoreError>;

    /// An instance's status, `None` if it does not exist.
    ///
    /// # Errors
    /// When the store fails or the row does not decode.
    fn status(&self, instance: &str) -> Result<Option<InstanceStatus>, StoreError>;
}
