//! The PostgreSQL store: worker processes on many machines share one
//! database, with the same guarantees as the embedded store.
//!
//! - **One schema per application.** Tables live in a PostgreSQL schema the
//!   user names (`durable` by default); the store creates it and records
//!   its version there. Another application's schema, or another version
//!   of this one, is a typed error: nothing is migrated or changed.
//! - **The instance row is the lock.** A claim (`FOR UPDATE SKIP LOCKED`
//!   over the due-message index) writes an owner, an expiry and a fencing
//!   epoch bumped on every claim. A commit locks the rows of its turns and
//!   checks, in the same transaction, the history length, the execution,
//!   the consumed messages and that no other owner holds the instance now;
//!   a turn that fails one check is refused whole.
//! - **The database's clock.** Every expiry is computed from the server's
//!   `clock_timestamp()`, never a worker's, so skew between machines
//!   cannot expire a lease early.
//! - **Message order.** A message takes its per-instance sequence number
//!   under the instance row's lock, held to the commit: numbers of one
//!   instance commit in order even with many writers.
//! - **Wake-ups.** Commits that queue work send `NOTIFY` (delivered after
//!   commit, coalesced by the server within a transaction); each store
//!   keeps one `LISTEN` connection and wakes its runtime. Polling stays on
//!   as the fallback, and [`PostgresOptions::listen`] turns `LISTEN` off
//!   for connection poolers that break it.
//! - **Unknown outcomes.** Only transactions the server rolled back
//!   (serialization failures, deadlocks) or whose connection was lost
//!   before `COMMIT` was sent (the server rolled them back) are run again.
//!   A connection lost during `COMMIT` is reported as
//!   [`StoreError::Unavailable`]; the runtime then reads the instance back
//!   from the store (a committed turn shows in its history length), never
//!   retries blindly.
//!
//! The [`Store`](crate::store::Store) trait is synchronous (one call, one
//! transaction, run on tokio's blocking pool): the store drives its async
//! driver on a small runtime of its own.

mod queries;

use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, NoTls, Socket};

use crate::store::StoreError;

/// The schema version this release reads and writes.
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// What marks a schema as durable's, in its `meta` table.
const APPLICATION: &str = "durable";

/// The payload prefix of a notification that an instance finished.
const FINISHED: &str = "f:";

/// How often a transaction the server rolled back (a serialization
/// failure, a deadlock) is tried again before its error is returned.
const RETRIES: u32 = 20;

/// How many times a transaction whose connection was lost before `COMMIT`
/// is run again on a fresh connection.
const RECONNECTS: u32 = 3;

