//! One round of the dispatcher: the turns of every instance with work,
//! computed from the cache or by replay, committed together, then the new
//! tasks handed to the worker and the live executions kept.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::cache::Cache;
use super::replays::Replays;
use super::turns::{self, Job, Ran, Turns};
use super::{send_to_store, Dispatcher};
use crate::context::Action;
use crate::history::{
    Event, Failure, FailureKind, HistoryRecord, ParentRef, Payload, RuntimeStatus,
};
use crate::mailbox::{Assigned, Completed, Handed, ToWorker};
use crate::policy::{self, Poison};
use crate::registry::Registry;
use crate::replay::{
    children_reason, ending_messages, open_locks, unlock_messages, Execution, Outcome, Parked, Turn,
};
use crate::shutdown::Shutdown;
use crate::store::handle::StoreHandle;
use crate::store::{
    CommitOutcome, InstanceWork, LeasedTask, NewInstance, NewMessage, NewTask, Outgoing, Progress,
    Restart, StatusUpdate, StoreError, TaskOutcome, TaskResult, TurnCommit,
};
use crate::waiters::Waiters;

/// What a round tells the loop.
pub(super) struct Done {
    /// Look in the store again at once.
    pub(super) look_again: bool,
    /// The earliest timer this round committed, from now.
    pub(super) next_timer: Option<Duration>,
    /// Whether every turn of the round was refused (none committed).
    pub(super) all_refused: bool,
}

/// A turn computed and waiting for its commit.
struct Pending {
    id: String,
    /// The history length before the turn.
    len_before: u64,
    execution: Option<Execution>,
    finished: bool,
    /// Handed-over results the turn consumes.
    completions: Vec<Completed>,
    /// Worker slots for the turn's leased tasks.
    slots: Vec<tokio::sync::OwnedSemaphorePermit>,
}

/// One instance's input to a round: what the store holds for it (if it was
/// fetched), the messages and the results handed over in memory.
#[derive(Default)]
struct Input {
    work: Option<InstanceWork>,
    handed: Vec<(u64, Event)>,
    completions: Vec<Completed>,
    /// Read from the store for an instance neither fetched nor cached.
    progress: Option<Progress>,
    /// Its due messages, read (not fetched) for a turn that results handed
    /// over in memory drive.
    peeked: Vec<(u64, Event)>,
}

/// The turns of one round, built up instance by instance.
pub(super) struct Round<'a> {
    store: &'a StoreHandle,
    registry: &'a Arc<Registry>,
    worker: &'a ToWorker,
    waiters: &'a Waiters,
    /// Wakes the entity dispatcher: a turn sent entities messages.
    entities: &'a tokio::sync::Notify,
    poison: Poison,
    lock: Duration,
    lease: Duration,
    stuck_retry: Duration,
    history_warning: u64,
    /// Whether new tasks may be leased to this process's worker (not while
    /// the runtime drains).
    lease_tasks: bool,
    /// Verify mode: run each turn again from history before committing it.
    verify: bool,
    /// The runtime's clock.
    clock: crate::clock::Clock,
    metrics: Arc<crate::metrics::Recorder>,
    commits: Vec<TurnCommit>,
    pending: Vec<Pending>,
    stuck: Vec<(String, Failure)>,
    /// Handed-over results that must go to the store instead.
    to_store: Vec<Completed>,
    /// Turns prepared to run, and what each needs once it ran.
    jobs: Vec<Job>,
    ready: Vec<Ready>,
}

/// A prepared turn's bookkeeping, for when it has run.
struct Ready {
    id: String,
    /// The orchestrator's name.
    name: String,
    /// The history length before the turn.
    len_before: u64,
    /// The execution the turn runs in.
    execution: u64,
    /// The sequence numbers of the messages it consumes.
    consumed: Vec<u64>,
    /// Those messages, recorded if the turn has to be given up.
    messages: Vec<Event>,
    /// Handed-over results it consumes.
    completions: Vec<Completed>,
}

impl<'a> Round<'a> {
    pub(super) fn new(d: &'a Dispatcher, lease_tasks: bool) -> Self {
        Self {
            store: &d.store,
            registry: &d.registry,
            worker: &d.worker,
            waiters: &d.waiters,
            entities: &d.inbox.entities,
            poison: Poison {
                after: d.config.poison_after,
            },
            lock: d.config.instance_lock,
            lease: d.config.activity_lease,
            stuck_retry: d.config.stuck_retry,
            history_warning: d.config.history_warning,
            lease_tasks,
            verify: d.config.verify,
            clock: d.config.clock.clone(),
            metrics: Arc::clone(&d.config.metrics),
            commits: Vec::new(),
            pending: Vec::new(),
            stuck: Vec::new(),
            to_store: Vec::new(),
            jobs: Vec::new(),
            ready: Vec::new(),
        }
    }

