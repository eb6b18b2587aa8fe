//! The embedded SQLite store: one file, WAL, `synchronous=FULL` by default.
//!
//! One connection per store, behind a mutex: inside a process writes are
//! serialized before they reach SQLite, and every write transaction starts
//! with `BEGIN IMMEDIATE`, so a transaction never meets `SQLITE_BUSY` halfway
//! (another process makes it wait up to the busy timeout at `BEGIN`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{
    params, Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior,
};

use super::{
    CommitOutcome, Created, Due, Enqueued, InstanceWork, LeasedTask, NewInstance, Store,
    TaskOutcome, TaskResult, TurnCommit,
};
use crate::error::{Failure, StoreError};
use crate::history::{self, Event, HistoryRecord, Payload};
use crate::status::{InstanceStatus, RuntimeStatus};

/// `PRAGMA application_id` of a durable database: "DURA".
const APPLICATION_ID: i32 = 0x4455_5241;
/// The schema this release reads and writes (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE instances (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    output      TEXT,
    failure     TEXT,
    reason      TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    history_len INTEGER NOT NULL DEFAULT 0,
    lock_owner  TEXT,
    lock_until  INTEGER
) WITHOUT ROWID;
CREATE TABLE history (
    instance TEXT NOT NULL,
    idx      INTEGER NOT NULL,
    turn     INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    event    TEXT NOT NULL,
    PRIMARY KEY (instance, idx)
) WITHOUT ROWID;
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    instance   TEXT NOT NULL,
    visible_at INTEGER NOT NULL,
    event      TEXT NOT NULL
);
CREATE INDEX messages_due ON messages (visible_at, id);
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
    UNIQUE (instance, seq)
);
CREATE INDEX tasks_due ON tasks (visible_at, id);
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
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Durability of each commit.
    pub synchronous: Synchronous,
    /// How long to wait for another process's write lock.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The embedded store: a SQLite file (or `:memory:`).
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// Classifies a SQLite error by its code, never by its message.
fn classify(e: rusqlite::Error, path: &str) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotADatabase {
            path: path.to_owned(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
        Some(ErrorCode::DiskFull) => StoreError::Full(e.to_string()),
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly(e.to_string()),
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            what: path.to_owned(),
            detail: e.to_string(),
        },
        _ => StoreError::Sqlite(e),
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        classify(e, "the database")
    }
}

fn corrupt(what: impl Into<String>, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        detail: detail.to_string(),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    // Our own event types always encode; an error here is a bug, reported as such.
    serde_json::to_string(value).map_err(|e| corrupt("an event being written", e))
}

