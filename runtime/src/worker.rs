//! The activity worker: runs the attempts its dispatcher hands it and the
//! due ones it leases from the store, concurrently on tokio; renews their
//! leases while they run; hands finished results back to the dispatcher and
//! records retries in the store.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;

use crate::activity::ActivityInfo;
use crate::dispatcher::{Completed, Inbound};
use crate::history::{duration_micros, now_micros, ActivityFailure, Event, Payload};
use crate::runtime::Shared;
use crate::store::{LeasedTask, TaskOutcome, TaskRef, TaskResult};

const ERROR_BACKOFF: Duration = Duration::from_millis(100);

type Attempt = (LeasedTask, Result<Payload, ActivityFailure>);

/// Runs until the runtime shuts down.
pub(crate) async fn run(shared: Arc<Shared>, mut handed: UnboundedReceiver<LeasedTask>) {
    let mut shutdown = shared.shutdown.clone();
    let mut inflight: JoinSet<Attempt> = JoinSet::new();
    // Handed-over attempts waiting for room to run (already leased).
    let mut backlog: VecDeque<LeasedTask> = VecDeque::new();
    // Leases held: running attempts and results not yet recorded. They are
    // renewed until the result is in the store.
    let mut leased: HashSet<i64> = HashSet::new();
    let mut unreported: Vec<TaskResult> = Vec::new();
    // When to offer refused results again: one deadline across loop passes,
    // so the other branches firing more often cannot starve it.
    let mut retry_at = tokio::time::Instant::now();
    let lease = duration_micros(shared.config.lease);
    let mut renew = tokio::time::interval((shared.config.lease / 3).max(Duration::from_millis(1)));
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut look = true;
    let mut wait = Duration::ZERO;
    while !shared.is_shut_down() {
        while inflight.len() < shared.config.max_activities {
            let Some(task) = backlog.pop_front() else {
                break;
            };
            spawn(&shared, &mut inflight, task);
        }
        let room = shared.config.max_activities.saturating_sub(inflight.len());
        if look && room > 0 {
            let now = now_micros();
            match shared
                .blocking(move |s, owner| {
                    s.fetch_tasks(owner, now, now.saturating_add(lease), room)
                })
                .await
            {
                Ok(tasks) => {
                    // A full batch may leave more behind: look again at once.
                    look = tasks.len() == room;
                    for task in tasks {
                        leased.insert(task.id);
                        spawn(&shared, &mut inflight, task);
                    }
                    if !look {
                        wait = next_wait(&shared).await;
                    }
                }
                Err(e) => {
                    eprintln!("durable: activity worker: {e}; retrying");
                    wait = ERROR_BACKOFF;
                    look = false;
                }
            }
        } else if !look {
            // Keep the wait computed when we last looked.
        } else {
            wait = shared.config.poll_interval;
        }
        if look && inflight.len() < shared.config.max_activities {
            continue;
        }
        tokio::select! {
            _ = shutdown.changed() => {}
            Some(task) = handed.recv() => {
                leased.insert(task.id);
                backlog.push_back(task);
                while let Ok(task) = handed.try_recv() {
                    leased.insert(task.id);
                    backlog.push_back(task);
                }
                // Spawned at the top of the loop; the store needs no look.
            }
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                collect(&shared, done, &mut unreported, &mut leased);
                while let Some(done) = inflight.try_join_next() {
                    collect(&shared, done, &mut unreported, &mut leased);
                }
                if !report(&shared, &mut unreported, &mut leased).await {
                    retry_at = tokio::time::Instant::now() + ERROR_BACKOFF;
                }
                look = true;
            }
            // Results the store refused last time are offered again.
            () = tokio::time::sleep_until(retry_at), if !unreported.is_empty() => {
                if !report(&shared, &mut unreported, &mut leased).await {
                    retry_at = tokio::time::Instant::now() + ERROR_BACKOFF;
                }
            }
            () = tokio::time::sleep(wait), if !look => look = true,
            _ = renew.tick(), if !leased.is_empty() => {
                let ids: Vec<i64> = leased.iter().copied().collect();
                let until = now_micros().saturating_add(lease);
                if let Err(e) = shared.blocking(move |s, owner| s.renew_tasks(owner, &ids, until)).await {
                    eprintln!("durable: activity worker: renewing leases: {e}");
                }
            }
        }
    }
    // Abandon what still runs and give its leases back, so the next start
    // (or another process) runs it again at once: handed-over tasks that
    // never started included.
    handed.close();
    while let Ok(task) = handed.try_recv() {
        leased.insert(task.id);
    }
    inflight.abort_all();
    while let Some(done) = inflight.join_next().await {
        collect(&shared, done, &mut unreported, &mut leased);
    }
    report(&shared, &mut unreported, &mut leased).await;
    if !leased.is_empty() {
        let ids: Vec<i64> = leased.into_iter().collect();
        if let Err(e) = shared
            .blocking(move |s, owner| s.release_tasks(owner, &ids))
            .await
        {
            eprintln!("durable: activity worker: releasing leases: {e}");
        }
    }
}

