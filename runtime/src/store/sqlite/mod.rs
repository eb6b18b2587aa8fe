//! The embedded SQLite store: one file, WAL, `synchronous=FULL` by default.
//!
//! One connection per store, behind a mutex: inside a process writes are
//! serialized before they reach SQLite, and every write transaction starts
//! with `BEGIN IMMEDIATE`, so a transaction never meets `SQLITE_BUSY` halfway
//! (another process makes it wait up to the busy timeout at `BEGIN`).

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use crate::store::StoreError;

mod error;
mod group;
mod queries;

pub use error::SqliteError;

use group::GroupWriter;

/// Prepared statements kept per connection: more than the store's distinct
/// statements (about 70), so none is parsed again on its next use. With
/// rusqlite's default of 16, parsing SQL took a quarter of the CPU time of
/// a turn-heavy run (`perf` on the test kit's hourly-poll test).
const STATEMENT_CACHE: usize = 128;

/// Turns on SQLite's query planner stability guarantee: a cached statement
/// keeps its plan whatever values are bound. Without it, the bundled
/// SQLite (built with STAT4) compiles a statement again whenever a value
/// compared to an indexed column changes, which is every call here (the
/// time now, an instance id).
fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map(|_| ())
}

/// `PRAGMA application_id` of a durable database: "DURA".
const APPLICATION_ID: i32 = 0x4455_5241;
/// The schema this release reads and writes (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = 5;

const SCHEMA: &str = "
CREATE TABLE instances (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    status           TEXT NOT NULL,
    output           TEXT,
    failure          TEXT,
    reason           TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    history_len      INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lock_owner       TEXT,
    lock_until       INTEGER,
    next_message     INTEGER NOT NULL DEFAULT 0,
    consumed_through INTEGER,
    sum              INTEGER NOT NULL,
    custom_status    TEXT,
    custom_sum       INTEGER,
    execution        INTEGER NOT NULL DEFAULT 0,
    parent_id        TEXT,
    parent_seq       INTEGER,
    version          INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;
CREATE TABLE history (
    instance TEXT NOT NULL,
    idx      INTEGER NOT NULL,
    turn     INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    event    TEXT NOT NULL,
    sum      INTEGER NOT NULL,
    PRIMARY KEY (instance, idx)
) WITHOUT ROWID;
CREATE TABLE messages (
    instance   TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    event      TEXT NOT NULL,
    sum        INTEGER NOT NULL,
    timer      INTEGER,
    PRIMARY KEY (instance, seq)
) WITHOUT ROWID;
CREATE INDEX messages_due ON messages (visible_at, instance);
CREATE INDEX instances_created ON instances (created_at, id);
CREATE INDEX instances_updated ON instances (updated_at);
CREATE INDEX instances_parent ON instances (parent_id) WHERE parent_id IS NOT NULL;
CREATE TABLE message_keys (
    instance TEXT NOT NULL,
    key      TEXT NOT NULL,
    PRIMARY KEY (instance, key)
) WITHOUT ROWID;
CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance    TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    input       TEXT NOT NULL,
    retry       TEXT NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 0,
    failures    INTEGER NOT NULL DEFAULT 0,
    visible_at  INTEGER NOT NULL,
    lease_owner TEXT,
    sum         INTEGER NOT NULL,
    cancelled   INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    UNIQUE (instance, seq)
);
CREATE INDEX tasks_due ON tasks (visible_at, id);
";

/// Brings a version 4 database to version 5, in the transaction that checks
/// it: each instance's orchestrator version gets a column (read from its
/// `Started`, so that a build never takes an instance of a version newer
/// than it runs), and each activity call its last error. Columns are only
/// added, so a process of the release before, still running, reads on.
const MIGRATE_4_TO_5: &str = "
ALTER TABLE instances ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tasks ADD COLUMN last_error TEXT;
UPDATE instances SET version = coalesce(
    (SELECT json_extract(h.event, '$.Started.version') FROM history h
        WHERE h.instance = instances.id AND h.event LIKE '{\"Started\":%'
        ORDER BY h.idx DESC LIMIT 1),
    (SELECT json_extract(m.event, '$.Started.version') FROM messages m
        WHERE m.instance = instances.id AND m.event LIKE '{\"Started\":%'
        ORDER BY m.seq LIMIT 1),
    1)
WHERE substr(name, 1, 1) <> '@';
";

/// How hard SQLite works to make a commit survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// fsync on every commit: a committed turn survives power loss (the default).
    #[default]
    Full,
    /// fsync at checkpoints only: survives a process crash, may lose the
    /// last commits on power loss. Faster.
    Normal,
}

impl Synchronous {
    fn pragma_value(self) -> i64 {
        match self {
            Self::Full => 2,
            Self::Normal => 1,
        }
    }
}

