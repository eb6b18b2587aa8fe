//! The PostgreSQL store as a bench process uses it: a client's claims
//! nothing; a profiled worker's times every call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable::history::{Event, HistoryRecord};
use durable::store::{
    Change, CommitOutcome, Created, Due, Enqueued, InstanceWork, LeasedTask, ListQuery, Lookahead,
    Messages, Names, NewInstance, Outgoing, PostgresStore, Progress, Store, StoreError, TaskRef,
    TaskResult, Transition, TurnCommit,
};
use durable::{Failure, InstanceStatus};

/// The store calls a profile tells apart; the rest count as `Other`.
#[derive(Debug, Clone, Copy)]
enum Call {
    CreateInstances,
    FetchWork,
    CommitTurns,
    FetchTasks,
    FinishTasks,
    RenewTasks,
    Progress,
    PeekDue,
    History,
    Status,
    NextDue,
    Other,
}

/// The names of [`Call`]s, in its order (the order a profile prints them).
pub(crate) const CALLS: [&str; 12] = [
    "create_instances",
    "fetch_work",
    "commit_turns",
    "fetch_tasks",
    "finish_tasks",
    "renew_tasks",
    "progress",
    "peek_due",
    "history",
    "status",
    "next_due",
    "other",
];

/// Calls of one kind: how many, the time they took, and the items they
/// carried (turns committed, instances or tasks fetched, results finished).
#[derive(Default)]
pub(crate) struct CallStat {
    count: AtomicU64,
    nanos: AtomicU64,
    items: AtomicU64,
}

/// Per-call statistics of one process, indexed as [`CALLS`].
#[derive(Default)]
pub(crate) struct Calls([CallStat; CALLS.len()]);

impl Calls {
    /// Zeroes every count.
    pub(crate) fn reset(&self) {
        for c in &self.0 {
            c.count.store(0, Ordering::Relaxed);
            c.nanos.store(0, Ordering::Relaxed);
            c.items.store(0, Ordering::Relaxed);
        }
    }

    /// One line per call kind that was made: `call NAME COUNT NANOS ITEMS`,
    /// what a worker prints for the parent to add up.
    pub(crate) fn lines(&self) -> Vec<String> {
        CALLS
            .iter()
            .zip(&self.0)
            .filter(|(_, c)| c.count.load(Ordering::Relaxed) > 0)
            .map(|(name, c)| {
                format!(
                    "call {name} {} {} {}",
                    c.count.load(Ordering::Relaxed),
                    c.nanos.load(Ordering::Relaxed),
                    c.items.load(Ordering::Relaxed)
                )
            })
            .collect()
    }
}

/// A [`PostgresStore`] as a bench process uses it.
///
/// - A client (`claims` off) starts instances and reads them but takes no
///   work: its fetches answer nothing and it never sees anything due, so
///   every turn and activity runs in the worker processes. (The runtime has
///   no client-only mode; this store is how a process gets one.) It starts
///   instances a moment ahead, which keeps them out of its dispatcher; one
///   whose start ran late all the same is created unlocked and its turn
///   refused here, so a worker takes it from the store.
/// - A profiled worker (`calls` set) times every call.
pub(crate) struct BenchStore {
    inner: PostgresStore,
    claims: bool,
    calls: Option<Arc<Calls>>,
}

impl BenchStore {
    /// The store of a client process: it claims nothing.
    pub(crate) fn client(inner: PostgresStore) -> Self {
        Self {
            inner,
            claims: false,
            calls: None,
        }
    }

    /// The store of a profiled worker: every call counted and timed.
    pub(crate) fn profiled(inner: PostgresStore, calls: Arc<Calls>) -> Self {
        Self {
            inner,
            claims: true,
            calls: Some(calls),
        }
    }

    /// Runs `f` as call `which`, adding `items` of its result.
    fn timed<T>(&self, which: Call, items: impl FnOnce(&T) -> usize, f: impl FnOnce() -> T) -> T {
        let Some(calls) = &self.calls else { return f() };
        let began = Instant::now();
        let out = f();
        let nanos = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let stat = &calls.0[which as usize];
        stat.count.fetch_add(1, Ordering::Relaxed);
        stat.nanos.fetch_add(nanos, Ordering::Relaxed);
        stat.items.fetch_add(items(&out) as u64, Ordering::Relaxed);
        out
    }

    fn other<T>(&self, f: impl FnOnce() -> T) -> T {
        self.timed(Call::Other, |_| 0, f)
    }
}

fn len<T>(r: &Result<Vec<T>, StoreError>) -> usize {
    r.as_ref().map_or(0, Vec::len)
}

impl Store for BenchStore {
    fn now(&self) -> Result<i64, StoreError> {
        self.other(|| self.inner.now())
    }

    fn create_instances(&self, instances: &[NewInstance]) -> Result<Vec<Created>, StoreError> {
        if !self.claims {
            let mut unlocked = instances.to_vec();
            for new in &mut unlocked {
                new.lock = None;
            }
            return self.inner.create_instances(&unlocked);
        }
        self.timed(Call::CreateInstances, len, || {
            self.inner.create_instances(instances)
        })
    }