    /// Runs and commits one round of turns. On a store error, returns the
    /// handed-over results, for the next round (handed messages are in the
    /// store: the next look finds them).
    pub(super) async fn run(
        mut self,
        (cache, replays, turns): (&mut Cache, &mut Replays, &mut Turns),
        stop: &mut Shutdown,
        work: Vec<InstanceWork>,
        handed: Vec<Handed>,
        completions: Vec<Completed>,
    ) -> Result<Done, (StoreError, Vec<Completed>)> {
        let mut inputs: Vec<(String, Input)> = Vec::with_capacity(work.len());
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut slot = |inputs: &mut Vec<(String, Input)>, id: &str| -> usize {
            *index.entry(id.to_owned()).or_insert_with(|| {
                inputs.push((id.to_owned(), Input::default()));
                inputs.len() - 1
            })
        };
        for w in work {
            let i = slot(&mut inputs, &w.id);
            inputs[i].1.work = Some(w);
        }
        for m in handed {
            let i = slot(&mut inputs, &m.instance);
            inputs[i].1.handed.push((m.seq, m.event));
        }
        for c in completions {
            let i = slot(&mut inputs, &c.instance);
            inputs[i].1.completions.push(c);
        }
        // The round's time, taken before anything is read: what was queued
        // by then is read below, so no turn passes over it.
        let now = self.clock.now();
        // Results handed over in memory drive a turn without a fetch: what
        // the store holds due for those instances goes into that turn, in
        // order, instead of being overtaken (the commit would refuse that).
        let driven: Vec<String> = inputs
            .iter()
            .filter(|(_, i)| i.work.is_none() && !i.completions.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        if !driven.is_empty() {
            match self.store.call(move |s, _| s.peek_due(&driven)).await {
                Ok(found) => {
                    for (id, due) in found {
                        if let Some(&i) = index.get(&id) {
                            inputs[i].1.peeked = due;
                        }
                    }
                }
                Err(e) => return Err((e, completions_of(inputs))),
            }
        }
        // Instances with work handed over in memory and not fetched: one read
        // tells how far each has come (a copy of a message already delivered
        // never runs code again; a cached execution another process has
        // overtaken is rebuilt first), and whether it may run here now (not
        // held by another process, not suspended).
        let unknown: Vec<String> = inputs
            .iter()
            .filter(|(_, i)| i.work.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        if !unknown.is_empty() {
            match self
                .store
                .call(move |s, owner| s.progress(owner, &unknown))
                .await
            {
                Ok(found) => {
                    let found: HashMap<String, Progress> = found.into_iter().collect();
                    for (id, input) in &mut inputs {
                        if input.work.is_none() {
                            input.progress = found.get(id).cloned();
                        }
                    }
                }
                Err(e) => return Err((e, completions_of(inputs))),
            }
        }
        let mut inputs = inputs.into_iter();
        while let Some((id, input)) = inputs.next() {
            if let Err(e) = self.prepare(cache, replays, id, input, now).await {
                let mut back = self.into_completions();
                back.extend(inputs.flat_map(|(_, i)| i.completions));
                return Err((e, back));
            }
        }
        if let Err(e) = self.run_turns(turns, stop).await {
            return Err((e, self.into_completions()));
        }
        self.commit(cache).await
    }

    /// Every handed-over result the round holds.
    fn into_completions(self) -> Vec<Completed> {
        let mut all = self.to_store;
        all.extend(self.pending.into_iter().flat_map(|p| p.completions));
        all.extend(self.ready.into_iter().flat_map(|r| r.completions));
        all
    }

    /// Computes one instance's turn.
    async fn prepare(
        &mut self,
        cache: &mut Cache,
        replays: &mut Replays,
        id: String,
        input: Input,
        now: i64,
    ) -> Result<(), StoreError> {
        let Input {
            work,
            handed,
            completions,
            progress,
            peeked,
        } = input;
        if let Some(damage) = work.as_ref().and_then(|w| w.damage.clone()) {
            // A damaged row stops this instance, never the others.
            cache.take(&id);
            self.to_store.extend(completions);
            self.stuck
                .push((id, Failure::new(FailureKind::Corrupt, damage.to_string())));
            return Ok(());
        }
        // An instance of an orchestrator this process lacks belongs to a
        // process that has it: its messages stay in the store, its results
        // go there.
        // Nor does one another process holds locked (it took the instance
        // from the store): running its code here too would run it twice.
        if progress.as_ref().is_some_and(|p| {
            p.held_elsewhere
                || p.status == RuntimeStatus::Suspended
                || !self.registry.has_orchestrator(&p.name)
        }) {
            self.to_store.extend(completions);
            return Ok(());
        }
        // What is known of the instance: fetched, cached, or read.
        let cached_through = cache.consumed_through(&id);
        let (mut messages, len, attempts, status, through, execution) = match work {
            Some(w) => (
                w.messages,
                Some(w.history_len),
                w.attempts,
                Some(w.status),
                w.consumed_through,
                Some(w.execution),
            ),
            None => match progress {
                Some(p) => (
                    Vec::new(),
                    Some(p.history_len),
                    0,
                    Some(p.status),
                    p.consumed_through,
                    Some(p.execution),
                ),
                None if !cache.contains(&id) => {
                    // Work for an instance the store does not know.
                    self.to_store.extend(completions);
                    return Ok(());
                }
                None => (Vec::new(), None, 0, None, cached_through, None),
            },
        };
        // Handed-over copies of messages the store already delivered (to a
        // turn that committed, or in this fetch) are dropped unseen.
        let through = through.max(cached_through);
        for (seq, event) in handed.into_iter().chain(peeked) {
            let delivered = through.is_some_and(|t| seq <= t);
            if !delivered && !messages.iter().any(|(m, _)| *m == seq) {
                messages.push((seq, event));
            }
        }
        messages.sort_by_key(|(m, _)| *m);
        if messages.is_empty() && completions.is_empty() {
            return Ok(());
        }
        // Nothing runs before the instance's `Started` (a scheduled start
        // still to come): what arrived waits for it in the store.
        if len == Some(0)
            && !cache.contains(&id)
            && !messages
                .iter()
                .any(|(_, e)| matches!(e, Event::Started { .. }))
        {
            self.to_store.extend(completions);
            return Ok(());
        }
        let consumed: Vec<u64> = messages.iter().map(|(m, _)| *m).collect();
        let messages: Vec<Event> = messages.into_iter().map(|(_, e)| e).collect();
        if status.is_some_and(RuntimeStatus::is_finished) {
            // Messages for a finished instance: nobody will read them
            // (late completions after a race, for example).
            cache.take(&id);
            self.to_store.extend(completions);
            let mut commit = TurnCommit::new(id.clone(), len.unwrap_or(0));
            commit.execution = execution.unwrap_or(0);
            commit.consumed = consumed;
            self.push(commit, id, len.unwrap_or(0), None, false, Vec::new());
            return Ok(());
        }
        if self.poison.turn_is_poison(attempts) {
            cache.take(&id);
            let len = len.unwrap_or(0);
            self.to_store.extend(completions);
            let failure = Failure::new(
                FailureKind::Poisoned,
                format!(
                    "instance `{}` was tried {} times without completing a turn (its process \
                     crashed during the turn, or its code panicked on replay)",
                    crate::ids::Escaped(&id),
                    attempts - 1
                ),
            );
            tracing::warn!("{failure}");
            let commit = end_without_code(
                self.store,
                &id,
                (len, execution.unwrap_or(0)),
                (consumed, messages),
                Event::Failed { failure },
                now,
            )
            .await?;
            self.push(commit, id, len, None, true, Vec::new());
            return Ok(());
        }
        let terminate = messages.iter().find_map(|e| match e {
            Event::Terminated { reason } => Some(reason.clone()),
            _ => None,
        });
        let loaded = match load(
            self.store,
            self.registry,
            cache,
            replays,
            &id,
            (len, execution),
            through,
        ) {
            Loaded::Ready(loaded) => loaded,
            Loaded::Stale => {
                // The store had moved past this work when the instance was
                // rebuilt (suspended, or advanced by another process): the
                // work is read again later, from the store.
                self.to_store.extend(completions);
                return Ok(());
            }
            Loaded::Rebuilding => {
                // Being rebuilt in the background: its work waits for it,
                // and runs in the first round after.
                let work = InstanceWork {
                    id: id.clone(),
                    name: String::new(),
                    status: status.unwrap_or(RuntimeStatus::Running),
                    history_len: len.unwrap_or(0),
                    execution: execution.unwrap_or(0),
                    attempts,
                    consumed_through: through,
                    messages: consumed.into_iter().zip(messages).collect(),
                    output: None,
                    damage: None,
                };
                replays.hold(&id, work, completions);
                return Ok(());
            }
        };
        let ex = match loaded {
            Ok(ex) if !ex.finished => ex,
            Ok(_) => {
                // Finished meanwhile (seen on replay): the results go where
                // stray messages go.
                self.to_store.extend(completions);
                return Ok(());
            }
            Err(Parked(failure)) => {
                self.to_store.extend(completions);
                if let (Some(reason), Some(len)) = (terminate, len) {
                    // The operator's way out of a parked instance: it ends
                    // without its code running.
                    let event = Event::Terminated { reason };
                    let consumed = (consumed, messages);
                    let at = (len, execution.unwrap_or(0));
                    let commit =
                        end_without_code(self.store, &id, at, consumed, event, now).await?;
                    self.push(commit, id, len, None, true, Vec::new());
                } else {
                    self.stuck.push((id, failure));
                }
                return Ok(());
            }
        };
        // The turn itself runs on the turn thread, with the round's others.
        let mut incoming = messages.clone();
        incoming.extend(completions.iter().map(|c| c.event.clone()));
        // A first turn learns its orchestrator from the `Started` it runs.
        let name = ex
            .orchestrator()
            .or_else(|| {
                messages.iter().find_map(|e| match e {
                    Event::Started { name, .. } => Some(name.as_str()),
                    _ => None,
                })
            })
            .unwrap_or("?")
            .to_owned();
        let span = tracing::info_span!(
            "turn",
            instance = %crate::ids::Escaped(&id),
            orchestrator = %name,
            turn = ex.next_turn
        );
        // The store's number of the execution: a first turn's execution
        // learns its own only from the `Started` it runs.
        let (len_before, execution) = (ex.history_len, execution.unwrap_or(ex.execution));
        self.jobs.push(Job {
            key: self.ready.len(),
            now,
            incoming,
            span,
            execution: ex,
        });
        self.ready.push(Ready {
            id,
            name,
            len_before,
            execution,
            consumed,
            messages,
            completions,
        });
        Ok(())
    }

    /// Runs the prepared turns and files how each ended.
    async fn run_turns(
        &mut self,
        turns: &mut Turns,
        stop: &mut Shutdown,
    ) -> Result<(), StoreError> {
        let jobs = std::mem::take(&mut self.jobs);
        let filed_from = self.commits.len();
        let mut ready: Vec<Option<Ready>> = std::mem::take(&mut self.ready)
            .into_iter()
            .map(Some)
            .collect();
        // Everything is filed before any store call, so that a store error
        // below loses no turn's results: they are all in `to_store` or
        // `pending` by then, which the caller gets back.
        let mut over = Vec::new();
        let mut ended = Vec::new();
        for ran in turns.run(jobs, stop).await {
            match ran {
                Ran::Done {
                    key,
                    execution,
                    turn,
                } => {
                    if let Some(r) = ready[key].take() {
                        if let Some(end) = self.file(r, execution, turn) {
                            ended.push(end);
                        }
                    }
                }
                Ran::OverBudget { key, ran } => {
                    if let Some(mut r) = ready[key].take() {
                        self.to_store.append(&mut r.completions);
                        over.push((r, ran));
                    }
                }
                // Left for the next owner of the instance.
                Ran::Stopped { key } => {
                    if let Some(r) = ready[key].take() {
                        self.to_store.extend(r.completions);
                    }
                }
            }
        }
        // Every job ends once; should one not have, its results still go
        // the long way rather than nowhere.
        self.to_store
            .extend(ready.into_iter().flatten().flat_map(|r| r.completions));
        if self.verify {
            self.verify_from(filed_from).await?;
        }
        // Parked on their first turn with a termination among the
        // messages: the operator's way out, without the code.
        for (r, reason) in ended {
            let len = r.len_before;
            let consumed = (r.consumed, r.messages);
            let event = Event::Terminated { reason };
            let at = (len, r.execution);
            let commit =
                end_without_code(self.store, &r.id, at, consumed, event, self.clock.now()).await?;
            self.push(commit, r.id, len, None, true, Vec::new());
        }
        for (r, ran) in over {
            let len = r.len_before;
            let failure = turns::over_budget(&r.name, turns.budget(), ran);
            tracing::warn!(
                "instance `{}` failed: {failure}",
                crate::ids::Escaped(&r.id)
            );
            let event = Event::Failed { failure };
            let consumed = (r.consumed, r.messages);
            let commit = end_without_code(
                self.store,
                &r.id,
                (len, r.execution),
                consumed,
                event,
                self.clock.now(),
            )
            .await?;
            self.push(commit, r.id, len, None, true, Vec::new());
        }
        Ok(())
    }

    /// Verify mode: runs each turn filed from `from` on again from its
    /// history; one that decides differently is not committed, and its
    /// instance is parked with both decisions.
    async fn verify_from(&mut self, from: usize) -> Result<(), StoreError> {
        let mut bad = Vec::new();
        for i in from..self.commits.len() {
            let commit = &self.commits[i];
            if commit.events.is_empty() && commit.restart.is_none() {
                continue;
            }
            let id = commit.instance.clone();
            let history = self
                .store
                .call(move |s, _| s.history(&id))
                .await?
                .unwrap_or_default();
            let expected = usize::try_from(commit.expected_len).unwrap_or(usize::MAX);
            let prefix = &history[..expected.min(history.len())];
            if let Err(failure) = super::verify::turn(
                &commit.instance,
                prefix,
                &commit.events,
                commit.restart.as_ref(),
                self.registry,
            ) {
                bad.push((i, failure));
            }
        }
        for (i, failure) in bad.into_iter().rev() {
            let commit = self.commits.remove(i);
            let p = self.pending.remove(i);
            self.to_store.extend(p.completions);
            self.stuck.push((commit.instance, failure));
        }
        Ok(())
    }

    /// Files a turn that ran: to commit, or the instance parked. A turn
    /// parked with a termination among its messages is handed back, with
    /// the reason, to end without its code.
    fn file(
        &mut self,
        mut r: Ready,
        ex: Execution,
        turn: Result<Turn, Parked>,
    ) -> Option<(Ready, String)> {
        if turn.is_err() {
            let reason = r.messages.iter().find_map(|e| match e {
                Event::Terminated { reason } => Some(reason.clone()),
                _ => None,
            });
            if let Some(reason) = reason {
                self.to_store.append(&mut r.completions);
                return Some((r, reason));
            }
        }
        let Ready {
            id,
            len_before: expected_len,
            consumed,
            completions,
            ..
        } = r;
        match turn {
            Ok(turn) => {
                // An execution that continues as new has not finished: its
                // waiters keep waiting for the next one.
                let finished = turn
                    .outcome
                    .as_ref()
                    .is_some_and(|o| !matches!(o, Outcome::ContinuedAsNew { .. }));
                let mut commit = to_commit(&id, expected_len, consumed, turn, ex.last_at);
                commit.execution = ex.execution;
                commit.finished_tasks = completions.iter().map(|c| c.task).collect();
                let slots = if self.lease_tasks {
                    self.worker.take_slots(commit.tasks.len())
                } else {
                    Vec::new()
                };
                commit.lease_tasks = slots.len();
                // Results of tasks this process runs come back in memory and
                // drive the next turn here: the instance stays locked to
                // this process meanwhile, so that no other process (woken by
                // a timer or an event of its own) runs that turn's code too.
                if commit.lease_tasks > 0 && !finished && commit.restart.is_none() {
                    commit.keep_lock = Some(self.lock);
                }
                self.pending.push(Pending {
                    id,
                    len_before: expected_len,
                    execution: Some(ex),
                    finished,
                    completions,
                    slots,
                });
                self.commits.push(commit);
            }
            Err(Parked(failure)) => {
                self.to_store.extend(completions);
                self.stuck.push((id, failure));
            }
        }
        None
    }

    fn push(
        &mut self,
        commit: TurnCommit,
        id: String,
        len_before: u64,
        execution: Option<Execution>,
        finished: bool,
        completions: Vec<Completed>,
    ) {
        self.commits.push(commit);
        self.pending.push(Pending {
            id,
            len_before,
            execution,
            finished,
            completions,
            slots: Vec::new(),
        });
    }
}

/// Every handed-over result of a round's inputs, given back on an error.
fn completions_of(inputs: Vec<(String, Input)>) -> Vec<Completed> {
    inputs
        .into_iter()
        .flat_map(|(_, i)| i.completions)
        .collect()
}

/// A turn that ends an instance without running its code (poison, or a
/// termination of a parked instance): `event` appended after its history,
/// everything queued for it dropped.
async fn end_without_code(
    store: &StoreHandle,
    id: &str,
    (history_len, execution): (u64, u64),
    (consumed, delivered): (Vec<u64>, Vec<Event>),
    event: Event,
    now: i64,
) -> Result<TurnCommit, StoreError> {
    let owned = id.to_owned();
    let history = store
        .call(move |s, _| s.history(&owned))
        .await?
        .unwrap_or_default();
    let (turn, at) = history
        .last()
        .map_or((0, now), |r| (r.turn + 1, r.at.max(now)));
    let status = match &event {
        Event::Terminated { reason } => StatusUpdate {
            reason: Some(reason.clone()),
            ..StatusUpdate::new(RuntimeStatus::Terminated, at)
        },
        Event::Failed { failure } => StatusUpdate {
            failure: Some(failure.clone()),
            ..StatusUpdate::new(RuntimeStatus::Failed, at)
        },
        _ => StatusUpdate::new(RuntimeStatus::Failed, at),
    };
    let mut commit = TurnCommit::new(id, history_len);
    commit.execution = execution;
    // Its parent learns how it ended; a termination reaches its children.
    let outcome = match &event {
        Event::Terminated { reason } => {
            commit.terminate_children = Some(children_reason(id, reason));
            Some(Outcome::Terminated(reason.clone()))
        }
        Event::Failed { failure } => Some(Outcome::Failed(failure.clone())),
        _ => None,
    };
    if let Some(outcome) = outcome {
        // A first turn's `Started` is among the delivered messages, not
        // yet in history.
        let parent = history
            .iter()
            .map(|r| &r.event)
            .chain(&delivered)
            .find_map(|e| match e {
                Event::Started { parent, .. } => parent.clone(),
                _ => None,
            });
        commit.sends = ending_messages(parent.as_ref(), &outcome);
        commit
            .sends
            .extend(unlock_messages(id, open_locks(&history).into_iter()));
    }
    // What the turn consumed is recorded (never delivered to the code), then
    // the end: nothing a client was told is queued disappears.
    commit.events = delivered
        .into_iter()
        .filter(|e| !matches!(e, Event::Terminated { .. }))
        .chain([event])
        .enumerate()
        .map(|(i, event)| HistoryRecord {
            index: history_len + i as u64,
            turn,
            at,
            event,
        })
        .collect();
    commit.consumed = consumed;
    commit.status = Some(status);
    commit.discard_queued = true;
    Ok(commit)
}

impl Round<'_> {
    /// Commits the round, hands new tasks to the worker, keeps the live
    /// executions and sends what the turns could not take to the store.
    async fn commit(self, cache: &mut Cache) -> Result<Done, (StoreError, Vec<Completed>)> {
        let Round {
            store,
            worker,
            waiters,
            lease,
            stuck_retry,
            history_warning,
            commits,
            pending,
            stuck,
            mut to_store,
            entities,
            clock,
            metrics,
            ..
        } = self;
        let mut look_again = false;
        let mut next_timer: Option<i64> = None;
        let (mut refused, mut committed_any) = (false, false);
        // Leased tasks the worker could not take (it stopped meanwhile).
        let mut unsent: Vec<TaskResult> = Vec::new();
        let now = clock.now();
        if !commits.is_empty() {
            let started = std::time::Instant::now();
            let committed = store
                .call(move |s, owner| s.commit_turns(owner, lease, &commits).map(|o| (o, commits)))
                .await;
            let (outcomes, commits) = match committed {
                Ok(r) => {
                    let done =
                        r.0.iter()
                            .filter(|o| matches!(o, CommitOutcome::Committed { .. }))
                            .count() as u64;
                    metrics.commit(started.elapsed(), done, r.0.len() as u64 - done);
                    r
                }
                Err(e) => {
                    to_store.extend(pending.into_iter().flat_map(|p| p.completions));
                    return Err((e, to_store));
                }
            };
            for ((p, outcome), commit) in pending.into_iter().zip(outcomes).zip(commits) {
                match outcome {
                    CommitOutcome::Committed { tasks } => {
                        committed_any = true;
                        // New children and messages to other instances are in
                        // the store now: look for them at once.
                        look_again |= !commit.children.is_empty()
                            || commit.sends.iter().any(|s| s.entity.is_none());
                        if commit.sends.iter().any(|s| s.entity.is_some()) {
                            entities.notify_one();
                        }
                        worker.settle(p.completions.iter().map(|c| c.task));
                        unsent.extend(hand_over(worker, &commit, tasks, p.slots));
                        for m in &commit.messages {
                            next_timer =
                                Some(next_timer.map_or(m.visible_at, |t| t.min(m.visible_at)));
                        }
                        if p.finished {
                            waiters.finished(&p.id);
                        } else if p.execution.as_ref().is_some_and(|ex| ex.finished) {
                            // Continued as new: the next execution starts
                            // from the store.
                            look_again = true;
                        } else if let Some(mut ex) = p.execution {
                            warn_if_long(history_warning, &p.id, p.len_before, ex.history_len);
                            ex.consumed_through = ex
                                .consumed_through
                                .max(commit.consumed.iter().max().copied());
                            cache.put(p.id, ex);
                        }
                    }
                    // Someone else advanced the instance, or a result's
                    // lease was lost: the execution is stale and is rebuilt
                    // from history next time; the results go the long way.
                    _ => {
                        to_store.extend(p.completions);
                        look_again = true;
                        refused = true;
                    }
                }
            }
        }
        if !unsent.is_empty() {
            // Given back at once, not left leased to a stopped worker.
            if let Err(e) = store
                .call(move |s, owner| s.finish_tasks(owner, &unsent))
                .await
            {
                tracing::warn!("dispatcher: giving back tasks its worker could not take: {e}");
            }
        }
        for (id, failure) in stuck {
            tracing::warn!(
                "instance `{}` is stuck: {failure}",
                crate::ids::Escaped(&id)
            );
            let reset = policy::waits_for_code(failure.kind);
            if let Err(e) = store
                .call(move |s, owner| s.mark_stuck(owner, &id, &failure, stuck_retry, reset))
                .await
            {
                return Err((e, to_store));
            }
        }
        if !to_store.is_empty() {
            send_to_store(store, worker, to_store).await?;
            look_again = true;
        }
        Ok(Done {
            all_refused: refused && !committed_any,
            look_again,
            next_timer: next_timer
                .map(|t| Duration::from_micros(t.saturating_sub(now).max(0).unsigned_abs())),
        })
    }
}

/// Sends a committed turn's leased tasks to the worker, each in its slot;
/// returns those it could not take, to be given back.
fn hand_over(
    worker: &ToWorker,
    commit: &TurnCommit,
    ids: Vec<i64>,
    slots: Vec<tokio::sync::OwnedSemaphorePermit>,
) -> Vec<TaskResult> {
    let mut unsent = Vec::new();
    if commit.tasks.len() > slots.len() {
        // Tasks beyond the free slots wait in the store, for any process:
        // this one's worker looks as soon as it has room.
        worker.wake.notify_one();
    }
    for ((task, id), slot) in commit.tasks.iter().zip(ids).zip(slots) {
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
        if let Err(back) = worker.tasks.send(Assigned { task: leased, slot }) {
            let task = back.0.task;
            unsent.push(TaskResult::new(
                task.task_ref(),
                task.instance,
                TaskOutcome::Release,
            ));
        }
    }
    unsent
}

fn warn_if_long(limit: u64, id: &str, before: u64, after: u64) {
    if after >= limit && before < limit {
        tracing::warn!(
            "instance `{}` has {after} events in its history; replay after a restart grows \
             with it: carry its state into a fresh history with \
             `return ctx.continue_as_new(state).await`",
            crate::ids::Escaped(id)
        );
    }
}

/// What [`load`] found.
enum Loaded {
    /// The execution to run the turn on (or why it cannot run).
    Ready(Result<Execution, Parked>),
    /// Being rebuilt in the background: the work waits for it.
    Rebuilding,
    /// Rebuilt from a history newer than the work: the work is stale.
    Stale,
}

/// The live execution of an instance: from the cache when it is current
/// (`len`, the stored history length, if known), or rebuilt from history.
fn load(
    store: &StoreHandle,
    registry: &Arc<Registry>,
    cache: &mut Cache,
    replays: &mut Replays,
    id: &str,
    (len, execution): (Option<u64>, Option<u64>),
    consumed_through: Option<u64>,
) -> Loaded {
    // Lengths repeat across executions (continue-as-new): both must match.
    let current = |ex: &Execution| {
        len.is_none_or(|len| ex.history_len == len) && execution.is_none_or(|e| ex.execution == e)
    };
    if let Some(ex) = cache.take(id) {
        if current(&ex) {
            return Loaded::Ready(Ok(ex));
        }
    }
    if replays.is_running(id) {
        return Loaded::Rebuilding;
    }
    match replays.take_done(id) {
        Some(Ok(mut ex)) if current(&ex) => {
            ex.consumed_through = consumed_through;
            return Loaded::Ready(Ok(ex));
        }
        Some(Err(parked)) => return Loaded::Ready(Err(parked)),
        // Rebuilt from a newer history than the work knows: the work is
        // stale, the execution is kept for when it is read again.
        Some(Ok(ex))
            if len.is_some_and(|len| ex.history_len > len)
                || execution.is_some_and(|e| ex.execution != e) =>
        {
            cache.put(id.to_owned(), ex);
            return Loaded::Stale;
        }
        // Advanced meanwhile (another process): rebuilt again below.
        Some(Ok(_)) | None => {}
    }
    if len == Some(0) {
        let mut ex = Execution::new(id);
        ex.consumed_through = consumed_through;
        return Loaded::Ready(Ok(ex));
    }
    replays.start(store, registry, id);
    Loaded::Rebuilding
}

/// An operation message from orchestration `id` to an entity.
fn operation(
    id: &str,
    entity: String,
    op: &str,
    input: Payload,
    reply_seq: Option<u64>,
    holder: bool,
    at: i64,
) -> Outgoing {
    let type_name = crate::entity::type_of(&entity).to_owned();
    let event = Event::Operation {
        op: op.to_owned(),
        input,
        reply_to: reply_seq.map(|seq| ParentRef {
            id: id.to_owned(),
            seq,
        }),
        holder: holder.then(|| id.to_owned()),
    };
    Outgoing::to_entity(entity, type_name, event, at)
}

fn to_commit(id: &str, expected_len: u64, consumed: Vec<u64>, turn: Turn, now: i64) -> TurnCommit {
    let mut commit = TurnCommit::new(id, expected_len);
    let finished = turn.outcome.is_some();
    for action in turn.actions {
        match action {
            Action::Activity {
                seq,
                name,
                input,
                retry,
                ..
            } => commit.tasks.push(NewTask::new(seq, name, input, retry)),
            Action::Timer { seq, fire_at, .. } => commit
                .messages
                .push(NewMessage::new(Event::TimerFired { seq }, fire_at)),
            Action::Child {
                seq,
                name,
                version,
                id: child,
                input,
                seed,
                ..
            } => {
                let mut new = NewInstance::new(child, name, input, now);
                new.version = version;
                new.seed = Some(seed);
                new.parent = Some(ParentRef {
                    id: id.to_owned(),
                    seq,
                });
                commit.children.push(new);
            }
            // Recorded in history; nothing to run.
            Action::SideEffect { .. } | Action::Patch { .. } => {}
            Action::EntityCall {
                seq,
                entity,
                op,
                input,
                holder,
                ..
            } => commit
                .sends
                .push(operation(id, entity, op, input, Some(seq), holder, 0)),
            Action::EntitySignal {
                entity,
                op,
                input,
                at,
                holder,
                ..
            } => commit
                .sends
                .push(operation(id, entity, op, input, None, holder, at)),
            Action::Lock { seq, entities, .. } => {
                if let Some(first) = entities.first().cloned() {
                    let type_name = crate::entity::type_of(&first).to_owned();
                    let event = Event::LockEntity {
                        holder: id.to_owned(),
                        seq,
                        entities,
                        index: 0,
                    };
                    commit
                        .sends
                        .push(Outgoing::to_entity(first, type_name, event, 0));
                }
            }
            Action::Unlock { lock, entities, .. } => commit
                .sends
                .extend(unlock_messages(id, std::iter::once((lock, entities)))),
        }
    }
    commit.sends.extend(turn.sends);
    commit.cancel_timers = turn.cancel_timers;
    commit.cancel_tasks = turn.cancel_calls;
    commit.status = Some(match turn.outcome {
        None => StatusUpdate::new(RuntimeStatus::Running, now),
        Some(Outcome::Completed { output, failed }) => StatusUpdate {
            output: Some(output),
            ..StatusUpdate::new(
                if failed {
                    RuntimeStatus::Failed
                } else {
                    RuntimeStatus::Completed
                },
                now,
            )
        },
        Some(Outcome::Failed(failure)) => StatusUpdate {
            failure: Some(failure),
            ..StatusUpdate::new(RuntimeStatus::Failed, now)
        },
        Some(Outcome::Terminated(reason)) => {
            commit.terminate_children = Some(children_reason(id, &reason));
            StatusUpdate {
                reason: Some(reason),
                ..StatusUpdate::new(RuntimeStatus::Terminated, now)
            }
        }
        Some(Outcome::ContinuedAsNew { started, carried }) => {
            commit.restart = Some(Restart::new(started, carried));
            StatusUpdate::new(RuntimeStatus::Running, now)
        }
    });
    if let Some(s) = commit.status.as_mut() {
        s.custom_status = turn.custom_status;
    }
    commit.take_all_due = matches!(
        commit.status.as_ref().map(|s| s.status),
        Some(RuntimeStatus::Completed | RuntimeStatus::Failed)
    );
    commit.events = turn.events;
    commit.consumed = consumed;
    commit.discard_queued = finished && commit.restart.is_none();
    commit
}