fn decode_event(text: &str, what: impl FnOnce() -> String) -> Result<Event, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what(), e))
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
    /// [`StoreError::NotADatabase`] for a file that is not SQLite,
    /// [`StoreError::ForeignDatabase`] for another application's database,
    /// [`StoreError::SchemaVersion`] for another schema version (nothing is
    /// migrated or changed), [`StoreError::Pragma`] when a setting does not
    /// take, and I/O errors.
    pub fn open_with(path: impl AsRef<Path>, options: &SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let memory = shown == ":memory:";
        let conn = Connection::open(path).map_err(|e| classify(e, &shown))?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(|e| classify(e, &shown))?;
        let busy_ms = i64::try_from(options.busy_timeout.as_millis()).unwrap_or(i64::MAX);
        let found: i64 = conn
            .pragma_query_value(None, "busy_timeout", |r| r.get(0))
            .map_err(|e| classify(e, &shown))?;
        if found != busy_ms {
            return Err(StoreError::Pragma {
                name: "busy_timeout",
                expected: busy_ms.to_string(),
                found: found.to_string(),
            });
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
            return Err(StoreError::Pragma {
                name: "journal_mode",
                expected: want_mode.to_owned(),
                found: mode,
            });
        }
        let sync = options.synchronous.pragma_value();
        conn.pragma_update(None, "synchronous", sync)
            .map_err(|e| classify(e, &shown))?;
        let found: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .map_err(|e| classify(e, &shown))?;
        if found != sync {
            return Err(StoreError::Pragma {
                name: "synchronous",
                expected: sync.to_string(),
                found: found.to_string(),
            });
        }
        let store = Self {
            conn: Mutex::new(conn),
        };
        store.check_schema(app_id, &shown)?;
        Ok(store)
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
        if app_id_now != APPLICATION_ID {
            return Err(StoreError::ForeignDatabase {
                path: path.to_owned(),
                found: app_id_now,
            });
        }
        if version != SCHEMA_VERSION {
            return Err(StoreError::SchemaVersion {
                path: path.to_owned(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection leaves any open transaction
        // to be rolled back by its drop: the connection is still sound.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction and commits it.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

fn status_of(text: &str, id: &str) -> Result<RuntimeStatus, StoreError> {
    text.parse()
        .map_err(|e| corrupt(format!("the status of instance `{id}`"), e))
}

fn insert_history(
    tx: &Transaction<'_>,
    instance: &str,
    rec: &HistoryRecord,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO history (instance, idx, turn, at, event) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        instance,
        count(rec.index),
        count(rec.turn),
        rec.at,
        to_json(&rec.event)?
    ])?;
    Ok(())
}

fn insert_message(
    tx: &Transaction<'_>,
    instance: &str,
    event: &Event,
    visible_at: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT INTO messages (instance, visible_at, event) VALUES (?1, ?2, ?3)")?
        .execute(params![instance, visible_at, to_json(event)?])?;
    Ok(())
}

impl Store for SqliteStore {
    fn create_instance(&self, new: &NewInstance) -> Result<Created, StoreError> {
        self.write(|tx| {
            let n = tx
                .prepare_cached(
                    "INSERT INTO instances (id, name, status, created_at, updated_at) \
                     VALUES (?1, ?2, 'pending', ?3, ?3) ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![new.id, new.name, new.now])?;
            if n == 0 {
                return Ok(Created::Exists);
            }
            let started = Event::Started {
                name: new.name.clone(),
                input: new.input.clone(),
            };
            insert_message(tx, &new.id, &started, 0)?;
            Ok(Created::Created)
        })
    }

    fn enqueue(&self, instance: &str, event: &Event) -> Result<Enqueued, StoreError> {
        self.write(|tx| {
            let status: Option<String> = tx
                .prepare_cached("SELECT status FROM instances WHERE id = ?1")?
                .query_row([instance], |r| r.get(0))
                .optional()?;
            let Some(status) = status else {
                return Ok(Enqueued::NotFound);
            };
            let status = status_of(&status, instance)?;
            if status.is_finished() {
                return Ok(Enqueued::Finished(status));
            }
            insert_message(tx, instance, event, 0)?;
            Ok(Enqueued::Queued)
        })
    }

    fn fetch_work(
        &self,
        owner: &str,
        now: i64,
        lock_until: i64,
        limit: usize,
    ) -> Result<Vec<InstanceWork>, StoreError> {
        self.write(|tx| {
            let mut rows: Vec<(i64, String, String)> = Vec::new();
            {
                let mut stmt = tx.prepare_cached(
                    "SELECT m.id, m.instance, m.event FROM messages m \
                     LEFT JOIN instances i ON i.id = m.instance \
                     WHERE m.visible_at <= ?1 AND (i.lock_until IS NULL OR i.lock_until <= ?1 \
                        OR (i.lock_owner = ?3 AND i.status <> 'stuck')) \
                     ORDER BY m.visible_at, m.id LIMIT ?2",
                )?;
                let mut q = stmt.query(params![
                    now,
                    i64::try_from(limit).unwrap_or(i64::MAX),
                    owner
                ])?;
                while let Some(r) = q.next()? {
                    rows.push((r.get(0)?, r.get(1)?, r.get(2)?));
                }
            }
            let mut order: Vec<String> = Vec::new();
            let mut by_instance: HashMap<String, Vec<(i64, Event)>> = HashMap::new();
            for (id, instance, text) in rows {
                let event =
                    decode_event(&text, || format!("message {id} of instance `{instance}`"))?;
                by_instance
                    .entry(instance.clone())
                    .or_insert_with(|| {
                        order.push(instance.clone());
                        Vec::new()
                    })
                    .push((id, event));
            }
            let mut out = Vec::with_capacity(order.len());
            let mut select =
                tx.prepare_cached("SELECT status, history_len FROM instances WHERE id = ?1")?;
            let mut lock = tx.prepare_cached(
                "UPDATE instances SET lock_owner = ?2, lock_until = ?3 WHERE id = ?1",
            )?;
            for instance in order {
                let mut messages = by_instance.remove(&instance).unwrap_or_default();
                messages.sort_by_key(|(id, _)| *id);
                let row: Option<(String, i64)> = select
                    .query_row([&instance], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let Some((status, len)) = row else {
                    out.push(InstanceWork {
                        id: instance,
                        status: None,
                        history_len: 0,
                        messages,
                    });
                    continue;
                };
                lock.execute(params![instance, owner, lock_until])?;
                out.push(InstanceWork {
                    status: Some(status_of(&status, &instance)?),
                    history_len: u64::try_from(len)
                        .map_err(|e| corrupt(format!("history_len of `{instance}`"), e))?,
                    id: instance,
                    messages,
                });
            }
            Ok(out)
        })
    }

    fn history(&self, instance: &str) -> Result<Vec<HistoryRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT idx, turn, at, event FROM history WHERE instance = ?1 ORDER BY idx",
        )?;
        let mut q = stmt.query([instance])?;
        let mut out = Vec::new();
        while let Some(r) = q.next()? {
            let (idx, turn, at, text): (i64, i64, i64, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            let what = || format!("history event {idx} of instance `{instance}`");
            let index = u64::try_from(idx).map_err(|e| corrupt(what(), e))?;
            if index != out.len() as u64 {
                return Err(corrupt(what(), format!("expected index {}", out.len())));
            }
            out.push(HistoryRecord {
                index,
                turn: u64::try_from(turn).map_err(|e| corrupt(what(), e))?,
                at,
                event: decode_event(&text, what)?,
            });
        }
        Ok(out)
    }

    fn commit_turns(
        &self,
        owner: &str,
        turns: &[TurnCommit],
    ) -> Result<Vec<CommitOutcome>, StoreError> {
        self.write(|tx| {
            let mut outcomes = Vec::with_capacity(turns.len());
            for turn in turns {
                let new_len = turn.expected_len + turn.events.len() as u64;
                let changed = if let Some(s) = &turn.status {
                    let output = s.output.as_ref().map(|p| p.json().to_owned());
                    let failure = s.failure.as_ref().map(to_json).transpose()?;
                    tx.prepare_cached(
                        "UPDATE instances SET history_len = ?3, status = ?4, output = ?5, failure = ?6, \
                         reason = ?7, updated_at = ?8, lock_owner = NULL, lock_until = NULL \
                         WHERE id = ?1 AND history_len = ?2",
                    )?
                    .execute(params![
                        turn.instance,
                        count(turn.expected_len),
                        count(new_len),
                        s.status.as_str(),
                        output,
                        failure,
                        s.reason,
                        s.now
                    ])?
                } else {
                    tx.prepare_cached(
                        "UPDATE instances SET lock_owner = NULL, lock_until = NULL \
                         WHERE id = ?1 AND history_len = ?2 AND (lock_owner IS NULL OR lock_owner = ?3)",
                    )?
                    .execute(params![turn.instance, count(turn.expected_len), owner])?
                };
                // A turn for an unknown instance only drops its stray messages.
                let unknown = turn.status.is_none() && turn.events.is_empty() && changed == 0 && {
                    let exists: Option<i64> = tx
                        .prepare_cached("SELECT 1 FROM instances WHERE id = ?1")?
                        .query_row([&turn.instance], |r| r.get(0))
                        .optional()?;
                    exists.is_none()
                };
                if changed == 0 && !unknown {
                    outcomes.push(CommitOutcome::Conflict);
                    continue;
                }
                for rec in &turn.events {
                    insert_history(tx, &turn.instance, rec)?;
                }
                for task in &turn.tasks {
                    tx.prepare_cached(
                        "INSERT INTO tasks (instance, seq, name, input, retry, visible_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                    )?
                    .execute(params![
                        turn.instance,
                        count(task.seq),
                        task.name,
                        task.input.json(),
                        to_json(&task.retry)?
                    ])?;
                }
                for m in &turn.messages {
                    insert_message(tx, &m.instance, &m.event, m.visible_at)?;
                }
                let mut del = tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
                for id in &turn.consumed {
                    del.execute([id])?;
                }
                outcomes.push(CommitOutcome::Committed);
            }
            Ok(outcomes)
        })
    }

    fn mark_stuck(
        &self,
        owner: &str,
        instance: &str,
        failure: &Failure,
        now: i64,
        retry_at: i64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE instances SET status = 'stuck', failure = ?2, updated_at = ?3, \
                 lock_owner = ?4, lock_until = ?5 WHERE id = ?1 AND (lock_owner IS NULL OR lock_owner = ?4)",
            )?
            .execute(params![instance, to_json(failure)?, now, owner, retry_at])?;
            Ok(())
        })
    }

    fn fetch_tasks(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<LeasedTask>, StoreError> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE tasks SET lease_owner = ?1, visible_at = ?2, attempt = attempt + 1 \
                 WHERE id IN (SELECT id FROM tasks WHERE visible_at <= ?3 ORDER BY visible_at, id LIMIT ?4) \
                 RETURNING id, instance, seq, name, input, retry, attempt, failures",
            )?;
            let mut q = stmt.query(params![
                owner,
                lease_until,
                now,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ])?;
            let mut out = Vec::new();
            while let Some(r) = q.next()? {
                let id: i64 = r.get(0)?;
                let what = || format!("task {id}");
                let seq: i64 = r.get(2)?;
                let retry: String = r.get(5)?;
                let attempt: i64 = r.get(6)?;
                let failures: i64 = r.get(7)?;
                out.push(LeasedTask {
                    id,
                    instance: r.get(1)?,
                    seq: u64::try_from(seq).map_err(|e| corrupt(what(), e))?,
                    name: r.get(3)?,
                    input: Payload::from_json(r.get(4)?).map_err(|e| corrupt(what(), e))?,
                    retry: serde_json::from_str(&retry).map_err(|e| corrupt(what(), e))?,
                    attempt: u32::try_from(attempt).map_err(|e| corrupt(what(), e))?,
                    failures: u32::try_from(failures).map_err(|e| corrupt(what(), e))?,
                });
            }
            out.sort_by_key(|t| t.id);
            Ok(out)
        })
    }

    fn finish_tasks(&self, owner: &str, results: &[TaskResult]) -> Result<(), StoreError> {
        self.write(|tx| {
            for res in results {
                match &res.outcome {
                    TaskOutcome::Done(event) => {
                        let n = tx
                            .prepare_cached(
                                "DELETE FROM tasks WHERE id = ?1 AND lease_owner = ?2 AND attempt = ?3",
                            )?
                            .execute(params![res.id, owner, res.attempt])?;
                        if n == 1 {
                            insert_message(tx, &res.instance, event, 0)?;
                        }
                    }
                    TaskOutcome::Retry {
                        visible_at,
                        failures,
                    } => {
                        tx.prepare_cached(
                            "UPDATE tasks SET visible_at = ?4, failures = ?5, lease_owner = NULL \
                             WHERE id = ?1 AND lease_owner = ?2 AND attempt = ?3",
                        )?
                        .execute(params![res.id, owner, res.attempt, visible_at, failures])?;
                    }
                }
            }
            Ok(())
        })
    }

    fn renew_tasks(&self, owner: &str, ids: &[i64], lease_until: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE tasks SET visible_at = ?3 WHERE id = ?1 AND lease_owner = ?2",
            )?;
            for id in ids {
                stmt.execute(params![id, owner, lease_until])?;
            }
            Ok(())
        })
    }

    fn release_tasks(&self, owner: &str, ids: &[i64]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE tasks SET visible_at = 0, lease_owner = NULL WHERE id = ?1 AND lease_owner = ?2",
            )?;
            for id in ids {
                stmt.execute(params![id, owner])?;
            }
            Ok(())
        })
    }

    fn next_due(&self) -> Result<Due, StoreError> {
        let conn = self.lock();
        let message = conn
            .prepare_cached("SELECT min(visible_at) FROM messages")?
            .query_row([], |r| r.get(0))?;
        let task = conn
            .prepare_cached("SELECT min(visible_at) FROM tasks")?
            .query_row([], |r| r.get(0))?;
        Ok(Due { message, task })
    }

    fn status(&self, instance: &str) -> Result<Option<InstanceStatus>, StoreError> {
        let conn = self.lock();
        let row = conn
            .prepare_cached(
                "SELECT name, status, output, failure, reason, created_at, updated_at, history_len \
                 FROM instances WHERE id = ?1",
            )?
            .query_row([instance], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            })
            .optional()?;
        let Some((name, status, output, failure, reason, created, updated, len)) = row else {
            return Ok(None);
        };
        let what = || format!("instance `{instance}`");
        Ok(Some(InstanceStatus {
            id: instance.to_owned(),
            name,
            runtime_status: status_of(&status, instance)?,
            output: output
                .map(Payload::from_json)
                .transpose()
                .map_err(|e| corrupt(what(), e))?,
            failure: failure
                .map(|f| serde_json::from_str(&f))
                .transpose()
                .map_err(|e| corrupt(what(), e))?,
            terminated: reason,
            created_at: history::system_time(created),
            updated_at: history::system_time(updated),
            history_len: u64::try_from(len).map_err(|e| corrupt(what(), e))?,
        }))
    }
}