/// Until the next task falls due, at most the poll interval.
async fn next_wait(shared: &Arc<Shared>) -> Duration {
    let cap = shared.config.poll_interval;
    match shared.blocking(|s, _| s.next_due()).await {
        Ok(due) => match due.task {
            Some(at) => {
                let until = at.saturating_sub(now_micros());
                Duration::from_micros(until.max(0).unsigned_abs()).min(cap)
            }
            None => cap,
        },
        Err(_) => cap,
    }
}

fn spawn(shared: &Arc<Shared>, inflight: &mut JoinSet<Attempt>, task: LeasedTask) {
    let run = shared.registry.activity(&task.name);
    let limit = shared.registry.max_payload;
    // Leases taken that ended in neither a result nor a reported failure.
    let lost = task.attempt.saturating_sub(1).saturating_sub(task.failures);
    let poison_after = shared.config.poison_after;
    inflight.spawn(async move {
        let result = match run {
            _ if lost >= poison_after => Err(ActivityFailure::Poisoned(format!(
                "activity `{}` was lost {lost} times without finishing (its worker crashed or stalled each time)",
                task.name
            ))),
            Some((name, run)) => {
                let info = ActivityInfo {
                    instance_id: task.instance.clone(),
                    seq: task.seq,
                    attempt: task.attempt,
                    name,
                };
                info.scope(run(&task.input, limit)).await
            }
            None => Err(ActivityFailure::Aborted(format!(
                "activity `{}` is not registered with this worker",
                task.name
            ))),
        };
        (task, result)
    });
}

/// Turns a finished attempt into its result: done, or queued again per the
/// retry policy.
fn collect(
    shared: &Shared,
    done: Result<Attempt, tokio::task::JoinError>,
    batch: &mut Vec<TaskResult>,
    leased: &mut HashSet<i64>,
) {
    // Attempts catch their own panics; a join error is an abort at shutdown,
    // whose lease is given back there.
    let Ok((task, result)) = done else { return };
    let outcome = match result {
        Ok(output) => TaskOutcome::Done(Event::ActivityCompleted {
            seq: task.seq,
            output,
        }),
        Err(failure) => {
            let failures = task.failures.saturating_add(1);
            let retryable = matches!(
                failure,
                ActivityFailure::Error(_) | ActivityFailure::Panic(_)
            );
            if retryable && failures < task.retry.max_attempts() {
                TaskOutcome::Retry {
                    visible_at: now_micros()
                        .saturating_add(duration_micros(task.retry.delay_after(failures))),
                    failures,
                }
            } else {
                TaskOutcome::Done(Event::ActivityFailed {
                    seq: task.seq,
                    failure,
                })
            }
        }
    };
    if let TaskOutcome::Done(event) = outcome {
        // The result goes straight to the dispatcher, whose turn commit
        // deletes the task; the lease, renewed a moment ago, outlives that.
        let handed = Completed {
            task: TaskRef {
                id: task.id,
                attempt: task.attempt,
            },
            instance: task.instance,
            event,
        };
        match shared.inbox_tx.send(Inbound::Completed(handed)) {
            Ok(()) => {
                leased.remove(&task.id);
            }
            // No dispatcher (shutting down): record it in the store.
            Err(back) => {
                let Inbound::Completed(c) = back.0 else {
                    return;
                };
                batch.push(TaskResult {
                    id: c.task.id,
                    attempt: c.task.attempt,
                    instance: c.instance,
                    outcome: TaskOutcome::Done(c.event),
                });
            }
        }
        return;
    }
    batch.push(TaskResult {
        id: task.id,
        attempt: task.attempt,
        instance: task.instance,
        outcome,
    });
}

/// Commits the results in one transaction and wakes the dispatcher. On a
/// store error they stay queued (and their leases renewed) for another try;
/// returns whether everything was recorded.
async fn report(
    shared: &Arc<Shared>,
    unreported: &mut Vec<TaskResult>,
    leased: &mut HashSet<i64>,
) -> bool {
    if unreported.is_empty() {
        return true;
    }
    let batch = std::mem::take(unreported);
    let completed = batch
        .iter()
        .any(|r| matches!(r.outcome, TaskOutcome::Done(_)));
    let outcome = shared
        .blocking(move |s, owner| Ok((s.finish_tasks(owner, &batch), batch)))
        .await;
    match outcome {
        Ok((Ok(()), batch)) => {
            for r in &batch {
                leased.remove(&r.id);
            }
            if completed {
                shared.dispatcher_wake.notify_one();
            }
            true
        }
        Ok((Err(e), batch)) => {
            eprintln!("durable: activity worker: recording results: {e}; retrying");
            *unreported = batch;
            false
        }
        // The blocking pool is gone (the runtime is going down): the leases
        // expire and the attempts run again.
        Err(e) => {
            eprintln!("durable: activity worker: recording results: {e}");
            false
        }
    }
}
