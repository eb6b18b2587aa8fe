//! Durable entities: addressable objects with durable state and typed
//! operations, applied one at a time, exactly once.
//!
//! `#[durable::entity]` on an `impl` block makes its type an [`Entity`]: each
//! `fn` taking `&mut self` (a change) or `&self` (a read) becomes an
//! operation, named by the method. The macro also makes a proxy type whose
//! methods are the operations, typed: [`Context::entity`] calls them from an
//! orchestrator, [`Client::entity`](crate::Client::entity) signals them and
//! reads the state from outside, and [`EntityContext::signal`] signals them
//! from another entity's operation. There are no operation names in strings.
//!
//! An entity's turn takes the messages queued for it, applies them in the
//! order they were committed, and commits the new state, the consumed
//! messages and whatever the operations sent (signals, replies, started
//! orchestrations) in one transaction. An entity keeps no history: its
//! record (state, the lock of a critical section, operations deferred while
//! it is locked) is all it stores.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::{Context, EntityCall, LockWait};
use crate::history::{self, EntityError, Event, ParentRef, Payload};
use crate::orchestrator::Orchestrator;
use crate::store::{NewInstance, Outgoing};
use crate::unwind::panic_message;

/// A type whose values live durably under a key, changed only by its
/// operations. Implemented by `#[durable::entity]`; not by hand.
pub trait Entity: Default + Serialize + DeserializeOwned + Send + 'static {
    /// The entity type's stored name (the type's name, or `name = ".."`).
    const NAME: &'static str;

    /// The proxy whose methods are the entity's operations, in a mode: an
    /// orchestrator's call or signal, a client's signal, an entity's signal.
    type Ops<M>: From<M>;

    /// Whether `op` only reads (`&self`): a read of an entity that has no
    /// state does not create it.
    #[doc(hidden)]
    fn __is_read(op: &str) -> bool;

    /// Whether `op` is one of the entity's operations and `input` decodes
    /// into its arguments: a signal sent by name (a tool, the HTTP API) is
    /// refused before it is queued, rather than failing when applied.
    #[doc(hidden)]
    fn __check(op: &str, input: &Payload) -> Result<(), EntityError> {
        let _ = (op, input);
        Ok(())
    }

    /// Applies operation `op` with its encoded arguments.
    #[doc(hidden)]
    fn __apply(
        &mut self,
        op: &str,
        input: &Payload,
        ctx: &mut EntityContext,
    ) -> Result<Payload, EntityError>;
}

/// How a proxy's operation methods act: the macro's proxy forwards every
/// operation to its mode, which calls, signals or queues it.
pub trait Mode {
    /// What an operation method returns in this mode, for an operation
    /// returning `R`.
    type Out<R: DeserializeOwned + 'static>;

    /// Operation `op` with arguments `args` (a tuple).
    #[doc(hidden)]
    #[track_caller]
    fn op<R: DeserializeOwned + 'static, A: Serialize>(
        self,
        op: &'static str,
        args: &A,
    ) -> Self::Out<R>;
}

/// A mode that can turn into a one-way one: the proxy's `signal()`.
pub trait Signals {
    /// The one-way mode.
    type Signal: Mode;

    /// One-way, applied as soon as the entity takes it.
    fn signal(self) -> Self::Signal;

    /// One-way, applied not before `at`.
    fn signal_at(self, at: SystemTime) -> Self::Signal;
}

/// An entity's identity: its type's stored name and its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityId {
    id: String,
}

impl EntityId {
    /// The entity of type `T` under `key`.
    pub fn of<T: Entity>(key: &str) -> Self {
        Self {
            id: history::entity_id(T::NAME, key),
        }
    }

    /// The instance id the entity is stored under (`@Account@acct-7`).
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The key within its type.
    pub fn key(&self) -> &str {
        key_of(&self.id)
    }
}

