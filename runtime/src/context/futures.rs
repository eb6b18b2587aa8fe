//! The durable futures the [`Context`](super::Context) hands out: each waits
//! for the completion with its sequence number, delivered by a turn.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use serde::de::DeserializeOwned;

use super::{lock, Completion, State};
use crate::activity::{Activity, ActivityError};
use crate::history::{ActivityFailure, ChildFailure, EntityError, Failure, FailureKind};

/// The part every operation future shares: wait for the completion with
/// this sequence number.
pub(super) struct OpWait {
    state: Arc<Mutex<State>>,
    seq: u64,
    waiting: bool,
    done: bool,
}

impl OpWait {
    pub(super) fn new(state: Arc<Mutex<State>>, seq: u64) -> Self {
        Self {
            state,
            seq,
            waiting: false,
            done: false,
        }
    }

    /// Takes the completion, or registers the waker. A fatal instance never
    /// completes anything again.
    fn poll_completion(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<(Completion, MutexGuard<'_, State>)> {
        let mut st = lock(&self.state);
        if st.fatal.is_none() {
            if let Some(c) = st.completions.remove(&self.seq) {
                if self.waiting {
                    st.waiting -= 1;
                    self.waiting = false;
                }
                self.done = true;
                return Poll::Ready((c, st));
            }
        }
        st.wakers.insert(self.seq, cx.waker().clone());
        if !self.waiting {
            self.waiting = true;
            st.waiting += 1;
        }
        Poll::Pending
    }
}

impl Drop for OpWait {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut st = lock(&self.state);
        if self.waiting {
            st.waiting -= 1;
        }
        st.wakers.remove(&self.seq);
        if st.completions.remove(&self.seq).is_none() {
            st.abandoned.insert(self.seq);
        }
    }
}

/// An activity call in flight; see [`Context::call`](crate::Context::call).
#[must_use = "a durable future does nothing unless awaited"]
pub struct ActivityCall<A: Activity> {
    op: Option<OpWait>,
    /// Why the call was refused before anything was scheduled.
    refused: Option<String>,
    _activity: PhantomData<fn() -> A>,
}

impl<A: Activity> ActivityCall<A> {
    pub(super) fn new(op: OpWait) -> Self {
        Self {
            op: Some(op),
            refused: None,
            _activity: PhantomData,
        }
    }

    /// A call refused before anything was scheduled: it resolves at once
    /// to [`ActivityError::Aborted`] with `why`.
    pub(super) fn refused(why: String) -> Self {
        Self {
            op: None,
            refused: Some(why),
            _activity: PhantomData,
        }
    }
}

impl<A: Activity> Future for ActivityCall<A> {
    type Output = Result<A::Output, ActivityError<A::Error>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        if let Some(why) = self.refused.take() {
            return Poll::Ready(Err(ActivityError::Aborted(why)));
        }
        let Some(op) = self.op.as_mut() else {
            // Refused, and its answer already taken: it never completes.
            return Poll::Pending;
        };
        let seq = op.seq;
        let (completion, mut st) = match op.poll_completion(cx) {
            Poll::Ready(r) => r,
            Poll::Pending => return Poll::Pending,
        };
        let result = match completion {
            Completion::Activity(Ok(out)) => out
                .decode::<A::Output>(&format!("the output of activity `{}`", A::NAME))
                .map(Ok),
            Completion::Activity(Err(ActivityFailure::Error(e) | ActivityFailure::Final(e))) => e
                .decode::<A::Error>(&format!("the error of activity `{}`", A::NAME))
                .map(|e| Err(ActivityError::Failed(e))),
            Completion::Activity(Err(ActivityFailure::Panic(m))) => {
                Ok(Err(ActivityError::Panicked(m)))
            }
            Completion::Activity(Err(ActivityFailure::Aborted(m))) => {
                Ok(Err(ActivityError::Aborted(m)))
            }
            Completion::Activity(Err(ActivityFailure::Poisoned(m))) => {
                Ok(Err(ActivityError::Poisoned(m)))
            }
            Completion::Activity(Err(ActivityFailure::TimedOut(m))) => {
                Ok(Err(ActivityError::TimedOut(m)))
            }
            Completion::Timer | Completion::Lock | Completion::Child(_) | Completion::Entity(_) => {
                st.fail(Failure::new(
                    FailureKind::Nondeterminism,
                    format!("step {seq}: an activity call received another operation's completion"),
                ));
                return Poll::Pending;
            }
        };
        match result {
            Ok(r) => Poll::Ready(r),
            Err(e) => {
                st.fail(Failure::new(FailureKind::Payload, e.to_string()));
                Poll::Pending
            }
        }
    }
}

