//! One round of the dispatcher: the turns of every instance with work,
//! computed from the cache or by replay, committed together, then the new
//! tasks handed to the worker and the live executions kept.

use std::collections::HashMap;
use std::sync::Arc;

use super::{send_to_store, Completed, Inbound};
use crate::cache::Cache;
use crate::context::Action;
use crate::error::{Failure, FailureKind, StoreError};
use crate::history::{duration_micros, now_micros, Event, HistoryRecord};
use crate::replay::{Execution, Outcome, Parked, Turn};
use crate::runtime::Shared;
use crate::status::RuntimeStatus;
use crate::store::{
    CommitOutcome, InstanceWork, LeasedTask, NewMessage, NewTask, StatusUpdate, TurnCommit,
};

/// A turn computed and waiting for its commit.
struct Pending {
    id: String,
    /// The history length before the turn.
    len_before: u64,
    execution: Option<Execution>,
    finished: bool,
    /// Handed-over results the turn consumes.
    completions: Vec<Completed>,
}

/// One instance's input to a round: what the store holds for it (if it was
/// fetched), the messages and the results handed over in memory.
struct Input {
    work: Option<InstanceWork>,
    messages: Vec<(i64, Event)>,
    completions: Vec<Completed>,
}

/// Runs and commits one round of turns. Returns whether to look in the
/// store again at once; on a store error, the handed-over results, for the
/// next round.
pub(super) async fn run_batch(
    shared: &Arc<Shared>,
    cache: &mut Cache,
    work: Vec<InstanceWork>,
    inbound: Vec<Inbound>,
) -> Result<(bool, Option<i64>), (StoreError, Vec<Completed>)> {
    let mut inputs: Vec<(String, Input)> = Vec::with_capacity(work.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    for w in work {
        index.insert(w.id.clone(), inputs.len());
        inputs.push((
            w.id.clone(),
            Input {
                work: Some(w),
                messages: Vec::new(),
                completions: Vec::new(),
            },
        ));
    }
    for item in inbound {
        let instance = match &item {
            Inbound::Completed(c) => c.instance.clone(),
            Inbound::Message { instance, .. } => instance.clone(),
        };
        let i = *index.entry(instance.clone()).or_insert_with(|| {
            inputs.push((
                instance,
                Input {
                    work: None,
                    messages: Vec::new(),
                    completions: Vec::new(),
                },
            ));
            inputs.len() - 1
        });
        let input = &mut inputs[i].1;
        match item {
            Inbound::Completed(c) => input.completions.push(c),
            Inbound::Message { id, event, .. } => {
                // The store may have handed over the same message.
                let fetched = input
                    .work
                    .as_ref()
                    .is_some_and(|w| w.messages.iter().any(|(m, _)| *m == id));
                if !fetched {
                    input.messages.push((id, event));
                }
            }
        }
    }
    let mut round = Round::default();
    let mut inputs = inputs.into_iter();
    while let Some((id, input)) = inputs.next() {
        if let Err(e) = round.prepare(shared, cache, id, input).await {
            let mut back = round.into_completions();
            back.extend(inputs.flat_map(|(_, i)| i.completions));
            return Err((e, back));
        }
    }
    round.commit(shared, cache).await
}

/// The turns of one round, built up instance by instance.
#[derive(Default)]
struct Round {
    commits: Vec<TurnCommit>,
    pending: Vec<Pending>,
    stuck: Vec<(String, Failure)>,
    /// Handed-over results that must go to the store instead.
    to_store: Vec<Completed>,
}

impl Round {
    /// Every handed-over result the round holds.
    fn into_completions(self) -> Vec<Completed> {
        let mut all = self.to_store;
        all.extend(self.pending.into_iter().flat_map(|p| p.completions));
        all
    }

    /// Computes one instance's turn.
    async fn prepare(
        &mut self,
        shared: &Arc<Shared>,
        cache: &mut Cache,
        id: String,
        input: Input,
    ) -> Result<(), StoreError> {
        let now = now_micros();
        let Input {
            work,
            messages: mut handed,
            completions,
        } = input;
        let (mut all, len, attempts, live) = match work {
            Some(w) => (
                w.messages,
                Some(w.history_len),
                w.attempts,
                w.status.is_some_and(|s| !s.is_finished()),
            ),
            None => (Vec::new(), None, 0, true),
        };
        all.append(&mut handed);
        // Oldest first, as the store orders them.
        all.sort_by_key(|(m, _)| *m);
        let consumed: Vec<i64> = all.iter().map(|(m, _)| *m).collect();
        let messages: Vec<Event> = all.into_iter().map(|(_, e)| e).collect();
        if !live {
            // Messages for an instance that is gone or finished: nobody
            // will read them (late completions after a race, for example).
            cache.take(&id);
            self.to_store.extend(completions);
            self.commits.push(TurnCommit {
                instance: id.clone(),
                expected_len: len.unwrap_or(0),
                events: Vec::new(),
                consumed,
                tasks: Vec::new(),
                messages: Vec::new(),
                finished_tasks: Vec::new(),
                lease_tasks_until: None,
                status: None,
            });
            self.pending.push(Pending {
                id,
                len_before: len.unwrap_or(0),
                execution: None,
                finished: false,
                completions: Vec::new(),
            });
            return Ok(());
        }
        if attempts > shared.config.poison_after {
            cache.take(&id);
            let len = len.unwrap_or(0);
            self.to_store.extend(completions);
            self.commits
                .push(poison(shared, &id, len, attempts, consumed, now).await?);
            self.pending.push(Pending {
                id,
                len_before: len,
                execution: None,
                finished: true,
                completions: Vec::new(),
            });
            return Ok(());
        }
        // A `Started` handed over in memory is a new instance: its history
        // is empty (if another process ran it meanwhile, the commit is
        // refused), so there is nothing to read.
        let len =
            len.or_else(|| matches!(messages.first(), Some(Event::Started { .. })).then_some(0));
        let loaded = match load(shared, cache, &id, len).await {
            Ok(loaded) => loaded,
            Err(e) => {
                // Carried to the next round, not dropped.
                self.to_store.extend(completions);
                return Err(e);
            }
        };
        let mut ex = match loaded {
            Ok(ex) if !ex.finished => ex,
            Ok(_) => {
                // Finished meanwhile (seen on replay): the results go where
                // stray messages go.
                self.to_store.extend(completions);
                return Ok(());
            }
            Err(Parked(failure)) => {
                self.to_store.extend(completions);
                self.stuck.push((id, failure));
                return Ok(());
            }
        };
        let mut incoming = messages;
        incoming.extend(completions.iter().map(|c| c.event.clone()));
        let expected_len = ex.history_len;
        match ex.run_turn(now, incoming, &shared.registry) {
            Ok(turn) => {
                let finished = turn.outcome.is_some();
                let mut commit = to_commit(&id, expected_len, consumed, turn, ex.last_at);
                commit.finished_tasks = completions.iter().map(|c| c.task).collect();
                commit.lease_tasks_until =
                    Some(now.saturating_add(duration_micros(shared.config.lease)));
                self.commits.push(commit);
                self.pending.push(Pending {
                    id,
                    len_before: expected_len,
                    execution: Some(ex),
                    finished,
                    completions,
                });
            }
            Err(Parked(failure)) => {
                self.to_store.extend(completions);
                self.stuck.push((id, failure));
            }
        }
        Ok(())
    }

    /// Commits the round, hands new tasks to the worker, keeps the live
    /// executions and sends what the turns could not take to the store.
    async fn commit(
        self,
        shared: &Arc<Shared>,
        cache: &mut Cache,
    ) -> Result<(bool, Option<i64>), (StoreError, Vec<Completed>)> {
        let Round {
            commits,
            pending,
            stuck,
            mut to_store,
        } = self;
        let mut look = false;
        let mut timer: Option<i64> = None;
        if !commits.is_empty() {
            let committed = shared
                .blocking(move |s, owner| s.commit_turns(owner, &commits).map(|o| (o, commits)))
                .await;
            let (outcomes, commits) = match committed {
                Ok(r) => r,
                Err(e) => {
                    to_store.extend(pending.into_iter().flat_map(|p| p.completions));
                    return Err((e, to_store));
                }
            };
            for ((p, outcome), commit) in pending.into_iter().zip(outcomes).zip(commits) {
                match outcome {
                    CommitOutcome::Committed { tasks } => {
                        hand_over(shared, &commit, tasks);
                        for m in &commit.messages {
                            timer = Some(timer.map_or(m.visible_at, |t| t.min(m.visible_at)));
                        }
                        if p.finished {
                            shared.finished(&p.id);
                        } else if let Some(ex) = p.execution {
                            warn_if_long(shared, &p.id, p.len_before, ex.history_len);
                            cache.put(p.id, ex);
                        }
                    }
                    // Someone else advanced the instance, or a result's lease
                    // was lost: the execution is stale and is rebuilt from
                    // history next time; the results go the long way.
                    CommitOutcome::Conflict => {
                        to_store.extend(p.completions);
                        look = true;
                    }
                }
            }
        }
        let now = now_micros();
        let retry_at = now.saturating_add(duration_micros(shared.config.stuck_retry));
        for (id, failure) in stuck {
            eprintln!("durable: instance `{id}` is stuck: {failure}");
            if let Err(e) = shared
                .blocking(move |s, owner| s.mark_stuck(owner, &id, &failure, now, retry_at))
                .await
            {
                return Err((e, to_store));
            }
        }
        if !to_store.is_empty() {
            let back = to_store.clone();
            send_to_store(shared, to_store)
                .await
                .map_err(|e| (e, back))?;
            look = true;
        }
        Ok((look, timer))
    }
}

/// Sends a committed turn's new tasks, leased to this process, to its worker.
fn hand_over(shared: &Arc<Shared>, commit: &TurnCommit, ids: Vec<i64>) {
    for (task, id) in commit.tasks.iter().zip(ids) {
        let leased = LeasedTask {
            id,
            instance: commit.instance.clone(),
            seq: task.seq,
            name: task.name.clone(),
            input: task.input.clone(),
            retry: task.retry,
            attempt: 1,
            failures: 0,
        };
        // Without a worker (shutting down) the lease expires and the task
        // is run again by whoever starts next.
        let _ = shared.tasks_tx.send(leased);
    }
}

fn warn_if_long(shared: &Arc<Shared>, id: &str, before: u64, after: u64) {
    let limit = shared.config.history_warning;
    if after >= limit && before < limit {
        eprintln!(
            "durable: warning: instance `{id}` has {after} events in its history; replay after a \
             restart grows with it: end the orchestration and start a new one with its state as \
             input (continue-as-new)"
        );
    }
}

/// Ends an instance whose turn keeps getting lost (its process crashes
/// during the turn, or its code panics on replay), so it cannot loop forever.
async fn poison(
    shared: &Arc<Shared>,
    id: &str,
    history_len: u64,
    attempts: u32,
    consumed: Vec<i64>,
    now: i64,
) -> Result<TurnCommit, StoreError> {
    let owned = id.to_owned();
    let history = shared.blocking(move |s, _| s.history(&owned)).await?;
    let (turn, at) = history
        .last()
        .map_or((0, now), |r| (r.turn + 1, r.at.max(now)));
    let failure = Failure::new(
        FailureKind::Poisoned,
        format!(
            "instance `{id}` was tried {} times without completing a turn (its process crashed \
             during the turn, or its code panicked on replay)",
            attempts - 1
        ),
    );
    eprintln!("durable: {failure}");
    Ok(TurnCommit {
        instance: id.to_owned(),
        expected_len: history_len,
        events: vec![HistoryRecord {
            index: history_len,
            turn,
            at,
            event: Event::Failed {
                failure: failure.clone(),
            },
        }],
        consumed,
        tasks: Vec::new(),
        messages: Vec::new(),
        finished_tasks: Vec::new(),
        lease_tasks_until: None,
        status: Some(StatusUpdate {
            status: RuntimeStatus::Failed,
            output: None,
            failure: Some(failure),
            reason: None,
            now: at,
        }),
    })
}

/// The live execution of an instance: from the cache when it is current
/// (`len`, the stored history length, if the store was read), else rebuilt
/// from history.
async fn load(
    shared: &Arc<Shared>,
    cache: &mut Cache,
    id: &str,
    len: Option<u64>,
) -> Result<Result<Execution, Parked>, StoreError> {
    if let Some(ex) = cache.take(id) {
        if len.is_none_or(|len| ex.history_len == len) {
            return Ok(Ok(ex));
        }
    }
    if len == Some(0) {
        return Ok(Ok(Execution::new(id)));
    }
    let owned = id.to_owned();
    match shared.blocking(move |s, _| s.history(&owned)).await {
        Ok(history) => Ok(Execution::replay(id, &history, &shared.registry)),
        // A damaged history stops this instance, not the round.
        Err(e @ StoreError::Corrupt { .. }) => Ok(Err(Parked(Failure::new(
            FailureKind::Corrupt,
            e.to_string(),
        )))),
        Err(e) => Err(e),
    }
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
        finished_tasks: Vec::new(),
        lease_tasks_until: None,
        status: Some(status),
    }
}