/// Settings of a [`SqliteStore`].
///
/// ```
/// use durable::store::{SqliteOptions, Synchronous};
/// let mut options = SqliteOptions::default();
/// options.synchronous = Synchronous::Normal;
/// options.max_size = Some(1 << 30);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// Durability of each commit.
    pub synchronous: Synchronous,
    /// How long to wait for another process's write lock.
    pub busy_timeout: Duration,
    /// The largest the file may grow, in bytes; past it writes fail with
    /// [`StoreError::Full`], as on a full disk. `None`: no cap.
    pub max_size: Option<u64>,
    /// The store's clock: the machine's, or a test's virtual one.
    pub(crate) clock: crate::clock::Clock,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            max_size: None,
            clock: crate::clock::Clock::default(),
        }
    }
}

/// The embedded store: a SQLite file (or `:memory:`).
pub struct SqliteStore {
    writer: GroupWriter,
    /// A second connection for reads, so that a status or history read
    /// never waits behind a commit's fsync (WAL lets it read meanwhile).
    /// `None` for `:memory:`, where a second connection is another database.
    reader: Option<Mutex<Connection>>,
    /// Its clock (see [`Store::now`](crate::store::Store::now)).
    pub(super) clock: crate::clock::Clock,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// Classifies a SQLite error by its code, never by its message.
fn classify(e: rusqlite::Error, path: &str) -> StoreError {
    // A column of the wrong type or bytes that are not UTF-8: a damaged row.
    if matches!(
        e,
        rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::Utf8Error(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
    ) {
        return StoreError::Corrupt {
            what: path.to_owned(),
            detail: e.to_string(),
        };
    }
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::backend(SqliteError::NotADatabase {
            path: path.to_owned(),
        }),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
        Some(ErrorCode::DiskFull) => StoreError::Full(e.to_string()),
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly(e.to_string()),
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            what: path.to_owned(),
            detail: e.to_string(),
        },
        _ => StoreError::backend(SqliteError::Sqlite(e)),
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        classify(e, "the database")
    }
}

