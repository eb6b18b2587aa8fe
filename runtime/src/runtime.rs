//! The runtime: its builder, and the wiring that hands each part (the
//! dispatcher, the activity worker, clients) only the handles it uses, then
//! supervises them and stops them in order.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::activity::Activity;
use crate::client::{Client, ClientParts};
use crate::config::Config;
use crate::dispatcher::{Dispatcher, EntityDispatcher};
use crate::error::Error;
use crate::mailbox::{mailboxes, ToDispatcher};
use crate::orchestrator::Orchestrator;
use crate::registry::Registry;
use crate::shutdown::{self, Health, Shutdown, Trigger};
use crate::store::handle::StoreHandle;
use crate::store::{SqliteOptions, SqliteStore, Store, StoreError, Synchronous};
use crate::unwind::CatchUnwind;
use crate::waiters::Waiters;
use crate::worker::{self, Leases, Worker};

// Checked here, where errors are known: `config` sits below them.
impl Config {
    /// Refuses settings the engine cannot work with.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let zero = |setting: &'static str, is_zero: bool| {
            if is_zero {
                Err(Error::InvalidSetting {
                    setting,
                    reason: "it must be above zero".to_owned(),
                })
            } else {
                Ok(())
            }
        };
        zero("max_concurrent_activities", self.max_activities == 0)?;
        zero("activity_lease", self.activity_lease.is_zero())?;
        zero("instance_lock", self.instance_lock.is_zero())?;
        zero("poll_interval", self.poll_interval.is_zero())?;
        zero("poison_after", self.poison_after == 0)?;
        zero("max_payload", self.max_payload == 0)?;
        zero("turn_timeout", self.turn_timeout.is_zero())?;
        Ok(())
    }
}

enum StoreSpec {
    Sqlite(PathBuf, SqliteOptions),
    #[cfg(feature = "postgres")]
    Postgres(String, crate::store::PostgresOptions),
    Custom(Arc<dyn Store>),
}

/// Configures and starts a [`Runtime`].
#[must_use = "a builder does nothing until `.start().await`"]
pub struct Builder {
    store: Option<StoreSpec>,
    synchronous: Option<Synchronous>,
    registry: Registry,
    config: Config,
    activity_threads: usize,
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
    /// `":memory:"` keeps it in memory (for tests). A shortcut for
    /// `.store(SqliteStore::open(path)?)` that opens the file at `start()`.
    pub fn sqlite(self, path: impl Into<PathBuf>) -> Self {
        self.sqlite_with(path, SqliteOptions::default())
    }

    /// Uses the SQLite file at `path` with these options (durability, busy
    /// timeout, size cap).
    pub fn sqlite_with(mut self, path: impl Into<PathBuf>, options: SqliteOptions) -> Self {
        self.store = Some(StoreSpec::Sqlite(path.into(), options));
        self
    }

