//! The activity worker: runs the attempts its dispatcher hands it and the
//! due ones it leases from the store, each in a slot (at most
//! `max_concurrent_activities` at once), on threads of their own so that an
//! activity that blocks its thread cannot stall the turns; renews leases
//! until each result is settled; hands results back to the dispatcher and
//! records retries in the store. On shutdown it drains: no new work, running
//! attempts get a grace period, and whatever is left is given back.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::activity::{ActivityInfo, Cancel};
use crate::config::Config;
use crate::history::{ActivityFailure, Event, Payload};
use crate::mailbox::{Assigned, Completed, WorkerEnds};
use crate::policy::{self, AfterFailure, Poison};
use crate::registry::Registry;
use crate::retry::RetryPolicy;
use crate::shutdown::Shutdown;
use crate::store::handle::StoreHandle;
use crate::store::{LeasedTask, Names, TaskOutcome, TaskRef, TaskResult};
use crate::unwind::CatchUnwind;

const ERROR_BACKOFF: Duration = Duration::from_millis(100);

type Attempt = (LeasedTask, Result<Payload, ActivityFailure>);

/// The attempts running now, and which lease each one holds (an attempt
/// aborted at shutdown returns nothing, and its lease must still go back).
#[derive(Default)]
struct Running {
    set: JoinSet<Attempt>,
    leases: std::collections::HashMap<tokio::task::Id, (TaskRef, String)>,
}

type Joined = Result<(tokio::task::Id, Attempt), tokio::task::JoinError>;

/// Leases this process holds on activity attempts: running ones and
/// results not yet settled. Shared with the runtime so that a runtime
/// dropped without `shutdown()` can still give them back.
pub(crate) type Leases = Arc<Mutex<HashSet<(TaskRef, String)>>>;

/// Everything the worker uses, and nothing else.
pub(crate) struct Worker {
    pub(crate) store: StoreHandle,
    pub(crate) registry: Arc<Registry>,
    pub(crate) config: Config,
    pub(crate) ends: WorkerEnds,
    pub(crate) leases: Leases,
    /// The threads activities run on.
    pub(crate) threads: tokio::runtime::Handle,
    /// Set when the runtime begins to shut down.
    pub(crate) draining: Shutdown,
    /// The cancellation signal of each running attempt.
    pub(crate) cancels: Mutex<std::collections::HashMap<TaskRef, Cancel>>,
}

impl Worker {
    fn hold(&self, t: &LeasedTask) {
        lock(&self.leases).insert((t.task_ref(), t.instance.clone()));
    }

    fn drop_lease(&self, t: TaskRef) {
        lock(&self.leases).retain(|(r, _)| *r != t);
    }