/// Checks durable's mark on a database that is not empty: its application
/// id and schema version.
fn check_mark(app_id: i32, version: i64, path: &str) -> Result<(), StoreError> {
    if app_id != APPLICATION_ID {
        return Err(StoreError::ForeignDatabase {
            location: format!("`{path}`"),
            detail: format!("a SQLite database with application_id {app_id:#x}"),
        });
    }
    if version != SCHEMA_VERSION {
        return Err(StoreError::SchemaVersion {
            location: format!("`{path}`"),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

fn pragma(name: &'static str, expected: impl ToString, found: impl ToString) -> StoreError {
    StoreError::backend(SqliteError::Pragma {
        name,
        expected: expected.to_string(),
        found: found.to_string(),
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default options.
    ///
    /// # Errors
    /// See [`SqliteStore::open_with`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, &SqliteOptions::default())
    }

    /// Opens (creating if needed) the database at `path`; `":memory:"` is a
    /// private in-memory database.
    ///
    /// # Errors
    /// [`StoreError::ForeignDatabase`] for another application's database,
    /// [`StoreError::SchemaVersion`] for another schema version (nothing is
    /// migrated or changed), [`SqliteError::NotADatabase`] for a file that is
    /// not SQLite and [`SqliteError::Pragma`] when a setting does not take
    /// (both as [`StoreError::Backend`]), and I/O errors.
    pub fn open_with(path: impl AsRef<Path>, options: &SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let memory = shown == ":memory:";
        let conn = Connection::open(path).map_err(|e| classify(e, &shown))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        stable_plans(&conn).map_err(|e| classify(e, &shown))?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(|e| classify(e, &shown))?;
        let busy_ms = i64::try_from(options.busy_timeout.as_millis()).unwrap_or(i64::MAX);
        let found: i64 = conn
            .pragma_query_value(None, "busy_timeout", |r| r.get(0))
            .map_err(|e| classify(e, &shown))?;
        if found != busy_ms {
            return Err(pragma(
                "busy_timeout",
                busy_ms.to_string(),
                found.to_string(),
            ));
        }
        // The first read of the file: a file that is not SQLite fails here.
        let app_id: i32 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| classify(e, &shown))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
            .map_err(|e| classify(e, &shown))?;
        let want_mode = if memory { "memory" } else { "wal" };
        if !mode.eq_ignore_ascii_case(want_mode) {
            return Err(pragma("journal_mode", want_mode.to_owned(), mode));
        }
        // SQLite quietly opens a file it may not write read-only; say so now
        // rather than at the first commit.
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(|e| classify(e, &shown))?
        {
            return Err(StoreError::ReadOnly(format!(
                "`{shown}` cannot be opened for writing"
            )));
        }
        // Savepoints (one per write in a group commit) journal to memory,
        // not to a temp file per transaction.
        conn.pragma_update(None, "temp_store", 2)
            .map_err(|e| classify(e, &shown))?;
        let temp: i64 = conn
            .pragma_query_value(None, "temp_store", |r| r.get(0))
            .map_err(|e| classify(e, &shown))?;
        if temp != 2 {
            return Err(pragma(
                "temp_store",
                "2 (memory)".to_owned(),
                temp.to_string(),
            ));
        }
        let sync = options.synchronous.pragma_value();
        conn.pragma_update(None, "synchronous", sync)
            .map_err(|e| classify(e, &shown))?;
        let found: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .map_err(|e| classify(e, &shown))?;
        if found != sync {
            return Err(pragma("synchronous", sync.to_string(), found.to_string()));
        }
        if let Some(bytes) = options.max_size {
            let page: i64 = conn
                .pragma_query_value(None, "page_size", |r| r.get(0))
                .map_err(|e| classify(e, &shown))?;
            let pages = i64::try_from(bytes).unwrap_or(i64::MAX) / page.max(1);
            let found: i64 = conn
                .pragma_update_and_check(None, "max_page_count", pages, |r| r.get(0))
                .map_err(|e| classify(e, &shown))?;
            // SQLite never sets the cap below the file's current size.
            if found > pages.max(1) && found != pages {
                let current: i64 = conn
                    .pragma_query_value(None, "page_count", |r| r.get(0))
                    .map_err(|e| classify(e, &shown))?;
                if found != current {
                    return Err(pragma(
                        "max_page_count",
                        pages.to_string(),
                        found.to_string(),
                    ));
                }
            }
        }
        let mut store = Self {
            writer: GroupWriter::new(conn),
            reader: None,
            clock: options.clock.clone(),
        };
        store.check_schema(app_id, &shown)?;
        if !memory {
            let reader = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| classify(e, &shown))?;
            reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            stable_plans(&reader).map_err(|e| classify(e, &shown))?;
            reader
                .busy_timeout(options.busy_timeout)
                .map_err(|e| classify(e, &shown))?;
            store.reader = Some(Mutex::new(reader));
        }
        Ok(store)
    }

    /// Opens the database at `path` to read it only (the database check):
    /// nothing is created, converted or written. `None` when the file
    /// holds no database at all (it is empty).
    ///
    /// # Errors
    /// As [`SqliteStore::open_with`]; a missing file is an I/O error.
    pub(crate) fn open_read_only(
        path: &Path,
        options: &SqliteOptions,
    ) -> Result<Option<Self>, StoreError> {
        let shown = path.display().to_string();
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(e, &shown))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        stable_plans(&conn).map_err(|e| classify(e, &shown))?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(|e| classify(e, &shown))?;
        // The first read of the file: a file that is not SQLite fails here.
        let app_id: i32 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| classify(e, &shown))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| classify(e, &shown))?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| classify(e, &shown))?;
        if app_id == 0 && version == 0 && tables == 0 {
            return Ok(None);
        }
        // The release before's schema reads as it is: what a check reads
        // (instances, history, messages) did not change.
        if !(app_id == APPLICATION_ID && version == 4) {
            check_mark(app_id, version, &shown)?;
        }
        // Reads go through the one read-only connection.
        Ok(Some(Self {
            writer: GroupWriter::new(conn),
            reader: None,
            clock: options.clock.clone(),
        }))
    }

    /// Creates the schema in an empty database, or checks an existing one.
    fn check_schema(&self, app_id: i32, path: &str) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| classify(e, path))?;
        // Read again inside the write lock: another process may have just
        // created the schema.
        let app_id_now: i32 = tx.pragma_query_value(None, "application_id", |r| r.get(0))?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        let _ = app_id;
        if app_id_now == 0 && version == 0 && tables == 0 {
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
            return Ok(());
        }
        if app_id_now == APPLICATION_ID && version == 4 {
            tx.execute_batch(MIGRATE_4_TO_5)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
            return Ok(());
        }
        check_mark(app_id_now, version, path)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock()
    }

    /// The connection for reads: the reader, or for `:memory:` the writer.
    fn read(&self) -> MutexGuard<'_, Connection> {
        match &self.reader {
            Some(reader) => reader.lock().unwrap_or_else(PoisonError::into_inner),
            None => self.writer.lock(),
        }
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`), shared with the
    /// writes queued meanwhile, and returns once it committed.
    fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.writer.write(f)
    }

    /// As [`SqliteStore::write`], for a small write that another caller's
    /// transaction may carry: concurrent client calls share one commit.
    fn write_shared<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.write_shared(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the fetch scanned the whole messages table (43-66 ms a
    /// call with a million pending timers). Its plan must search the
    /// due-time index, not scan.
    #[test]
    fn the_fetch_of_due_work_searches_the_due_time_index() {
        let store = SqliteStore::open(":memory:").expect("opens");
        let conn = store.lock();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", queries::FETCH_DUE))
            .expect("prepares")
            .query_map(rusqlite::params![0, 1, "o", "[]"], |r| {
                r.get::<_, String>(3)
            })
            .expect("runs")
            .collect::<Result<_, _>>()
            .expect("reads");
        assert!(
            plan.iter()
                .any(|step| step.contains("USING COVERING INDEX messages_due")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|step| step == "SCAN m"), "{plan:?}");
    }
}
