//! The orchestrator's view of the world: the [`Context`] and the durable
//! futures it hands out (activity calls, timers, external events).
//!
//! Every durable operation takes the next sequence number when it is created.
//! While history is replayed the operation is checked against the recorded
//! one with that number instead of being scheduled again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::panic::Location;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;

mod futures;

use futures::OpWait;
pub use futures::{
    ActivityCall, ChildCall, ChildError, ContinueAsNew, EntityCall, EntityLock, EventDataError,
    EventWait, LockWait, Timer, TryEventWait,
};

use crate::activity::Activity;
use crate::history::{self, ActivityFailure, ChildFailure, Failure, FailureKind, Payload};
use crate::retry::RetryPolicy;

/// The kind of a durable operation, as history records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Activity,
    Child,
    Timer,
    SideEffect,
    EntityCall,
    EntitySignal,
    Lock,
    Unlock,
    Patch,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Activity => "activity",
            Self::Child => "child orchestration",
            Self::Timer => "timer",
            Self::SideEffect => "side effect",
            Self::EntityCall => "entity operation",
            Self::EntitySignal => "entity signal",
            Self::Lock => "entity lock",
            Self::Unlock => "entity unlock",
            Self::Patch => "patch marker",
        })
    }
}

/// A decision found in history, waiting to be made again by replay.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) kind: OpKind,
    pub(crate) name: String,
    pub(crate) site: String,
    /// A side effect's recorded value.
    pub(crate) value: Option<Payload>,
    /// A child's recorded version.
    pub(crate) version: Option<u32>,
}

/// Something the orchestrator asked for in this turn, to be committed.
#[derive(Debug)]
pub(crate) enum Action {
    Activity {
        seq: u64,
        name: &'static str,
        input: Payload,
        site: String,
        retry: RetryPolicy,
    },
    Child {
        seq: u64,
        name: &'static str,
        version: u32,
        id: String,
        input: Payload,
        seed: u64,
        site: String,
    },
    Timer {
        seq: u64,
        fire_at: i64,
        site: String,
    },
    SideEffect {
        seq: u64,
        value: Payload,
        site: String,
    },
    EntityCall {
        seq: u64,
        entity: String,
        op: &'static str,
        input: Payload,
        /// Sent from inside a critical section holding the entity.
        holder: bool,
        site: String,
    },
    EntitySignal {
        seq: u64,
        entity: String,
        op: &'static str,
        input: Payload,
        at: i64,
        holder: bool,
        site: String,
    },
    Lock {
        seq: u64,
        entities: Vec<String>,
        site: String,
    },
    Unlock {
        seq: u64,
        /// The request's sequence number.
        lock: u64,
        entities: Vec<String>,
    },
    Patch {
        seq: u64,
        patch: String,
    },
}

/// How a durable operation ended, as delivered to its future.
#[derive(Debug)]
pub(crate) enum Completion {
    Activity(Result<Payload, ActivityFailure>),
    Child(Result<Payload, ChildFailure>),
    Entity(Result<Payload, history::EntityError>),
    Lock,
    Timer,
}

/// A critical section asked for and not released.
#[derive(Debug)]
pub(crate) struct LockRequest {
    /// The entities, sorted.
    pub(crate) entities: Vec<String>,
    /// Every one of them is locked to this instance.
    pub(crate) granted: bool,
    /// Nobody waits for it any more (its future was dropped, say in a
    /// race with a timer): released as soon as it is granted.
    pub(crate) abandoned: bool,
}

