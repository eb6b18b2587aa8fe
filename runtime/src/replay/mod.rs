//! The replay engine: one live execution of an orchestrator, driven turn by
//! turn, rebuilt from history when it is not in memory.
//!
//! A turn applies the events delivered to the instance, polls the
//! orchestrator until it can go no further and returns what must be
//! committed. Replay feeds recorded turns through the same path, so the code
//! sees the same events in the same batches and makes the same decisions,
//! which are checked against the recorded ones.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Wake, Waker};

use crate::context::{lock, Action, Completion, Context, OpKind, Recorded, State};
use crate::history::{
    ChildFailure, Event, Failure, FailureKind, HistoryRecord, ParentRef, Payload,
};
use crate::registry::{OrchestrationFuture, Registry};
use crate::store::Outgoing;
use crate::unwind::panic_message;

/// How often one turn may re-poll a root that keeps waking itself before it
/// is judged to be spinning on something that is not durable.
const MAX_POLLS_PER_TURN: usize = 10_000;

/// How an instance ended in a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The orchestrator returned; `failed` if the value is an `Err`.
    Completed { output: Payload, failed: bool },
    /// The instance failed outside its return value.
    Failed(Failure),
    /// The instance was terminated from outside.
    Terminated(String),
    /// The execution continues as new: the instance starts afresh with
    /// `started`, and `carried` (events received, never consumed) first.
    ContinuedAsNew { started: Event, carried: Vec<Event> },
}

/// What a turn produced, ready to commit.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    /// Every event of the turn, numbered: delivered ones, decisions, the end.
    pub(crate) events: Vec<HistoryRecord>,
    /// New work to schedule.
    pub(crate) actions: Vec<Action>,
    /// Set when the instance ended in this turn.
    pub(crate) outcome: Option<Outcome>,
    /// The custom status the turn set, if it set one.
    pub(crate) custom_status: Option<Payload>,
    /// Messages to other instances: to the parent when this one ended.
    pub(crate) sends: Vec<Outgoing>,
    /// Timers dropped before they fired: cancelled with the turn.
    pub(crate) cancel_timers: Vec<u64>,
    /// Activity calls dropped before they completed: cancelled with the
    /// turn.
    pub(crate) cancel_calls: Vec<u64>,
}

/// What an instance that ends with `outcome` tells its parent, if it is a
/// child: how it ended. (Its own children are terminated by the store, from
/// [`TurnCommit::terminate_children`](crate::store::TurnCommit::terminate_children).)
/// Continuing as new tells nobody: the instance goes on.
pub(crate) fn ending_messages(parent: Option<&ParentRef>, outcome: &Outcome) -> Vec<Outgoing> {
    let Some(parent) = parent else {
        return Vec::new();
    };
    let seq = parent.seq;
    let event = match outcome {
        Outcome::Completed { output, .. } => Event::ChildCompleted {
            seq,
            output: output.clone(),
        },
        Outcome::Failed(f) => Event::ChildFailed {
            seq,
            failure: ChildFailure::Failed(f.clone()),
        },
        Outcome::Terminated(reason) => Event::ChildFailed {
            seq,
            failure: ChildFailure::Terminated(reason.clone()),
        },
        Outcome::ContinuedAsNew { .. } => return Vec::new(),
    };
    vec![Outgoing::to_parent(parent.id.clone(), event)]
}

/// Fails the turn (unless it already ended) when `entity`'s type is not
/// registered: as with activities, a call that no runtime here could serve
/// is a failure at once, not a wait forever.
fn unregistered_entity(
    outcome: &mut Option<Outcome>,
    registry: &Registry,
    entity: &str,
    site: &str,
) {
    let type_name = crate::entity::type_of(entity);
    if outcome.is_none() && !registry.has_entity(type_name) {
        *outcome = Some(Outcome::Failed(Failure::new(
            FailureKind::UnregisteredEntity,
            format!(
                "entity type `{}` (used at {site}) is not registered with this runtime: add `.entity::<{}>()` to the builder",
                &type_name[1..],
                &type_name[1..]
            ),
        )));
    }
}

