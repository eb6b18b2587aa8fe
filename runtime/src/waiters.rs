//! Clients waiting for instances to finish, woken by the dispatcher the
//! moment a finishing turn commits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// Who waits for which instance.
#[derive(Default)]
pub(crate) struct Waiters(Mutex<HashMap<String, Arc<Notify>>>);

impl Waiters {
    /// The notifier a client waits on for `id` to finish; the registration
    /// goes when the returned guard is dropped.
    pub(crate) fn wait_for<'a>(self: &'a Arc<Self>, id: &'a str) -> Waiting<'a> {
        let mut w = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let notify = Arc::clone(w.entry(id.to_owned()).or_default());
        Waiting {
            waiters: self,
            id,
            notify,
        }
    }

    /// Wakes every client waiting for `id`.
    pub(crate) fn finished(&self, id: &str) {
        let n = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        if let Some(n) = n {
            n.notify_waiters();
        }
    }

    /// Wakes every waiter (the runtime stopped).
    pub(crate) fn wake_all(&self) {
        for n in self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            n.notify_waiters();
        }
    }
}

/// One client's registration; forgotten when its wait ends, however it ends
/// (a caller's timeout drops the future).
pub(crate) struct Waiting<'a> {
    waiters: &'a Waiters,
    id: &'a str,
    pub(crate) notify: Arc<Notify>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut w = self
            .waiters
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Two holders: the map and this waiter.
        if w.get(self.id).is_some_and(|n| Arc::ptr_eq(n, &self.notify))
            && Arc::strong_count(&self.notify) <= 2
        {
            w.remove(self.id);
        }
    }
}