    /// Sets how hard SQLite works to keep each commit (default
    /// [`Synchronous::Full`]: a committed step survives power loss). Only
    /// for `.sqlite(..)`: with `.store(..)`, `start()` refuses it with
    /// [`Error::InvalidSetting`] (configure that store itself).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = Some(synchronous);
        self
    }

    /// Stores everything in the PostgreSQL database at `url`
    /// (`postgres://user:password@host/db`, or `host=.. user=.. dbname=..`),
    /// in the schema `durable`: worker processes on many machines, each
    /// started with this URL and the same registrations, share the work.
    /// A shortcut for `.store(PostgresStore::connect(url)?)` that connects
    /// at `start()`; [`Builder::postgres_with`] names the schema, the pool
    /// size and more.
    #[cfg(feature = "postgres")]
    pub fn postgres(self, url: impl Into<String>) -> Self {
        self.postgres_with(url, crate::store::PostgresOptions::default())
    }

    /// Uses the PostgreSQL database at `url` with these options.
    #[cfg(feature = "postgres")]
    pub fn postgres_with(
        mut self,
        url: impl Into<String>,
        options: crate::store::PostgresOptions,
    ) -> Self {
        self.store = Some(StoreSpec::Postgres(url.into(), options));
        self
    }

    /// Uses `store`: the general way in, for any backend.
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

    /// Replays a recorded history (a [`HistoryExport`](crate::history::HistoryExport),
    /// kept as a test fixture) against the code registered on this builder:
    /// `Err` names the first place the code no longer makes what history
    /// records, with both call sites, or the version that is not
    /// registered. A finished history is replayed to its end, and the
    /// value it returned must come out again. Nothing is started.
    ///
    /// # Errors
    /// The first difference, as an [`Incompatible`](crate::Incompatible);
    /// an export with no events (taken before the instance's first turn)
    /// checks nothing and is refused, as
    /// [`FailureKind::Corrupt`](crate::FailureKind::Corrupt).
    pub fn check_history(
        &self,
        history: &crate::history::HistoryExport,
    ) -> Result<(), crate::Incompatible> {
        crate::check::history(&self.registry, history)
    }

    /// Every live instance (pending, running, suspended, stuck) in the
    /// builder's store that the code registered on this builder could not
    /// replay, and where: run it against the production database before
    /// deploying. The store is opened and read, never written (a SQLite
    /// file is opened read-only); nothing is started. It blocks while it
    /// reads and replays (call it from a command or a test, or on a
    /// blocking thread).
    ///
    /// # Errors
    /// [`Error::NoStore`]; [`Error::InvalidSetting`] for a SQLite path
    /// with no file, or a file that holds no durable database; store
    /// errors opening or reading it.
    pub fn check_database(&self) -> Result<Vec<crate::Incompatible>, Error> {
        let store: Arc<dyn Store> = match &self.store {
            None => return Err(Error::NoStore),
            Some(StoreSpec::Custom(s)) => Arc::clone(s),
            // A path that holds no database is an error, never a new one
            // reported as "nothing breaks".
            Some(StoreSpec::Sqlite(path, _)) if !path.exists() => {
                return Err(Error::InvalidSetting {
                    setting: "sqlite",
                    reason: format!("there is no database at {}", path.display()),
                })
            }
            // Opened read-only: an empty file stays empty.
            Some(StoreSpec::Sqlite(path, options)) => {
                match SqliteStore::open_read_only(path, options)? {
                    Some(store) => Arc::new(store),
                    None => {
                        return Err(Error::InvalidSetting {
                            setting: "sqlite",
                            reason: format!(
                                "{} holds no durable database (it is empty)",
                                path.display()
                            ),
                        })
                    }
                }
            }
            #[cfg(feature = "postgres")]
            Some(StoreSpec::Postgres(url, options)) => {
                let mut options = options.clone();
                options.listen = false;
                // A check only reads: a misspelled schema is an error, not
                // a new empty one, and a schema of the release before is
                // read as it is, not migrated under the workers of that
                // release.
                options.create_schema = false;
                options.read_only = true;
                Arc::new(crate::store::PostgresStore::connect_with(url, &options)?)
            }
        };
        crate::check::database(&self.registry, &store)
    }

    /// Whether a store was named.
    pub(crate) fn has_store(&self) -> bool {
        self.store.is_some()
    }

    /// Whether the named store keeps time on a clock of its own (a server's,
    /// or one a store given with `.store(..)` chose), which the runtime's
    /// clock cannot move: only the SQLite store runs on the runtime's.
    pub(crate) fn store_has_own_clock(&self) -> bool {
        !matches!(self.store, None | Some(StoreSpec::Sqlite(..)))
    }

    /// The registrations, for the test kit's overrides.
    pub(crate) fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Runs this runtime on the machine's clock moved by `skew_micros`
    /// (turn times, timers, retries): for tests showing that a store
    /// shared by machines keeps its leases on its own clock, so that a
    /// worker whose clock is off takes nothing early. Not for production.
    #[doc(hidden)]
    pub fn clock_skew(mut self, skew_micros: i64) -> Self {
        self.config.clock = crate::clock::Clock::skewed(skew_micros);
        self
    }

    /// The same builder on `clock` (the test kit's virtual one).
    pub(crate) fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.config.clock = clock;
        self
    }

    /// Registers an entity type this runtime applies operations to (made
    /// with `#[durable::entity]`): `.entity::<Account>()`.
    pub fn entity<T: crate::entity::Entity>(mut self) -> Self {
        self.registry.add_entity::<T>();
        self
    }

    /// How many live executions stay in memory (default 10,000); beyond
    /// that the least recently used is dropped and replayed when next needed.
    pub fn cache_size(mut self, instances: usize) -> Self {
        self.config.cache_size = instances;
        self
    }

    /// How many activity attempts run at once (default 1,000). Tasks beyond
    /// that stay in the store, where any process with a free slot takes them.
    pub fn max_concurrent_activities(mut self, n: usize) -> Self {
        self.config.max_activities = n;
        self
    }

    /// How many threads run activities (default 8), apart from the threads
    /// that run turns and store calls: an activity that blocks its thread
    /// holds one of these, never the engine.
    pub fn activity_threads(mut self, n: usize) -> Self {
        self.activity_threads = n;
        self
    }

    /// How long an activity attempt is leased (default 30 s); leases are
    /// renewed while it runs and until its result is committed, so this
    /// bounds how soon a crashed worker's attempt is run again.
    pub fn activity_lease(mut self, lease: Duration) -> Self {
        self.config.activity_lease = lease;
        self
    }

    /// How long an instance fetched for a turn stays locked to this process
    /// (default 30 s): how soon another process takes over an instance whose
    /// process died in the middle of a turn.
    pub fn instance_lock(mut self, lock: Duration) -> Self {
        self.config.instance_lock = lock;
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
    /// instance fails with it. JSON spells a `Vec<u8>` as numbers (up to 4
    /// bytes each): pass binary data as [`Bytes`](crate::Bytes) (base64, 4
    /// bytes per 3), or better, store it elsewhere and pass a reference.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.config.max_payload = bytes;
        self
    }

    /// Warn (through `tracing`) when an instance's history grows past this
    /// many events (default 10,000): replay after a restart costs time in
    /// proportion, so a long-lived orchestration should end and start afresh
    /// with its state as input.
    pub fn history_warning(mut self, events: u64) -> Self {
        self.config.history_warning = events;
        self
    }

    /// How long [`Runtime::shutdown`] lets running activity attempts finish
    /// before it abandons them and gives their leases back (default 10 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// How long one turn of orchestrator code (the code between two
    /// `.await`s on durable operations, side effects included) may run
    /// (default 10 s). Rust cannot preempt a turn, so turns run on a thread
    /// of their own: one that runs past this is given up, its instance fails
    /// with [`FailureKind::TurnTimeout`](crate::FailureKind::TurnTimeout),
    /// and every other instance goes on meanwhile on a new thread. The
    /// thread of a turn that never ends stays busy until the process exits.
    /// Keep it below [`Builder::instance_lock`]: a turn running longer than
    /// its instance's lock may be taken over by another process.
    pub fn turn_timeout(mut self, budget: Duration) -> Self {
        self.config.turn_timeout = budget;
        self
    }

    /// Verify mode, for tests and staging (off by default): every turn is
    /// run a second time in a fresh execution rebuilt from the instance's
    /// history, before it commits, and must make the same decisions, inputs
    /// and timer times included. Nondeterminism the compile-time checker
    /// cannot see (a helper function reading the clock, a `HashMap`
    /// reached through a struct field) then parks the instance as `Stuck`
    /// on its first run, with both decisions and their call sites, instead
    /// of surfacing days later on a replay. It costs a history read and a
    /// replay per turn; a `side_effect` closure runs twice.
    pub fn verify_replay(mut self, on: bool) -> Self {
        self.config.verify = on;
        self
    }

    /// Opens the store, checks the registrations and starts the dispatcher
    /// and the activity worker.
    ///
    /// # Errors
    /// [`Error::NoStore`] without a store; [`Error::InvalidSetting`] for a
    /// zero setting, or `synchronous` with a store other than SQLite;
    /// [`Error::DuplicateName`] when two functions share a stored name;
    /// [`Error::UnregisteredActivity`] when an orchestrator calls an
    /// activity that is not registered; store errors opening the database.
    pub async fn start(self) -> Result<Runtime, Error> {
        let Builder {
            store,
            synchronous,
            mut registry,
            config,
            activity_threads,
        } = self;
        registry.validate()?;
        config.validate()?;
        if activity_threads == 0 {
            return Err(Error::InvalidSetting {
                setting: "activity_threads",
                reason: "it must be above zero".to_owned(),
            });
        }
        registry.max_payload = config.max_payload;
        let store: Arc<dyn Store> = match store {
            None => return Err(Error::NoStore),
            Some(spec) if synchronous.is_some() && !matches!(spec, StoreSpec::Sqlite(..)) => {
                return Err(Error::InvalidSetting {
                    setting: "synchronous",
                    reason: "it applies to `.sqlite(..)` only; configure the store given to `.store(..)` itself".to_owned(),
                })
            }
            Some(StoreSpec::Custom(s)) => s,
            Some(StoreSpec::Sqlite(path, mut options)) => {
                if let Some(sync) = synchronous {
                    options.synchronous = sync;
                }
                options.clock = config.clock.clone();
                let opened =
                    tokio::task::spawn_blocking(move || SqliteStore::open_with(path, &options))
                        .await
                        .unwrap_or(Err(StoreError::Closed))?;
                Arc::new(opened)
            }
            #[cfg(feature = "postgres")]
            Some(StoreSpec::Postgres(url, options)) => {
                let opened = tokio::task::spawn_blocking(move || {
                    crate::store::PostgresStore::connect_with(&url, &options)
                })
                .await
                .unwrap_or(Err(StoreError::Closed))?;
                Arc::new(opened)
            }
        };
        // Turn times and timers run on the store's clock: on a shared
        // server that is the server's, so a worker whose clock is off
        // neither fires timers early nor late (within a round trip).
        let mut config = config;
        let mine = config.clock.now();
        let aligned = {
            let store = Arc::clone(&store);
            tokio::task::spawn_blocking(move || store.now())
                .await
                .unwrap_or(Err(StoreError::Closed))?
        };
        config.clock = config.clock.aligned_to(aligned, mine);
        let threads = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(activity_threads)
            .thread_name("durable-activity")
            .enable_all()
            .build()
            .map_err(|e| Error::InvalidSetting {
                setting: "activity_threads",
                reason: format!("the threads could not be started: {e}"),
            })?;
        let registry = Arc::new(registry);
        let boxes = mailboxes(config.inbox_capacity, config.max_activities);
        let waiters = Arc::new(Waiters::default());
        // Work another process queued wakes the parts that take it; an
        // instance it finished wakes the clients waiting here.
        let wakes = [
            Arc::clone(&boxes.inbox.wake),
            Arc::clone(&boxes.inbox.entities),
            Arc::clone(&boxes.to_worker.wake),
        ];
        let finished = Arc::clone(&waiters);
        store.watch(Arc::new(move |change| match change {
            crate::store::Change::Finished(id) => finished.finished(id),
            _ => wakes.iter().for_each(|w| w.notify_one()),
        }));
        let store = StoreHandle::new(store, crate::ids::new_id());
        let (drain, draining) = shutdown::channel();
        let (stop, stopping) = shutdown::channel();
        let health = Arc::new(Health::default());
        let leases: Leases = Arc::default();
        let stop_all = Arc::new((drain, stop));
        let worker = Worker {
            store: store.clone(),
            registry: Arc::clone(&registry),
            config: config.clone(),
            ends: boxes.worker,
            leases: Arc::clone(&leases),
            threads: threads.handle().clone(),
            draining: draining.clone(),
            cancels: std::sync::Mutex::default(),
        };
        let entities = EntityDispatcher {
            store: store.clone(),
            registry: Arc::clone(&registry),
            config: config.clone(),
            wake: Arc::clone(&boxes.inbox.entities),
            orchestrations: ToDispatcher::clone(&boxes.to_dispatcher),
            stop: draining.clone(),
        };
        let dispatcher = Dispatcher {
            store: store.clone(),
            registry: Arc::clone(&registry),
            config: config.clone(),
            inbox: boxes.inbox,
            worker: boxes.to_worker,
            waiters: Arc::clone(&waiters),
            draining: draining.clone(),
            stop: stopping,
        };
        let supervise = |part, fut| {
            supervised(
                part,
                fut,
                Arc::clone(&health),
                Arc::clone(&waiters),
                Arc::clone(&stop_all),
            )
        };
        let worker_task = tokio::spawn(supervise("activity worker", Box::pin(worker.run())));
        let dispatcher_task = tokio::spawn(supervise("dispatcher", Box::pin(dispatcher.run())));
        let entity_task = tokio::spawn(supervise("entity dispatcher", Box::pin(entities.run())));
        let clock_task = (!config.clock.is_virtual())
            .then(|| tokio::spawn(follow_store_clock(store.clone(), config.clock.clone())));
        Ok(Runtime {
            client: ClientParts {
                store: store.clone(),
                registry,
                dispatcher: boxes.to_dispatcher,
                waiters: Arc::clone(&waiters),
                health,
                shutdown: draining,
            },
            config,
            store,
            leases,
            waiters,
            stop_all,
            worker_task: Some(worker_task),
            dispatcher_task: Some(dispatcher_task),
            entity_task: Some(entity_task),
            clock_task,
            threads: Some(threads),
        })
    }
}