/// The key part of an entity's instance id.
pub(crate) fn key_of(id: &str) -> &str {
    id.get(1..)
        .and_then(|rest| rest.find(history::ENTITY_PREFIX).map(|i| &rest[i + 1..]))
        .unwrap_or("")
}

/// The stored type name (`@Account`) of an entity's instance id.
pub(crate) fn type_of(id: &str) -> &str {
    let end = id
        .get(1..)
        .and_then(|rest| rest.find(history::ENTITY_PREFIX))
        .map_or(id.len(), |i| i + 1);
    &id[..end]
}

/// An orchestrator calling an entity's operations: each returns an
/// [`EntityCall`] to await. `signal()` turns it one-way.
#[derive(Debug)]
pub struct Call<'a> {
    ctx: &'a Context,
    id: String,
    /// The key was refused (the instance failed): nothing is sent.
    refused: bool,
}

/// An orchestrator signalling an entity: each operation is queued for the
/// entity with the turn, and nobody waits for it.
#[derive(Debug)]
pub struct Signal<'a> {
    ctx: &'a Context,
    id: String,
    at: i64,
    refused: bool,
}

impl Mode for Call<'_> {
    type Out<R: DeserializeOwned + 'static> = EntityCall<R>;

    #[track_caller]
    fn op<R: DeserializeOwned + 'static, A: Serialize>(
        self,
        op: &'static str,
        args: &A,
    ) -> EntityCall<R> {
        if self.refused {
            return self.ctx.never_called(op);
        }
        let args = self.ctx.encode_args(args, op);
        self.ctx.call_entity(self.id, op, args, Location::caller())
    }
}

impl<'a> Signals for Call<'a> {
    type Signal = Signal<'a>;

    fn signal(self) -> Signal<'a> {
        Signal {
            ctx: self.ctx,
            id: self.id,
            at: 0,
            refused: self.refused,
        }
    }

    fn signal_at(self, at: SystemTime) -> Signal<'a> {
        Signal {
            ctx: self.ctx,
            id: self.id,
            at: history::micros(at),
            refused: self.refused,
        }
    }
}

impl Mode for Signal<'_> {
    type Out<R: DeserializeOwned + 'static> = ();

    #[track_caller]
    fn op<R: DeserializeOwned + 'static, A: Serialize>(self, op: &'static str, args: &A) {
        if self.refused {
            return;
        }
        let args = self.ctx.encode_args(args, op);
        self.ctx
            .signal_entity(self.id, op, args, self.at, Location::caller());
    }
}

impl Context {
    /// The entity of type `T` under `key`: its operations are methods,
    /// called (await the result, `Err` of the operation included) or, after
    /// `.signal()`, sent one-way. A key that is empty, over-long or holds
    /// control characters fails the instance.
    ///
    /// ```
    /// # use durable::{entity, orchestrator, Context};
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Default, Serialize, Deserialize)]
    /// struct Counter { n: u64 }
    ///
    /// #[entity]
    /// impl Counter {
    ///     fn add(&mut self, by: u64) { self.n += by; }
    ///     fn get(&self) -> u64 { self.n }
    /// }
    ///
    /// #[orchestrator]
    /// async fn counts(ctx: Context) -> u64 {
    ///     ctx.entity::<Counter>("visits").signal().add(1);
    ///     ctx.entity::<Counter>("visits").get().await.unwrap_or(0)
    /// }
    /// ```
    #[track_caller]
    pub fn entity<T: Entity>(&self, key: &str) -> T::Ops<Call<'_>> {
        let refused = crate::ids::check_name("entity key", key).is_err();
        if let Err(e) = crate::ids::check_name("entity key", key) {
            self.refuse(format!("an entity key is refused: {}", e.reason));
        }
        T::Ops::from(Call {
            ctx: self,
            id: history::entity_id(T::NAME, key),
            refused,
        })
    }

    /// Enters a critical section: locks every entity in `entities` for this
    /// orchestration, in one global order (so two orchestrations locking
    /// overlapping sets cannot deadlock), and resolves once all are held.
    /// While held, each entity applies only this orchestration's operations;
    /// others' wait. The locks last until [`EntityLock::release`](crate::EntityLock::release)
    /// or the end of the orchestration, however it ends. One critical
    /// section at a time: asking again while holding fails the instance.
    #[track_caller]
    pub fn lock(&self, entities: impl IntoIterator<Item = EntityId>) -> LockWait {
        let mut ids: Vec<String> = entities.into_iter().map(|e| e.id).collect();
        ids.sort();
        ids.dedup();
        if let Some(bad) = ids
            .iter()
            .find_map(|id| crate::ids::check_name("entity key", key_of(id)).err())
        {
            self.refuse(format!("an entity key is refused: {}", bad.reason));
            ids.clear();
        }
        self.lock_entities(ids, Location::caller())
    }
}