/// A durable timer in flight; see [`Context::sleep`](crate::Context::sleep).
#[must_use = "a durable future does nothing unless awaited"]
pub struct Timer {
    op: OpWait,
}

impl Timer {
    pub(super) fn new(op: OpWait) -> Self {
        Self { op }
    }
}

impl<A: Activity> Drop for ActivityCall<A> {
    fn drop(&mut self) {
        // Dropped while the code waited for it (it lost a race): the turn
        // cancels it. A call never awaited is fire-and-forget: it runs.
        if let Some(op) = &self.op {
            if op.waiting && !op.done && op.seq != u64::MAX {
                lock(&op.state).dropped_calls.push(op.seq);
            }
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // Dropped before it fired (it lost a race): the turn cancels it.
        if !self.op.done && self.op.seq != u64::MAX {
            lock(&self.op.state).dropped_timers.push(self.op.seq);
        }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        match self.op.poll_completion(cx) {
            Poll::Ready((Completion::Timer, _)) => Poll::Ready(()),
            Poll::Ready((
                Completion::Activity(_)
                | Completion::Child(_)
                | Completion::Entity(_)
                | Completion::Lock,
                mut st,
            )) => {
                st.fail(Failure::new(
                    FailureKind::Nondeterminism,
                    "a timer received another operation's completion",
                ));
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A wait for an external event; see [`Context::wait_event`](crate::Context::wait_event).
#[must_use = "a durable future does nothing unless awaited"]
pub struct EventWait<T> {
    state: Arc<Mutex<State>>,
    name: String,
    waiting: bool,
    _data: PhantomData<fn() -> T>,
}

impl<T> EventWait<T> {
    pub(super) fn new(state: Arc<Mutex<State>>, name: String) -> Self {
        Self {
            state,
            name,
            waiting: false,
            _data: PhantomData,
        }
    }
}

impl<T> EventWait<T> {
    /// The next event's data once there is one; registers the waker while
    /// there is none (or the instance is failing).
    fn poll_data(&mut self, cx: &std::task::Context<'_>) -> Poll<crate::history::Payload> {
        let mut st = lock(&self.state);
        if st.fatal.is_none() {
            if let Some(data) = st.take_event(&self.name) {
                if self.waiting {
                    st.waiting -= 1;
                    self.waiting = false;
                }
                return Poll::Ready(data);
            }
        }
        // Polled again every turn it waits: keep one waker, not one a poll.
        let wakers = st.event_wakers.entry(self.name.clone()).or_default();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        if !self.waiting {
            self.waiting = true;
            st.waiting += 1;
        }
        Poll::Pending
    }

    fn what(&self) -> String {
        format!("the data of event `{}`", self.name)
    }
}

impl<T: DeserializeOwned> Future for EventWait<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<T> {
        let this = &mut *self;
        let Poll::Ready(data) = this.poll_data(cx) else {
            return Poll::Pending;
        };
        match data.decode::<T>(&this.what()) {
            Ok(v) => Poll::Ready(v),
            Err(e) => {
                lock(&this.state).fail(Failure::new(FailureKind::Payload, e.to_string()));
                // Only registers the waker now (a failing instance takes no
                // more events); the instance fails at the end of the turn.
                let _ = this.poll_data(cx);
                Poll::Pending
            }
        }
    }
}

/// An event's data did not decode into the type the orchestrator asked
/// for; see [`Context::try_wait_event`](crate::Context::try_wait_event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDataError {
    /// The event's name.
    pub event: String,
    /// The decoder's complaint.
    pub message: String,
    /// The data as raised, in JSON.
    pub data: String,
}

impl std::fmt::Display for EventDataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "event `{}` carried {}: {}",
            self.event, self.data, self.message
        )
    }
}

