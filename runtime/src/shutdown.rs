//! The runtime's stop signal, handed to each part as a token it can check
//! and await.

use tokio::sync::watch;

/// Sends the stop signal; dropping it stops everything too.
pub(crate) struct Trigger(watch::Sender<bool>);

/// Tells a part when to stop.
#[derive(Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

/// A trigger and the tokens it stops.
pub(crate) fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Tells every token to stop.
    pub(crate) fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Whether the stop signal was given.
    pub(crate) fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the stop signal is given (or its trigger is gone).
    pub(crate) async fn wait(&mut self) {
        // An error means the trigger is gone: that stops us too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Whether the engine's parts are alive: a part that dies records why, so
/// that clients get a clear error instead of work accepted into a dead
/// engine.
#[derive(Default)]
pub(crate) struct Health(std::sync::Mutex<Option<(&'static str, String)>>);

impl Health {
    /// Records that `part` died of `reason` (the first death is kept).
    pub(crate) fn failed(&self, part: &'static str, reason: String) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert((part, reason));
    }

    /// The part that died and why, once one did.
    pub(crate) fn death(&self) -> Option<(&'static str, String)> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