/// How often a runtime reads its store's clock again to follow it.
const REALIGN_EVERY: Duration = Duration::from_secs(60);

/// Keeps the runtime's clock with the store's: a machine clock stepped
/// after start (NTP, a VM resumed) would otherwise set turn times and
/// timers off the shared server's time. A failed read is skipped.
async fn follow_store_clock(store: StoreHandle, clock: crate::clock::Clock) {
    loop {
        tokio::time::sleep(REALIGN_EVERY).await;
        let before = clock.now();
        let Ok(there) = store.call(|s, _| s.now()).await else {
            continue;
        };
        let after = clock.now();
        let here = before + (after - before) / 2;
        // Within the read's own uncertainty: nothing to follow.
        if (there - here).abs() > 5_000 {
            clock.realign(there, here);
        }
    }
}

type Part = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs a part; if it panics, the runtime fails visibly: clients get
/// [`Error::EngineFailed`], waiters are woken, the other part stops.
async fn supervised(
    part: &'static str,
    fut: Part,
    health: Arc<Health>,
    waiters: Arc<Waiters>,
    stop_all: Arc<(Trigger, Trigger)>,
) {
    if let Err(panic) = CatchUnwind::new(AssertUnwindSafe(fut)).await {
        tracing::error!("the runtime's {part} panicked: {panic}; the runtime stops");
        health.failed(part, panic);
        stop_all.0.fire();
        stop_all.1.fire();
        waiters.wake_all();
    }
}