/// The record an entity stores in place of a history.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The state, encoded; `None`: the entity does not exist (yet, or any
    /// more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) state: Option<Payload>,
    /// The orchestration holding it locked (a critical section), and the
    /// sequence number of its request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) holder: Option<(String, u64)>,
    /// Messages that arrived while another held the lock, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) deferred: Vec<Event>,
    /// Lock requests given up before they reached the entity (their
    /// orchestration ended first): passed on without locking when they
    /// come.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) given_up: Vec<(String, u64)>,
}

/// What one operation does besides changing state, and what the entity
/// needs to know while it runs. Operations may take it as their first
/// argument after `self` (`ctx: &mut EntityContext`).
#[derive(Debug)]
pub struct EntityContext {
    id: String,
    now: SystemTime,
    limit: usize,
    deleted: bool,
    sends: Vec<Outgoing>,
    starts: Vec<NewInstance>,
    error: Option<EntityError>,
}

impl EntityContext {
    pub(crate) fn new(id: &str, now: SystemTime, limit: usize) -> Self {
        Self {
            id: id.to_owned(),
            now,
            limit,
            deleted: false,
            sends: Vec::new(),
            starts: Vec::new(),
            error: None,
        }
    }

    /// The entity's key.
    pub fn key(&self) -> &str {
        key_of(&self.id)
    }

    /// The time the operation runs at (wall-clock: entities do not replay).
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// Deletes the entity once this operation returns: its state is gone,
    /// and reading it gives `None` until an operation creates it again.
    pub fn delete(&mut self) {
        self.deleted = true;
    }

    /// Signals entity `T` under `key` (another one, or this one), committed
    /// with this operation's state: `ctx.signal::<Counter>("k").add(1)`.
    pub fn signal<T: Entity>(&mut self, key: &str) -> T::Ops<FromEntity<'_>> {
        self.signal_at::<T>(key, SystemTime::UNIX_EPOCH)
    }

    /// As [`EntityContext::signal`], applied not before `at`.
    pub fn signal_at<T: Entity>(&mut self, key: &str, at: SystemTime) -> T::Ops<FromEntity<'_>> {
        if let Err(e) = crate::ids::check_name("entity key", key) {
            self.error.get_or_insert(EntityError::BadInput(format!(
                "an entity key is refused: {}",
                e.reason
            )));
        }
        T::Ops::from(FromEntity {
            id: history::entity_id(T::NAME, key),
            at: if at == SystemTime::UNIX_EPOCH {
                0
            } else {
                history::micros(at)
            },
            ctx: self,
        })
    }

    /// Starts orchestration `orchestrator` with `input` under a fresh id,
    /// committed with this operation's state; returns the id.
    pub fn start<O: Orchestrator>(&mut self, orchestrator: O, input: O::Input) -> String {
        let _ = orchestrator;
        let id = crate::ids::new_id();
        self.start_with_id_of::<O>(&id, &input);
        id
    }

    /// As [`EntityContext::start`], under `id`; nothing is started if an
    /// instance of that id exists already.
    pub fn start_with_id<O: Orchestrator>(&mut self, orchestrator: O, id: &str, input: O::Input) {
        let _ = orchestrator;
        if let Err(e) = crate::ids::check_name("instance id", id) {
            self.error.get_or_insert(EntityError::BadInput(format!(
                "an instance id is refused: {}",
                e.reason
            )));
            return;
        }
        self.start_with_id_of::<O>(id, &input);
    }

    fn start_with_id_of<O: Orchestrator>(&mut self, id: &str, input: &O::Input) {
        match Payload::encode(
            input,
            &format!("the input of orchestrator `{}`", O::NAME),
            self.limit,
        ) {
            Ok(input) => {
                let mut new = NewInstance::new(id, O::NAME, input, history::micros(self.now));
                new.version = O::VERSION;
                new.seed = Some(crate::ids::random_u128().0);
                self.starts.push(new);
            }
            Err(e) => {
                self.error
                    .get_or_insert(EntityError::BadInput(e.to_string()));
            }
        }
    }
}