    /// Runs until the runtime drains, then drains.
    pub(crate) async fn run(mut self) {
        let names: Vec<(&str, u32)> = self
            .registry
            .activity_names()
            .into_iter()
            .map(|n| (n, Names::ANY_VERSION))
            .collect();
        let mut draining = self.draining.clone();
        let mut inflight = Running::default();
        let mut unreported: Vec<TaskResult> = Vec::new();
        // When to offer refused results again: one deadline across loop
        // passes, so the other branches firing more often cannot starve it.
        let mut retry_at = Instant::now();
        let lease = self.config.activity_lease;
        let mut renew = tokio::time::interval((lease / 3).max(Duration::from_millis(1)));
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut look = true;
        // A look found no free slot: the next finished attempt looks again.
        let mut missed = false;
        // When to look in the store next: a deadline, not a wait, so that
        // the other branches firing more often cannot postpone it forever.
        let mut look_at = Instant::now();
        while !draining.is_set() {
            let room = self.ends.slots.available_permits();
            if look && room > 0 {
                // Slots are taken for what the fetch returns, not held while
                // it runs: the dispatcher leasing its next turn's task in the
                // meantime must find them free.
                let names = names.clone();
                match self
                    .store
                    .call(move |s, owner| s.fetch_tasks(owner, lease, room, Names(&names)))
                    .await
                {
                    Ok(tasks) => {
                        // A full batch may leave more behind: look again.
                        look = tasks.len() == room;
                        for task in tasks {
                            match Arc::clone(&self.ends.slots).try_acquire_owned() {
                                Ok(slot) => self.spawn(&mut inflight, Assigned { task, slot }),
                                // Taken meanwhile by the dispatcher's hand-
                                // over: given back, due at once.
                                Err(_) => unreported.push(TaskResult::new(
                                    task.task_ref(),
                                    task.instance,
                                    TaskOutcome::Release,
                                )),
                            }
                        }
                        if !unreported.is_empty() && !self.report(&mut unreported).await {
                            retry_at = Instant::now() + ERROR_BACKOFF;
                        }
                        if !look {
                            look_at = Instant::now() + self.next_wait().await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("activity worker: looking for tasks: {e}; retrying");
                        look_at = Instant::now() + ERROR_BACKOFF;
                        look = false;
                    }
                }
            } else if look {
                // No free slot: a finished attempt makes room and looks.
                look = false;
                missed = true;
                look_at = Instant::now() + self.config.poll_interval;
            }
            if look {
                continue;
            }
            tokio::select! {
                () = draining.wait() => {}
                Some(a) = self.ends.tasks.recv() => self.spawn(&mut inflight, a),
                Some(done) = inflight.set.join_next_with_id(), if !inflight.set.is_empty() => {
                    self.collect(&mut inflight, done, &mut unreported);
                    while let Some(done) = inflight.set.try_join_next_with_id() {
                        self.collect(&mut inflight, done, &mut unreported);
                    }
                    let retried = unreported
                        .iter()
                        .any(|r| matches!(r.outcome, TaskOutcome::Retry { .. }));
                    if !self.report(&mut unreported).await {
                        retry_at = Instant::now() + ERROR_BACKOFF;
                    }
                    // Work in the store is looked for when it is announced
                    // (a wake), when it falls due, or at the poll interval:
                    // a finished attempt alone needs no look, unless a look
                    // found the slots full or it is to be tried again (its
                    // due time joins the next wait).
                    look = std::mem::take(&mut missed) || retried;
                }
                Some(t) = self.ends.settled.recv() => self.drop_lease(t),
                // Results the store refused last time are offered again.
                () = tokio::time::sleep_until(retry_at), if !unreported.is_empty() => {
                    if !self.report(&mut unreported).await {
                        retry_at = Instant::now() + ERROR_BACKOFF;
                    }
                }
                () = tokio::time::sleep_until(look_at) => look = true,
                () = self.ends.wake.notified() => look = true,
                _ = renew.tick() => self.renew().await,
            }
        }
        self.drain(inflight, unreported).await;
    }

    /// Stops taking work, lets running attempts finish within the grace
    /// period, then gives back every lease still held.
    async fn drain(mut self, mut inflight: Running, mut unreported: Vec<TaskResult>) {
        let deadline = Instant::now() + self.config.shutdown_grace;
        let mut release: Vec<TaskResult> = Vec::new();
        while !inflight.set.is_empty() {
            tokio::select! {
                Some(a) = self.ends.tasks.recv() => {
                    // Handed over as the runtime began to stop: not started.
                    release.push(TaskResult::new(a.task.task_ref(), a.task.instance, TaskOutcome::Release));
                }
                Some(done) = inflight.set.join_next_with_id() => {
                    self.collect(&mut inflight, done, &mut unreported);
                }
                Some(t) = self.ends.settled.recv() => self.drop_lease(t),
                _ = renew_tick(self.config.activity_lease) => self.renew().await,
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.ends.tasks.close();
        while let Ok(a) = self.ends.tasks.try_recv() {
            release.push(TaskResult::new(
                a.task.task_ref(),
                a.task.instance,
                TaskOutcome::Release,
            ));
        }
        // Past the grace period: what still runs is abandoned and its lease
        // given back, so the next start runs it again at once.
        inflight.set.abort_all();
        while let Some(done) = inflight.set.join_next_with_id().await {
            self.collect(&mut inflight, done, &mut unreported);
        }
        for r in &release {
            self.drop_lease(r.task);
        }
        unreported.extend(release);
        self.report(&mut unreported).await;
    }

    /// Starts an attempt in its slot, on the activity threads.
    fn spawn(&self, inflight: &mut Running, assigned: Assigned) {
        let Assigned { task, slot } = assigned;
        self.hold(&task);
        let lease = (task.task_ref(), task.instance.clone());
        let cancel = Cancel::default();
        lock(&self.cancels).insert(task.task_ref(), cancel.clone());
        let run = self.registry.activity(&task.name);
        let limit = self.config.max_payload;
        let poison = Poison {
            after: self.config.poison_after,
        };
        let clock = self.config.clock.clone();
        let metrics = Arc::clone(&self.config.metrics);
        let attempt = async move {
            // The slot is held while the attempt runs.
            let _slot = slot;
            let started = std::time::Instant::now();
            let result = match run {
                _ if poison.task_is_poison(task.attempt, task.failures) => {
                    Err(ActivityFailure::Poisoned(format!(
                        "activity `{}` was lost {} times without finishing (its worker crashed or stalled each time)",
                        task.name,
                        Poison::lost_attempts(task.attempt, task.failures)
                    )))
                }
                Some((name, run)) => {
                    let info = ActivityInfo {
                        cancel: cancel.clone(),
                        instance_id: task.instance.clone(),
                        seq: task.seq,
                        attempt: task.attempt,
                        name,
                    };
                    let span = tracing::debug_span!("activity", name, attempt = task.attempt,
                        instance = %crate::ids::Escaped(&task.instance));
                    // Everything user code does (decoding the input, the
                    // body, encoding the output) is inside the guard: a
                    // panic anywhere is a failed attempt, never a lost lease.
                    let input = task.input.clone();
                    let body = info.scope(async move { run(&input, limit).await });
                    let guarded = CatchUnwind::new(AssertUnwindSafe(body.instrument(span)));
                    match time_limit(&task.retry, clock.now()) {
                        Some((limit, _)) if limit.is_zero() => {
                            Err(timed_out(&task.retry, clock.now()))
                        }
                        // The attempt runs as a task of its own, so that the
                        // limit holds even for code that blocks its thread:
                        // past it the attempt is given up (dropped, if it
                        // awaits) and its lease freed with the result.
                        Some((limit, _)) => {
                            let body = tokio::spawn(guarded);
                            let abort = body.abort_handle();
                            match tokio::time::timeout(limit, body).await {
                                Ok(Ok(Ok(r))) => r,
                                Ok(Ok(Err(panic))) => Err(ActivityFailure::Panic(panic)),
                                Ok(Err(e)) => Err(ActivityFailure::Panic(e.to_string())),
                                Err(_) => {
                                    abort.abort();
                                    Err(timed_out(&task.retry, clock.now()))
                                }
                            }
                        }
                        None => match guarded.await {
                            Ok(r) => r,
                            Err(panic) => Err(ActivityFailure::Panic(panic)),
                        },
                    }
                }
                // Fetches only take registered names; one handed over for an
                // activity this process lacks cannot happen.
                None => Err(ActivityFailure::Aborted(format!(
                    "activity `{}` is not registered with this worker",
                    task.name
                ))),
            };
            metrics.attempt(&task.name, started.elapsed(), result.is_err());
            (task, result)
        };
        let handle = inflight.set.spawn_on(attempt, &self.threads);
        inflight.leases.insert(handle.id(), lease);
    }

    /// Turns a finished attempt into its result: handed to the dispatcher,
    /// or queued again per the retry policy.
    fn collect(&self, inflight: &mut Running, done: Joined, unreported: &mut Vec<TaskResult>) {
        let (task, result) = match done {
            Ok((id, attempt)) => {
                inflight.leases.remove(&id);
                lock(&self.cancels).remove(&attempt.0.task_ref());
                attempt
            }
            // Attempts catch their own panics: a join error is an abort at
            // shutdown. Its lease goes back, due at once, not counted.
            Err(e) => {
                if let Some((task, instance)) = inflight.leases.remove(&e.id()) {
                    unreported.push(TaskResult::new(task, instance, TaskOutcome::Release));
                }
                return;
            }
        };
        let event = match result {
            Ok(output) => Event::ActivityCompleted {
                seq: task.seq,
                output,
            },
            Err(failure) => match policy::after_failure(
                &failure,
                task.failures,
                &task.retry,
                (self.config.clock.now(), unit_random()),
            ) {
                AfterFailure::Retry(delay, failures) => {
                    unreported.push(TaskResult::new(
                        task.task_ref(),
                        task.instance,
                        TaskOutcome::Retry {
                            delay,
                            failures,
                            error: failure,
                        },
                    ));
                    return;
                }
                AfterFailure::GiveUp => Event::ActivityFailed {
                    seq: task.seq,
                    failure,
                },
                AfterFailure::OutOfTime => Event::ActivityFailed {
                    seq: task.seq,
                    failure: ActivityFailure::TimedOut(format!(
                        "the call's total timeout passed ({} attempts failed)",
                        task.failures.saturating_add(1)
                    )),
                },
            },
        };
        // The result goes straight to the dispatcher, whose turn commit
        // deletes the task; the lease is renewed until then.
        let handed = Completed {
            task: task.task_ref(),
            instance: task.instance,
            event,
        };
        if let Err(back) = self.ends.results.send(handed) {
            // No dispatcher (shutting down): record it in the store.
            let c = back.0;
            unreported.push(TaskResult::new(
                c.task,
                c.instance,
                TaskOutcome::Done(c.event),
            ));
        }
    }

    /// Commits results in one transaction. On a store error they stay
    /// queued (and their leases renewed) for another try; returns whether
    /// everything was recorded.
    async fn report(&self, unreported: &mut Vec<TaskResult>) -> bool {
        if unreported.is_empty() {
            return true;
        }
        let batch = std::mem::take(unreported);
        let outcome = self
            .store
            .call(move |s, owner| Ok((s.finish_tasks(owner, &batch), batch)))
            .await;
        match outcome {
            Ok((Ok(()), batch)) => {
                for r in &batch {
                    self.drop_lease(r.task);
                }
                true
            }
            Ok((Err(e), batch)) => {
                tracing::warn!("activity worker: recording results: {e}; retrying");
                *unreported = batch;
                false
            }
            // The blocking pool is gone (the runtime is going down): the
            // leases expire and the attempts run again.
            Err(e) => {
                tracing::warn!("activity worker: recording results: {e}");
                false
            }
        }
    }

    /// Renews every lease held; forgets the ones the store says are lost.
    async fn renew(&self) {
        let held: Vec<TaskRef> = lock(&self.leases).iter().map(|(r, _)| *r).collect();
        if held.is_empty() {
            return;
        }
        let lease = self.config.activity_lease;
        let asked = held.clone();
        match self
            .store
            .call(move |s, owner| s.renew_tasks(owner, &asked, lease))
            .await
        {
            Ok(still) => {
                let still: HashSet<TaskRef> = still.into_iter().collect();
                lock(&self.leases).retain(|(r, _)| still.contains(r) || !held.contains(r));
                // A lease that is gone (its instance ended, or the lease was
                // lost): the attempt is told.
                let cancels = lock(&self.cancels);
                for r in held.iter().filter(|r| !still.contains(r)) {
                    if let Some(c) = cancels.get(r) {
                        c.cancel();
                    }
                }
            }
            Err(e) => tracing::warn!("activity worker: renewing leases: {e}"),
        }
    }

    /// Until the next task falls due, at most the poll interval.
    async fn next_wait(&self) -> Duration {
        let cap = self.config.poll_interval;
        match self.store.call(|s, _| s.next_due()).await {
            Ok(due) => due.task.map_or(cap, |d| d.min(cap)),
            Err(_) => cap,
        }
    }
}

async fn renew_tick(lease: Duration) {
    tokio::time::sleep((lease / 3).max(Duration::from_millis(1))).await;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Gives back every lease in `leases` at once, on the calling thread: for
/// a runtime dropped without `shutdown()`.
pub(crate) fn release_now(store: &StoreHandle, leases: &Leases) {
    let held: Vec<TaskResult> = lock(leases)
        .drain()
        .map(|(r, instance)| TaskResult::new(r, instance, TaskOutcome::Release))
        .collect();
    if held.is_empty() {
        return;
    }
    if let Err(e) = store.call_now(|s, owner| s.finish_tasks(owner, &held)) {
        tracing::warn!("activity worker: giving leases back: {e}; they expire after the lease");
    }
}

/// How long an attempt may run under `retry`: the attempt timeout, cut at
/// the total timeout's end; `None` without either. Zero once the total
/// timeout has passed.
fn time_limit(retry: &RetryPolicy, now: i64) -> Option<(Duration, bool)> {
    let left = retry
        .deadline()
        .map(|d| Duration::from_micros(d.saturating_sub(now).max(0).unsigned_abs()));
    match (retry.attempt_limit(), left) {
        (None, None) => None,
        (Some(a), None) => Some((a, false)),
        (None, Some(l)) => Some((l, true)),
        (Some(a), Some(l)) => Some((a.min(l), l <= a)),
    }
}

/// The failure of an attempt cut by its time limit.
fn timed_out(retry: &RetryPolicy, now: i64) -> ActivityFailure {
    match time_limit(retry, now) {
        Some((_, true)) | None => {
            ActivityFailure::TimedOut("the call's total timeout passed".to_owned())
        }
        Some((limit, false)) => ActivityFailure::TimedOut(format!(
            "the attempt ran longer than its timeout of {limit:?}"
        )),
    }
}

/// A random number in `[0, 1)`, for jitter.
fn unit_random() -> f64 {
    // 53 random bits: exactly representable.
    #[allow(clippy::cast_precision_loss)]
    let r = (crate::ids::random_u128().0 >> 11) as f64;
    r / (1u64 << 53) as f64
}