    fn enqueue(
        &self,
        instance: &str,
        event: &Event,
        key: Option<&str>,
        wake_stuck: bool,
    ) -> Result<Enqueued, StoreError> {
        self.other(|| self.inner.enqueue(instance, event, key, wake_stuck))
    }

    fn fetch_work(
        &self,
        owner: &str,
        lock: Duration,
        limit: usize,
        names: Names<'_>,
    ) -> Result<Vec<InstanceWork>, StoreError> {
        if !self.claims {
            return Ok(Vec::new());
        }
        self.timed(Call::FetchWork, len, || {
            self.inner.fetch_work(owner, lock, limit, names)
        })
    }

    fn progress(&self, owner: &str, ids: &[String]) -> Result<Vec<(String, Progress)>, StoreError> {
        self.timed(Call::Progress, len, || self.inner.progress(owner, ids))
    }

    fn history(&self, instance: &str) -> Result<Option<Vec<HistoryRecord>>, StoreError> {
        self.timed(Call::History, |_| 0, || self.inner.history(instance))
    }

    fn commit_turns(
        &self,
        owner: &str,
        lease: Duration,
        turns: &[TurnCommit],
    ) -> Result<Vec<CommitOutcome>, StoreError> {
        if !self.claims {
            return Ok(vec![CommitOutcome::Conflict; turns.len()]);
        }
        self.timed(Call::CommitTurns, len, || {
            self.inner.commit_turns(owner, lease, turns)
        })
    }

    fn mark_stuck(
        &self,
        owner: &str,
        instance: &str,
        failure: &Failure,
        retry_after: Duration,
        reset_attempts: bool,
    ) -> Result<(), StoreError> {
        self.other(|| {
            self.inner
                .mark_stuck(owner, instance, failure, retry_after, reset_attempts)
        })
    }

    fn fetch_tasks(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        names: Names<'_>,
    ) -> Result<Vec<LeasedTask>, StoreError> {
        if !self.claims {
            return Ok(Vec::new());
        }
        self.timed(Call::FetchTasks, len, || {
            self.inner.fetch_tasks(owner, lease, limit, names)
        })
    }

    fn finish_tasks(&self, owner: &str, results: &[TaskResult]) -> Result<(), StoreError> {
        self.timed(
            Call::FinishTasks,
            |_| results.len(),
            || self.inner.finish_tasks(owner, results),
        )
    }

    fn renew_tasks(
        &self,
        owner: &str,
        tasks: &[TaskRef],
        lease: Duration,
    ) -> Result<Vec<TaskRef>, StoreError> {
        self.timed(Call::RenewTasks, len, || {
            self.inner.renew_tasks(owner, tasks, lease)
        })
    }

    fn release_instances(&self, owner: &str) -> Result<(), StoreError> {
        self.other(|| self.inner.release_instances(owner))
    }

    fn peek_due(&self, ids: &[String]) -> Result<Vec<(String, Messages)>, StoreError> {
        self.timed(Call::PeekDue, len, || self.inner.peek_due(ids))
    }

    fn queued(&self, ids: &[String]) -> Result<Vec<(String, Messages)>, StoreError> {
        self.other(|| self.inner.queued(ids))
    }

    fn set_suspended(
        &self,
        instance: &str,
        suspend: bool,
        reason: &str,
    ) -> Result<Transition, StoreError> {
        self.other(|| self.inner.set_suspended(instance, suspend, reason))
    }

    fn purge(&self, instance: &str) -> Result<Transition, StoreError> {
        self.other(|| self.inner.purge(instance))
    }

    fn send(&self, messages: &[Outgoing]) -> Result<(), StoreError> {
        self.other(|| self.inner.send(messages))
    }

    fn purge_finished(&self, before: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.other(|| self.inner.purge_finished(before, limit))
    }

    fn tasks_of(&self, instance: &str) -> Result<Vec<durable::store::TaskState>, StoreError> {
        self.other(|| self.inner.tasks_of(instance))
    }

    fn backlog(&self) -> Result<durable::store::Backlog, StoreError> {
        self.other(|| self.inner.backlog())
    }

    fn counts(&self, name: Option<&str>) -> Result<Vec<(durable::RuntimeStatus, u64)>, StoreError> {
        self.other(|| self.inner.counts(name))
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<InstanceStatus>, StoreError> {
        self.other(|| self.inner.list(query))
    }

    fn next_due(&self) -> Result<Due, StoreError> {
        if !self.claims {
            return Ok(Due::default());
        }
        self.timed(Call::NextDue, |_| 0, || self.inner.next_due())
    }

    fn lookahead(
        &self,
        owner: &str,
        instances: Names<'_>,
        activities: Names<'_>,
    ) -> Result<Lookahead, StoreError> {
        if !self.claims {
            return Ok(Lookahead::default());
        }
        self.other(|| self.inner.lookahead(owner, instances, activities))
    }

    fn status(&self, instance: &str) -> Result<Option<InstanceStatus>, StoreError> {
        self.timed(Call::Status, |_| 0, || self.inner.status(instance))
    }

    fn watch(&self, wake: Arc<dyn Fn(Change<'_>) + Send + Sync>) {
        // A client takes no work: nothing for it to wake to.
        if self.claims {
            self.inner.watch(wake);
        }
    }
}