/// Why version `version` of orchestrator `name` cannot run here (call it
/// when `registry` lacks that version).
pub(crate) fn unregistered(registry: &Registry, name: &str, version: u32) -> Failure {
    let registered = registry.versions(name);
    let message = if registered.is_empty() {
        format!(
            "orchestrator `{name}` is not registered with this runtime (renamed? a \
             function's stored name is its name unless pinned: keep the old one with \
             `#[orchestrator(name = \"{name}\")]`)"
        )
    } else {
        format!(
            "the instance runs version {version} of orchestrator `{name}`, which is not \
             registered with this runtime (registered: {registered:?}): keep that version \
             registered until its instances finish"
        )
    };
    Failure::new(FailureKind::UnregisteredOrchestrator, message)
}

/// The sequence number of a decision event.
fn decision_seq(event: &Event) -> Option<u64> {
    match event {
        Event::ActivityScheduled { seq, .. }
        | Event::ChildScheduled { seq, .. }
        | Event::TimerCreated { seq, .. }
        | Event::SideEffect { seq, .. }
        | Event::EntityCalled { seq, .. }
        | Event::EntitySignaled { seq, .. }
        | Event::LockRequested { seq, .. }
        | Event::LocksReleased { seq, .. }
        | Event::Patched { seq, .. } => Some(*seq),
        _ => None,
    }
}

/// What an instance that ends tells the entities of its critical sections,
/// given each lock request's sequence number and entities: every lock it
/// holds is released, every request still on its way is given up.
pub(crate) fn unlock_messages(
    holder: &str,
    locks: impl Iterator<Item = (u64, Vec<String>)>,
) -> Vec<Outgoing> {
    locks
        .flat_map(|(seq, entities)| {
            entities.into_iter().map(move |entity| {
                let type_name = crate::entity::type_of(&entity).to_owned();
                let event = Event::UnlockEntity {
                    holder: holder.to_owned(),
                    seq,
                };
                Outgoing::to_entity(entity, type_name, event, 0)
            })
        })
        .collect()
}

/// The lock requests an instance's history leaves unreleased: what its
/// ending must let go (see [`unlock_messages`]).
pub(crate) fn open_locks(history: &[HistoryRecord]) -> Vec<(u64, Vec<String>)> {
    let mut open = std::collections::BTreeMap::new();
    for rec in history {
        match &rec.event {
            Event::LockRequested { seq, entities, .. } => {
                open.insert(*seq, entities.clone());
            }
            Event::LocksReleased { lock, .. } => {
                open.remove(lock);
            }
            // An execution continued as new let go of everything.
            Event::Started { .. } => open.clear(),
            _ => {}
        }
    }
    open.into_iter().collect()
}

/// The reason a terminated instance's children are terminated with.
pub(crate) fn children_reason(id: &str, reason: &str) -> String {
    format!(
        "its parent `{}` was terminated: {reason}",
        crate::ids::Escaped(id)
    )
}

/// Why an instance cannot run with the code this process has. It is left
/// as it is (nothing consumed, nothing lost) until code that fits is deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parked(pub(crate) Failure);

struct WakeFlag(AtomicBool);

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// One instance's live orchestrator and the state its futures share.
pub(crate) struct Execution {
    instance_id: Arc<str>,
    state: Arc<Mutex<State>>,
    root: Option<OrchestrationFuture>,
    flag: Arc<WakeFlag>,
    /// Events in history so far; a commit must find the same number stored.
    pub(crate) history_len: u64,
    /// The number of the next turn.
    pub(crate) next_turn: u64,
    /// The last turn's time: turn times never go backwards.
    pub(crate) last_at: i64,
    /// Whether the instance has ended.
    pub(crate) finished: bool,
    /// The highest message sequence number its committed turns consumed:
    /// a message handed over in memory at or below it is a copy of one
    /// already delivered, and its turn must not run again.
    pub(crate) consumed_through: Option<u64>,
    /// The orchestrator's stored name, from `Started`.
    name: Option<String>,
    /// The instance this one reports to, as its child.
    parent: Option<ParentRef>,
    /// The orchestrator's version it runs on, from `Started`.
    version: u32,
    /// Which execution of the instance this is: the first sequence number
    /// of its `Started` (continue-as-new starts a higher one).
    pub(crate) execution: u64,
}