/// The tables, indexes and marks of one schema; `§` stands for the schema.
const SCHEMA: &str = r#"
CREATE TABLE §meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE §instances (
    id               TEXT COLLATE "C" PRIMARY KEY,
    name             TEXT COLLATE "C" NOT NULL,
    status           TEXT NOT NULL,
    output           TEXT,
    failure          TEXT,
    reason           TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    history_len      BIGINT NOT NULL DEFAULT 0,
    attempts         BIGINT NOT NULL DEFAULT 0,
    lock_owner       TEXT,
    lock_until       BIGINT,
    epoch            BIGINT NOT NULL DEFAULT 0,
    next_message     BIGINT NOT NULL DEFAULT 0,
    consumed_through BIGINT,
    sum              BIGINT NOT NULL,
    custom_status    TEXT,
    custom_sum       BIGINT,
    execution        BIGINT NOT NULL DEFAULT 0,
    parent_id        TEXT COLLATE "C",
    parent_seq       BIGINT,
    version          BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX instances_created ON §instances (created_at, id);
CREATE INDEX instances_updated ON §instances (updated_at);
CREATE INDEX instances_parent ON §instances (parent_id) WHERE parent_id IS NOT NULL;
CREATE TABLE §history (
    instance TEXT COLLATE "C" NOT NULL,
    idx      BIGINT NOT NULL,
    turn     BIGINT NOT NULL,
    at       BIGINT NOT NULL,
    event    TEXT NOT NULL,
    sum      BIGINT NOT NULL,
    PRIMARY KEY (instance, idx)
);
CREATE TABLE §messages (
    instance   TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    visible_at BIGINT NOT NULL,
    event      TEXT NOT NULL,
    sum        BIGINT NOT NULL,
    timer      BIGINT,
    PRIMARY KEY (instance, seq)
);
CREATE INDEX messages_due ON §messages (visible_at, instance);
CREATE TABLE §message_keys (
    instance TEXT COLLATE "C" NOT NULL,
    key      TEXT NOT NULL,
    PRIMARY KEY (instance, key)
);
CREATE TABLE §tasks (
    id          BIGSERIAL PRIMARY KEY,
    instance    TEXT COLLATE "C" NOT NULL,
    seq         BIGINT NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    input       TEXT NOT NULL,
    retry       TEXT NOT NULL,
    attempt     BIGINT NOT NULL DEFAULT 0,
    failures    BIGINT NOT NULL DEFAULT 0,
    visible_at  BIGINT NOT NULL,
    lease_owner TEXT,
    sum         BIGINT NOT NULL,
    cancelled   BOOLEAN NOT NULL DEFAULT false,
    last_error  TEXT,
    UNIQUE (instance, seq)
);
CREATE INDEX tasks_due ON §tasks (visible_at, id);
"#;

/// Brings a version 1 schema to version 2, in the transaction that checks
/// it: each instance's orchestrator version gets a column (read from its
/// `Started`, so that a build never takes an instance of a version newer
/// than it runs), and each activity call its last error. Columns are only
/// added, so processes of the release before, still running, read on.
const MIGRATE_1_TO_2: &str = r#"
ALTER TABLE §instances ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE §tasks ADD COLUMN last_error TEXT;
UPDATE §instances i SET version = coalesce(
    (SELECT (h.event::jsonb #>> '{Started,version}')::bigint FROM §history h
        WHERE h.instance = i.id AND h.event LIKE '{"Started":%'
        ORDER BY h.idx DESC LIMIT 1),
    (SELECT (m.event::jsonb #>> '{Started,version}')::bigint FROM §messages m
        WHERE m.instance = i.id AND m.event LIKE '{"Started":%'
        ORDER BY m.seq LIMIT 1),
    1)
WHERE i.name NOT LIKE '@%';
UPDATE §meta SET value = '2' WHERE key = 'schema_version';
"#;

/// Settings of a [`PostgresStore`].
///
/// ```
/// use durable::store::PostgresOptions;
/// let mut options = PostgresOptions::default();
/// options.schema = "billing".to_owned();
/// options.pool_size = 32;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// The PostgreSQL schema the tables live in: several applications
    /// share one database under schemas of their own. Lowercase letters,
    /// digits and `_`, starting with a letter or `_`, at most 55 bytes.
    pub schema: String,
    /// Connections in the pool (store calls in flight at once).
    pub pool_size: usize,
    /// Keep a `LISTEN` connection, so that work another process queues
    /// wakes this one at once. Off: it is found by polling alone (for a
    /// connection pooler in transaction mode, which breaks `LISTEN`).
    pub listen: bool,
    /// How long to wait for a connection from the pool, or to connect.
    pub connect_timeout: Duration,
    /// How long the server lets one of this store's transactions sit idle
    /// before it ends it (`idle_in_transaction_session_timeout`): a worker
    /// frozen mid-transaction (stopped, paused in a debugger, its machine
    /// swapping) then stops holding the rows other workers wait for. Zero
    /// leaves the server's own setting (for poolers that refuse startup
    /// options).
    pub stalled_transaction_timeout: Duration,
    /// Create the schema and its tables when they do not exist. Off, a
    /// missing schema is [`PostgresError::NoSchema`]: for tools that only
    /// read, and for workers whose role may not create anything (the
    /// schema made beforehand by a role that may).
    pub create_schema: bool,
    /// Only read (the database check): the schema is neither created nor
    /// migrated, and the release before's is read as it is.
    pub(crate) read_only: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "durable".to_owned(),
            pool_size: 16,
            listen: true,
            connect_timeout: Duration::from_secs(10),
            stalled_transaction_timeout: Duration::from_secs(30),
            create_schema: true,
            read_only: false,
        }
    }
}