impl std::error::Error for EventDataError {}

/// A wait for an external event whose data may not decode; see
/// [`Context::try_wait_event`](crate::Context::try_wait_event).
#[must_use = "a durable future does nothing unless awaited"]
pub struct TryEventWait<T>(pub(super) EventWait<T>);

impl<T: DeserializeOwned> Future for TryEventWait<T> {
    type Output = Result<T, EventDataError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = &mut self.0;
        this.poll_data(cx).map(|data| {
            data.decode::<T>(&this.what()).map_err(|e| EventDataError {
                event: this.name.clone(),
                message: e.to_string(),
                data: data.json().to_owned(),
            })
        })
    }
}

impl<T> Drop for EventWait<T> {
    fn drop(&mut self) {
        if self.waiting {
            lock(&self.state).waiting -= 1;
        }
    }
}

/// The end of an execution that continues as new; see
/// [`Context::continue_as_new`](crate::Context::continue_as_new). It never
/// resolves: the instance starts afresh once the turn commits.
#[must_use = "an execution continues as new only when this is awaited"]
pub struct ContinueAsNew<T> {
    state: Arc<Mutex<State>>,
    input: Option<Result<crate::history::Payload, Failure>>,
    _output: PhantomData<fn() -> T>,
}

impl<T> ContinueAsNew<T> {
    pub(super) fn new(
        state: Arc<Mutex<State>>,
        input: Result<crate::history::Payload, Failure>,
    ) -> Self {
        Self {
            state,
            input: Some(input),
            _output: PhantomData,
        }
    }
}

impl<T> Future for ContinueAsNew<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> Poll<T> {
        if let Some(input) = self.input.take() {
            let mut st = lock(&self.state);
            match input {
                // The first request in a turn wins.
                Ok(p) => {
                    st.continue_as_new.get_or_insert(p);
                }
                Err(f) => st.fail(f),
            }
        }
        Poll::Pending
    }
}

/// Why a child orchestration gave no return value; see
/// [`Context::call_child`](crate::Context::call_child).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChildError {
    /// The child failed (a panic, poison, nondeterminism, a payload that
    /// did not decode, ...).
    #[error("the child orchestration failed: {0}")]
    Failed(Failure),
    /// The child was terminated; the reason.
    #[error("the child orchestration was terminated: {0}")]
    Terminated(String),
    /// The id belongs to another instance already: no child was started.
    #[error("the child orchestration was not started: its id `{0}` belongs to another instance")]
    IdTaken(String),
}

/// A child orchestration in flight, resolving to its return value `T`; see
/// [`Context::call_child`](crate::Context::call_child).
#[must_use = "a durable future does nothing unless awaited"]
pub struct ChildCall<T> {
    op: OpWait,
    name: &'static str,
    _output: PhantomData<fn() -> T>,
}