impl Execution {
    /// An instance with no history yet.
    pub(crate) fn new(instance_id: &str) -> Self {
        Self {
            instance_id: Arc::from(instance_id),
            state: Arc::new(Mutex::new(State::new())),
            root: None,
            flag: Arc::new(WakeFlag(AtomicBool::new(false))),
            history_len: 0,
            next_turn: 0,
            last_at: i64::MIN,
            finished: false,
            consumed_through: None,
            name: None,
            parent: None,
            version: 1,
            execution: 0,
        }
    }

    /// Side-effect values for the next turn to hand back instead of running
    /// their closures (verify mode's second run of a turn).
    pub(crate) fn preset_side_effects(&mut self, values: impl IntoIterator<Item = (u64, Payload)>) {
        lock(&self.state).preset.extend(values);
    }

    /// The events its code waits for, those delivered and not taken, and
    /// the calls nothing waits for any more (for
    /// [`Client::waiting_on`](crate::Client::waiting_on)).
    pub(crate) fn waits(&self) -> (Vec<String>, Vec<String>, Vec<u64>) {
        let st = lock(&self.state);
        (
            st.awaited_events(),
            st.untaken_events(),
            st.abandoned_calls(),
        )
    }

    /// The orchestrator's stored name, once it started.
    pub(crate) fn orchestrator(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Rebuilds an execution by running the code against `history`, turn by
    /// turn.
    ///
    /// # Errors
    /// [`Parked`] when the code does not make the recorded decisions, its
    /// orchestrator is not registered here, or it fails where the recorded
    /// run did not.
    pub(crate) fn replay(
        instance_id: &str,
        history: &[HistoryRecord],
        registry: &Registry,
    ) -> Result<Self, Parked> {
        Self::replay_with(instance_id, history, registry, false)
    }

    /// Checks the code against a whole recorded history, a finished one
    /// included: every decision must be made again, and a history that
    /// ends with the orchestrator returning must see it return the same
    /// value. The first difference, with both call sites.
    pub(crate) fn check(
        instance_id: &str,
        history: &[HistoryRecord],
        registry: &Registry,
    ) -> Result<(), Failure> {
        Self::replay_with(instance_id, history, registry, true)
            .map(|_| ())
            .map_err(|Parked(f)| f)
    }

    fn replay_with(
        instance_id: &str,
        history: &[HistoryRecord],
        registry: &Registry,
        whole: bool,
    ) -> Result<Self, Parked> {
        let mut ex = Self::new(instance_id);
        // A finished instance's code never runs again: nothing to replay
        // (and its last turn's decisions were never followed by a poll).
        if let Some(last) = history.last().filter(|r| r.event.is_terminal() && !whole) {
            ex.history_len = history.len() as u64;
            ex.next_turn = last.turn + 1;
            ex.last_at = last.at;
            ex.finished = true;
            return Ok(ex);
        }
        {
            let mut st = lock(&ex.state);
            st.replaying = true;
            for rec in history {
                match &rec.event {
                    Event::ActivityScheduled {
                        seq, name, site, ..
                    } => {
                        st.recorded.insert(
                            *seq,
                            Recorded {
                                kind: OpKind::Activity,
                                name: name.clone(),
                                site: site.clone(),
                                value: None,
                                version: None,
                            },
                        );
                    }
                    Event::ChildScheduled {
                        seq,
                        name,
                        site,
                        version,
                        ..
                    } => {
                        st.recorded.insert(
                            *seq,
                            Recorded {
                                kind: OpKind::Child,
                                name: name.clone(),
                                site: site.clone(),
                                value: None,
                                version: Some(*version),
                            },
                        );
                    }
                    Event::TimerCreated { seq, site, .. } => {
                        st.recorded.insert(
                            *seq,
                            Recorded {
                                kind: OpKind::Timer,
                                name: "timer".to_owned(),
                                site: site.clone(),
                                value: None,
                                version: None,
                            },
                        );
                    }
                    Event::SideEffect { seq, value, site } => {
                        st.recorded.insert(
                            *seq,
                            Recorded {
                                kind: OpKind::SideEffect,
                                name: "side_effect".to_owned(),
                                site: site.clone(),
                                value: Some(value.clone()),
                                version: None,
                            },
                        );
                    }
                    Event::EntityCalled { seq, op, site, .. }
                    | Event::EntitySignaled { seq, op, site, .. } => {
                        let kind = if matches!(rec.event, Event::EntityCalled { .. }) {
                            OpKind::EntityCall
                        } else {
                            OpKind::EntitySignal
                        };
                        st.recorded.insert(
                            *seq,
                            Recorded {
                                kind,
                                name: op.clone(),
                                site: site.clone(),
                                value: None,
                                version: None,
                            },
                        );
                    }
                    Event::LockRequested { seq, site, .. } => {
                        st.recorded.insert(
                            *seq,
                            Recorded {
                                kind: OpKind::Lock,
                                name: "lock".to_owned(),
                                site: site.clone(),
                                value: None,
                                version: None,
                            },
                        );
                    }
                    Event::Patched { seq, patch } => {
                        st.recorded.insert(
                            *seq,
                            Recorded {
                                kind: OpKind::Patch,
                                name: patch.clone(),
                                site: "a patch marker".to_owned(),
                                value: None,
                                version: None,
                            },
                        );
                    }
                    Event::LocksReleased { seq, .. } => {
                        st.recorded.insert(
                            *seq,
                            Recorded {
                                kind: OpKind::Unlock,
                                name: "unlock".to_owned(),
                                site: "an earlier release".to_owned(),
                                value: None,
                                version: None,
                            },
                        );
                    }
                    _ => {}
                }
            }
        }
        for group in history.chunk_by(|a, b| a.turn == b.turn) {
            let (turn, at) = (group[0].turn, group[0].at);
            lock(&ex.state).now = at;
            let mut terminal = false;
            let mut returned = None;
            // The code failed in this turn after making decisions (a panic,
            // a payload): checking a whole history, it must fail again.
            let mut failed_after_deciding = false;
            for rec in group {
                if rec.event.is_terminal() {
                    terminal = true;
                }
                if let Event::Completed { output, failed } = &rec.event {
                    returned = Some((output.clone(), *failed));
                }
                if matches!(rec.event, Event::Failed { .. })
                    && group
                        .iter()
                        .any(|r| r.event.is_decision() && !r.event.is_terminal())
                {
                    failed_after_deciding = true;
                }
                if !rec.event.is_decision() {
                    ex.apply(&rec.event, registry)?;
                }
            }
            // Checking a whole history, the turn the orchestrator returned
            // in runs too, and must return the same.
            let had_return = returned.is_some();
            if whole {
                if let Some(recorded) = returned {
                    let polled = ex.poll();
                    if let Some(f) = lock(&ex.state).fatal.clone() {
                        return Err(Parked(f));
                    }
                    match polled {
                        Some(Ok(value)) if value == recorded => {}
                        Some(Ok((value, _))) => {
                            return Err(Parked(Failure::new(
                                FailureKind::Nondeterminism,
                                format!(
                                    "turn {turn}: the orchestrator now returns {}, where history records {}",
                                    value.json(),
                                    recorded.0.json()
                                ),
                            )))
                        }
                        Some(Err(f)) => return Err(Parked(f)),
                        None => {
                            return Err(Parked(Failure::new(
                                FailureKind::Nondeterminism,
                                format!("turn {turn}: history records the orchestrator returning here, but the code now goes on waiting"),
                            )))
                        }
                    }
                    terminal = false;
                }
                if failed_after_deciding {
                    let polled = ex.poll();
                    let fatal = lock(&ex.state).fatal.take();
                    // A decision that differs is a difference, not the
                    // failure history records.
                    if let Some(f) = fatal
                        .as_ref()
                        .filter(|f| f.kind == FailureKind::Nondeterminism)
                    {
                        return Err(Parked(f.clone()));
                    }
                    let failed_again = fatal.is_some() || matches!(polled, Some(Err(_)));
                    if !failed_again {
                        return Err(Parked(Failure::new(
                            FailureKind::Nondeterminism,
                            format!("turn {turn}: history records the instance failing here, but the code now goes on"),
                        )));
                    }
                    // Whatever it decided before failing must match too.
                    let mut st = lock(&ex.state);
                    let recorded_here = group.iter().filter_map(|r| match &r.event {
                        e if e.is_decision() && !e.is_terminal() => decision_seq(e),
                        _ => None,
                    });
                    if let Some(seq) = recorded_here.filter(|s| st.recorded.contains_key(s)).min() {
                        let rec = st.recorded.remove(&seq).expect("invariant: just found");
                        return Err(Parked(Failure::new(
                            FailureKind::Nondeterminism,
                            format!(
                                "step {seq}: history records {} `{}` called at {} before the failure, which the code no longer makes",
                                rec.kind, rec.name, rec.site
                            ),
                        )));
                    }
                    terminal = true;
                }
            }
            let outcome = if terminal || had_return {
                None
            } else {
                ex.poll()
            };
            // Timers and calls dropped again on replay were cancelled when
            // first run.
            {
                let mut st = lock(&ex.state);
                st.dropped_timers.clear();
                st.dropped_calls.clear();
            }
            if let Some(f) = lock(&ex.state).fatal.clone() {
                return Err(Parked(f));
            }
            match outcome {
                Some(Err(f)) => return Err(Parked(f)),
                Some(Ok(_)) => {
                    return Err(Parked(Failure::new(
                        FailureKind::Nondeterminism,
                        format!(
                        "the orchestrator returned in turn {turn}, but history records it going on"
                    ),
                    )))
                }
                None => {}
            }
            ex.history_len += group.len() as u64;
            ex.next_turn = turn + 1;
            ex.last_at = at;
            if terminal {
                ex.finished = true;
                ex.root = None;
            }
        }
        let mut st = lock(&ex.state);
        st.replaying = false;
        // Markers of patches the code no longer asks about are no loss; their
        // numbers stay taken.
        st.skip_patch_markers();
        if let Some((seq, rec)) = st.recorded.iter().min_by_key(|(s, _)| **s) {
            return Err(Parked(Failure::new(
                FailureKind::Nondeterminism,
                format!(
                    "step {seq}: history records {} `{}` called at {}, which the code no longer makes",
                    rec.kind, rec.name, rec.site
                ),
            )));
        }
        drop(st);
        Ok(ex)
    }

    /// Runs one turn: delivers `incoming` at time `now`, polls, and returns
    /// what to commit. The execution is advanced as if the commit succeeded;
    /// on a failed commit it must be dropped.
    ///
    /// # Errors
    /// [`Parked`] when the instance's orchestrator is not registered here.
    pub(crate) fn run_turn(
        &mut self,
        now: i64,
        incoming: Vec<Event>,
        registry: &Registry,
    ) -> Result<Turn, Parked> {
        let at = now.max(self.last_at);
        lock(&self.state).now = at;
        // A new execution starts before anything else it is delivered (the
        // events an execution before it carried over come with it).
        let mut incoming = incoming;
        incoming.sort_by_key(|e| !matches!(e, Event::Started { .. }));
        let mut events = Vec::with_capacity(incoming.len() + 2);
        let mut outcome = None;
        let mut terminated = None;
        for ev in incoming {
            if terminated.is_some() {
                // Arrived with or after the termination: never delivered to
                // the code, but recorded, so that nothing a client was told
                // is queued disappears without a trace.
                events.push(ev);
                continue;
            }
            self.apply(&ev, registry)?;
            if let Event::Terminated { reason } = &ev {
                outcome = Some(Outcome::Terminated(reason.clone()));
                terminated = Some(ev);
            } else {
                events.push(ev);
            }
        }
        // The termination closes the turn's delivered events, so that a
        // finished history ends with its terminal event.
        events.extend(terminated);
        if outcome.is_none() && !self.finished {
            outcome = match self.poll() {
                Some(Ok((output, failed))) => Some(Outcome::Completed { output, failed }),
                Some(Err(f)) => Some(Outcome::Failed(f)),
                None => self.continued(),
            };
        }
        // Timers the code stopped waiting for: recorded and cancelled, so
        // that they never fire into a later turn. (An ending drops all.)
        let mut cancel_timers = std::mem::take(&mut lock(&self.state).dropped_timers);
        cancel_timers.sort_unstable();
        let mut cancel_calls = std::mem::take(&mut lock(&self.state).dropped_calls);
        cancel_calls.sort_unstable();
        if outcome.is_some() {
            cancel_timers.clear();
            cancel_calls.clear();
        }
        events.extend(
            cancel_timers
                .iter()
                .map(|&seq| Event::TimerCancelled { seq }),
        );
        let actions = std::mem::take(&mut lock(&self.state).actions);
        for action in &actions {
            match action {
                Action::Activity {
                    seq,
                    name,
                    input,
                    site,
                    ..
                } => {
                    if outcome.is_none() && !registry.has_activity(name) {
                        outcome = Some(Outcome::Failed(Failure::new(
                            FailureKind::UnregisteredActivity,
                            format!("activity `{name}` (called at {site}) is not registered with this runtime"),
                        )));
                    }
                    events.push(Event::ActivityScheduled {
                        seq: *seq,
                        name: (*name).to_owned(),
                        input: input.clone(),
                        site: site.clone(),
                    });
                }
                Action::Child {
                    seq,
                    name,
                    version,
                    id,
                    input,
                    site,
                    ..
                } => {
                    if outcome.is_none() && registry.orchestrator(name, *version).is_none() {
                        outcome = Some(Outcome::Failed(Failure::new(
                            FailureKind::UnregisteredOrchestrator,
                            format!("child orchestration `{name}` version {version} (called at {site}) is not registered with this runtime"),
                        )));
                    }
                    events.push(Event::ChildScheduled {
                        seq: *seq,
                        name: (*name).to_owned(),
                        id: id.clone(),
                        input: input.clone(),
                        site: site.clone(),
                        version: *version,
                    });
                }
                Action::Timer { seq, fire_at, site } => events.push(Event::TimerCreated {
                    seq: *seq,
                    fire_at: *fire_at,
                    site: site.clone(),
                }),
                Action::SideEffect { seq, value, site } => events.push(Event::SideEffect {
                    seq: *seq,
                    value: value.clone(),
                    site: site.clone(),
                }),
                Action::EntityCall {
                    seq,
                    entity,
                    op,
                    input,
                    site,
                    ..
                } => {
                    unregistered_entity(&mut outcome, registry, entity, site);
                    events.push(Event::EntityCalled {
                        seq: *seq,
                        entity: entity.clone(),
                        op: (*op).to_owned(),
                        input: input.clone(),
                        site: site.clone(),
                    })
                }
                Action::EntitySignal {
                    seq,
                    entity,
                    op,
                    input,
                    at,
                    site,
                    ..
                } => {
                    unregistered_entity(&mut outcome, registry, entity, site);
                    events.push(Event::EntitySignaled {
                        seq: *seq,
                        entity: entity.clone(),
                        op: (*op).to_owned(),
                        input: input.clone(),
                        at: *at,
                        site: site.clone(),
                    });
                }
                Action::Lock {
                    seq,
                    entities,
                    site,
                } => {
                    for entity in entities {
                        unregistered_entity(&mut outcome, registry, entity, site);
                    }
                    events.push(Event::LockRequested {
                        seq: *seq,
                        entities: entities.clone(),
                        site: site.clone(),
                    });
                }
                Action::Unlock {
                    seq,
                    lock,
                    entities,
                } => events.push(Event::LocksReleased {
                    seq: *seq,
                    lock: *lock,
                    entities: entities.clone(),
                }),
                Action::Patch { seq, patch } => events.push(Event::Patched {
                    seq: *seq,
                    patch: patch.clone(),
                }),
            }
        }
        let actions = match &outcome {
            Some(o) => {
                // A lock asked for in the turn that ends the instance is
                // never sent, so there is nothing to give up either.
                {
                    let mut st = lock(&self.state);
                    for a in &actions {
                        if let Action::Lock { seq, .. } = a {
                            st.locks.remove(seq);
                        }
                    }
                }
                match o.clone() {
                    Outcome::Completed { output, failed } => {
                        events.push(Event::Completed { output, failed });
                    }
                    Outcome::Failed(failure) => events.push(Event::Failed { failure }),
                    // Already recorded: it is the delivered event.
                    Outcome::Terminated(_) => {}
                    // Nothing of this execution is kept: history starts
                    // again, and what it still had pending is dropped.
                    // Signals and releases of locks still go out: they are
                    // messages to others, not this execution's pending work.
                    Outcome::ContinuedAsNew { .. } => {
                        self.finished = true;
                        self.root = None;
                        let sent = actions
                            .into_iter()
                            .filter(|a| match a {
                                Action::EntitySignal { entity, .. } => {
                                    registry.has_entity(crate::entity::type_of(entity))
                                }
                                Action::Unlock { .. } => true,
                                _ => false,
                            })
                            .collect();
                        return Ok(self.close_turn(at, events, sent, outcome, Vec::new()));
                    }
                }
                self.finished = true;
                self.root = None;
                // Activities and children called in the last turn are
                // recorded in history, so they run (fire-and-forget); their
                // results are dropped. A timer would fire into nothing:
                // history records it created, never fired, which is what
                // happens.
                // What is not registered here (the instance failed for it)
                // is not started.
                actions
                    .into_iter()
                    .filter(|a| match a {
                        Action::Activity { name, .. } => registry.has_activity(name),
                        Action::Child { name, version, .. } => {
                            registry.orchestrator(name, *version).is_some()
                        }
                        // Signals and releases go out; a call or a lock
                        // request nobody will wait for does not.
                        Action::EntitySignal { entity, .. } => {
                            registry.has_entity(crate::entity::type_of(entity))
                        }
                        Action::Unlock { .. } => true,
                        _ => false,
                    })
                    .collect()
            }
            None => actions,
        };
        let mut turn = self.close_turn(at, events, actions, outcome, cancel_timers);
        turn.cancel_calls = cancel_calls;
        Ok(turn)
    }

    /// The messages an ending sends: the parent learns how its child
    /// ended, and the entities it holds or asked to lock are let go.
    fn endings(&self, outcome: Option<&Outcome>) -> Vec<Outgoing> {
        let Some(o) = outcome else {
            return Vec::new();
        };
        let mut sends = ending_messages(self.parent.as_ref(), o);
        let locks = std::mem::take(&mut lock(&self.state).locks);
        sends.extend(unlock_messages(
            &self.instance_id,
            locks.into_iter().map(|(seq, req)| (seq, req.entities)),
        ));
        sends
    }

    /// The turn's outcome if the orchestrator asked to continue as new.
    fn continued(&mut self) -> Option<Outcome> {
        let mut st = lock(&self.state);
        let input = st.continue_as_new.take()?;
        let (first_seq, seed) = st.successor();
        let carried = st.unconsumed_events();
        let started = Event::Started {
            name: self.name.clone().unwrap_or_default(),
            input,
            seed: Some(seed),
            first_seq,
            parent: self.parent.clone(),
            version: self.version,
        };
        Some(Outcome::ContinuedAsNew { started, carried })
    }

    /// Numbers the turn's events and closes it.
    fn close_turn(
        &mut self,
        at: i64,
        events: Vec<Event>,
        actions: Vec<Action>,
        outcome: Option<Outcome>,
        cancel_timers: Vec<u64>,
    ) -> Turn {
        let sends = self.endings(outcome.as_ref());
        let turn = self.next_turn;
        let records = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| HistoryRecord {
                index: self.history_len + i as u64,
                turn,
                at,
                event,
            })
            .collect::<Vec<_>>();
        self.history_len += records.len() as u64;
        self.next_turn += 1;
        self.last_at = at;
        Turn {
            events: records,
            actions,
            outcome,
            custom_status: lock(&self.state).custom_status.take(),
            sends,
            cancel_timers,
            cancel_calls: Vec::new(),
        }
    }

