//! The orchestration dispatcher: takes instances' due messages (from the
//! store, or handed over in memory by clients) and the activity results its
//! worker hands over, runs their turns (from its cache of live executions,
//! or by replay) and commits a whole round of turns in one transaction. New
//! activity tasks are leased to this process only for its worker's free
//! slots and handed over at once; the rest stay in the store for any
//! process to take.

mod cache;
mod entities;
mod replays;
mod round;
mod turns;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;
use crate::mailbox::{Completed, Handed, Inbox, ToWorker};
use crate::registry::Registry;
use crate::shutdown::Shutdown;
use crate::store::handle::StoreHandle;
use crate::store::{InstanceWork, Names, StoreError, TaskOutcome, TaskResult};
use crate::waiters::Waiters;

use cache::Cache;
pub(crate) use entities::EntityDispatcher;
use replays::Replays;

/// How long to back off after a store error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The first wait after a round whose every turn was refused (another
/// process advanced the instances); it doubles while that goes on, up to
/// the poll interval, so that contention never becomes a hot loop.
const CONFLICT_BACKOFF: Duration = Duration::from_millis(1);

/// Everything the dispatcher uses, and nothing else.
pub(crate) struct Dispatcher {
    pub(crate) store: StoreHandle,
    pub(crate) registry: Arc<Registry>,
    pub(crate) config: Config,
    pub(crate) inbox: Inbox,
    pub(crate) worker: ToWorker,
    pub(crate) waiters: Arc<Waiters>,
    /// Set when the runtime begins to shut down: lease no more tasks.
    pub(crate) draining: Shutdown,
    /// Set when the worker has drained: stop.
    pub(crate) stop: Shutdown,
}

/// Logs a store outage once when it starts and once when it ends, not on
/// every retry.
#[derive(Default)]
struct Outage(Option<Instant>);

impl Outage {
    fn failed(&mut self, what: &str, e: &StoreError) {
        if self.0.is_none() {
            tracing::warn!("dispatcher: {what}: {e}; retrying until the store answers");
            self.0 = Some(Instant::now());
        }
    }

    fn ok(&mut self) {
        if let Some(since) = self.0.take() {
            tracing::info!(
                "dispatcher: the store answers again after {:?}",
                since.elapsed()
            );
        }
    }
}