/// An entity's operation signalling another entity; see
/// [`EntityContext::signal`].
#[derive(Debug)]
pub struct FromEntity<'a> {
    ctx: &'a mut EntityContext,
    id: String,
    at: i64,
}

impl Mode for FromEntity<'_> {
    type Out<R: DeserializeOwned + 'static> = ();

    fn op<R: DeserializeOwned + 'static, A: Serialize>(self, op: &'static str, args: &A) {
        let what = format!("the arguments of entity operation `{op}`");
        match Payload::encode(args, &what, self.ctx.limit) {
            Ok(input) => {
                let event = Event::Operation {
                    op: op.to_owned(),
                    input,
                    reply_to: None,
                    holder: None,
                };
                let type_name = type_of(&self.id).to_owned();
                self.ctx
                    .sends
                    .push(Outgoing::to_entity(self.id, type_name, event, self.at));
            }
            Err(e) => {
                self.ctx
                    .error
                    .get_or_insert(EntityError::BadInput(e.to_string()));
            }
        }
    }
}

/// Decodes an operation's arguments (generated code calls this).
#[doc(hidden)]
pub fn __decode_args<T: DeserializeOwned>(
    input: &Payload,
    entity: &str,
    op: &str,
) -> Result<T, EntityError> {
    let what = format!("the arguments of operation `{op}` of entity `{entity}`");
    match input.decode(&what) {
        Ok(args) => Ok(args),
        // An operation without arguments takes an empty array too (what a
        // tool sending arguments as an array sends for none).
        Err(e) => match serde_json::from_str::<[(); 0]>(input.json()) {
            Ok([]) => {
                serde_json::from_str("null").map_err(|_| EntityError::BadInput(e.to_string()))
            }
            Err(_) => Err(EntityError::BadInput(e.to_string())),
        },
    }
}

/// Encodes an operation's result (generated code calls this).
#[doc(hidden)]
pub fn __encode_result<T: Serialize>(
    value: &T,
    ctx: &EntityContext,
    entity: &str,
    op: &str,
) -> Result<Payload, EntityError> {
    Payload::encode(
        value,
        &format!("the result of operation `{op}` of entity `{entity}`"),
        ctx.limit,
    )
    .map_err(|e| EntityError::BadInput(e.to_string()))
}

/// The error for an operation the entity does not have (generated code).
#[doc(hidden)]
pub fn __unknown_op(entity: &str, op: &str) -> EntityError {
    EntityError::BadInput(format!("entity `{entity}` has no operation `{op}`"))
}

/// One entity loaded for a turn, its type erased.
pub(crate) trait Live: Send {
    /// Applies one operation: its result; its sends and starts go to
    /// `effects` only if it succeeded (a panic rolls the operation back).
    fn apply(
        &mut self,
        op: &str,
        input: &Payload,
        now: SystemTime,
        effects: &mut Effects,
    ) -> Result<Payload, EntityError>;
    /// The state to store, encoded (`None`: it does not exist).
    fn state(&self) -> Option<Payload>;
}