/// A running engine: an orchestration dispatcher and an activity worker on
/// one store. [`Runtime::shutdown`] stops it cleanly; dropping it stops it
/// at once (see [`Runtime::shutdown`] for what that costs).
pub struct Runtime {
    client: ClientParts,
    config: Config,
    store: StoreHandle,
    leases: Leases,
    waiters: Arc<Waiters>,
    stop_all: Arc<(Trigger, Trigger)>,
    worker_task: Option<JoinHandle<()>>,
    dispatcher_task: Option<JoinHandle<()>>,
    entity_task: Option<JoinHandle<()>>,
    /// Follows the store's clock (none for a virtual clock).
    clock_task: Option<JoinHandle<()>>,
    threads: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("owner", &self.store.owner())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A builder with default settings and nothing registered.
    pub fn builder() -> Builder {
        Builder {
            store: None,
            synchronous: None,
            registry: Registry::default(),
            config: Config::default(),
            activity_threads: 8,
        }
    }

    /// Wakes the dispatchers: the clock moved, or something changed that
    /// they would otherwise find only at their next poll.
    pub(crate) fn wake(&self) {
        self.client.dispatcher.look();
        self.client.dispatcher.wake_entities();
    }

    /// Whether work is under way, and when the next delayed work is due.
    /// Only what this runtime takes counts: another process's names,
    /// instances another owner holds and cancelled attempts do not.
    pub(crate) async fn lookahead(&self) -> Result<crate::store::Lookahead, Error> {
        use crate::store::Names;
        let registry = &self.client.registry;
        let mut instances: Vec<(String, u32)> = registry
            .orchestrator_versions()
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect();
        instances.extend(
            registry
                .entity_names()
                .into_iter()
                .map(|n| (n, Names::ANY_VERSION)),
        );
        let activities: Vec<_> = registry
            .activity_names()
            .into_iter()
            .map(|n| (n, Names::ANY_VERSION))
            .collect();
        Ok(self
            .store
            .call_quietly(move |s, owner| {
                let instances: Vec<(&str, u32)> =
                    instances.iter().map(|(n, v)| (n.as_str(), *v)).collect();
                s.lookahead(owner, Names(&instances), Names(&activities))
            })
            .await?)
    }

