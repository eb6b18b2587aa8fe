//! Orchestrators: deterministic workflow code, replayed from history.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::activity::BoxFuture;
use crate::context::Context;

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
}