/// A failure particular to PostgreSQL, carried inside
/// [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The connection URL or a setting is not usable.
    #[error("invalid PostgreSQL setting: {0}")]
    Config(String),
    /// The server reported an error.
    #[error("postgres: {}", detail(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be taken from the pool.
    #[error("postgres pool: {0}")]
    Pool(String),
    /// The schema holds no durable tables and the store was told not to
    /// create them ([`PostgresOptions::create_schema`] off).
    #[error(
        "{0} holds no durable tables (create them by connecting once with `create_schema` on)"
    )]
    NoSchema(String),
}

/// Called when another process may have queued work for this one.
type Wake = Arc<dyn Fn(crate::store::Change<'_>) + Send + Sync>;

/// The store, shared by every process that names the same database and
/// schema.
pub struct PostgresStore {
    pool: Pool,
    /// `"schema".`: the prefix of every table name.
    prefix: String,
    /// The `NOTIFY` channel of the schema, and this store's name on it.
    channel: Channel,
    location: String,
    wakes: Arc<Mutex<Vec<Wake>>>,
    /// The runtime that drives the connections (dropped in the background:
    /// a store may be dropped on an async thread).
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The server's own message when there is one (the driver's `Display`
/// says only "db error").
fn detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{db} (SQLSTATE {})", db.code().code()),
        None => e.to_string(),
    }
}

fn config_error(what: impl Into<String>) -> StoreError {
    StoreError::backend(PostgresError::Config(what.into()))
}

/// Classifies a driver error: lost connections are `Unavailable` (the
/// outcome of a write may be unknown: the caller reads it back), a full
/// disk is `Full`, the rest is the backend's own.
pub(crate) fn classify(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::DISK_FULL || *code == SqlState::OUT_OF_MEMORY {
            return StoreError::Full(db.to_string());
        }
        if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            return StoreError::ReadOnly(db.to_string());
        }
        // The server going away, or ending a statement or transaction it
        // rolled back (a lock or statement timeout, a cancel, an idle
        // transaction ended): nothing was written; try again later.
        if *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || *code == SqlState::LOCK_NOT_AVAILABLE
            || *code == SqlState::QUERY_CANCELED
            || *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
        {
            return StoreError::Unavailable(db.to_string());
        }
        return StoreError::backend(PostgresError::Postgres(e));
    }
    // No answer from the server (refused, lost, timed out): try again
    // later.
    StoreError::Unavailable(detail(&e))
}

/// A failure while `COMMIT` was on its way: whether it committed is not
/// known, and the caller reads the outcome back.
fn classify_commit(e: tokio_postgres::Error) -> StoreError {
    if e.as_db_error().is_none() || lost(&e) {
        return StoreError::Unavailable(format!(
            "{} during COMMIT (the outcome of the call is unknown)",
            detail(&e)
        ));
    }
    classify(e)
}

/// Whether the connection was lost: closed under the call, or its backend
/// shut down (`pg_terminate_backend`, a server stopping).
fn lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
        })
}

/// Whether the server rolled the transaction back for a reason that
/// trying again resolves.
fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    })
}