impl<T> ChildCall<T> {
    pub(super) fn new(op: OpWait, name: &'static str) -> Self {
        Self {
            op,
            name,
            _output: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Future for ChildCall<T> {
    type Output = Result<T, ChildError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let (seq, name) = (self.op.seq, self.name);
        let (completion, mut st) = match self.op.poll_completion(cx) {
            Poll::Ready(r) => r,
            Poll::Pending => return Poll::Pending,
        };
        let failure = match completion {
            Completion::Child(Ok(out)) => {
                return match out
                    .decode::<T>(&format!("the return value of child orchestration `{name}`"))
                {
                    Ok(v) => Poll::Ready(Ok(v)),
                    Err(e) => {
                        st.fail(Failure::new(FailureKind::Payload, e.to_string()));
                        Poll::Pending
                    }
                };
            }
            Completion::Child(Err(failure)) => failure,
            Completion::Activity(_)
            | Completion::Timer
            | Completion::Lock
            | Completion::Entity(_) => {
                st.fail(Failure::new(
                    FailureKind::Nondeterminism,
                    format!(
                        "step {seq}: a child orchestration received another operation's completion"
                    ),
                ));
                return Poll::Pending;
            }
        };
        Poll::Ready(Err(match failure {
            ChildFailure::Failed(f) => ChildError::Failed(f),
            ChildFailure::Terminated(reason) => ChildError::Terminated(reason),
            ChildFailure::IdTaken(id) => ChildError::IdTaken(id),
        }))
    }
}

/// An entity operation in flight, resolving to the operation's return value
/// `R` (an `Err` of the operation included); see
/// [`Context::entity`](crate::Context::entity).
#[must_use = "a durable future does nothing unless awaited"]
pub struct EntityCall<R> {
    op: OpWait,
    name: &'static str,
    _output: PhantomData<fn() -> R>,
}

impl<R> EntityCall<R> {
    pub(super) fn new(op: OpWait, name: &'static str) -> Self {
        Self {
            op,
            name,
            _output: PhantomData,
        }
    }
}

impl<R: DeserializeOwned> Future for EntityCall<R> {
    type Output = Result<R, EntityError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let (seq, name) = (self.op.seq, self.name);
        let (completion, mut st) = match self.op.poll_completion(cx) {
            Poll::Ready(r) => r,
            Poll::Pending => return Poll::Pending,
        };
        match completion {
            Completion::Entity(Ok(out)) => {
                match out.decode::<R>(&format!("the result of entity operation `{name}`")) {
                    Ok(v) => Poll::Ready(Ok(v)),
                    Err(e) => {
                        st.fail(Failure::new(FailureKind::Payload, e.to_string()));
                        Poll::Pending
                    }
                }
            }
            Completion::Entity(Err(e)) => Poll::Ready(Err(e)),
            Completion::Activity(_)
            | Completion::Timer
            | Completion::Lock
            | Completion::Child(_) => {
                st.fail(Failure::new(
                    FailureKind::Nondeterminism,
                    format!("step {seq}: an entity call received another operation's completion"),
                ));
                Poll::Pending
            }
        }
    }
}

/// A critical section being entered: resolves once every entity asked for
/// is locked to this orchestration; see [`Context::lock`](crate::Context::lock).
#[must_use = "a durable future does nothing unless awaited"]
pub struct LockWait {
    op: OpWait,
    ctx: super::Context,
}

impl LockWait {
    pub(super) fn new(op: OpWait, ctx: super::Context) -> Self {
        Self { op, ctx }
    }
}

impl Drop for LockWait {
    fn drop(&mut self) {
        // Dropped before the grant (it lost a race with a timer, say): the
        // locks are let go as soon as they are granted.
        if !self.op.done && self.op.seq != u64::MAX {
            self.ctx.abandon_lock(self.op.seq);
        }
    }
}

impl Future for LockWait {
    type Output = EntityLock;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<EntityLock> {
        let ctx = self.ctx.clone();
        match self.op.poll_completion(cx) {
            Poll::Ready((Completion::Lock, _)) => Poll::Ready(EntityLock { ctx }),
            Poll::Ready((_, mut st)) => {
                st.fail(Failure::new(
                    FailureKind::Nondeterminism,
                    "a lock request received another operation's completion",
                ));
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The locks of a critical section, held until [`EntityLock::release`] or
/// the end of the orchestration (completed, failed, terminated or continued
/// as new), whichever comes first. Dropping it does not release them.
#[derive(Debug)]
#[must_use = "locks are held until released or the orchestration ends"]
pub struct EntityLock {
    ctx: super::Context,
}

impl EntityLock {
    /// Releases every lock of the critical section: the entities take
    /// other callers' operations again.
    #[track_caller]
    pub fn release(self) {
        self.ctx.unlock_entities(std::panic::Location::caller());
    }
}