/// What a turn's operations send and start.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub(crate) sends: Vec<Outgoing>,
    pub(crate) starts: Vec<NewInstance>,
}

/// Loads entity `id` of type `T` from its encoded state.
pub(crate) fn load<T: Entity>(
    id: &str,
    state: Option<&Payload>,
    limit: usize,
) -> Result<Box<dyn Live>, EntityError> {
    let current = decode_state::<T>(id, state)?;
    Ok(Box::new(Loaded::<T> {
        id: id.to_owned(),
        current,
        encoded: state.cloned(),
        limit,
    }))
}

struct Loaded<T> {
    id: String,
    current: Option<T>,
    /// The encoding of `current`, kept after every change: what a panic
    /// rolls back to, and what the turn stores.
    encoded: Option<Payload>,
    limit: usize,
}

impl<T: Entity> Live for Loaded<T> {
    fn apply(
        &mut self,
        op: &str,
        input: &Payload,
        now: SystemTime,
        effects: &mut Effects,
    ) -> Result<Payload, EntityError> {
        let existed = self.encoded.is_some();
        let read = T::__is_read(op);
        let mut ctx = EntityContext::new(&self.id, now, self.limit);
        let (current, id, limit) = (self.current.take(), self.id.clone(), self.limit);
        let encoded = self.encoded.clone();
        // Everything that runs user code (`Default`, the operation,
        // `Serialize`, `Deserialize`) is inside the guard: a panic anywhere
        // fails this operation, never the dispatcher.
        let ran = catch_unwind(AssertUnwindSafe(|| {
            let mut value = match current {
                Some(v) => v,
                None => decode_state::<T>(&id, encoded.as_ref())?.unwrap_or_default(),
            };
            let out = value.__apply(op, input, &mut ctx)?;
            if let Some(e) = ctx.error.take() {
                return Err(e);
            }
            let stored = if ctx.deleted || read {
                None
            } else {
                Some(
                    Payload::encode(
                        &value,
                        &format!("the state of entity `{}`", crate::ids::Escaped(&id)),
                        limit,
                    )
                    .map_err(|e| {
                        EntityError::BadInput(format!("the operation was rolled back: {e}"))
                    })?,
                )
            };
            Ok((value, stored, out))
        }));
        let (value, stored, out) = match ran {
            Ok(Ok(done)) => done,
            // Rolled back: the state is decoded again from the last stored
            // encoding when next needed.
            Ok(Err(e)) => return Err(e),
            Err(panic) => return Err(EntityError::Panicked(panic_message(panic.as_ref()))),
        };
        if ctx.deleted {
            self.encoded = None;
        } else if read {
            self.current = existed.then_some(value);
        } else {
            self.encoded = stored;
            self.current = Some(value);
        }
        effects.sends.append(&mut ctx.sends);
        effects.starts.append(&mut ctx.starts);
        Ok(out)
    }

    fn state(&self) -> Option<Payload> {
        self.encoded.clone()
    }
}

/// Decodes an entity's stored state; a decoding that fails or panics is
/// [`EntityError::BadState`].
fn decode_state<T: Entity>(id: &str, state: Option<&Payload>) -> Result<Option<T>, EntityError> {
    let Some(p) = state else {
        return Ok(None);
    };
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        p.decode::<T>(&format!(
            "the state of entity `{}`",
            crate::ids::Escaped(id)
        ))
    }));
    match decoded {
        Ok(Ok(v)) => Ok(Some(v)),
        Ok(Err(e)) => Err(EntityError::BadState(e.to_string())),
        Err(panic) => Err(EntityError::BadState(format!(
            "decoding it panicked: {}",
            panic_message(panic.as_ref())
        ))),
    }
}