    /// Notified each time a store call of the runtime or its clients ends
    /// (not [`lookahead`](Self::lookahead)'s own).
    pub(crate) fn store_call_ended(&self) -> &tokio::sync::Notify {
        self.store.ended()
    }

    /// A client to start instances, raise events and read results.
    pub fn client(&self) -> Client {
        Client::new(
            ClientParts {
                store: self.client.store.clone(),
                registry: Arc::clone(&self.client.registry),
                dispatcher: ToDispatcher::clone(&self.client.dispatcher),
                waiters: Arc::clone(&self.client.waiters),
                health: Arc::clone(&self.client.health),
                shutdown: Shutdown::clone(&self.client.shutdown),
            },
            &self.config,
        )
    }

    /// Stops the runtime in order: clients are refused, no new work is
    /// taken, running activity attempts get the grace period
    /// ([`Builder::shutdown_grace`]) to finish and their results are
    /// committed; what still runs then is abandoned and its lease given
    /// back, and instance locks are released, so the next start (here or
    /// in another process) takes everything over at once. After it returns
    /// nothing is leased to this runtime.
    ///
    /// Dropping a runtime without it stops at once: attempts still running
    /// are abandoned, their leases and the instance locks are given back
    /// by one store write on the dropping thread, and results not yet
    /// committed are lost (their attempts run again).
    ///
    /// # Errors
    /// [`Error::EngineFailed`] when a part of the engine had died; what it
    /// held is given back all the same.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(c) = self.clock_task.take() {
            c.abort();
        }
        self.stop_all.0.fire();
        if let Some(w) = self.worker_task.take() {
            let _ = w.await;
        }
        if let Some(e) = self.entity_task.take() {
            let _ = e.await;
        }
        self.stop_all.1.fire();
        if let Some(d) = self.dispatcher_task.take() {
            let _ = d.await;
        }
        self.waiters.wake_all();
        Error::check_health(&self.client.health)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_all.0.fire();
        self.stop_all.1.fire();
        let stopped_early = self.dispatcher_task.is_some();
        for task in [
            self.worker_task.take(),
            self.dispatcher_task.take(),
            self.entity_task.take(),
            self.clock_task.take(),
        ]
        .into_iter()
        .flatten()
        {
            task.abort();
        }
        if stopped_early {
            // Dropped without `shutdown()`: give back what can be given back
            // now, so the next runtime need not wait for leases to expire.
            worker::release_now(&self.store, &self.leases);
            if let Err(e) = self.store.call_now(|s, owner| s.release_instances(owner)) {
                tracing::warn!("releasing instance locks on drop: {e}");
            }
        }
        self.waiters.wake_all();
        if let Some(threads) = self.threads.take() {
            threads.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a dispatcher or worker task that panicked left a runtime
    /// that accepted starts it would never run. The supervisor records the
    /// death, stops the other part and wakes every waiter.
    #[tokio::test]
    async fn a_part_that_panics_fails_the_runtime_visibly() {
        let health = Arc::new(Health::default());
        let waiters = Arc::new(Waiters::default());
        let (drain, mut draining) = shutdown::channel();
        let (stop, mut stopping) = shutdown::channel();
        let stop_all = Arc::new((drain, stop));
        let part: Part = Box::pin(async { panic!("invariant broken") });
        supervised("dispatcher", part, Arc::clone(&health), waiters, stop_all).await;
        let err = Error::check_health(&health).unwrap_err();
        assert!(
            matches!(&err, Error::EngineFailed { part: "dispatcher", reason } if reason.contains("invariant broken")),
            "{err}"
        );
        draining.wait().await;
        stopping.wait().await;
    }
}
