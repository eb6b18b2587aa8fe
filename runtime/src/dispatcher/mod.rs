//! The orchestration dispatcher: takes instances' queued messages and the
//! activity results this process's worker hands over, runs their turns (from
//! the cache, or by replay) and commits a whole batch of turns in one
//! transaction. New activity tasks are committed already leased to this
//! process and handed to its worker; finished ones come back the same way,
//! so a step costs one commit, not three.

mod round;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use round::run_batch;

use crate::cache::Cache;
use crate::error::StoreError;
use crate::history::{duration_micros, now_micros, Event};
use crate::runtime::Shared;
use crate::store::{TaskOutcome, TaskRef, TaskResult};

/// How long to back off after a store error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// An activity result handed over by this process's worker, not yet in
/// the store: the turn that consumes it deletes its task.
#[derive(Debug, Clone)]
pub(crate) struct Completed {
    pub(crate) task: TaskRef,
    pub(crate) instance: String,
    pub(crate) event: Event,
}

/// What reaches the dispatcher in memory from this process.
#[derive(Debug, Clone)]
pub(crate) enum Inbound {
    /// An activity result from the worker.
    Completed(Completed),
    /// A message a client just committed (a start, an event): the turn that
    /// consumes it deletes it, so taking it from memory saves a read of the
    /// store; it stays in the store for anyone else until then.
    Message {
        instance: String,
        id: i64,
        event: Event,
    },
}

/// Runs until the runtime shuts down.
pub(crate) async fn run(shared: Arc<Shared>, mut inbox: UnboundedReceiver<Inbound>) {
    let mut cache = Cache::new(shared.config.cache_size);
    let mut shutdown = shared.shutdown.clone();
    // Results a failed round could not commit, for the next round.
    let mut carried: Vec<Inbound> = Vec::new();
    // Whether to look in the store: woken by a store write, a timer or the
    // poll interval; results handed over in memory need no look.
    let mut look = true;
    // The earliest timer message known, read after each look at the store
    // and lowered by the timers this process commits: going idle costs no
    // read of the store.
    let mut next_timer: Option<i64> = None;
    let mut timers_known = false;
    let mut last_look = tokio::time::Instant::now();
    while !shared.is_shut_down() {
        // A steady stream of in-memory work must not starve the store: due
        // timers and other processes' messages live only there.
        look |= last_look.elapsed() >= shared.config.poll_interval
            || next_timer.is_some_and(|t| t <= now_micros());
        if look {
            last_look = tokio::time::Instant::now();
            // This look takes the due timers; later ones are read again
            // when the dispatcher next goes idle.
            if next_timer.is_some_and(|t| t <= now_micros()) {
                next_timer = None;
            }
        }
        let mut inbound = std::mem::take(&mut carried);
        // A round takes at most a batch from memory too: rounds stay short
        // and memory flat however fast clients start instances.
        while inbound.len() < shared.config.batch {
            let Ok(c) = inbox.try_recv() else { break };
            inbound.push(c);
        }
        let work = if look {
            let now = now_micros();
            let lock_until = now.saturating_add(duration_micros(shared.config.lease));
            let batch = shared.config.batch;
            shared
                .blocking(move |s, owner| s.fetch_work(owner, now, lock_until, batch))
                .await
        } else {
            Ok(Vec::new())
        };
        let work = match work {
            Ok(work) => {
                timers_known &= !look;
                work
            }
            Err(e) => {
                eprintln!("durable: dispatcher: {e}; retrying");
                carried = inbound;
                sleep_or_shutdown(&mut shutdown, ERROR_BACKOFF).await;
                continue;
            }
        };
        // A full batch may have left messages behind.
        look = work.iter().map(|w| w.messages.len()).sum::<usize>() >= shared.config.batch;
        if work.is_empty() && inbound.is_empty() {
            if !timers_known {
                next_timer = shared
                    .blocking(|s, _| s.next_due())
                    .await
                    .ok()
                    .and_then(|d| d.message);
                timers_known = true;
            }
            let wait = idle_wait(&shared, next_timer);
            tokio::select! {
                () = shared.dispatcher_wake.notified() => look = true,
                Some(c) = inbox.recv() => carried.push(c),
                () = tokio::time::sleep(wait) => look = true,
                _ = shutdown.changed() => {}
            }
            continue;
        }
        match run_batch(&shared, &mut cache, work, inbound).await {
            Ok((again, timer)) => {
                look |= again;
                next_timer = match (next_timer, timer) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Err((e, back)) => {
                eprintln!("durable: dispatcher: {e}; retrying");
                // Messages are in the store: the next look finds them.
                carried = back.into_iter().map(Inbound::Completed).collect();
                look = true;
                sleep_or_shutdown(&mut shutdown, ERROR_BACKOFF).await;
            }
        }
    }
    // Results still in memory go to the store as messages (or, if it
    // refuses, their leases expire and the attempts run again). Closed
    // first, so that the worker records in the store whatever it finishes
    // from now on instead of handing it here.
    inbox.close();
    while let Ok(c) = inbox.try_recv() {
        carried.push(c);
    }
    let completions = carried
        .into_iter()
        .filter_map(|i| match i {
            Inbound::Completed(c) => Some(c),
            Inbound::Message { .. } => None,
        })
        .collect();
    if let Err(e) = send_to_store(&shared, completions).await {
        eprintln!("durable: dispatcher: recording activity results: {e}");
    }
    // Turns in flight were not committed: let the next owner take their
    // instances at once instead of after the lock expires.
    if let Err(e) = shared.blocking(|s, owner| s.release_instances(owner)).await {
        eprintln!("durable: dispatcher: releasing instance locks: {e}");
    }
}

async fn sleep_or_shutdown(shutdown: &mut tokio::sync::watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        _ = shutdown.changed() => {}
    }
}

/// How long to sleep when there is nothing to do: until the next timer,
/// at most the poll interval (work queued by other processes).
fn idle_wait(shared: &Shared, next_timer: Option<i64>) -> Duration {
    let cap = shared.config.poll_interval;
    match next_timer {
        Some(at) => {
            let until = at.saturating_sub(now_micros());
            // Due already means another process holds it or it is stuck here:
            // look again after the poll interval.
            if until <= 0 {
                cap
            } else {
                Duration::from_micros(until.unsigned_abs()).min(cap)
            }
        }
        None => cap,
    }
}

/// Queues handed-over results in the store as messages to their instances,
/// for the cases the in-memory path cannot take (the instance is stuck,
/// finished, or was advanced by another process). A result whose lease was
/// lost is dropped there: its task ran again elsewhere.
pub(super) async fn send_to_store(
    shared: &Arc<Shared>,
    completions: Vec<Completed>,
) -> Result<(), StoreError> {
    if completions.is_empty() {
        return Ok(());
    }
    let results: Vec<TaskResult> = completions
        .into_iter()
        .map(|c| TaskResult {
            id: c.task.id,
            attempt: c.task.attempt,
            instance: c.instance,
            outcome: TaskOutcome::Done(c.event),
        })
        .collect();
    shared
        .blocking(move |s, owner| s.finish_tasks(owner, &results))
        .await?;
    shared.dispatcher_wake.notify_one();
    Ok(())
}