    /// Delivers one incoming event.
    fn apply(&mut self, event: &Event, registry: &Registry) -> Result<(), Parked> {
        match event {
            Event::Started {
                name,
                input,
                seed,
                first_seq,
                parent,
                version,
            } => {
                self.name = Some(name.clone());
                self.parent.clone_from(parent);
                self.version = *version;
                self.execution = crate::history::execution_of(*seed);
                lock(&self.state).start_at(*first_seq);
                let Some(entry) = registry.orchestrator(name, *version) else {
                    return Err(Parked(unregistered(registry, name, *version)));
                };
                lock(&self.state).max_payload = registry.max_payload;
                let ctx = Context::new(self.instance_id.clone(), self.state.clone(), *seed);
                // Decoding the input runs user code (a `Deserialize` impl):
                // a panic there fails the instance, not the dispatcher.
                let started = catch_unwind(AssertUnwindSafe(|| {
                    (entry.start)(ctx, input, registry.max_payload)
                }));
                match started {
                    Ok(Ok(fut)) => self.root = Some(fut),
                    Ok(Err(f)) => lock(&self.state).fail(f),
                    Err(panic) => lock(&self.state).fail(Failure::new(
                        FailureKind::Panic,
                        format!(
                            "decoding the orchestrator's input panicked: {}",
                            panic_message(panic.as_ref())
                        ),
                    )),
                }
                self.flag.0.store(true, Ordering::Release);
            }
            Event::ActivityCompleted { seq, output } => {
                lock(&self.state).deliver(*seq, Completion::Activity(Ok(output.clone())))
            }
            Event::ActivityFailed { seq, failure } => {
                lock(&self.state).deliver(*seq, Completion::Activity(Err(failure.clone())))
            }
            Event::ChildCompleted { seq, output } => {
                lock(&self.state).deliver(*seq, Completion::Child(Ok(output.clone())));
            }
            Event::ChildFailed { seq, failure } => {
                lock(&self.state).deliver(*seq, Completion::Child(Err(failure.clone())));
            }
            Event::TimerFired { seq } => lock(&self.state).deliver(*seq, Completion::Timer),
            Event::EntityCompleted { seq, output } => {
                lock(&self.state).deliver(*seq, Completion::Entity(Ok(output.clone())));
            }
            Event::EntityFailed { seq, failure } => {
                lock(&self.state).deliver(*seq, Completion::Entity(Err(failure.clone())));
            }
            Event::LockGranted { seq } => lock(&self.state).grant(*seq),
            Event::EventRaised { name, data } => {
                lock(&self.state).deliver_event(name.clone(), data.clone());
            }
            Event::Terminated { .. }
            | Event::Suspended { .. }
            | Event::Resumed { .. }
            | Event::ActivityScheduled { .. }
            | Event::ChildScheduled { .. }
            | Event::TimerCancelled { .. }
            | Event::TimerCreated { .. }
            | Event::SideEffect { .. }
            | Event::Completed { .. }
            | Event::Failed { .. }
            | Event::EntityCalled { .. }
            | Event::EntitySignaled { .. }
            | Event::LockRequested { .. }
            | Event::LocksReleased { .. }
            | Event::Patched { .. }
            | Event::Operation { .. }
            | Event::LockEntity { .. }
            | Event::UnlockEntity { .. } => {}
        }
        Ok(())
    }

