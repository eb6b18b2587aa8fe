//! Orchestrators: deterministic workflow code, replayed from history.

use std::panic::Location;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::activity::BoxFuture;
use crate::context::{ChildCall, Context};

/// A deterministic workflow, started with
/// [`Client::start`](crate::Client::start).
///
/// Implemented by `#[orchestrator]` on a unit struct named like the function.
/// Its code is run again from the start against its history after a restart,
/// so it must compute the same steps every time: use the [`Context`] for time,
/// timers, events and real work.
pub trait Orchestrator: Copy + Send + Sync + 'static {
    /// The input: the parameters after the context (none is `()`, several a tuple).
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The function's return type, exactly.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The name stored in history; the function's name unless set with
    /// `#[orchestrator(name = "...")]`.
    const NAME: &'static str;
    /// Its version (`#[orchestrator(version = N)]`, 1 unless set): several
    /// versions of one name may be registered side by side, and an instance
    /// runs to its end on the version it started with.
    const VERSION: u32 = 1;

    /// Starts the orchestration's code.
    fn invoke(self, ctx: Context, input: Self::Input) -> BoxFuture<Self::Output>;

    /// Whether this output fails the instance (an `Err` does).
    fn is_failure(output: &Self::Output) -> bool {
        let _ = output;
        false
    }

    /// The names of the activities the body calls, as far as the macro can
    /// see them; the runtime checks at start that each one is registered.
    fn activities() -> Vec<&'static str> {
        Vec::new()
    }

    /// The names of the child orchestrators the body calls, as far as the
    /// macro can see them; the runtime checks at start that each one is
    /// registered.
    fn children() -> Vec<&'static str> {
        Vec::new()
    }

    /// The child orchestrators the body calls with their versions, as far
    /// as the macro can see them: each version must be registered.
    fn child_versions() -> Vec<(&'static str, u32)> {
        Vec::new()
    }
}

/// Child orchestrations: the typed entry points live with the trait they
/// take, so that the context does not depend on it.
impl Context {
    /// Starts a child orchestration and waits for it: resolves to exactly
    /// the child's return value (an `Err` it returns included), or to a
    /// [`ChildError`](crate::ChildError) when the child failed (a panic, poison,
    /// nondeterminism, ...) or was terminated. The child's id is
    /// `"{parent id}:{sequence number}"`, the same on every replay; the child
    /// reports to this instance when it ends, and terminating this instance
    /// terminates the children still running. A child whose orchestrator the
    /// macro can see must be registered, or `start()` refuses to run.
    ///
    /// ```
    /// # use durable::{orchestrator, Context};
    /// #[orchestrator]
    /// async fn child(_ctx: Context, x: u64) -> u64 {
    ///     x * 2
    /// }
    ///
    /// #[orchestrator]
    /// async fn parent(ctx: Context) -> u64 {
    ///     let calls = (1..=3).map(|i| ctx.call_child(child, i));
    ///     durable::join_all(calls).await.into_iter().map(|r| r.unwrap_or(0)).sum()
    /// }
    /// ```
    #[track_caller]
    pub fn call_child<O: Orchestrator>(&self, child: O, input: O::Input) -> ChildCall<O::Output> {
        let _ = child;
        self.schedule_child((O::NAME, O::VERSION), None, &input, Location::caller())
    }

    /// As [`Context::call_child`](Context::call_child), under an id of the caller's choosing (it
    /// must be the same on every replay: derive it from the input, never
    /// from the clock). An id that belongs to another instance already
    /// resolves to [`ChildError::IdTaken`](crate::ChildError::IdTaken); an id that is empty, over-long or
    /// holds control characters fails this instance with
    /// [`FailureKind::Payload`](crate::FailureKind::Payload).
    #[track_caller]
    pub fn call_child_with_id<O: Orchestrator>(
        &self,
        child: O,
        id: impl Into<String>,
        input: O::Input,
    ) -> ChildCall<O::Output> {
        let _ = child;
        self.schedule_child(
            (O::NAME, O::VERSION),
            Some(id.into()),
            &input,
            Location::caller(),
        )
    }
}
