//! The runtime: its builder, the state its parts share, and its lifecycle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::activity::Activity;
use crate::client::{self, Client};
use crate::error::{Error, StoreError};
use crate::orchestrator::Orchestrator;
use crate::registry::Registry;
use crate::store::{SqliteOptions, SqliteStore, Store, Synchronous};
use crate::{dispatcher, worker};

/// Store calls in flight at once: enough for a group commit to gather many
/// writes, few enough that the blocking threads they occupy (each with an
/// allocator arena that keeps what it once held) stay bounded. Measured
/// with `durable-bench seq idle`: 16 costs a fifth of `seq`'s throughput,
/// no bound costs 30 MB more resident in `idle`.
const STORE_CALLS: usize = 64;

/// Tunables, with defaults that suit one process on one machine.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) cache_size: usize,
    pub(crate) max_activities: usize,
    pub(crate) lease: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) stuck_retry: Duration,
    pub(crate) batch: usize,
    pub(crate) poison_after: u32,
    pub(crate) history_warning: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cache_size: 10_000,
            max_activities: 1_000,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            stuck_retry: Duration::from_secs(30),
            batch: 512,
            poison_after: 10,
            history_warning: 10_000,
        }
    }
}

/// What the runtime's tasks and its clients share.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Registry,
    pub(crate) config: Config,
    /// This process's name in leases and locks.
    pub(crate) owner: String,
    /// Wakes the orchestration dispatcher: new messages are queued.
    pub(crate) dispatcher_wake: Notify,
    /// Tasks committed already leased to this process, for its worker.
    pub(crate) tasks_tx: UnboundedSender<crate::store::LeasedTask>,
    /// Results of this process's activities, for its dispatcher.
    pub(crate) inbox_tx: UnboundedSender<dispatcher::Inbound>,
    /// Clients waiting for instances to finish.
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    /// Store calls allowed at once.
    store_calls: tokio::sync::Semaphore,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// Runs a store call on the blocking pool, off the async workers.
    pub(crate) async fn blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store, &str) -> Result<T, StoreError> + Send + 'static,
    {
        // A few store calls at a time are all a store can use (writes are
        // serialized, then grouped): more would only park blocking threads,
        // each with its own allocator arena holding on to memory.
        let Ok(_permit) = self.store_calls.acquire().await else {
            return Err(StoreError::Closed);
        };
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(this.store.as_ref(), &this.owner))
            .await
            .unwrap_or(Err(StoreError::Closed))
    }

    /// The notifier a client waits on for `id` to finish.
    pub(crate) fn waiter(&self, id: &str) -> Arc<Notify> {
        let mut w = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(w.entry(id.to_owned()).or_default())
    }

    /// Drops the entry of `id` when its last waiter leaves (the instance
    /// may have finished elsewhere, or the wait was cut short).
    pub(crate) fn forget_waiter(&self, id: &str, notify: &Arc<Notify>) {
        let mut w = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        // Two holders: the map and this waiter.
        if w.get(id).is_some_and(|n| Arc::ptr_eq(n, notify)) && Arc::strong_count(notify) <= 2 {
            w.remove(id);
        }
    }

    /// Wakes every client waiting for `id`.
    pub(crate) fn finished(&self, id: &str) {
        let n = self
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        if let Some(n) = n {
            n.notify_waiters();
        }
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

enum StoreSpec {
    Sqlite(PathBuf),
    Custom(Arc<dyn Store>),
}

/// Configures and starts a [`Runtime`].
#[must_use = "a builder does nothing until `.start().await`"]
pub struct Builder {
    store: Option<StoreSpec>,
    sqlite: SqliteOptions,
    registry: Registry,
    config: Config,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Stores everything in the SQLite file at `path`, created if missing;
    /// `":memory:"` keeps it in memory (for tests).
    pub fn sqlite(mut self, path: impl Into<PathBuf>) -> Self {
        self.store = Some(StoreSpec::Sqlite(path.into()));
        self
    }

    /// Sets how hard SQLite works to keep each commit (default
    /// [`Synchronous::Full`]: a committed step survives power loss).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.sqlite.synchronous = synchronous;
        self
    }

    /// Uses `store` instead of SQLite.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(StoreSpec::Custom(Arc::new(store)));
        self
    }

    /// Registers an activity this runtime runs.
    pub fn activity<A: Activity>(mut self, activity: A) -> Self {
        self.registry.add_activity(activity);
        self
    }

    /// Registers an orchestrator this runtime runs.
    pub fn orchestrator<O: Orchestrator>(mut self, orchestrator: O) -> Self {
        self.registry.add_orchestrator(orchestrator);
        self
    }

    /// How many live executions stay in memory (default 10,000); beyond
    /// that the least recently used is dropped and replayed when next needed.
    pub fn cache_size(mut self, instances: usize) -> Self {
        self.config.cache_size = instances;
        self
    }

    /// How many activity attempts run at once (default 1,000).
    pub fn max_concurrent_activities(mut self, n: usize) -> Self {
        self.config.max_activities = n;
        self
    }

    /// How long an activity attempt is leased (default 30 s); leases are
    /// renewed while it runs, so this bounds how soon a crashed worker's
    /// attempt is run again.
    pub fn activity_lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// How often to look for work that another process queued (default
    /// 500 ms). Work queued in this process is noticed at once.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval;
        self
    }

    /// How often an instance that cannot run with this code (stuck, or
    /// panicking on replay) is tried again (default 30 s).
    pub fn stuck_retry(mut self, interval: Duration) -> Self {
        self.config.stuck_retry = interval;
        self
    }

    /// After how many lost attempts work is poison (default 10): an activity
    /// whose attempts keep crashing or stalling their worker fails with
    /// [`ActivityError::Poisoned`](crate::ActivityError::Poisoned), and an
    /// instance whose turn keeps crashing its process or panicking on replay
    /// fails with [`FailureKind::Poisoned`](crate::FailureKind::Poisoned).
    /// Other work keeps flowing meanwhile; nothing loops forever.
    pub fn poison_after(mut self, lost_attempts: u32) -> Self {
        self.config.poison_after = lost_attempts;
        self
    }

    /// The largest value, in bytes of JSON, an input, output, error, event
    /// or side effect may have (default 4 MiB). A larger one is refused with
    /// [`Error::PayloadTooLarge`] before anything is written: a client call
    /// returns it, an activity's attempt fails with it, an orchestrator's
    /// instance fails with it.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.registry.max_payload = bytes;
        self
    }

    /// Warn (on stderr) when an instance's history grows past this many
    /// events (default 10,000): replay after a restart costs time in
    /// proportion, so a long-lived orchestration should end and start afresh
    /// with its state as input.
    pub fn history_warning(mut self, events: u64) -> Self {
        self.config.history_warning = events;
        self
    }

    /// Uses the SQLite file at `path` with these options (durability, busy
    /// timeout, size cap).
    pub fn sqlite_with(mut self, path: impl Into<PathBuf>, options: SqliteOptions) -> Self {
        self.store = Some(StoreSpec::Sqlite(path.into()));
        self.sqlite = options;
        self
    }

    /// Opens the store, checks the registrations and starts the dispatcher
    /// and the activity worker.
    ///
    /// # Errors
    /// [`Error::Config`] without a store or with a zero setting, a name
    /// registered twice, or [`Error::UnregisteredActivity`] when an
    /// orchestrator calls an activity that is not registered; store errors
    /// opening the database.
    pub async fn start(self) -> Result<Runtime, Error> {
        let Builder {
            store,
            sqlite,
            registry,
            config,
        } = self;
        registry.validate()?;
        if config.max_activities == 0
            || config.lease.is_zero()
            || config.poll_interval.is_zero()
            || config.poison_after == 0
        {
            return Err(Error::Config(
                "max_concurrent_activities, activity_lease, poll_interval and poison_after must be above zero"
                    .to_owned(),
            ));
        }
        let store: Arc<dyn Store> = match store {
            None => {
                return Err(Error::Config(
                    "no store: call `.sqlite(path)` (or `.store(..)`) on the builder".to_owned(),
                ))
            }
            Some(StoreSpec::Custom(s)) => s,
            Some(StoreSpec::Sqlite(path)) => {
                let opened =
                    tokio::task::spawn_blocking(move || SqliteStore::open_with(path, &sqlite))
                        .await
                        .unwrap_or(Err(StoreError::Closed))?;
                Arc::new(opened)
            }
        };
        let (shutdown_tx, shutdown) = watch::channel(false);
        let (tasks_tx, tasks_rx) = unbounded_channel();
        let (inbox_tx, inbox_rx) = unbounded_channel();
        let shared = Arc::new(Shared {
            store,
            registry,
            config,
            owner: client::new_id(),
            dispatcher_wake: Notify::new(),
            tasks_tx,
            inbox_tx,
            waiters: Mutex::new(HashMap::new()),
            store_calls: tokio::sync::Semaphore::new(STORE_CALLS),
            shutdown,
        });
        let tasks = vec![
            tokio::spawn(dispatcher::run(Arc::clone(&shared), inbox_rx)),
            tokio::spawn(worker::run(Arc::clone(&shared), tasks_rx)),
        ];
        Ok(Runtime {
            shared,
            tasks,
            shutdown_tx,
        })
    }
}

/// A running engine: an orchestration dispatcher and an activity worker on
/// one store. Dropping it stops its tasks; [`Runtime::shutdown`] does so
/// cleanly, giving unfinished activity leases back.
pub struct Runtime {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    shutdown_tx: watch::Sender<bool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("owner", &self.shared.owner)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A builder with default settings and nothing registered.
    pub fn builder() -> Builder {
        Builder {
            store: None,
            sqlite: SqliteOptions {
                synchronous: Synchronous::Full,
                ..SqliteOptions::default()
            },
            registry: Registry::default(),
            config: Config::default(),
        }
    }

    /// A client to start instances, raise events and read results.
    pub fn client(&self) -> Client {
        Client::new(Arc::clone(&self.shared))
    }

    /// Stops the dispatcher and the worker and waits for them. Activity
    /// attempts still running are abandoned and their leases given back, so
    /// the next start runs them again at once; everything committed stays.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for a store that flushes on close.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        self.shutdown_tx.send_replace(true);
        for task in self.tasks.drain(..) {
            // A task that panicked has nothing left to clean up.
            let _ = task.await;
        }
        Ok(())
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown_tx.send_replace(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}