/// The mutable state one instance's futures share.
#[derive(Debug)]
pub(crate) struct State {
    /// The current turn's deterministic time.
    pub(crate) now: i64,
    next_seq: u64,
    /// The first sequence number of this execution.
    first_seq: u64,
    /// True while history is being replayed: no new decision is allowed.
    pub(crate) replaying: bool,
    /// Recorded decisions not yet made again, by sequence number.
    pub(crate) recorded: HashMap<u64, Recorded>,
    /// New decisions of the current turn.
    pub(crate) actions: Vec<Action>,
    completions: HashMap<u64, Completion>,
    wakers: HashMap<u64, Waker>,
    /// Operations whose future was dropped before it completed.
    abandoned: HashSet<u64>,
    /// Events delivered and not yet consumed, by name, each with its
    /// delivery number (continue-as-new carries them over in that order).
    events: HashMap<String, VecDeque<(u64, Payload)>>,
    delivered: u64,
    event_wakers: HashMap<String, Vec<Waker>>,
    /// Durable futures that were polled, are pending and still alive.
    pub(crate) waiting: usize,
    /// Set when the instance must fail; every durable future then stays pending.
    pub(crate) fatal: Option<Failure>,
    /// The deterministic random source's state.
    rng: u64,
    /// The largest payload the orchestrator may produce.
    pub(crate) max_payload: usize,
    /// The custom status set in the current turn, for its commit.
    pub(crate) custom_status: Option<Payload>,
    /// The input the orchestrator continues as new with, once it asked.
    pub(crate) continue_as_new: Option<Payload>,
    /// Timers whose futures were dropped before they fired, in this turn.
    pub(crate) dropped_timers: Vec<u64>,
    /// Activity calls whose futures were dropped before they completed.
    pub(crate) dropped_calls: Vec<u64>,
    /// Critical sections asked for and not released, by the request's
    /// sequence number: the entities, and whether they are all held.
    pub(crate) locks: std::collections::BTreeMap<u64, LockRequest>,
    /// Side-effect values to hand back instead of running the closure, by
    /// sequence number: verify mode runs a turn a second time with the
    /// values its first run recorded.
    pub(crate) preset: HashMap<u64, Payload>,
    /// What `patched` answered for each patch id in this execution: the
    /// first call decides, so every call site of one id takes the same path.
    patches: HashMap<String, bool>,
}

impl State {
    pub(crate) fn new() -> Self {
        Self {
            now: 0,
            next_seq: 0,
            first_seq: 0,
            replaying: false,
            recorded: HashMap::new(),
            actions: Vec::new(),
            completions: HashMap::new(),
            wakers: HashMap::new(),
            abandoned: HashSet::new(),
            events: HashMap::new(),
            delivered: 0,
            event_wakers: HashMap::new(),
            waiting: 0,
            fatal: None,
            rng: 0,
            max_payload: crate::config::DEFAULT_MAX_PAYLOAD,
            custom_status: None,
            continue_as_new: None,
            dropped_timers: Vec::new(),
            dropped_calls: Vec::new(),
            locks: std::collections::BTreeMap::new(),
            preset: HashMap::new(),
            patches: HashMap::new(),
        }
    }

    /// Seeds the random source from the instance id, so every replay of
    /// the instance draws the same numbers.
    pub(crate) fn seed(&mut self, instance_id: &str) {
        // FNV-1a: stable across Rust releases, unlike the std hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in instance_id.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.rng = h;
    }

    /// SplitMix64: small, fast, and good enough for ids and jitter.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Records the first fatal failure; later ones are consequences.
    pub(crate) fn fail(&mut self, failure: Failure) {
        self.fatal.get_or_insert(failure);
    }

    /// Takes the next sequence number and checks it against history, or
    /// queues `action` as a new decision.
    fn schedule(
        &mut self,
        kind: OpKind,
        name: &str,
        site: &Location<'_>,
        action: impl FnOnce(u64, String) -> Action,
    ) -> u64 {
        self.schedule_or_replay(kind, name, site, action).0
    }