/// What one entity turn decided, ready to become its commit.
#[derive(Debug, Default)]
pub(crate) struct EntityTurn {
    /// The record to store.
    pub(crate) record: Record,
    /// Replies, lock messages, signals, to other instances.
    pub(crate) sends: Vec<Outgoing>,
    /// Orchestrations its operations started.
    pub(crate) starts: Vec<NewInstance>,
    /// Operations applied (for metrics and logs).
    pub(crate) applied: usize,
    /// How many of the fetched messages (the first ones) the turn consumed.
    pub(crate) consumed: usize,
    /// Why the entity must be set aside after this turn, its next message
    /// still queued.
    pub(crate) set_aside: Option<EntityError>,
}

/// Runs one entity turn: the deferred messages of `record` first, then
/// `messages`, in order, with the lock rules of critical sections.
/// With `poisoned` set (the entity's turns were lost too often: an
/// operation kills the process), the first operation is given up without
/// running, its caller told [`EntityError::Poisoned`].
pub(crate) fn run_turn(
    id: &str,
    record: Record,
    messages: Vec<Event>,
    live: &mut dyn Live,
    now: SystemTime,
    poisoned: Option<&str>,
) -> EntityTurn {
    let mut poisoned = poisoned;
    let Record {
        mut holder,
        deferred: before,
        mut given_up,
        ..
    } = record;
    let total = messages.len();
    // Each with where it came from: the record (`None`), or the fetched
    // message at that index, not consumed unless the turn gets past it.
    let mut queue: VecDeque<(Option<usize>, Event)> = before
        .into_iter()
        .map(|e| (None, e))
        .chain(messages.into_iter().enumerate().map(|(i, e)| (Some(i), e)))
        .collect();
    let mut deferred = Vec::new();
    let mut effects = Effects::default();
    let mut applied = 0;
    let mut set_aside = None;
    while let Some((origin, msg)) = queue.pop_front() {
        match msg {
            Event::Operation {
                op,
                input,
                reply_to,
                holder: from,
            } => {
                let locked_out = holder
                    .as_ref()
                    .is_some_and(|(h, _)| from.as_ref() != Some(h));
                if locked_out {
                    deferred.push(Event::Operation {
                        op,
                        input,
                        reply_to,
                        holder: from,
                    });
                    continue;
                }
                let result = match poisoned.take() {
                    Some(why) => {
                        tracing::warn!(
                            entity = id,
                            operation = op.as_str(),
                            "an entity operation is given up: {why}"
                        );
                        Err(EntityError::Poisoned(why.to_owned()))
                    }
                    None => live.apply(&op, &input, now, &mut effects),
                };
                // A signal that this code cannot take (its arguments do not
                // decode, its operation is gone: a deploy changed them) is
                // not dropped: the entity is set aside with it still queued.
                if let (None, Err(e @ EntityError::BadInput(_))) = (&reply_to, &result) {
                    set_aside = Some(e.clone());
                    queue.push_front((
                        origin,
                        Event::Operation {
                            op,
                            input,
                            reply_to,
                            holder: from,
                        },
                    ));
                    break;
                }
                applied += 1;
                if let Some(ParentRef { id: caller, seq }) = reply_to {
                    let event = match result {
                        Ok(output) => Event::EntityCompleted { seq, output },
                        Err(failure) => Event::EntityFailed { seq, failure },
                    };
                    effects.sends.push(Outgoing::new(caller, event, false));
                } else if let Err(e) = result {
                    tracing::warn!(
                        entity = id,
                        operation = op.as_str(),
                        "a signalled operation failed: {e}"
                    );
                }
            }
            Event::LockEntity {
                holder: from,
                seq,
                entities,
                index,
            } => {
                let dead = given_up.iter().position(|(h, s)| *h == from && *s == seq);
                if dead.is_none() && holder.is_some() {
                    deferred.push(Event::LockEntity {
                        holder: from,
                        seq,
                        entities,
                        index,
                    });
                    continue;
                }
                match dead {
                    // Passed on, so that the entities after this one forget
                    // it too; the grant at the end reaches nobody waiting.
                    Some(i) => {
                        given_up.swap_remove(i);
                    }
                    None => holder = Some((from.clone(), seq)),
                }
                match entities.get(index + 1) {
                    Some(next) => {
                        let next = next.clone();
                        let event = Event::LockEntity {
                            holder: from,
                            seq,
                            entities,
                            index: index + 1,
                        };
                        let type_name = type_of(&next).to_owned();
                        effects
                            .sends
                            .push(Outgoing::to_entity(next, type_name, event, 0));
                    }
                    None => {
                        effects
                            .sends
                            .push(Outgoing::new(from, Event::LockGranted { seq }, false))
                    }
                }
            }
            Event::UnlockEntity { holder: from, seq } => {
                if holder
                    .as_ref()
                    .is_some_and(|(h, s)| *h == from && *s == seq)
                {
                    holder = None;
                    // What waited for the lock goes first, in its order
                    // (in the record now, whatever it came with).
                    for d in deferred.drain(..).rev() {
                        queue.push_front((None, d));
                    }
                } else {
                    // The request has not reached this entity (or is
                    // waiting here behind another holder): drop it when it
                    // comes.
                    given_up.push((from, seq));
                }
            }
            other => {
                tracing::warn!(
                    entity = id,
                    "an entity ignores a message it cannot take: {other:?}"
                );
            }
        }
    }
    // What the turn did not get past: from the record, it goes back there
    // after what was deferred; from the fetched messages, it stays queued
    // (a suffix: the turn took them in order).
    let mut consumed = total;
    for (origin, event) in queue {
        match origin {
            None => deferred.push(event),
            Some(i) => consumed = consumed.min(i),
        }
    }
    EntityTurn {
        record: Record {
            state: live.state(),
            holder,
            deferred,
            given_up,
        },
        sends: effects.sends,
        starts: effects.starts,
        applied,
        consumed,
        set_aside,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of what was applied, by hand as the macro would make it.
    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Log {
        seen: Vec<i64>,
    }

    impl Entity for Log {
        const NAME: &'static str = "Log";
        type Ops<M> = M;

        fn __is_read(op: &str) -> bool {
            op == "get"
        }

        fn __apply(
            &mut self,
            op: &str,
            input: &Payload,
            ctx: &mut EntityContext,
        ) -> Result<Payload, EntityError> {
            let n: i64 = __decode_args(input, "Log", op)?;
            match op {
                "push" => self.seen.push(n),
                "boom" => {
                    self.seen.push(n);
                    panic!("boom {n}");
                }
                "get" => {}
                _ => return Err(__unknown_op("Log", op)),
            }
            __encode_result(&self.seen.len(), ctx, "Log", op)
        }
    }

    fn op(name: &str, n: i64, reply: Option<u64>, holder: Option<&str>) -> Event {
        Event::Operation {
            op: name.to_owned(),
            input: serde_json::from_str(&n.to_string()).expect("valid"),
            reply_to: reply.map(|seq| ParentRef {
                id: "caller".to_owned(),
                seq,
            }),
            holder: holder.map(str::to_owned),
        }
    }

    fn lock_msg(holder: &str, seq: u64, entities: &[&str], index: usize) -> Event {
        Event::LockEntity {
            holder: holder.to_owned(),
            seq,
            entities: entities.iter().map(|e| (*e).to_owned()).collect(),
            index,
        }
    }

    fn unlock(holder: &str, seq: u64) -> Event {
        Event::UnlockEntity {
            holder: holder.to_owned(),
            seq,
        }
    }

    /// Runs one turn on `record` and returns it with what was applied.
    fn turn(
        record: Record,
        messages: Vec<Event>,
        poisoned: Option<&str>,
    ) -> (EntityTurn, Vec<i64>) {
        let mut live = load::<Log>("@Log@k", record.state.as_ref(), 1 << 20).expect("loads");
        let t = run_turn(
            "@Log@k",
            record,
            messages,
            live.as_mut(),
            SystemTime::now(),
            poisoned,
        );
        let seen = t
            .record
            .state
            .as_ref()
            .map(|p| p.decode::<Log>("log").expect("decodes").seen)
            .unwrap_or_default();
        (t, seen)
    }

    #[test]
    fn operations_apply_in_order_and_a_panic_rolls_back_only_itself() {
        let (t, seen) = turn(
            Record::default(),
            vec![
                op("push", 1, None, None),
                op("boom", 2, Some(7), None),
                op("push", 3, Some(8), None),
            ],
            None,
        );
        assert_eq!(seen, vec![1, 3]);
        let replies: Vec<_> = t.sends.iter().map(|s| &s.event).collect();
        assert!(
            matches!(replies[0], Event::EntityFailed { seq: 7, failure: EntityError::Panicked(m) } if m.contains("boom 2"))
        );
        assert!(matches!(replies[1], Event::EntityCompleted { seq: 8, .. }));
    }

    #[test]
    fn a_read_does_not_create_the_entity() {
        let (t, _) = turn(Record::default(), vec![op("get", 0, Some(1), None)], None);
        assert!(t.record.state.is_none());
    }

    #[test]
    fn a_lock_defers_others_until_released_then_runs_them_in_order() {
        let (t, seen) = turn(
            Record::default(),
            vec![
                lock_msg("h", 5, &["@Log@k"], 0),
                op("push", 1, None, None),
                op("push", 2, None, Some("h")),
                op("push", 3, None, None),
            ],
            None,
        );
        assert_eq!(seen, vec![2], "only the holder's operation ran");
        assert_eq!(t.record.holder, Some(("h".to_owned(), 5)));
        assert_eq!(t.record.deferred.len(), 2);
        assert!(
            matches!(t.sends[0].event, Event::LockGranted { seq: 5 }),
            "the last of the set grants"
        );
        let (t, seen) = turn(
            t.record,
            vec![unlock("h", 5), op("push", 4, None, None)],
            None,
        );
        assert_eq!(seen, vec![2, 1, 3, 4], "deferred first, in order");
        assert!(t.record.holder.is_none() && t.record.deferred.is_empty());
    }

    #[test]
    fn a_lock_passes_on_to_the_next_entity_and_a_given_up_one_locks_nothing() {
        let (t, _) = turn(
            Record::default(),
            vec![lock_msg("h", 5, &["@Log@k", "@Log@z"], 0)],
            None,
        );
        assert_eq!(t.sends[0].instance, "@Log@z");
        assert_eq!(t.sends[0].entity.as_deref(), Some("@Log"));
        // The holder ended before its request arrived here.
        let (t, seen) = turn(
            Record::default(),
            vec![
                unlock("g", 9),
                lock_msg("g", 9, &["@Log@a", "@Log@k"], 1),
                op("push", 1, None, None),
            ],
            None,
        );
        assert!(
            t.record.holder.is_none(),
            "a given-up request locks nothing"
        );
        assert!(
            t.record.given_up.is_empty(),
            "and is forgotten once it came"
        );
        assert_eq!(seen, vec![1]);
    }

    #[test]
    fn a_poisoned_operation_is_given_up_without_running() {
        let (t, seen) = turn(
            Record::default(),
            vec![op("push", 1, Some(3), None), op("push", 2, None, None)],
            Some("lost 10 times"),
        );
        assert_eq!(seen, vec![2]);
        assert!(
            matches!(&t.sends[0].event, Event::EntityFailed { seq: 3, failure: EntityError::Poisoned(m) } if m.contains("lost 10"))
        );
    }

    #[test]
    fn keys_and_types_come_apart_from_ids() {
        let id = history::entity_id("Account", "a@b");
        assert_eq!(type_of(&id), "@Account");
        assert_eq!(key_of(&id), "a@b");
    }
}