thread_local! {
    /// Set on tokio's blocking-pool threads (see `StoreHandle::call`):
    /// there the store may block on its own runtime directly.
    static BLOCKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` marked as on a thread that may block (a blocking-pool
/// thread): only for its duration, as tokio may later run an async worker
/// on the same thread (after `block_in_place`).
pub(crate) fn on_blocking_thread<T>(f: impl FnOnce() -> T) -> T {
    struct Unmark(bool);
    impl Drop for Unmark {
        fn drop(&mut self) {
            BLOCKING.with(|b| b.set(self.0));
        }
    }
    let _unmark = Unmark(BLOCKING.with(|b| b.replace(true)));
    f()
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host/db` or
    /// `host=.. user=.. dbname=..`) without TLS, and creates or checks
    /// the schema.
    ///
    /// # Errors
    /// See [`PostgresStore::connect_with`].
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &PostgresOptions::default())
    }

    /// Connects without TLS with these options.
    ///
    /// # Errors
    /// A URL or setting that is not usable; [`StoreError::Unavailable`]
    /// when the server cannot be reached; [`StoreError::ForeignDatabase`]
    /// when the schema holds tables that are not durable's;
    /// [`StoreError::SchemaVersion`] for another version of durable's.
    pub fn connect_with(url: &str, options: &PostgresOptions) -> Result<Self, StoreError> {
        Self::connect_tls(url, options, NoTls)
    }

    /// Connects with a TLS connector (`postgres-native-tls`,
    /// `tokio-postgres-rustls`, ..).
    ///
    /// # Errors
    /// As [`PostgresStore::connect_with`].
    pub fn connect_tls<T>(url: &str, options: &PostgresOptions, tls: T) -> Result<Self, StoreError>
    where
        T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let schema = &options.schema;
        // Its NOTIFY channel, `durable_<schema>`, must fit PostgreSQL's
        // 63-byte identifiers too.
        let valid = !schema.is_empty()
            && schema.len() <= 55
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !schema.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(config_error(format!(
                "schema `{schema}`: use lowercase letters, digits and `_`, starting with a letter or `_`, at most 55 bytes"
            )));
        }
        if options.pool_size == 0 {
            return Err(config_error("pool_size must be above zero"));
        }
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| config_error(format!("the connection URL: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("durable");
        }
        config.connect_timeout(options.connect_timeout);
        if !options.stalled_transaction_timeout.is_zero() {
            let millis = options.stalled_transaction_timeout.as_millis().max(1);
            if millis > i32::MAX as u128 {
                return Err(config_error(
                    "stalled_transaction_timeout: at most 24 days (zero keeps the server's setting)",
                ));
            }
            let setting = format!("-c idle_in_transaction_session_timeout={millis}");
            let merged = match config.get_options() {
                Some(given) if given.contains("idle_in_transaction_session_timeout") => {
                    given.to_owned()
                }
                Some(given) => format!("{given} {setting}"),
                None => setting,
            };
            config.options(&merged);
        }
        // A connection whose peer vanished (a partition, a server machine
        // lost) is found within minutes, not the system's two hours: the
        // `LISTEN` connection would otherwise wait on it silently.
        if config.get_keepalives_idle() >= Duration::from_secs(7200) {
            config.keepalives_idle(Duration::from_secs(60));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("durable-postgres")
            .enable_all()
            .build()
            .map_err(|e| config_error(format!("its threads could not be started: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| config_error(e.to_string()))?;
        let store = Self {
            pool,
            prefix: format!("\"{schema}\"."),
            channel: Channel {
                name: format!("durable_{schema}"),
                sender: crate::ids::new_id(),
            },
            location: format!("schema `{schema}`"),
            wakes: Arc::default(),
            rt: Some(rt),
        };
        let create = options.create_schema && !options.read_only;
        store.block(|| store.create_or_check_schema(schema, create, options.read_only))?;
        if options.listen {
            let (channel, wakes) = (store.channel.clone(), Arc::clone(&store.wakes));
            store.runtime().spawn(listen(config, tls, channel, wakes));
        }
        Ok(store)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.rt
            .as_ref()
            .expect("invariant: the runtime is there until the store is dropped")
    }

    /// Runs `make()`'s future to its end on the store's runtime. On a
    /// thread that may block (a blocking-pool thread, a plain thread) it
    /// blocks there; on an async worker it blocks a scoped thread instead,
    /// as tokio forbids nesting.
    fn block<T, F, Fut>(&self, make: F) -> T
    where
        T: Send,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = T>,
    {
        let rt = self.runtime();
        let may_block =
            BLOCKING.with(std::cell::Cell::get) || tokio::runtime::Handle::try_current().is_err();
        if may_block {
            rt.block_on(make())
        } else {
            std::thread::scope(|s| {
                s.spawn(|| rt.block_on(make()))
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
        }
    }

    /// `sql` with `§` replaced by the schema's prefix.
    fn sql(&self, sql: &str) -> String {
        sql.replace('§', &self.prefix)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => classify(e),
            other => StoreError::Unavailable(format!("no PostgreSQL connection: {other}")),
        })
    }

    /// Runs `f` in one transaction and commits it, trying again (up to
    /// [`RETRIES`] times) when the server rolled it back for a
    /// serialization failure or a deadlock, and (up to [`RECONNECTS`]
    /// times, on a fresh connection) when the connection was lost before
    /// `COMMIT` was sent: the server then rolled the transaction back, so
    /// nothing of it happened. A connection lost during `COMMIT` leaves
    /// the outcome unknown, and is never tried again here.
    async fn transact<T>(
        &self,
        mut f: impl AsyncFnMut(&Tx<'_>) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        let mut tries = 0;
        let mut reconnects = 0;
        loop {
            tries += 1;
            let mut client = self.client().await?;
            let mut committing = false;
            let result = async {
                let tx = client.transaction().await.map_err(TxError::Pg)?;
                let tx = Tx {
                    tx,
                    prefix: &self.prefix,
                };
                let value = f(&tx).await?;
                committing = true;
                tx.tx.commit().await.map_err(TxError::Pg)?;
                Ok(value)
            }
            .await;
            match result {
                Ok(v) => return Ok(v),
                Err(TxError::Pg(e)) if retryable(&e) && tries < RETRIES => {
                    tokio::time::sleep(Duration::from_millis(u64::from(tries))).await;
                }
                Err(TxError::Pg(e)) if !committing && lost(&e) && reconnects < RECONNECTS => {
                    reconnects += 1;
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(reconnects))).await;
                }
                Err(TxError::Pg(e)) if committing => return Err(classify_commit(e)),
                Err(TxError::Pg(e)) => return Err(classify(e)),
                Err(TxError::Store(e)) => return Err(e),
            }
        }
    }

    /// Creates the schema's tables, or checks that they are durable's, of
    /// this version; under an advisory lock, so two processes starting at
    /// once do not both create them.
    /// `read_only` (the database check) leaves a schema of the release
    /// before as it is, to read; otherwise it is migrated.
    async fn create_or_check_schema(
        &self,
        schema: &str,
        create: bool,
        read_only: bool,
    ) -> Result<(), StoreError> {
        let location = self.location.clone();
        let ddl = self.sql(SCHEMA);
        let migrate = self.sql(MIGRATE_1_TO_2);
        self.transact(async |tx| {
            // Also when not creating: a migration must not run twice.
            tx.exec(
                "SELECT pg_advisory_xact_lock(hashtext('durable schema ' || $1::text))",
                &[&schema],
            )
            .await?;
            if create {
                // Created only when missing: `CREATE SCHEMA IF NOT EXISTS`
                // needs the right to create even when it exists, which a
                // worker's role may not have.
                let exists: bool = tx
                    .one(
                        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                        &[&schema],
                    )
                    .await?
                    .get(0);
                if !exists {
                    tx.tx
                        .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
                        .await?;
                }
            }
            let tables: i64 = tx
                .one(
                    "SELECT count(*) FROM pg_tables WHERE schemaname = $1",
                    &[&schema],
                )
                .await?
                .get(0);
            if tables == 0 && !create {
                return Err(TxError::Store(StoreError::backend(PostgresError::NoSchema(
                    location.clone(),
                ))));
            }
            if tables == 0 {
                tx.tx.batch_execute(&ddl).await?;
                tx.exec(
                    "INSERT INTO §meta (key, value) VALUES ('application', $1), ('schema_version', $2)",
                    &[&APPLICATION, &SCHEMA_VERSION.to_string()],
                )
                .await?;
                return Ok(());
            }
            let has_meta: bool = tx
                .one(
                    "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'meta')",
                    &[&schema],
                )
                .await?
                .get(0);
            let marks = if has_meta {
                tx.rows("SELECT key, value FROM §meta", &[]).await?
            } else {
                Vec::new()
            };
            let mark = |key: &str| {
                marks
                    .iter()
                    .find(|r| r.get::<_, &str>(0) == key)
                    .map(|r| r.get::<_, String>(1))
            };
            if mark("application").as_deref() != Some(APPLICATION) {
                return Err(TxError::Store(StoreError::ForeignDatabase {
                    location: location.clone(),
                    detail: format!("{tables} tables without durable's mark"),
                }));
            }
            let found = mark("schema_version")
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(-1);
            if found == 1 && read_only {
                return Ok(());
            }
            if found == 1 {
                // A role that does not own the tables cannot alter them:
                // say what to do rather than pass the server's refusal on.
                return match tx.tx.batch_execute(&migrate).await {
                    Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
                        Err(TxError::Store(StoreError::SchemaVersion {
                            location: location.clone(),
                            found,
                            supported: SCHEMA_VERSION,
                        }))
                    }
                    other => Ok(other?),
                };
            }
            if found != SCHEMA_VERSION {
                return Err(TxError::Store(StoreError::SchemaVersion {
                    location: location.clone(),
                    found,
                    supported: SCHEMA_VERSION,
                }));
            }
            Ok(())
        })
        .await
    }

    /// Drops the schema and everything in it: for tests, which each make
    /// their own.
    ///
    /// # Errors
    /// When the server fails.
    pub fn drop_schema(&self) -> Result<(), StoreError> {
        let prefix = self.prefix.trim_end_matches('.').to_owned();
        self.block(|| async move {
            let client = self.client().await?;
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {prefix} CASCADE"))
                .await
                .map_err(classify)
        })
    }

    /// Tells every runtime watching this store what a notification's
    /// `payload` (after its sender's name) says changed: `f:<id>` an
    /// instance finished, anything else work was queued.
    fn wake_all(wakes: &Mutex<Vec<Wake>>, payload: &str) {
        let change = match payload.strip_prefix(FINISHED) {
            Some(id) => crate::store::Change::Finished(id),
            None => crate::store::Change::Work,
        };
        let wakes = wakes.lock().unwrap_or_else(PoisonError::into_inner).clone();
        for wake in wakes {
            wake(change);
        }
    }
}

/// Keeps a `LISTEN` connection open and wakes the watchers on every
/// notification; reconnects (backing off) when it is lost, and wakes them
/// then too, as notifications may have been missed meanwhile.
async fn listen<T>(
    config: tokio_postgres::Config,
    tls: T,
    channel: Channel,
    wakes: Arc<Mutex<Vec<Wake>>>,
) where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let mut backoff = Duration::from_millis(50);
    loop {
        if let Ok((client, mut connection)) = config.connect(tls.clone()).await {
            let notified = Arc::clone(&wakes);
            let (channel, listening) = (channel.clone(), channel.clone());
            let driver = tokio::spawn(async move {
                while let Some(Ok(message)) =
                    std::future::poll_fn(|cx| connection.poll_message(cx)).await
                {
                    if let AsyncMessage::Notification(n) = message {
                        // This store's own notices wake no one here: its
                        // runtime hands its work over in memory.
                        match n.payload().split_once('|') {
                            Some((sender, _)) if sender == channel.sender => {}
                            Some((_, change)) => PostgresStore::wake_all(&notified, change),
                            None => PostgresStore::wake_all(&notified, n.payload()),
                        }
                    }
                }
            });
            if client
                .batch_execute(&format!("LISTEN {}", listening.name))
                .await
                .is_ok()
            {
                backoff = Duration::from_millis(50);
                PostgresStore::wake_all(&wakes, "");
            }
            let _ = driver.await;
        }
        PostgresStore::wake_all(&wakes, "");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// A schema's `NOTIFY` channel, and the name a store signs its notices
/// with (`<sender>|<change>`), so that its own listener skips them.
#[derive(Debug, Clone)]
struct Channel {
    name: String,
    sender: String,
}

/// Why a transaction's body stopped: the server's error (which may be
/// retried) or the store's own verdict.
enum TxError {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Pg(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

type Params<'p> = &'p [&'p (dyn tokio_postgres::types::ToSql + Sync)];

/// A transaction with the schema's prefix: statements name tables as
/// `§table` and are prepared once per connection.
struct Tx<'c> {
    tx: deadpool_postgres::Transaction<'c>,
    prefix: &'c str,
}

impl Tx<'_> {
    async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement, TxError> {
        Ok(self
            .tx
            .prepare_cached(&sql.replace('§', self.prefix))
            .await?)
    }

    /// Runs a statement; the rows it touched.
    async fn exec(&self, sql: &str, params: Params<'_>) -> Result<u64, TxError> {
        let stmt = self.prepare(sql).await?;
        Ok(self.tx.execute(&stmt, params).await?)
    }

    async fn rows(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, TxError> {
        let stmt = self.prepare(sql).await?;
        Ok(self.tx.query(&stmt, params).await?)
    }

    async fn opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<tokio_postgres::Row>, TxError> {
        let stmt = self.prepare(sql).await?;
        Ok(self.tx.query_opt(&stmt, params).await?)
    }

    async fn one(&self, sql: &str, params: Params<'_>) -> Result<tokio_postgres::Row, TxError> {
        let stmt = self.prepare(sql).await?;
        Ok(self.tx.query_one(&stmt, params).await?)
    }

    /// The database's time now, in microseconds since the Unix epoch.
    async fn now(&self) -> Result<i64, TxError> {
        Ok(self
            .one(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
                &[],
            )
            .await?
            .get(0))
    }

    /// Tells every listening store that work was queued (delivered when
    /// this transaction commits; repeats within it are coalesced).
    async fn notify(&self, channel: &Channel) -> Result<(), TxError> {
        let payload = format!("{}|", channel.sender);
        self.exec("SELECT pg_notify($1, $2)", &[&channel.name, &payload])
            .await?;
        Ok(())
    }

    /// Tells every listening store that these instances finished, so that
    /// clients waiting for them there read their results at once.
    async fn notify_finished(&self, channel: &Channel, ids: &[&str]) -> Result<(), TxError> {
        if !ids.is_empty() {
            let prefix = format!("{}|{FINISHED}", channel.sender);
            self.exec(
                "SELECT pg_notify($1, $2 || id) FROM unnest($3::text[]) AS id",
                &[&channel.name, &prefix, &ids],
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewInstance, Store, Transition};

    fn url() -> String {
        std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
    }

    /// A transaction one of the store's connections leaves open (its
    /// process frozen) is ended by the server after
    /// `stalled_transaction_timeout`, and a call waiting for its rows goes
    /// on; without the setting that call would wait for ever.
    #[test]
    fn a_stalled_transaction_is_ended_and_its_rows_freed() {
        let options = PostgresOptions {
            schema: format!("unit_stalled_{}", std::process::id()),
            pool_size: 4,
            listen: false,
            stalled_transaction_timeout: Duration::from_millis(500),
            ..PostgresOptions::default()
        };
        let store = PostgresStore::connect_with(&url(), &options)
            .unwrap_or_else(|e| panic!("PostgreSQL at `{}`: {e}", url()));
        let input = serde_json::from_str("1").expect("JSON");
        store
            .create_instances(&[NewInstance::new("a", "o", input, 0)])
            .expect("creates");

        // One of the store's own connections takes the row and stalls.
        let stalled = store
            .block(|| async {
                let client = store.client().await?;
                client
                    .batch_execute(
                        &store.sql("BEGIN; SELECT 1 FROM §instances WHERE id = 'a' FOR UPDATE"),
                    )
                    .await
                    .map_err(classify)?;
                Ok::<_, StoreError>(client)
            })
            .expect("takes the row");

        let suspended = store.set_suspended("a", true, "held").expect("goes on");
        assert_eq!(suspended, Transition::Done);
        let after = store.block(|| async { stalled.simple_query("SELECT 1").await });
        assert!(after.is_err(), "the stalled session was ended");
        drop(stalled);
        store.drop_schema().expect("drops");
    }
}
