//! The runtime's handle on its store: calls run on tokio's blocking pool,
//! a bounded number at a time, under this process's owner name.

use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};

use super::{Store, StoreError};

/// Store calls in flight at once: enough for a group commit to gather many
/// writes, few enough that the blocking threads they occupy (each with an
/// allocator arena that keeps what it once held) stay bounded. Measured
/// with `durable-bench seq idle`: 16 costs a fifth of `seq`'s throughput,
/// no bound costs 30 MB more resident in `idle`.
const STORE_CALLS: usize = 64;

/// A cheap, cloneable handle: the store, this process's owner name in
/// leases and locks, the bound on calls in flight, and a notice of each
/// call that ended (what the test kit waits on instead of polling).
#[derive(Clone)]
pub(crate) struct StoreHandle {
    store: Arc<dyn Store>,
    owner: Arc<str>,
    calls: Arc<Semaphore>,
    ended: Arc<Notify>,
}

impl StoreHandle {
    pub(crate) fn new(store: Arc<dyn Store>, owner: String) -> Self {
        Self {
            store,
            owner: Arc::from(owner),
            calls: Arc::new(Semaphore::new(STORE_CALLS)),
            ended: Arc::new(Notify::new()),
        }
    }

    /// This process's name in leases and locks.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs a store call on the blocking pool, off the async workers,
    /// waiting for room when `STORE_CALLS` calls are in flight.
    ///
    /// # Errors
    /// The call's own error; [`StoreError::Closed`] when the blocking pool
    /// is gone (the tokio runtime is shutting down) or the call panicked.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store, &str) -> Result<T, StoreError> + Send + 'static,
    {
        let out = self.call_quietly(f).await;
        self.ended.notify_waiters();
        out
    }

    /// [`call`](Self::call) without the notice to [`ended`](Self::ended):
    /// for a look that changes nothing, made by who waits on that notice.
    pub(crate) async fn call_quietly<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store, &str) -> Result<T, StoreError> + Send + 'static,
    {
        let Ok(_permit) = self.calls.acquire().await else {
            return Err(StoreError::Closed);
        };
        let (store, owner) = (Arc::clone(&self.store), Arc::clone(&self.owner));
        tokio::task::spawn_blocking(move || {
            #[cfg(feature = "postgres")]
            return super::postgres::on_blocking_thread(|| f(store.as_ref(), &owner));
            #[cfg(not(feature = "postgres"))]
            f(store.as_ref(), &owner)
        })
        .await
        .unwrap_or(Err(StoreError::Closed))
    }

    /// Notified each time a [`call`](Self::call) ends: something may have
    /// changed in the store.
    pub(crate) fn ended(&self) -> &Notify {
        &self.ended
    }

    /// Runs a store call on the calling thread: for the last words of a
    /// runtime dropped without `shutdown()`, where nothing can be awaited.
    pub(crate) fn call_now<T>(
        &self,
        f: impl FnOnce(&dyn Store, &str) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(self.store.as_ref(), &self.owner)
    }
}
