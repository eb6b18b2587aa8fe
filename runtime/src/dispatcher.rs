//! The orchestration dispatcher: takes instances' queued messages, runs
//! their turns (from the cache, or by replay) and commits a whole batch of
//! turns in one transaction.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::context::Action;
use crate::error::{Failure, FailureKind};
use crate::history::{duration_micros, now_micros, Event, HistoryRecord};
use crate::replay::{Execution, Outcome, Parked, Turn};
use crate::runtime::Shared;
use crate::status::RuntimeStatus;
use crate::store::{CommitOutcome, InstanceWork, NewMessage, NewTask, StatusUpdate, TurnCommit};

/// How long to back off after a store error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Runs until the runtime shuts down.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut cache = Cache::new(shared.config.cache_size);
    let mut shutdown = shared.shutdown.clone();
    while !shared.is_shut_down() {
        let now = now_micros();
        let lock_until = now.saturating_add(duration_micros(shared.config.lease));
        let batch = shared.config.batch;
        let work = shared
            .blocking(move |s, owner| s.fetch_work(owner, now, lock_until, batch))
            .await;
        let idle = match work {
            Ok(work) if work.is_empty() => true,
            Ok(work) => {
                if let Err(e) = run_batch(&shared, &mut cache, work).await {
                    eprintln!("durable: dispatcher: {e}; retrying");
                    sleep_or_shutdown(&mut shutdown, ERROR_BACKOFF).await;
                }
                false
            }
            Err(e) => {
                eprintln!("durable: dispatcher: {e}; retrying");
                sleep_or_shutdown(&mut shutdown, ERROR_BACKOFF).await;
                false
            }
        };
        if idle {
            let wait = next_wait(&shared).await;
            tokio::select! {
                () = shared.dispatcher_wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
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
async fn next_wait(shared: &Arc<Shared>) -> Duration {
    let cap = shared.config.poll_interval;
    let Ok(due) = shared.blocking(|s, _| s.next_due()).await else {
        return cap;
    };
    match due.message {
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

/// A turn computed and waiting for its commit.
struct Pending {
    id: String,
    /// The history length before the turn.
    len_before: u64,
    execution: Option<Execution>,
    finished: bool,
}

async fn run_batch(
    shared: &Arc<Shared>,
    cache: &mut Cache,
    work: Vec<InstanceWork>,
) -> Result<(), crate::error::StoreError> {
    let now = now_micros();
    let mut commits = Vec::with_capacity(work.len());
    let mut pending = Vec::with_capacity(work.len());
    let mut stuck = Vec::new();
    for w in work {
        let consumed: Vec<i64> = w.messages.iter().map(|(id, _)| *id).collect();
        let live = w.status.filter(|s| !s.is_finished());
        if live.is_none() {
            // Messages for an instance that is gone or finished: nobody
            // will read them (late completions after a race, for example).
            cache.take(&w.id);
            commits.push(TurnCommit {
                instance: w.id.clone(),
                expected_len: w.history_len,
                events: Vec::new(),
                consumed,
                tasks: Vec::new(),
                messages: Vec::new(),
                status: None,
            });
            pending.push(Pending {
                id: w.id,
                len_before: w.history_len,
                execution: None,
                finished: false,
            });
            continue;
        }
        if w.attempts > shared.config.poison_after {
            cache.take(&w.id);
            commits.push(poison(shared, &w, consumed, now).await?);
            pending.push(Pending {
                id: w.id,
                len_before: w.history_len,
                execution: None,
                finished: true,
            });
            continue;
        }
        let mut ex = match load(shared, cache, &w).await? {
            Ok(ex) => ex,
            Err(Parked(failure)) => {
                stuck.push((w.id, failure));
                continue;
            }
        };
        let incoming: Vec<Event> = w.messages.into_iter().map(|(_, e)| e).collect();
        let expected_len = ex.history_len;
        match ex.run_turn(now, incoming, &shared.registry) {
            Ok(turn) => {
                let finished = turn.outcome.is_some();
                commits.push(to_commit(&w.id, expected_len, consumed, turn, ex.last_at));
                pending.push(Pending {
                    id: w.id,
                    len_before: expected_len,
                    execution: Some(ex),
                    finished,
                });
            }
            Err(Parked(failure)) => stuck.push((w.id, failure)),
        }
    }
    if !commits.is_empty() {
        let has_tasks = commits.iter().any(|c| !c.tasks.is_empty());
        let outcomes = shared
            .blocking(move |s, owner| s.commit_turns(owner, &commits))
            .await?;
        for (p, outcome) in pending.into_iter().zip(outcomes) {
            match outcome {
                CommitOutcome::Committed if p.finished => shared.finished(&p.id),
                CommitOutcome::Committed => {
                    if let Some(ex) = p.execution {
                        let limit = shared.config.history_warning;
                        if ex.history_len >= limit && p.len_before < limit {
                            eprintln!(
                                "durable: warning: instance `{}` has {} events in its history; replay after a \
                                 restart grows with it: end the orchestration and start a new one with its \
                                 state as input (continue-as-new)",
                                p.id, ex.history_len
                            );
                        }
                        cache.put(p.id, ex);
                    }
                }
                // Someone else advanced the instance: the execution is stale
                // and is rebuilt from history next time.
                CommitOutcome::Conflict => {}
            }
        }
        if has_tasks {
            shared.worker_wake.notify_one();
        }
    }
    let retry_at = now.saturating_add(duration_micros(shared.config.stuck_retry));
    for (id, failure) in stuck {
        eprintln!("durable: instance `{id}` is stuck: {failure}");
        shared
            .blocking(move |s, owner| s.mark_stuck(owner, &id, &failure, now, retry_at))
            .await?;
    }
    Ok(())
}

/// Ends an instance whose turn keeps getting lost (its process crashes
/// during the turn, or its code panics on replay), so it cannot loop forever.
async fn poison(
    shared: &Arc<Shared>,
    w: &InstanceWork,
    consumed: Vec<i64>,
    now: i64,
) -> Result<TurnCommit, crate::error::StoreError> {
    let id = w.id.clone();
    let history = shared.blocking(move |s, _| s.history(&id)).await?;
    let (turn, at) = history
        .last()
        .map_or((0, now), |r| (r.turn + 1, r.at.max(now)));
    let failure = Failure::new(
        FailureKind::Poisoned,
        format!(
            "instance `{}` was tried {} times without completing a turn (its process crashed \
             during the turn, or its code panicked on replay)",
            w.id,
            w.attempts - 1
        ),
    );
    eprintln!("durable: {failure}");
    Ok(TurnCommit {
        instance: w.id.clone(),
        expected_len: w.history_len,
        events: vec![HistoryRecord {
            index: w.history_len,
            turn,
            at,
            event: Event::Failed {
                failure: failure.clone(),
            },
        }],
        consumed,
        tasks: Vec::new(),
        messages: Vec::new(),
        status: Some(StatusUpdate {
            status: RuntimeStatus::Failed,
            output: None,
            failure: Some(failure),
            reason: None,
            now: at,
        }),
    })
}

/// The live execution of an instance: from the cache when it is current,
/// else rebuilt from history.
async fn load(
    shared: &Arc<Shared>,
    cache: &mut Cache,
    w: &InstanceWork,
) -> Result<Result<Execution, Parked>, crate::error::StoreError> {
    if let Some(ex) = cache.take(&w.id) {
        if ex.history_len == w.history_len {
            return Ok(Ok(ex));
        }
    }
    if w.history_len == 0 {
        return Ok(Ok(Execution::new(&w.id)));
    }
    let id = w.id.clone();
    let history = shared.blocking(move |s, _| s.history(&id)).await?;
    Ok(Execution::replay(&w.id, &history, &shared.registry))
}

fn to_commit(id: &str, expected_len: u64, consumed: Vec<i64>, turn: Turn, now: i64) -> TurnCommit {
    let mut tasks = Vec::new();
    let mut messages = Vec::new();
    for action in turn.actions {
        match action {
            Action::Activity {
                seq,
                name,
                input,
                retry,
                ..
            } => tasks.push(NewTask {
                seq,
                name: name.to_owned(),
                input,
                retry,
            }),
            Action::Timer { seq, fire_at, .. } => messages.push(NewMessage {
                instance: id.to_owned(),
                event: Event::TimerFired { seq },
                visible_at: fire_at,
            }),
            // Recorded in history; nothing to run.
            Action::SideEffect { .. } => {}
        }
    }
    let status = match turn.outcome {
        None => StatusUpdate {
            status: RuntimeStatus::Running,
            output: None,
            failure: None,
            reason: None,
            now,
        },
        Some(Outcome::Completed { output, failed }) => StatusUpdate {
            status: if failed {
                RuntimeStatus::Failed
            } else {
                RuntimeStatus::Completed
            },
            output: Some(output),
            failure: None,
            reason: None,
            now,
        },
        Some(Outcome::Failed(failure)) => StatusUpdate {
            status: RuntimeStatus::Failed,
            output: None,
            failure: Some(failure),
            reason: None,
            now,
        },
        Some(Outcome::Terminated(reason)) => StatusUpdate {
            status: RuntimeStatus::Terminated,
            output: None,
            failure: None,
            reason: Some(reason),
            now,
        },
    };
    TurnCommit {
        instance: id.to_owned(),
        expected_len,
        events: turn.events,
        consumed,
        tasks,
        messages,
        status: Some(status),
    }
}