    /// As [`State::schedule`], also returning the recorded decision when
    /// the operation was replayed.
    fn schedule_or_replay(
        &mut self,
        kind: OpKind,
        name: &str,
        loc: &Location<'_>,
        action: impl FnOnce(u64, String) -> Action,
    ) -> (u64, Option<Recorded>) {
        // Formatted only when recorded or reported: replay checks are hot.
        let site = || site(loc);
        // A patch marker the code no longer asks about (its `patched` call
        // was removed once every instance took the new path) is passed over.
        while self
            .recorded
            .get(&self.next_seq)
            .is_some_and(|r| r.kind == OpKind::Patch)
        {
            self.recorded.remove(&self.next_seq);
            self.next_seq += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(rec) = self.recorded.remove(&seq) {
            if rec.kind != kind || rec.name != name {
                self.fail(Failure::new(
                    FailureKind::Nondeterminism,
                    format!(
                        "step {seq}: history records {} `{}` called at {}, but the code now makes {kind} `{name}` at {}",
                        rec.kind, rec.name, rec.site, site()
                    ),
                ));
            }
            return (seq, Some(rec));
        } else if self.replaying {
            self.fail(Failure::new(
                FailureKind::Nondeterminism,
                format!(
                    "step {seq}: the code makes {kind} `{name}` at {}, which history does not record at this point",
                    site()
                ),
            ));
        } else {
            self.actions.push(action(seq, site()));
        }
        (seq, None)
    }

    /// Whether this point of the code takes the new path of patch `patch`:
    /// see `Context::patched`.
    fn patched(&mut self, patch: &str) -> bool {
        if let Some(&taken) = self.patches.get(patch) {
            return taken;
        }
        let taken = self.patched_first(patch);
        self.patches.insert(patch.to_owned(), taken);
        taken
    }

    /// The first `patched` call of `patch` in this execution: finds its
    /// marker in history, or records one outside replay.
    fn patched_first(&mut self, patch: &str) -> bool {
        // This patch's marker, here or behind markers of patches whose
        // calls were removed since (those are passed over).
        let mut at = self.next_seq;
        while let Some(rec) = self.recorded.get(&at).filter(|r| r.kind == OpKind::Patch) {
            if rec.name == patch {
                for seq in self.next_seq..=at {
                    self.recorded.remove(&seq);
                }
                self.next_seq = at + 1;
                return true;
            }
            at += 1;
        }
        if self.replaying {
            // History from before the patch: no marker here, the old path.
            return false;
        }
        let seq = self.reserve();
        self.actions.push(Action::Patch {
            seq,
            patch: patch.to_owned(),
        });
        true
    }

    /// Drops the markers of patches the code no longer asks about, left
    /// when replay ends, keeping their sequence numbers taken.
    pub(crate) fn skip_patch_markers(&mut self) {
        let left: Vec<u64> = self
            .recorded
            .iter()
            .filter(|(_, r)| r.kind == OpKind::Patch)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in left {
            self.recorded.remove(&seq);
            self.next_seq = self.next_seq.max(seq + 1);
        }
    }

    /// Takes the next sequence number for a new decision outside replay.
    fn reserve(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// A lock request was granted: its entities are held from now on; one
    /// nobody waits for any more is released at once.
    #[track_caller]
    pub(crate) fn grant(&mut self, seq: u64) {
        let abandoned = match self.locks.get_mut(&seq) {
            Some(req) => {
                req.granted = true;
                req.abandoned
            }
            None => false,
        };
        if abandoned {
            self.release(seq, Location::caller());
        }
        self.deliver(seq, Completion::Lock);
    }

    /// Releases the locks of request `lock_seq`.
    fn release(&mut self, lock_seq: u64, loc: &Location<'_>) {
        let Some(req) = self.locks.remove(&lock_seq) else {
            return;
        };
        let entities = req.entities;
        self.schedule(OpKind::Unlock, "unlock", loc, |seq, _| Action::Unlock {
            seq,
            lock: lock_seq,
            entities,
        });
    }

    /// Whether the instance holds `entity` locked (a critical section it
    /// still waits in).
    fn holds(&self, entity: &str) -> bool {
        self.in_section()
            .is_some_and(|req| req.entities.iter().any(|e| e == entity))
    }

    /// The critical section the code is in (granted and still wanted).
    fn in_section(&self) -> Option<&LockRequest> {
        self.locks.values().find(|r| r.granted && !r.abandoned)
    }

    /// Hands an operation's result to its future.
    pub(crate) fn deliver(&mut self, seq: u64, completion: Completion) {
        if self.abandoned.remove(&seq) {
            return;
        }
        self.completions.insert(seq, completion);
        if let Some(w) = self.wakers.remove(&seq) {
            w.wake();
        }
    }

    /// The names of the events a pending future waits for, sorted.
    pub(crate) fn awaited_events(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .event_wakers
            .iter()
            .filter(|(_, w)| !w.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort_unstable();
        names
    }

    /// The sequence numbers of calls whose futures were dropped before
    /// their results came (the losing side of a `select`): nothing waits
    /// for them.
    pub(crate) fn abandoned_calls(&self) -> Vec<u64> {
        self.abandoned.iter().copied().collect()
    }

    /// The names of the events delivered and not taken by any wait.
    pub(crate) fn untaken_events(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .events
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort_unstable();
        names
    }

    /// Queues an external event for the first waiter that polls for it.
    pub(crate) fn deliver_event(&mut self, name: String, data: Payload) {
        if let Some(wakers) = self.event_wakers.remove(&name) {
            for w in wakers {
                w.wake();
            }
        }
        self.delivered += 1;
        let n = self.delivered;
        self.events.entry(name).or_default().push_back((n, data));
    }

    /// Takes the next event called `name`, if one was delivered.
    pub(crate) fn take_event(&mut self, name: &str) -> Option<Payload> {
        self.events
            .get_mut(name)
            .and_then(VecDeque::pop_front)
            .map(|(_, data)| data)
    }

    /// Every event delivered and not consumed, in delivery order.
    pub(crate) fn unconsumed_events(&mut self) -> Vec<history::Event> {
        let mut all: Vec<(u64, history::Event)> = self
            .events
            .drain()
            .flat_map(|(name, q)| {
                q.into_iter().map(move |(n, data)| {
                    (
                        n,
                        history::Event::EventRaised {
                            name: name.clone(),
                            data,
                        },
                    )
                })
            })
            .collect();
        all.sort_by_key(|(n, _)| *n);
        all.into_iter().map(|(_, e)| e).collect()
    }

    /// Sets where sequence numbers start (a continued execution's first).
    pub(crate) fn start_at(&mut self, first_seq: u64) {
        self.first_seq = first_seq;
        self.patches.clear();
        self.next_seq = self.next_seq.max(first_seq);
    }

    /// The first sequence number, and a fresh seed, for an execution that
    /// continues this one: above every number this one used, and above its
    /// own first, so that each execution has a number of its own.
    pub(crate) fn successor(&mut self) -> (u64, u64) {
        let first = self.next_seq.max(self.first_seq.saturating_add(1));
        (first, self.next_random())
    }
}

pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic in orchestrator code never happens while this lock is held
    // (user code runs outside it), so a poisoned lock still holds sound state.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn site(loc: &Location<'_>) -> String {
    format!("{}:{}:{}", loc.file(), loc.line(), loc.column())
}

/// The orchestrator's handle on durable operations.
///
/// Everything an orchestrator learns from outside its input goes through
/// here, so that replay sees the same values: activity results, timers,
/// external events and the time. Cloning is cheap; clones share the instance.
#[derive(Clone)]
pub struct Context {
    instance_id: Arc<str>,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(instance_id: Arc<str>, state: Arc<Mutex<State>>, seed: Option<u64>) -> Self {
        match seed {
            Some(seed) => lock(&state).rng = seed,
            None => lock(&state).seed(&instance_id),
        }
        Self { instance_id, state }
    }

    /// The id of the running instance.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The deterministic time of the current turn: when the events that woke
    /// the orchestrator were processed, the same on every replay.
    pub fn now(&self) -> SystemTime {
        history::system_time(lock(&self.state).now)
    }

    /// Changes an orchestrator safely while instances of it are running:
    /// `true` where the instance takes the new code, `false` where its
    /// history was written by the old code before this point. New instances,
    /// and running ones once they get past what their history records,
    /// take the new path, and the choice is recorded in history, so every
    /// replay takes the same one. The first call of an id in an execution
    /// decides: later calls of the same id, at this call site or another,
    /// answer the same without recording anything, so an instance never
    /// takes the old path at one site and the new one at the next.
    ///
    /// Once no instance started before the patch is still running (the
    /// database check lists them), delete the old branch and the call: the
    /// markers already in histories are passed over by replay.
    ///
    /// ```
    /// # use durable::{activity, orchestrator, Context};
    /// # #[activity] async fn charge(cents: u64) -> u64 { cents }
    /// # #[activity] async fn charge_with_fee(cents: u64) -> u64 { cents + 30 }
    /// #[orchestrator]
    /// async fn checkout(ctx: Context, cents: u64) -> u64 {
    ///     if ctx.patched("fee-2026-11") {
    ///         ctx.call(charge_with_fee, cents).await.unwrap_or(0)
    ///     } else {
    ///         ctx.call(charge, cents).await.unwrap_or(0)
    ///     }
    /// }
    /// ```
    pub fn patched(&self, patch: &str) -> bool {
        lock(&self.state).patched(patch)
    }

    /// Whether the code is being replayed from history (for logging only:
    /// never branch on it).
    pub fn is_replaying(&self) -> bool {
        lock(&self.state).replaying
    }

    /// Calls an activity, attempted once; resolves to its value or its
    /// typed error.
    #[track_caller]
    pub fn call<A: Activity>(&self, activity: A, input: A::Input) -> ActivityCall<A> {
        self.schedule_activity(activity, &input, RetryPolicy::default(), Location::caller())
    }

    /// Calls an activity, attempting it again per `policy` while it returns
    /// `Err` or panics.
    #[track_caller]
    pub fn call_with_retry<A: Activity>(
        &self,
        activity: A,
        input: A::Input,
        policy: RetryPolicy,
    ) -> ActivityCall<A> {
        // A total timeout counts from this turn's time: the same on replay.
        let policy = policy.started_at(lock(&self.state).now);
        self.schedule_activity(activity, &input, policy, Location::caller())
    }

    /// A call's encoded input; `None` on replay, which only checks the call
    /// against history, where the first run recorded its input (encoding it
    /// again would be wasted work).
    fn encode_input(
        &self,
        input: &impl serde::Serialize,
        what: impl FnOnce() -> String,
    ) -> Result<Option<Payload>, history::PayloadError> {
        let (limit, replaying) = {
            let st = lock(&self.state);
            (st.max_payload, st.replaying)
        };
        if replaying {
            return Ok(None);
        }
        Payload::encode(input, &what(), limit).map(Some)
    }

    fn schedule_activity<A: Activity>(
        &self,
        _activity: A,
        input: &A::Input,
        retry: RetryPolicy,
        loc: &Location<'_>,
    ) -> ActivityCall<A> {
        // An invalid policy schedules nothing, on every run alike.
        if let Err(why) = retry.validate() {
            return ActivityCall::refused(why);
        }
        let encoded = self.encode_input(input, || format!("the input of activity `{}`", A::NAME));
        let mut st = lock(&self.state);
        let seq = match encoded {
            Ok(input) => st.schedule(OpKind::Activity, A::NAME, loc, |seq, site| {
                let input = input.expect("invariant: new decisions are made only outside replay");
                Action::Activity {
                    seq,
                    name: A::NAME,
                    input,
                    site,
                    retry,
                }
            }),
            Err(e) => {
                st.fail(Failure::new(FailureKind::Payload, e.to_string()));
                u64::MAX
            }
        };
        drop(st);
        ActivityCall::new(OpWait::new(self.state.clone(), seq))
    }

    /// Schedules a child orchestration of orchestrator `name`; see
    /// `Context::call_child` (in the `orchestrator` module, which owns the
    /// typed entry points).
    pub(crate) fn schedule_child<T>(
        &self,
        (name, version): (&'static str, u32),
        id: Option<String>,
        input: &impl serde::Serialize,
        loc: &Location<'_>,
    ) -> ChildCall<T> {
        let encoded = self.encode_input(input, || {
            format!("the input of child orchestration `{name}`")
        });
        let checked = match &id {
            Some(id) => crate::ids::check_name("child instance id", id)
                .map_err(|e| format!("a child's id is refused: {}", e.reason)),
            None => Ok(()),
        };
        let parent = self.instance_id.clone();
        let child_id = move |seq: u64| id.clone().unwrap_or_else(|| format!("{parent}:{seq}"));
        let mut st = lock(&self.state);
        // Drawn on every run, replay included, so later draws stay the same.
        let seed = st.next_random();
        let seq = match (encoded, checked) {
            (Ok(input), Ok(())) => {
                let (seq, replayed) =
                    st.schedule_or_replay(OpKind::Child, name, loc, |seq, site| {
                        let input =
                            input.expect("invariant: new decisions are made only outside replay");
                        Action::Child {
                            seq,
                            name,
                            version,
                            id: child_id(seq),
                            input,
                            seed,
                            site,
                        }
                    });
                // The same child in another version is another decision:
                // the instance would wait on a child that runs other code.
                if let Some(rec) = replayed.filter(|r| {
                    r.kind == OpKind::Child && r.name == name && r.version != Some(version)
                }) {
                    st.fail(Failure::new(
                        FailureKind::Nondeterminism,
                        format!(
                            "step {seq}: history records child orchestration `{name}` version {} called at {}, \
                             but the code now makes child orchestration `{name}` version {version} at {}",
                            rec.version.unwrap_or(1),
                            rec.site,
                            site(loc)
                        ),
                    ));
                }
                seq
            }
            (Err(e), _) => {
                st.fail(Failure::new(FailureKind::Payload, e.to_string()));
                u64::MAX
            }
            (_, Err(reason)) => {
                st.fail(Failure::new(FailureKind::Payload, reason));
                u64::MAX
            }
        };
        drop(st);
        ChildCall::new(OpWait::new(self.state.clone(), seq), name)
    }

    /// A durable timer: resolves `duration` after the current turn's time,
    /// never earlier, even across restarts.
    #[track_caller]
    pub fn sleep(&self, duration: Duration) -> Timer {
        let loc = Location::caller();
        let fire_at = lock(&self.state)
            .now
            .saturating_add(history::duration_micros(duration));
        self.timer_at(fire_at, loc)
    }

    /// A durable timer that resolves at `deadline` (at once if it has passed).
    #[track_caller]
    pub fn sleep_until(&self, deadline: SystemTime) -> Timer {
        self.timer_at(history::micros(deadline), Location::caller())
    }

    fn timer_at(&self, fire_at: i64, loc: &Location<'_>) -> Timer {
        let seq = lock(&self.state).schedule(OpKind::Timer, "timer", loc, |seq, site| {
            Action::Timer { seq, fire_at, site }
        });
        Timer::new(OpWait::new(self.state.clone(), seq))
    }

    /// A deterministic random number: drawn from a source seeded when the
    /// instance started (the seed is recorded in history), so replay draws
    /// the same sequence and two instances, in any database, do not.
    pub fn random(&self) -> u64 {
        lock(&self.state).next_random()
    }

    /// A deterministic, UUID-formatted (version 4) id from [`Context::random`]:
    /// unique per instance and call, the same on every replay.
    pub fn uuid(&self) -> String {
        let mut st = lock(&self.state);
        let (a, b) = (st.next_random(), st.next_random());
        drop(st);
        crate::ids::uuid_v4(a, b)
    }

    /// Runs `f` once and records its value in history; on replay the
    /// recorded value is returned and `f` is not run. The escape hatch for
    /// a nondeterministic value the orchestrator needs (a real clock
    /// reading, a random seed from the OS).
    ///
    /// # Panics
    /// When a recorded value no longer decodes as `T` (the code changed the
    /// type); the panic fails the instance with that message.
    #[track_caller]
    pub fn side_effect<T, F>(&self, f: F) -> T
    where
        T: serde::Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        let loc = Location::caller();
        let mut st = lock(&self.state);
        if st.replaying {
            // Never run `f` again: hand back what the first run recorded.
            let (_, rec) = st.schedule_or_replay(OpKind::SideEffect, "side_effect", loc, |_, _| {
                unreachable!("invariant: replay never makes new decisions")
            });
            drop(st);
            let recorded = rec
                .filter(|r| r.kind == OpKind::SideEffect)
                .and_then(|r| r.value);
            // Without a recorded value the mismatch is already recorded as
            // the instance's failure; the panic only unwinds out of the code.
            let Some(value) = recorded else {
                panic!("the side effect at {} does not match history", site(loc));
            };
            return match value.decode::<T>("the recorded value of a side effect") {
                Ok(v) => v,
                Err(e) => panic!("{e}"),
            };
        }
        // The sequence number is taken before `f` runs, so that durable
        // calls `f` makes (which it should not) cannot reorder the steps.
        let seq = st.reserve();
        let limit = st.max_payload;
        if let Some(value) = st.preset.remove(&seq) {
            // Verify mode's second run: the first run's value, as replay.
            st.actions.push(Action::SideEffect {
                seq,
                value: value.clone(),
                site: site(loc),
            });
            drop(st);
            return match value.decode::<T>("the recorded value of a side effect") {
                Ok(v) => v,
                Err(e) => panic!("{e}"),
            };
        }
        drop(st);
        let value = f();
        match Payload::encode(&value, "the value of a side effect", limit) {
            Ok(payload) => lock(&self.state).actions.push(Action::SideEffect {
                seq,
                value: payload,
                site: site(loc),
            }),
            Err(e) => lock(&self.state).fail(Failure::new(FailureKind::Payload, e.to_string())),
        }
        value
    }

    /// Sets the instance's custom status: any value clients read, typed,
    /// with [`InstanceStatus::custom_status_as`](crate::InstanceStatus::custom_status_as)
    /// (progress, a stage name, what it waits for). It is written when the
    /// turn commits; the last value set in a turn wins. Replay does not set
    /// it again. A value that does not encode, or is over the payload
    /// limit, fails the instance with [`FailureKind::Payload`].
    ///
    /// ```
    /// # use durable::{orchestrator, Context};
    /// #[orchestrator]
    /// async fn stages(ctx: Context) -> u32 {
    ///     ctx.set_custom_status(&"reserving stock");
    ///     ctx.sleep(std::time::Duration::from_secs(1)).await;
    ///     ctx.set_custom_status(&serde_json::json!({ "stage": "charging", "attempt": 1 }));
    ///     7
    /// }
    /// ```
    pub fn set_custom_status<T: serde::Serialize + ?Sized>(&self, value: &T) {
        let mut st = lock(&self.state);
        if st.replaying {
            return;
        }
        match Payload::encode(value, "the custom status", st.max_payload) {
            Ok(p) => st.custom_status = Some(p),
            Err(e) => st.fail(Failure::new(FailureKind::Payload, e.to_string())),
        }
    }

    /// Ends this execution and starts the instance afresh with `input`:
    /// `return ctx.continue_as_new(next).await;` type-checks in an
    /// orchestrator of any return type (the future never resolves). The
    /// instance keeps its id; its history is deleted and begins again with
    /// the new `Started`, so an eternal orchestration (a monitor, an
    /// aggregator) keeps its history and memory bounded. Events it received
    /// and did not consume, and events raised meanwhile, carry over in the
    /// order they were raised. Timers and activity calls still pending are
    /// dropped (an attempt already running finishes, and its result is
    /// ignored). `input` must be the orchestrator's input type: one that does
    /// not decode fails the new execution with [`FailureKind::Payload`]; one
    /// over the payload limit fails this one.
    ///
    /// ```
    /// # use durable::{orchestrator, Context};
    /// # use std::time::Duration;
    /// #[orchestrator]
    /// async fn counter(ctx: Context, n: u64) -> u64 {
    ///     if n == 1_000 {
    ///         return n;
    ///     }
    ///     ctx.sleep(Duration::from_secs(60)).await;
    ///     return ctx.continue_as_new(n + 1).await;
    /// }
    /// ```
    pub fn continue_as_new<T>(&self, input: impl serde::Serialize) -> ContinueAsNew<T> {
        let limit = lock(&self.state).max_payload;
        let input = Payload::encode(&input, "the input to continue as new with", limit)
            .map_err(|e| Failure::new(FailureKind::Payload, e.to_string()));
        ContinueAsNew::new(self.state.clone(), input)
    }

    /// Waits for the next external event called `name`, raised with
    /// [`Client::raise_event`](crate::Client::raise_event).
    ///
    /// Events raised before anyone waits are kept, in order. Data that does
    /// not decode into `T` fails the instance.
    pub fn wait_event<T: DeserializeOwned>(&self, name: impl Into<String>) -> EventWait<T> {
        EventWait::new(self.state.clone(), name.into())
    }

    /// As [`Context::wait_event`], but data that does not decode into `T`
    /// reaches the orchestrator as an [`EventDataError`] (the event is
    /// consumed) instead of failing the instance: for events from outside
    /// that the orchestrator can answer with an error of its own.
    pub fn try_wait_event<T: DeserializeOwned>(&self, name: impl Into<String>) -> TryEventWait<T> {
        TryEventWait(EventWait::new(self.state.clone(), name.into()))
    }
    /// Calls operation `op` of entity `entity` with encoded `args` (the
    /// entity module owns the typed entry points).
    pub(crate) fn call_entity<R>(
        &self,
        entity: String,
        op: &'static str,
        args: Result<Payload, history::PayloadError>,
        loc: &Location<'_>,
    ) -> EntityCall<R> {
        let mut st = lock(&self.state);
        let holder = st.holds(&entity);
        if st.in_section().is_some() && !holder {
            // Waiting on an entity outside the section while holding it
            // could wait forever on an orchestration that waits for ours.
            st.fail(Failure::new(
                FailureKind::Payload,
                format!(
                    "inside a critical section an orchestration calls only the entities it locked; \
                     `{}` is not one of them (operation `{op}` at {}): signal it instead, or release \
                     the lock first",
                    crate::ids::Escaped(&entity),
                    site(loc)
                ),
            ));
            drop(st);
            return EntityCall::new(OpWait::new(self.state.clone(), u64::MAX), op);
        }
        let seq = match args {
            Ok(input) => st.schedule(OpKind::EntityCall, op, loc, |seq, site| {
                Action::EntityCall {
                    seq,
                    entity,
                    op,
                    input,
                    holder,
                    site,
                }
            }),
            Err(e) => {
                st.fail(Failure::new(FailureKind::Payload, e.to_string()));
                u64::MAX
            }
        };
        drop(st);
        EntityCall::new(OpWait::new(self.state.clone(), seq), op)
    }

    /// Signals operation `op` of entity `entity` (one-way), due at `at`
    /// (0: at once).
    pub(crate) fn signal_entity(
        &self,
        entity: String,
        op: &'static str,
        args: Result<Payload, history::PayloadError>,
        at: i64,
        loc: &Location<'_>,
    ) {
        let mut st = lock(&self.state);
        let holder = st.holds(&entity);
        match args {
            Ok(input) => {
                st.schedule(OpKind::EntitySignal, op, loc, |seq, site| {
                    Action::EntitySignal {
                        seq,
                        entity,
                        op,
                        input,
                        at,
                        holder,
                        site,
                    }
                });
            }
            Err(e) => st.fail(Failure::new(FailureKind::Payload, e.to_string())),
        }
    }

    /// Encodes an entity operation's arguments under the payload limit.
    pub(crate) fn encode_args<A: serde::Serialize>(
        &self,
        args: &A,
        op: &str,
    ) -> Result<Payload, history::PayloadError> {
        let limit = lock(&self.state).max_payload;
        Payload::encode(
            args,
            &format!("the arguments of entity operation `{op}`"),
            limit,
        )
    }

    /// An entity call that is never sent (its key was refused and the
    /// instance failed): it never completes.
    pub(crate) fn never_called<R>(&self, op: &'static str) -> EntityCall<R> {
        EntityCall::new(OpWait::new(self.state.clone(), u64::MAX), op)
    }

    /// Fails the instance with a payload failure saying `why`.
    pub(crate) fn refuse(&self, why: String) {
        lock(&self.state).fail(Failure::new(FailureKind::Payload, why));
    }

    /// Asks for the locks of `entities` (sorted, without duplicates).
    pub(crate) fn lock_entities(&self, entities: Vec<String>, loc: &Location<'_>) -> LockWait {
        let mut st = lock(&self.state);
        let refused = if entities.is_empty() {
            Some("a critical section needs at least one entity".to_owned())
        } else if st.locks.values().any(|r| !r.abandoned) {
            Some(
                "a critical section cannot be entered while another is held: release it first"
                    .to_owned(),
            )
        } else {
            None
        };
        if let Some(why) = refused {
            st.fail(Failure::new(FailureKind::Payload, why));
            drop(st);
            // Never granted: the instance has failed.
            return LockWait::new(OpWait::new(self.state.clone(), u64::MAX), self.clone());
        }
        let wanted = entities.clone();
        let seq = st.schedule(OpKind::Lock, "lock", loc, |seq, site| Action::Lock {
            seq,
            entities,
            site,
        });
        st.locks.insert(
            seq,
            LockRequest {
                entities: wanted,
                granted: false,
                abandoned: false,
            },
        );
        drop(st);
        LockWait::new(OpWait::new(self.state.clone(), seq), self.clone())
    }

    /// Releases every lock the instance holds.
    pub(crate) fn unlock_entities(&self, loc: &Location<'_>) {
        let mut st = lock(&self.state);
        let held = st
            .locks
            .iter()
            .find(|(_, r)| r.granted && !r.abandoned)
            .map(|(seq, _)| *seq);
        if let Some(lock_seq) = held {
            st.release(lock_seq, loc);
        }
    }

    /// A lock request's future was dropped before it was granted: the
    /// request is released once granted.
    pub(crate) fn abandon_lock(&self, seq: u64) {
        if let Some(req) = lock(&self.state).locks.get_mut(&seq) {
            req.abandoned = true;
        }
    }
}