    /// Polls the orchestrator until it stops waking itself. `None` while it
    /// waits on durable operations.
    fn poll(&mut self) -> Option<Result<(Payload, bool), Failure>> {
        let root = self.root.as_mut()?;
        let waker = Waker::from(self.flag.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        for _ in 0..MAX_POLLS_PER_TURN {
            self.flag.0.store(false, Ordering::Release);
            let polled = catch_unwind(AssertUnwindSafe(|| root.as_mut().poll(&mut cx)));
            if let Some(f) = lock(&self.state).fatal.clone() {
                return Some(Err(f));
            }
            match polled {
                Err(panic) => {
                    return Some(Err(Failure::new(
                        FailureKind::Panic,
                        format!(
                            "the orchestrator panicked: {}",
                            panic_message(panic.as_ref())
                        ),
                    )))
                }
                Ok(Poll::Ready(result)) => return Some(result),
                Ok(Poll::Pending) => {
                    if !self.flag.0.load(Ordering::Acquire) {
                        let st = lock(&self.state);
                        return if st.waiting == 0 && st.continue_as_new.is_none() {
                            Some(Err(Failure::new(
                                FailureKind::NonDurableAwait,
                                "the orchestrator is waiting on something that is not a durable operation \
                                 (a tokio timer, a channel, a lock?): only futures from the Context, and \
                                 durable's combinators over them, may be awaited",
                            )))
                        } else {
                            None
                        };
                    }
                }
            }
        }
        Some(Err(Failure::new(
            FailureKind::NonDurableAwait,
            "the orchestrator keeps waking itself without waiting on a durable operation",
        )))
    }
}

#[cfg(test)]
mod tests;