impl Dispatcher {
    /// Runs until told to stop, then gives back what it holds.
    pub(crate) async fn run(mut self) {
        let mut cache = Cache::new(self.config.cache_size);
        let mut replays = Replays::default();
        let mut turns = turns::Turns::new(Arc::clone(&self.registry), self.config.turn_timeout);
        // Work kept while its instance was rebuilt, for the next round.
        let mut rebuilt: Vec<InstanceWork> = Vec::new();
        let names = self.registry.orchestrator_versions();
        let mut stop = self.stop.clone();
        // Results a failed round could not commit, for the next round.
        let mut carried: Vec<Completed> = Vec::new();
        let mut handed: Vec<Handed> = Vec::new();
        let mut outage = Outage::default();
        // Whether to look in the store: woken by a store write, a timer or
        // the poll interval; work handed over in memory needs no look.
        let mut look = true;
        // The next timer known, read when going idle and lowered by the
        // timers this process commits: going idle costs no read.
        let mut next_timer: Option<Instant> = None;
        let mut timers_known = false;
        let mut last_look = Instant::now();
        let mut conflict_wait = CONFLICT_BACKOFF;
        while !self.stop.is_set() {
            // A steady stream of in-memory work must not starve the store:
            // due timers and other processes' messages live only there.
            let timer_due = next_timer.is_some_and(|t| t <= Instant::now());
            look |= last_look.elapsed() >= self.config.poll_interval || timer_due;
            if look {
                last_look = Instant::now();
                if timer_due {
                    next_timer = None;
                    timers_known = false;
                }
            }
            // Work whose instance was rebuilt meanwhile runs in this round.
            if let Some((w, c)) = replays.finished() {
                rebuilt.extend(w);
                carried.extend(c);
            }
            // A round takes at most a batch from memory too: rounds stay
            // short and memory flat however fast clients start instances.
            while handed.len() < self.config.batch {
                let Ok(m) = self.inbox.messages.try_recv() else {
                    break;
                };
                handed.push(m);
            }
            while let Ok(c) = self.inbox.completions.try_recv() {
                carried.push(c);
            }
            let work = if look {
                let (lock, batch) = (self.config.instance_lock, self.config.batch);
                let names = names.clone();
                self.store
                    .call(move |s, owner| s.fetch_work(owner, lock, batch, Names(&names)))
                    .await
            } else {
                Ok(Vec::new())
            };
            let work = match work {
                Ok(fetched) => {
                    outage.ok();
                    // A fresh fetch of the same instance supersedes what was
                    // kept for it (the store still holds every message).
                    let mut work: Vec<_> = std::mem::take(&mut rebuilt)
                        .into_iter()
                        .filter(|w| !fetched.iter().any(|f| f.id == w.id))
                        .collect();
                    work.extend(fetched);
                    work
                }
                Err(e) => {
                    outage.failed("looking for work", &e);
                    sleep_or(&mut stop, ERROR_BACKOFF).await;
                    continue;
                }
            };
            // A full batch may have left work behind.
            look = work.len() >= self.config.batch;
            if work.is_empty() && handed.is_empty() && carried.is_empty() && rebuilt.is_empty() {
                if !timers_known {
                    next_timer = self
                        .store
                        .call(|s, _| s.next_due())
                        .await
                        .ok()
                        .and_then(|d| d.message)
                        .map(|d| Instant::now() + d);
                    timers_known = true;
                }
                let wait = next_timer.map_or(self.config.poll_interval, |t| {
                    t.saturating_duration_since(Instant::now())
                        .min(self.config.poll_interval)
                });
                tokio::select! {
                    // A wake may also mean work scheduled for later (a
                    // scheduled start): read the next due time again.
                    () = self.inbox.wake.notified() => {
                        look = true;
                        timers_known = false;
                    }
                    Some(m) = self.inbox.messages.recv() => handed.push(m),
                    Some(c) = self.inbox.completions.recv() => carried.push(c),
                    () = tokio::time::sleep(wait) => look = true,
                    (w, c) = replays.next(), if replays.any_running() => {
                        rebuilt.extend(w);
                        carried.extend(c);
                    }
                    () = stop.wait() => {}
                }
                continue;
            }
            let round = round::Round::new(&self, !self.draining.is_set());
            let completions = std::mem::take(&mut carried);
            let messages = std::mem::take(&mut handed);
            match round
                .run(
                    (&mut cache, &mut replays, &mut turns),
                    &mut stop,
                    work,
                    messages,
                    completions,
                )
                .await
            {
                Ok(r) => {
                    outage.ok();
                    look |= r.look_again;
                    if r.all_refused {
                        sleep_or(&mut stop, conflict_wait).await;
                        conflict_wait = (conflict_wait * 2).min(self.config.poll_interval);
                    } else {
                        conflict_wait = CONFLICT_BACKOFF;
                    }
                    if let Some(t) = r.next_timer {
                        let t = Instant::now() + t;
                        next_timer = Some(next_timer.map_or(t, |n| n.min(t)));
                    }
                }
                Err((e, back)) => {
                    outage.failed("committing a round", &e);
                    // Messages are in the store: the next look finds them.
                    carried = back;
                    look = true;
                    sleep_or(&mut stop, ERROR_BACKOFF).await;
                }
            }
        }
        carried.extend(replays.drain_waiting());
        self.finish(carried).await;
    }

    /// Gives back what the dispatcher holds: results still in memory go to
    /// the store as messages, and instance locks are released so the next
    /// owner takes the instances at once.
    async fn finish(mut self, mut carried: Vec<Completed>) {
        self.inbox.completions.close();
        while let Ok(c) = self.inbox.completions.try_recv() {
            carried.push(c);
        }
        self.inbox.messages.close();
        // A start that reserved room before the close may still be
        // committing its instance, locked to this process: `recv` answers
        // `None` only once every such reservation is used or dropped, so the
        // locks released below include its lock. (Its message is in the
        // store; the next owner takes it.)
        while self.inbox.messages.recv().await.is_some() {}
        if let Err((e, _)) = send_to_store(&self.store, &self.worker, carried).await {
            tracing::warn!("dispatcher: recording activity results at shutdown: {e}; their leases expire and they run again");
        }
        if let Err(e) = self.store.call(|s, owner| s.release_instances(owner)).await {
            tracing::warn!("dispatcher: releasing instance locks at shutdown: {e}");
        }
    }
}

async fn sleep_or(stop: &mut Shutdown, d: Duration) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = stop.wait() => {}
    }
}

/// Queues handed-over results in the store as messages to their instances,
/// for the cases the in-memory path cannot take (the instance is stuck,
/// finished, or was advanced by another process). A result whose lease was
/// lost is dropped there: its task ran again elsewhere.
pub(super) async fn send_to_store(
    store: &StoreHandle,
    worker: &ToWorker,
    completions: Vec<Completed>,
) -> Result<(), (StoreError, Vec<Completed>)> {
    if completions.is_empty() {
        return Ok(());
    }
    let results: Vec<TaskResult> = completions
        .iter()
        .map(|c| {
            TaskResult::new(
                c.task,
                c.instance.clone(),
                TaskOutcome::Done(c.event.clone()),
            )
        })
        .collect();
    match store
        .call(move |s, owner| s.finish_tasks(owner, &results))
        .await
    {
        Ok(()) => {
            worker.settle(completions.iter().map(|c| c.task));
            Ok(())
        }
        Err(e) => Err((e, completions)),
    }
}
