//! The SQLite store's queries: one `BEGIN IMMEDIATE` transaction per
//! [`Store`] call. Every row that carries a payload also carries a checksum
//! of it, checked on read. The store stores: what to do about a damaged
//! row, a stuck instance or a finished one is the runtime's decision, told
//! through the call's arguments.

use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::SqliteStore;
use crate::history::{self, ChildFailure, Event, Failure, HistoryRecord, Payload, RuntimeStatus};
use crate::status::InstanceStatus;
use crate::store::rows::{
    checksum_with, corrupt, count, decode_event, instance_sum, message_sum, micros_from_now,
    seq_of, status_of, task_sum, to_json, until, verify_with,
};
use crate::store::{
    CommitOutcome, Created, Due, Enqueued, InstanceWork, LeasedTask, ListQuery, Lookahead,
    Messages, Names, NewInstance, Outgoing, Progress, Restart, Store, StoreError, TaskOutcome,
    TaskRef, TaskResult, Transition, TurnCommit,
};

/// The instances with due messages: driven by the due-time index (named,
/// because the planner would rather scan the table in instance order to
/// group without sorting, which costs every pending message), so the cost
/// is the due messages, never the pending ones. An instance whose
/// scheduled start is still to come is left out here, not after the
/// limit: events due for it must not crowd out ready work.
pub(super) const FETCH_DUE: &str = "SELECT m.instance FROM messages m INDEXED BY messages_due \
     CROSS JOIN instances i ON i.id = m.instance \
     WHERE m.visible_at <= ?1 \
       AND (i.lock_until IS NULL OR i.lock_until <= ?1 \
            OR (i.lock_owner = ?3 AND i.status <> 'stuck')) \
       AND (i.version <= (SELECT value FROM json_each(?4) WHERE key = i.name) \
            OR (i.name IN (SELECT key FROM json_each(?4)) \
                AND EXISTS (SELECT 1 FROM messages t WHERE t.instance = i.id \
                    AND t.visible_at <= ?1 AND t.event LIKE '{\"Terminated\":%'))) \
       AND i.status <> 'suspended' \
       AND (i.history_len > 0 OR substr(i.name, 1, 1) = '@' \
            OR (SELECT f.visible_at FROM messages f WHERE f.instance = i.id \
                ORDER BY f.seq LIMIT 1) <= ?1) \
     GROUP BY m.instance ORDER BY min(m.visible_at) LIMIT ?2";

fn insert_history(tx: &Connection, instance: &str, rec: &HistoryRecord) -> Result<(), StoreError> {
    let event = to_json(&rec.event)?;
    let (idx, turn) = (count(rec.index), count(rec.turn));
    let sum = checksum_with(&[idx, turn, rec.at], &[Some(instance), Some(&event)]);
    tx.prepare_cached(
        "INSERT INTO history (instance, idx, turn, at, event, sum) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![instance, idx, turn, rec.at, event, sum])?;
    Ok(())
}

/// Queues a message for a live instance under its next sequence number;
/// `None` (nothing written) when the instance is gone or finished.
fn insert_message(
    tx: &Connection,
    instance: &str,
    event: &Event,
    visible_at: i64,
) -> Result<Option<u64>, StoreError> {
    insert_messages(tx, instance, std::iter::once((event, visible_at)), 1)
}

/// Queues `n` messages for a live instance under consecutive sequence
/// numbers taken in one step; the first one's, or `None` (nothing written)
/// when the instance is gone or finished.
fn insert_messages<'a>(
    tx: &Connection,
    instance: &str,
    messages: impl Iterator<Item = (&'a Event, i64)>,
    n: usize,
) -> Result<Option<u64>, StoreError> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let first: Option<i64> = tx
        .prepare_cached(
            "UPDATE instances SET next_message = next_message + ?2 \
             WHERE id = ?1 AND status IN ('pending', 'running', 'stuck', 'suspended') \
             RETURNING next_message - ?2",
        )?
        .query_row(params![instance, n], |r| r.get(0))
        .optional()?;
    let Some(first) = first else { return Ok(None) };
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (instance, seq, visible_at, event, sum, timer) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for ((event, visible_at), seq) in messages.zip(first..) {
        // A timer's message is found again by its sequence number, to be
        // cancelled.
        let timer = match event {
            Event::TimerFired { seq } => Some(count(*seq)),
            _ => None,
        };
        let event = to_json(event)?;
        let sum = message_sum(instance, seq, visible_at, &event);
        insert.execute(params![instance, seq, visible_at, event, sum, timer])?;
    }
    Ok(Some(u64::try_from(first).map_err(|e| {
        corrupt(format!("instance `{instance}`"), e)
    })?))
}

/// Reads one leased task row, checking its checksum.
fn leased_task(r: &Row<'_>) -> Result<LeasedTask, StoreError> {
    let id: i64 = r.get(0)?;
    let what = || format!("task {id}");
    let instance: String = r.get(1)?;
    let seq: i64 = r.get(2)?;
    let name: String = r.get(3)?;
    let input: String = r.get(4)?;
    let retry: String = r.get(5)?;
    let attempt: i64 = r.get(6)?;
    let failures: i64 = r.get(7)?;
    let sum: i64 = r.get(8)?;
    if task_sum(&instance, seq, &name, &input, &retry) != sum {
        return Err(corrupt(what(), "the row does not match its checksum"));
    }
    Ok(LeasedTask {
        id,
        instance,
        seq: u64::try_from(seq).map_err(|e| corrupt(what(), e))?,
        name,
        input: Payload::from_json(input).map_err(|e| corrupt(what(), e))?,
        retry: serde_json::from_str(&retry).map_err(|e| corrupt(what(), e))?,
        attempt: u32::try_from(attempt).map_err(|e| corrupt(what(), e))?,
        failures: u32::try_from(failures).map_err(|e| corrupt(what(), e))?,
    })
}

/// Up to `limit` (all: `None`) events of `instance`'s history from index
/// `from`, each checked; `None` if there is no such instance.
fn read_history(
    conn: &Connection,
    instance: &str,
    from: u64,
    limit: Option<usize>,
) -> Result<Option<Vec<HistoryRecord>>, StoreError> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM instances WHERE id = ?1")?
        .exists([instance])?;
    if !exists {
        return Ok(None);
    }
    // From the start, every row is read: one with a damaged (say negative)
    // index then fails the read rather than being passed over.
    let mut stmt = conn.prepare_cached(if from == 0 {
        "SELECT idx, turn, at, event, sum FROM history WHERE instance = ?1 AND ?2 = 0 \
         ORDER BY idx LIMIT ?3"
    } else {
        "SELECT idx, turn, at, event, sum FROM history WHERE instance = ?1 AND idx >= ?2 \
         ORDER BY idx LIMIT ?3"
    })?;
    // SQLite reads a negative limit as none.
    let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let mut q = stmt.query(params![instance, count(from), limit])?;
    let mut out: Vec<HistoryRecord> = Vec::new();
    while let Some(r) = q.next()? {
        let numbers = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(4)?);
        let next = (from + out.len() as u64, out.last().map_or(0, |r| r.turn));
        // Borrowed from SQLite's row: no copy per event.
        let text = match r.get_ref(3)?.as_str() {
            Ok(text) => text,
            Err(e) => {
                let what = format!(
                    "history event {} of instance `{}`",
                    numbers.0,
                    crate::ids::Escaped(instance)
                );
                return Err(corrupt(what, e));
            }
        };
        out.push(crate::store::rows::history_record(
            instance, next, numbers, text,
        )?);
    }
    Ok(Some(out))
}

/// The names a process runs, as a JSON array for `json_each`.
fn names_json(names: Names<'_>) -> Result<String, StoreError> {
    to_json(&names.names().collect::<Vec<_>>())
}

/// The names a process runs with the newest version of each, as a JSON
/// object for `json_each` (key: the name, value: the version).
fn versions_json(names: Names<'_>) -> Result<String, StoreError> {
    to_json(
        &names
            .0
            .iter()
            .copied()
            .collect::<std::collections::HashMap<_, _>>(),
    )
}

/// What `fetch_work` reads of an instance row, decoded and checked.
struct InstanceRow {
    name: String,
    status: RuntimeStatus,
    history_len: u64,
    attempts: i64,
    held: bool,
    consumed_through: Option<u64>,
    execution: u64,
    output: Option<Payload>,
}

fn read_instance_row(
    tx: &Connection,
    id: &str,
    owner: &str,
    now: i64,
) -> Result<InstanceRow, StoreError> {
    let what = || format!("instance `{}`", crate::ids::Escaped(id));
    // Read as it is stored; a column of the wrong type is damage, reported
    // for this instance (the query itself failing is a store error).
    struct Raw {
        name: String,
        status: String,
        output: Option<String>,
        failure: Option<String>,
        reason: Option<String>,
        len: i64,
        attempts: i64,
        lock_owner: Option<String>,
        lock_until: Option<i64>,
        consumed: Option<i64>,
        sum: i64,
        execution: i64,
    }
    let raw = tx
        .prepare_cached(
            "SELECT name, status, output, failure, reason, history_len, attempts, lock_owner, \
             lock_until, consumed_through, sum, execution FROM instances WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok((|| {
                Ok::<_, rusqlite::Error>(Raw {
                    name: r.get(0)?,
                    status: r.get(1)?,
                    output: r.get(2)?,
                    failure: r.get(3)?,
                    reason: r.get(4)?,
                    len: r.get(5)?,
                    attempts: r.get(6)?,
                    lock_owner: r.get(7)?,
                    lock_until: r.get(8)?,
                    consumed: r.get(9)?,
                    sum: r.get(10)?,
                    execution: r.get(11)?,
                })
            })())
        })?
        .map_err(|e| corrupt(what(), e))?;
    verify_with(
        raw.sum,
        &[raw.len],
        &[
            Some(&raw.name),
            Some(&raw.status),
            raw.output.as_deref(),
            raw.failure.as_deref(),
            raw.reason.as_deref(),
        ],
        what,
    )?;
    Ok(InstanceRow {
        status: status_of(&raw.status, id)?,
        history_len: seq_of(raw.len, what)?,
        attempts: raw.attempts,
        held: raw.lock_owner.as_deref() == Some(owner) && raw.lock_until.is_some_and(|t| t > now),
        consumed_through: raw.consumed.map(|c| seq_of(c, what)).transpose()?,
        execution: seq_of(raw.execution, what)?,
        output: raw
            .output
            .map(|o| Payload::from_json(o).map_err(|e| corrupt(what(), e)))
            .transpose()?,
        name: raw.name,
    })
}

/// The due messages of one instance, oldest first, checked.
fn due_messages(
    tx: &Connection,
    instance: &str,
    now: i64,
) -> Result<Vec<(u64, Event)>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT seq, event, sum, visible_at FROM messages \
         WHERE instance = ?1 AND visible_at <= ?2 ORDER BY seq",
    )?;
    let mut q = stmt.query(params![instance, now])?;
    let mut out = Vec::new();
    while let Some(r) = q.next()? {
        let what = || format!("a message of instance `{}`", crate::ids::Escaped(instance));
        let seq: i64 = r.get(0).map_err(|e| corrupt(what(), e))?;
        let what = || {
            format!(
                "message {seq} of instance `{}`",
                crate::ids::Escaped(instance)
            )
        };
        let text = r.get_ref(1)?.as_str().map_err(|e| corrupt(what(), e))?;
        let sum: i64 = r.get(2).map_err(|e| corrupt(what(), e))?;
        let visible_at: i64 = r.get(3).map_err(|e| corrupt(what(), e))?;
        if message_sum(instance, seq, visible_at, text) != sum {
            return Err(corrupt(what(), "the row does not match its checksum"));
        }
        out.push((seq_of(seq, what)?, decode_event(text, what)?));
    }
    Ok(out)
}

impl Store for SqliteStore {
    fn now(&self) -> Result<i64, StoreError> {
        Ok(self.clock.now())
    }

    fn create_instances(&self, instances: &[NewInstance]) -> Result<Vec<Created>, StoreError> {
        let instances = instances.to_vec();
        let clock = self.clock.clone();
        self.write_shared(move |tx| {
            let mut out = Vec::with_capacity(instances.len());
            for new in &instances {
                out.push(create_instance(tx, new, clock.now())?);
            }
            Ok(out)
        })
    }

    fn enqueue(
        &self,
        instance: &str,
        event: &Event,
        key: Option<&str>,
        wake_stuck: bool,
    ) -> Result<Enqueued, StoreError> {
        let clock = self.clock.clone();
        let (instance, event, key) = (instance.to_owned(), event.clone(), key.map(str::to_owned));
        self.write_shared(move |tx| {
            let (instance, event, key) = (instance.as_str(), &event, key.as_deref());
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
            if let Some(key) = key {
                let fresh = tx
                    .prepare_cached(
                        "INSERT INTO message_keys (instance, key) VALUES (?1, ?2) \
                         ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![instance, key])?;
                if fresh == 0 {
                    return Ok(Enqueued::Queued { message: None });
                }
            }
            let now = clock.now();
            let message = if wake_stuck {
                enqueue_termination(tx, instance, event, now)?
            } else {
                insert_message(tx, instance, event, now)?
            };
            Ok(Enqueued::Queued { message })
        })
    }

    fn fetch_work(
        &self,
        owner: &str,
        lock: Duration,
        limit: usize,
        names: Names<'_>,
    ) -> Result<Vec<InstanceWork>, StoreError> {
        let clock = self.clock.clone();
        let names = versions_json(names)?;
        self.write(|tx| {
            let now = clock.now();
            let lock_until = micros_from_now(now, lock);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let ids: Vec<String> = {
                let mut stmt = tx.prepare_cached(FETCH_DUE)?;
                let rows = stmt.query_map(params![now, limit, owner, names], |r| r.get(0))?;
                let mut ids = Vec::new();
                for id in rows {
                    match id {
                        Ok(id) => ids.push(id),
                        // Not even the instance column is readable: nothing
                        // to tell; the rest flows.
                        Err(e) => {
                            tracing::warn!("skipping a message with a damaged instance column: {e}")
                        }
                    }
                }
                ids
            };
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let row = read_instance_row(tx, &id, owner, now);
                // Every due message: a turn that ends the instance must take
                // them all (see `TurnCommit::take_all_due`).
                let messages = due_messages(tx, &id, now);
                // An instance whose start is still to come (a scheduled
                // start) takes nothing before it: what was raised for it
                // waits for its `Started`.
                if let (Ok(row), Ok(messages)) = (&row, &messages) {
                    let started = messages
                        .iter()
                        .any(|(_, e)| matches!(e, Event::Started { .. }));
                    if row.history_len == 0 && !started && !history::is_entity_name(&row.name) {
                        continue;
                    }
                }
                tx.prepare_cached(
                    "UPDATE instances SET lock_owner = ?2, lock_until = ?3 WHERE id = ?1",
                )?
                .execute(params![id, owner, lock_until])?;
                let (row, messages) = match (row, messages) {
                    (Ok(row), Ok(messages)) => (row, messages),
                    (row, messages) => {
                        let damage = row.err().or(messages.err());
                        out.push(InstanceWork {
                            id,
                            name: String::new(),
                            status: RuntimeStatus::Stuck,
                            history_len: 0,
                            execution: 0,
                            attempts: 0,
                            consumed_through: None,
                            messages: Vec::new(),
                            output: None,
                            damage,
                        });
                        continue;
                    }
                };
                // A fetch counts as an attempt unless this owner still holds
                // the instance from a fetch whose turn did not commit (a
                // store error): only a lost owner is a lost attempt.
                let attempts = if row.held {
                    row.attempts
                } else {
                    row.attempts.saturating_add(1)
                };
                tx.prepare_cached("UPDATE instances SET attempts = ?2 WHERE id = ?1")?
                    .execute(params![id, attempts])?;
                out.push(InstanceWork {
                    name: row.name,
                    status: row.status,
                    history_len: row.history_len,
                    execution: row.execution,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    consumed_through: row.consumed_through,
                    messages,
                    output: row.output,
                    damage: None,
                    id,
                });
            }
            Ok(out)
        })
    }

    fn progress(&self, owner: &str, ids: &[String]) -> Result<Vec<(String, Progress)>, StoreError> {
        let clock = self.clock.clone();
        let conn = self.read();
        let now = clock.now();
        let mut stmt = conn.prepare_cached(
            "SELECT history_len, consumed_through, status, name, \
             lock_owner IS NOT NULL AND lock_owner <> ?2 AND coalesce(lock_until, 0) > ?3, \
             execution FROM instances WHERE id = ?1",
        )?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let what = || format!("instance `{}`", crate::ids::Escaped(id));
            let row: Option<(i64, Option<i64>, String, String, bool, i64)> = stmt
                .query_row(params![id, owner, now], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .optional()
                .map_err(|e| corrupt(what(), e))?;
            if let Some((len, consumed, status, name, held_elsewhere, execution)) = row {
                out.push((
                    id.clone(),
                    Progress {
                        history_len: seq_of(len, what)?,
                        consumed_through: consumed.map(|c| seq_of(c, what)).transpose()?,
                        status: status_of(&status, id)?,
                        name,
                        held_elsewhere,
                        execution: seq_of(execution, what)?,
                    },
                ));
            }
        }
        Ok(out)
    }

    fn history(&self, instance: &str) -> Result<Option<Vec<HistoryRecord>>, StoreError> {
        read_history(&self.read(), instance, 0, None)
    }

    fn history_range(
        &self,
        instance: &str,
        from: u64,
        limit: usize,
    ) -> Result<Option<Vec<HistoryRecord>>, StoreError> {
        read_history(&self.read(), instance, from, Some(limit))
    }

    fn commit_turns(
        &self,
        owner: &str,
        lease: Duration,
        turns: &[TurnCommit],
    ) -> Result<Vec<CommitOutcome>, StoreError> {
        let clock = self.clock.clone();
        self.write(|tx| {
            let now = clock.now();
            let mut outcomes = Vec::with_capacity(turns.len());
            for turn in turns {
                // Every check before any write: a refused turn leaves no trace.
                if let Some(name) = check_turn(tx, owner, turn, now)? {
                    let tasks =
                        write_turn(tx, owner, turn, &name, (now, micros_from_now(now, lease)))?;
                    outcomes.push(CommitOutcome::Committed { tasks });
                } else {
                    outcomes.push(CommitOutcome::Conflict);
                }
            }
            Ok(outcomes)
        })
    }

    fn mark_stuck(
        &self,
        owner: &str,
        instance: &str,
        failure: &Failure,
        retry_after: Duration,
        reset_attempts: bool,
    ) -> Result<(), StoreError> {
        let clock = self.clock.clone();
        self.write(|tx| {
            let now = clock.now();
            let retry_at = micros_from_now(now, retry_after);
            // A damaged row may have unreadable columns: it is marked all
            // the same, and stays damaged: a row that did not verify gets a
            // checksum that cannot match.
            let sound = read_instance_row(tx, instance, owner, now).is_ok();
            // An entity's record (its output) is kept: set aside, not reset.
            let row: Option<(Option<String>, Option<i64>, Option<String>)> = tx
                .prepare_cached("SELECT name, history_len, output FROM instances WHERE id = ?1")?
                .query_row([instance], |r| {
                    Ok((
                        r.get::<_, String>(0).ok(),
                        r.get::<_, i64>(1).ok(),
                        r.get::<_, Option<String>>(2).ok().flatten(),
                    ))
                })
                .optional()?;
            let Some((name, len, output)) = row else {
                return Ok(());
            };
            let failure = to_json(failure)?;
            let status = RuntimeStatus::Stuck.as_str();
            let sum = instance_sum(
                name.as_deref().unwrap_or_default(),
                status,
                output.as_deref(),
                Some(&failure),
                None,
                len.unwrap_or_default(),
            );
            let sum = if sound { sum } else { !sum };
            let name = name.unwrap_or_default();
            tx.prepare_cached(
                "UPDATE instances SET name = ?8, status = ?6, failure = ?2, \
                 reason = NULL, updated_at = ?3, lock_owner = ?4, lock_until = ?5, sum = ?7, \
                 attempts = CASE WHEN ?9 THEN 0 ELSE attempts END \
                 WHERE id = ?1 AND lock_owner = ?4 \
                   AND status NOT IN ('completed', 'failed', 'terminated')",
            )?
            .execute(params![
                instance,
                failure,
                clock.now(),
                owner,
                retry_at,
                status,
                sum,
                name,
                reset_attempts
            ])?;
            Ok(())
        })
    }

    fn fetch_tasks(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        names: Names<'_>,
    ) -> Result<Vec<LeasedTask>, StoreError> {
        let clock = self.clock.clone();
        let names = names_json(names)?;
        self.write(|tx| {
            let now = clock.now();
            let mut stmt = tx.prepare_cached(
                "UPDATE tasks SET lease_owner = ?1, visible_at = ?2, attempt = attempt + 1 \
                 WHERE id IN (SELECT id FROM tasks WHERE visible_at <= ?3 AND cancelled = 0 \
                     AND name IN (SELECT value FROM json_each(?5)) \
                     ORDER BY visible_at, id LIMIT ?4) \
                 RETURNING id, instance, seq, name, input, retry, attempt, failures, sum",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut q = stmt.query(params![
                owner,
                micros_from_now(now, lease),
                now,
                limit,
                names
            ])?;
            let mut out = Vec::new();
            while let Some(r) = q.next()? {
                // A damaged task is left leased and looked at again after
                // the lease: one bad row must not stop every other task.
                match leased_task(r) {
                    Ok(task) => out.push(task),
                    Err(e) => tracing::warn!("skipping a task: {e}"),
                }
            }
            out.sort_by_key(|t| t.id);
            Ok(out)
        })
    }

    fn finish_tasks(&self, owner: &str, results: &[TaskResult]) -> Result<(), StoreError> {
        let clock = self.clock.clone();
        let (owner, results) = (owner.to_owned(), results.to_vec());
        self.write_shared(move |tx| {
            let now = clock.now();
            let owner = owner.as_str();
            for res in &results {
                let TaskRef { id, attempt } = res.task;
                match &res.outcome {
                    TaskOutcome::Done(event) => {
                        let cancelled: Option<i64> = tx
                            .prepare_cached(
                                "DELETE FROM tasks WHERE id = ?1 AND lease_owner = ?2 AND attempt = ?3 \
                                 RETURNING cancelled",
                            )?
                            .query_row(params![id, owner, attempt], |r| r.get(0))
                            .optional()?;
                        // None: the lease was lost and the task belongs to a
                        // later attempt, whose result will count instead. A
                        // cancelled call's result is dropped.
                        if cancelled == Some(0) {
                            insert_message(tx, &res.instance, event, 0)?;
                        }
                    }
                    // A cancelled call is not attempted again.
                    _ if tx
                        .prepare_cached(
                            "DELETE FROM tasks WHERE id = ?1 AND lease_owner = ?2 AND attempt = ?3 \
                             AND cancelled = 1",
                        )?
                        .execute(params![id, owner, attempt])?
                        == 1 => {}
                    TaskOutcome::Retry {
                        delay,
                        failures,
                        error,
                    } => {
                        tx.prepare_cached(
                            "UPDATE tasks SET visible_at = ?4, failures = ?5, lease_owner = NULL, \
                             last_error = ?6 WHERE id = ?1 AND lease_owner = ?2 AND attempt = ?3",
                        )?
                        .execute(params![
                            id,
                            owner,
                            attempt,
                            micros_from_now(now, *delay),
                            failures,
                            to_json(error)?
                        ])?;
                    }
                    TaskOutcome::Release => {
                        tx.prepare_cached(
                            "UPDATE tasks SET visible_at = 0, lease_owner = NULL, \
                             attempt = max(attempt - 1, 0) \
                             WHERE id = ?1 AND lease_owner = ?2 AND attempt = ?3",
                        )?
                        .execute(params![id, owner, attempt])?;
                    }
                }
            }
            Ok(())
        })
    }

    fn renew_tasks(
        &self,
        owner: &str,
        tasks: &[TaskRef],
        lease: Duration,
    ) -> Result<Vec<TaskRef>, StoreError> {
        let clock = self.clock.clone();
        self.write(|tx| {
            let until = micros_from_now(clock.now(), lease);
            let mut stmt = tx.prepare_cached(
                "UPDATE tasks SET visible_at = ?4 WHERE id = ?1 AND lease_owner = ?2 AND attempt = ?3 \
                 AND cancelled = 0",
            )?;
            let mut held = Vec::with_capacity(tasks.len());
            for t in tasks {
                if stmt.execute(params![t.id, owner, t.attempt, until])? == 1 {
                    held.push(*t);
                }
            }
            Ok(held)
        })
    }

    fn release_instances(&self, owner: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE instances SET lock_owner = NULL, lock_until = NULL \
                 WHERE lock_owner = ?1 AND status <> 'stuck'",
            )?
            .execute([owner])?;
            Ok(())
        })
    }

    fn peek_due(&self, ids: &[String]) -> Result<Vec<(String, Messages)>, StoreError> {
        let clock = self.clock.clone();
        let conn = self.read();
        let now = clock.now();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let due = due_messages(&conn, id, now)?;
            if !due.is_empty() {
                out.push((id.clone(), due));
            }
        }
        Ok(out)
    }

    fn queued(&self, ids: &[String]) -> Result<Vec<(String, Messages)>, StoreError> {
        let conn = self.read();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            // Due by the end of time: all of them.
            let queued = due_messages(&conn, id, i64::MAX)?;
            if !queued.is_empty() {
                out.push((id.clone(), queued));
            }
        }
        Ok(out)
    }

    fn lookahead(
        &self,
        owner: &str,
        instances: Names<'_>,
        activities: Names<'_>,
    ) -> Result<Lookahead, StoreError> {
        let (instances, activities) = (versions_json(instances)?, names_json(activities)?);
        let conn = self.read();
        let now = self.clock.now();
        // What `fetch_work` would take: a free instance (or this owner's)
        // of a name it runs, whose start is not still to come (the lowest
        // message of an orchestration without history is its `Started`).
        let message_due = conn
            .prepare_cached(
                "SELECT 1 FROM messages m JOIN instances i ON i.id = m.instance \
                 WHERE m.visible_at <= ?1 AND i.status NOT IN ('suspended', 'stuck') \
                   AND i.version <= (SELECT value FROM json_each(?3) WHERE key = i.name) \
                   AND (i.lock_until IS NULL OR i.lock_until <= ?1 OR i.lock_owner = ?2) \
                   AND (i.history_len > 0 OR i.name LIKE '@%' \
                        OR (SELECT f.visible_at FROM messages f WHERE f.instance = i.id \
                            ORDER BY f.seq LIMIT 1) <= ?1) \
                 LIMIT 1",
            )?
            .exists(params![now, owner, instances])?;
        // Running here (a cancelled attempt's result is dropped: nobody
        // waits for it), or due for this owner's worker to take.
        let task_busy = conn
            .prepare_cached(
                "SELECT 1 FROM tasks WHERE cancelled = 0 \
                   AND ((lease_owner = ?2 AND visible_at > ?1) \
                        OR (visible_at <= ?1 AND name IN (SELECT value FROM json_each(?3)))) \
                 LIMIT 1",
            )?
            .exists(params![now, owner, activities])?;
        let next: Option<i64> = conn
            .prepare_cached(
                "SELECT min(t) FROM (\
                 SELECT min(m.visible_at) AS t FROM messages m JOIN instances i ON i.id = m.instance \
                     WHERE m.visible_at > ?1 \
                       AND i.version <= (SELECT value FROM json_each(?2) WHERE key = i.name) \
                 UNION ALL SELECT min(visible_at) FROM tasks WHERE visible_at > ?1 \
                     AND lease_owner IS NULL AND cancelled = 0 \
                     AND name IN (SELECT value FROM json_each(?3)))",
            )?
            .query_row(params![now, instances, activities], |r| r.get(0))?;
        Ok(Lookahead {
            busy: message_due || task_busy,
            next: until(now, next),
        })
    }

    fn next_due(&self) -> Result<Due, StoreError> {
        let clock = self.clock.clone();
        let conn = self.read();
        let now = clock.now();
        // Only what is still to come: due work is taken by the fetches.
        let message = conn
            .prepare_cached("SELECT min(visible_at) FROM messages WHERE visible_at > ?1")?
            .query_row([now], |r| r.get(0))?;
        let task = conn
            .prepare_cached("SELECT min(visible_at) FROM tasks WHERE visible_at > ?1")?
            .query_row([now], |r| r.get(0))?;
        Ok(Due {
            message: until(now, message),
            task: until(now, task),
        })
    }

    fn status(&self, instance: &str) -> Result<Option<InstanceStatus>, StoreError> {
        let conn = self.read();
        let sql = format!("SELECT {STATUS_COLUMNS} FROM instances WHERE id = ?1");
        let row = conn
            .prepare_cached(&sql)?
            .query_row([instance], StatusRow::read)
            .optional()?;
        row.map(StatusRow::decode).transpose()
    }

    fn set_suspended(
        &self,
        instance: &str,
        suspend: bool,
        reason: &str,
    ) -> Result<Transition, StoreError> {
        let (instance, reason) = (instance.to_owned(), reason.to_owned());
        let clock = self.clock.clone();
        self.write_shared(move |tx| suspend_or_resume(tx, &instance, suspend, &reason, clock.now()))
    }

    fn purge(&self, instance: &str) -> Result<Transition, StoreError> {
        let instance = instance.to_owned();
        self.write_shared(move |tx| {
            let row: Option<(String, String)> = tx
                .prepare_cached("SELECT status, name FROM instances WHERE id = ?1")?
                .query_row([&instance], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((status, name)) = row else {
                return Ok(Transition::NotFound);
            };
            let status = status_of(&status, &instance)?;
            let idle_entity = history::is_entity_name(&name)
                && !tx
                    .prepare_cached("SELECT 1 FROM messages WHERE instance = ?1")?
                    .exists([&instance])?;
            if !status.is_finished() && !idle_entity {
                return Ok(Transition::Refused(status));
            }
            delete_instance(tx, &instance)?;
            Ok(Transition::Done)
        })
    }

    fn send(&self, messages: &[Outgoing]) -> Result<(), StoreError> {
        let clock = self.clock.clone();
        let messages = messages.to_vec();
        self.write_shared(move |tx| {
            let now = clock.now();
            for out in &messages {
                send_one(tx, out, now)?;
            }
            Ok(())
        })
    }

    fn purge_finished(&self, before: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(|tx| {
            let ids: Vec<String> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id FROM instances \
                     WHERE updated_at < ?1 AND status IN ('completed', 'failed', 'terminated') \
                     ORDER BY updated_at LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![before, limit], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            for id in &ids {
                delete_instance(tx, id)?;
            }
            Ok(ids)
        })
    }

    fn tasks_of(&self, instance: &str) -> Result<Vec<crate::store::TaskState>, StoreError> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, attempt, failures, lease_owner IS NOT NULL, visible_at, last_error \
             FROM tasks WHERE instance = ?1 AND NOT cancelled ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![instance], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, attempts, failures, running, visible_at, last_error) = row?;
            out.push(crate::store::rows::task_state(
                instance,
                seq,
                attempts,
                failures,
                running,
                visible_at,
                last_error.as_deref(),
            )?);
        }
        Ok(out)
    }

    fn backlog(&self) -> Result<crate::store::Backlog, StoreError> {
        let now = self.clock.now();
        let conn = self.read();
        let (messages, tasks): (i64, i64) = conn
            .prepare_cached(
                "SELECT (SELECT count(*) FROM messages WHERE visible_at <= ?1), \
                        (SELECT count(*) FROM tasks WHERE visible_at <= ?1 \
                             AND lease_owner IS NULL AND NOT cancelled)",
            )?
            .query_row(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let what = || "a backlog".to_owned();
        Ok(crate::store::Backlog {
            messages: seq_of(messages, what)?,
            tasks: seq_of(tasks, what)?,
        })
    }

    fn counts(&self, name: Option<&str>) -> Result<Vec<(RuntimeStatus, u64)>, StoreError> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(
            "SELECT status, count(*) FROM instances \
             WHERE (name = ?1 OR (?1 IS NULL AND substr(name, 1, 1) <> '@')) \
             GROUP BY status ORDER BY status",
        )?;
        let rows = stmt.query_map(params![name], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (status, n) = row?;
            out.push((
                status_of(&status, "a count")?,
                seq_of(n, || "a count".to_owned())?,
            ));
        }
        Ok(out)
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<InstanceStatus>, StoreError> {
        let conn = self.read();
        let statuses = query
            .statuses
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>();
        let statuses = serde_json::to_string(&statuses).map_err(|e| corrupt("a list query", e))?;
        let (after_at, after_id) = query
            .after
            .clone()
            .map_or((None, None), |(at, id)| (Some(at), Some(id)));
        let sql = format!(
            "SELECT {STATUS_COLUMNS} FROM instances \
             WHERE (?1 = '[]' OR status IN (SELECT value FROM json_each(?1))) \
               AND (name = ?2 OR (?2 IS NULL AND substr(name, 1, 1) <> '@')) \
               AND (?3 IS NULL OR substr(id, 1, length(?3)) = ?3) \
               AND (?4 IS NULL OR created_at >= ?4) \
               AND (?5 IS NULL OR created_at < ?5) \
               AND (?6 IS NULL OR created_at < ?6 OR (created_at = ?6 AND id < ?7)) \
             ORDER BY created_at DESC, id DESC LIMIT ?8"
        );
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                statuses,
                query.name,
                query.id_prefix,
                query.created_from,
                query.created_before,
                after_at,
                after_id,
                limit
            ],
            StatusRow::read,
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push(StatusRow::decode(row?)?);
        }
        Ok(out)
    }
}

/// Whether a turn may be written: the stored history length is the one it
/// was computed on, the messages it consumed are still queued and in order,
/// and the tasks it finished are still leased as they were. `Some(name)`
/// (the instance's orchestrator) if so.
fn check_turn(
    tx: &Connection,
    owner: &str,
    turn: &TurnCommit,
    now: i64,
) -> Result<Option<String>, StoreError> {
    // A suspended instance takes no turn: one computed before a suspend
    // that recorded nothing (the instance had not started) is refused too.
    let row: Option<(String, i64, i64, bool)> = tx
        .prepare_cached(
            "SELECT name, history_len, execution, status = 'suspended' FROM instances WHERE id = ?1",
        )?
        .query_row([&turn.instance], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let name = match row {
        Some((name, len, execution, false))
            if len == count(turn.expected_len) && execution == count(turn.execution) =>
        {
            name
        }
        _ => return Ok(None),
    };
    let mut task = tx.prepare_cached(
        "SELECT 1 FROM tasks WHERE id = ?1 AND lease_owner = ?2 AND attempt = ?3",
    )?;
    for t in &turn.finished_tasks {
        if !task.exists(params![t.id, owner, t.attempt])? {
            return Ok(None);
        }
    }
    let mut message =
        tx.prepare_cached("SELECT 1 FROM messages WHERE instance = ?1 AND seq = ?2")?;
    for seq in &turn.consumed {
        if !message.exists(params![turn.instance, count(*seq)])? {
            // Consumed by another turn: this one is stale.
            return Ok(None);
        }
    }
    // Messages reach an instance in sequence order: a turn that would pass
    // over an older due message (one handed over in memory can overtake one
    // only the store knows of) is refused, and the next look at the store
    // takes both, in order. A turn that ends the instance must take every
    // due message, so that nothing a client was told is queued is dropped.
    let turn_time = turn.status.as_ref().map_or(now, |s| s.now);
    let newest = turn.consumed.iter().max().copied();
    // A turn delivering results straight from a worker may not overtake a
    // message that was due before it either.
    let bound = if turn.take_all_due || !turn.finished_tasks.is_empty() {
        Some(i64::MAX)
    } else {
        newest.map(count)
    };
    if let Some(bound) = bound {
        let due_by = if turn.take_all_due {
            now.max(turn_time)
        } else {
            turn_time
        };
        let mut older = tx.prepare_cached(
            "SELECT seq FROM messages WHERE instance = ?1 AND seq < ?2 AND visible_at <= ?3",
        )?;
        let mut rows = older.query(params![turn.instance, bound, due_by])?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            if !turn.consumed.contains(&seq.unsigned_abs()) {
                return Ok(None);
            }
        }
    }
    Ok(Some(name))
}

/// Writes a turn [`check_turn`] passed; returns the new tasks' ids.
fn write_turn(
    tx: &Connection,
    owner: &str,
    turn: &TurnCommit,
    name: &str,
    (now, lease_until): (i64, i64),
) -> Result<Vec<i64>, StoreError> {
    let mut del = tx.prepare_cached("DELETE FROM tasks WHERE id = ?1")?;
    for t in &turn.finished_tasks {
        del.execute([t.id])?;
    }
    let consumed = turn.consumed.iter().max().map(|m| count(*m));
    if let Some(custom) = turn.status.as_ref().and_then(|s| s.custom_status.as_ref()) {
        let text = custom.json();
        let sum = checksum_with(&[], &[Some(&turn.instance), Some(text)]);
        tx.prepare_cached(
            "UPDATE instances SET custom_status = ?2, custom_sum = ?3 WHERE id = ?1",
        )?
        .execute(params![turn.instance, text, sum])?;
    }
    match &turn.status {
        Some(s) => {
            let new_len = if turn.restart.is_some() {
                0
            } else if turn.entity_turn {
                turn.expected_len + 1
            } else {
                turn.expected_len + turn.events.len() as u64
            };
            let output = s.output.as_ref().map(Payload::json);
            let failure = s.failure.as_ref().map(to_json).transpose()?;
            let status = s.status.as_str();
            let sum = instance_sum(
                name,
                status,
                output,
                failure.as_deref(),
                s.reason.as_deref(),
                count(new_len),
            );
            tx.prepare_cached(
                "UPDATE instances SET history_len = ?2, status = ?3, output = ?4, failure = ?5, \
                 reason = ?6, updated_at = ?7, attempts = 0, sum = ?8, \
                 consumed_through = CASE WHEN ?9 IS NULL THEN consumed_through \
                     ELSE max(coalesce(consumed_through, -1), ?9) END, \
                 lock_until = CASE WHEN lock_owner = ?10 THEN NULL ELSE lock_until END, \
                 lock_owner = CASE WHEN lock_owner = ?10 THEN NULL ELSE lock_owner END \
                 WHERE id = ?1",
            )?
            .execute(params![
                turn.instance,
                count(new_len),
                status,
                output,
                failure,
                s.reason,
                s.now,
                sum,
                consumed,
                owner
            ])?;
        }
        None => {
            tx.prepare_cached(
                "UPDATE instances SET \
                 consumed_through = CASE WHEN ?2 IS NULL THEN consumed_through \
                     ELSE max(coalesce(consumed_through, -1), ?2) END, \
                 lock_until = CASE WHEN lock_owner = ?3 THEN NULL ELSE lock_until END, \
                 lock_owner = CASE WHEN lock_owner = ?3 THEN NULL ELSE lock_owner END \
                 WHERE id = ?1",
            )?
            .execute(params![turn.instance, consumed, owner])?;
        }
    }
    if turn.restart.is_none() {
        for rec in &turn.events {
            insert_history(tx, &turn.instance, rec)?;
        }
    }
    if turn.discard_queued {
        // The runtime ended the instance: nobody will read what it still
        // had queued (timers, events, activity calls, leased or not; a
        // running attempt's result is dropped when it comes). Activities
        // the last turn itself called are queued below: they run.
        tx.prepare_cached("DELETE FROM messages WHERE instance = ?1")?
            .execute([&turn.instance])?;
        tx.prepare_cached("DELETE FROM tasks WHERE instance = ?1")?
            .execute([&turn.instance])?;
        tx.prepare_cached("DELETE FROM message_keys WHERE instance = ?1")?
            .execute([&turn.instance])?;
    } else {
        if !turn.messages.is_empty() {
            let timers = turn.messages.iter().map(|m| (&m.event, m.visible_at));
            insert_messages(tx, &turn.instance, timers, turn.messages.len())?;
        }
    }
    let mut ids = Vec::with_capacity(turn.tasks.len());
    for (i, task) in turn.tasks.iter().enumerate() {
        let (lease_owner, visible_at, attempt) = if i < turn.lease_tasks {
            (Some(owner), lease_until, 1)
        } else {
            (None, 0, 0)
        };
        let seq = count(task.seq);
        let retry = to_json(&task.retry)?;
        let sum = task_sum(&turn.instance, seq, &task.name, task.input.json(), &retry);
        tx.prepare_cached(
            "INSERT INTO tasks (instance, seq, name, input, retry, visible_at, lease_owner, attempt, sum) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            turn.instance,
            seq,
            task.name,
            task.input.json(),
            retry,
            visible_at,
            lease_owner,
            attempt,
            sum
        ])?;
        ids.push(tx.last_insert_rowid());
    }
    let mut del = tx.prepare_cached("DELETE FROM messages WHERE instance = ?1 AND seq = ?2")?;
    for seq in &turn.consumed {
        del.execute(params![turn.instance, count(*seq)])?;
    }
    let mut cancel =
        tx.prepare_cached("DELETE FROM messages WHERE instance = ?1 AND timer = ?2")?;
    for seq in &turn.cancel_timers {
        cancel.execute(params![turn.instance, count(*seq)])?;
    }
    // Calls nobody waits for: a queued one never runs; a running one is
    // marked, so that its worker is told at its next renewal and its result
    // is dropped.
    for seq in &turn.cancel_tasks {
        tx.prepare_cached(
            "DELETE FROM tasks WHERE instance = ?1 AND seq = ?2 AND lease_owner IS NULL",
        )?
        .execute(params![turn.instance, count(*seq)])?;
        tx.prepare_cached("UPDATE tasks SET cancelled = 1 WHERE instance = ?1 AND seq = ?2")?
            .execute(params![turn.instance, count(*seq)])?;
    }
    if let Some(restart) = &turn.restart {
        restart_instance(tx, &turn.instance, restart, now)?;
    }
    send(tx, turn, now)?;
    if let Some(keep) = turn.keep_lock {
        tx.prepare_cached(
            "UPDATE instances SET lock_owner = ?2, lock_until = ?3 \
             WHERE id = ?1 AND (lock_owner IS NULL OR lock_owner = ?2 OR lock_until <= ?4)",
        )?
        .execute(params![
            turn.instance,
            owner,
            micros_from_now(now, keep),
            now
        ])?;
    }
    Ok(ids)
}

/// Creates one instance with its `Started` message, or leaves an existing
/// one as it is.
fn create_instance(tx: &Connection, new: &NewInstance, now: i64) -> Result<Created, StoreError> {
    if new.replace_finished {
        let status: Option<String> = tx
            .prepare_cached("SELECT status FROM instances WHERE id = ?1")?
            .query_row([&new.id], |r| r.get(0))
            .optional()?;
        if let Some(status) = status {
            if status_of(&status, &new.id)?.is_finished() {
                delete_instance(tx, &new.id)?;
            }
        }
    }
    let sum = instance_sum(
        &new.name,
        RuntimeStatus::Pending.as_str(),
        None,
        None,
        None,
        0,
    );
    let (lock_owner, lock_until) = match &new.lock {
        Some((owner, lock)) => (Some(owner.as_str()), Some(micros_from_now(now, *lock))),
        None => (None, None),
    };
    let n = tx
        .prepare_cached(
            "INSERT INTO instances (id, name, status, created_at, updated_at, sum, lock_owner, \
             lock_until, parent_id, parent_seq, execution, version) \
             VALUES (?1, ?2, 'pending', ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            new.id,
            new.name,
            new.now,
            sum,
            lock_owner,
            lock_until,
            new.parent.as_ref().map(|p| p.id.as_str()),
            new.parent.as_ref().map(|p| count(p.seq)),
            count(history::execution_of(new.seed)),
            new.version,
        ])?;
    if n == 0 {
        return Ok(Created::Exists);
    }
    let message =
        insert_message(tx, &new.id, &new.started(), new.visible_at)?.ok_or_else(|| {
            corrupt(
                format!("instance `{}`", crate::ids::Escaped(&new.id)),
                "created but not live",
            )
        })?;
    Ok(Created::Created { message })
}

/// The columns [`StatusRow::read`] reads, in its order.
const STATUS_COLUMNS: &str = "id, name, status, output, failure, reason, created_at, updated_at, \
     history_len, sum, custom_status, custom_sum";

/// An instance row as read for its status, not yet checked.
struct StatusRow {
    id: String,
    name: String,
    status: String,
    output: Option<String>,
    failure: Option<String>,
    reason: Option<String>,
    created: i64,
    updated: i64,
    len: i64,
    sum: i64,
    custom: Option<String>,
    custom_sum: Option<i64>,
}

impl StatusRow {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            name: r.get(1)?,
            status: r.get(2)?,
            output: r.get(3)?,
            failure: r.get(4)?,
            reason: r.get(5)?,
            created: r.get(6)?,
            updated: r.get(7)?,
            len: r.get(8)?,
            sum: r.get(9)?,
            custom: r.get(10)?,
            custom_sum: r.get(11)?,
        })
    }

    /// Checks the row against its checksums and decodes it.
    fn decode(self) -> Result<InstanceStatus, StoreError> {
        let instance = self.id.as_str();
        let what = || format!("instance `{}`", crate::ids::Escaped(instance));
        let parts = [
            Some(self.name.as_str()),
            Some(self.status.as_str()),
            self.output.as_deref(),
            self.failure.as_deref(),
            self.reason.as_deref(),
        ];
        verify_with(self.sum, &[self.len], &parts, what)?;
        let custom_status = match self.custom {
            None => None,
            Some(text) => {
                let what = || {
                    format!(
                        "the custom status of instance `{}`",
                        crate::ids::Escaped(instance)
                    )
                };
                let sum = self.custom_sum.unwrap_or(0);
                verify_with(sum, &[], &[Some(instance), Some(&text)], what)?;
                Some(Payload::from_json(text).map_err(|e| corrupt(what(), e))?)
            }
        };
        Ok(InstanceStatus {
            custom_status,
            runtime_status: status_of(&self.status, instance)?,
            output: self
                .output
                .map(Payload::from_json)
                .transpose()
                .map_err(|e| corrupt(what(), e))?,
            failure: self
                .failure
                .map(|f| serde_json::from_str(&f))
                .transpose()
                .map_err(|e| corrupt(what(), e))?,
            terminated: self.reason,
            created_at: history::system_time(self.created),
            updated_at: history::system_time(self.updated),
            history_len: u64::try_from(self.len).map_err(|e| corrupt(what(), e))?,
            name: self.name,
            id: self.id,
        })
    }
}

/// Deletes an instance and everything of it.
fn delete_instance(tx: &Connection, instance: &str) -> Result<(), StoreError> {
    for table in ["history", "messages", "message_keys", "tasks"] {
        tx.prepare_cached(&format!("DELETE FROM {table} WHERE instance = ?1"))?
            .execute([instance])?;
    }
    tx.prepare_cached("DELETE FROM instances WHERE id = ?1")?
        .execute([instance])?;
    // Its children outlive it, but report to no one: an instance created
    // later under the same id is not their parent.
    tx.prepare_cached(
        "UPDATE instances SET parent_id = NULL, parent_seq = NULL WHERE parent_id = ?1",
    )?
    .execute([instance])?;
    Ok(())
}

/// Suspends or resumes a live instance, recording it in its history.
fn suspend_or_resume(
    tx: &Connection,
    instance: &str,
    suspend: bool,
    reason: &str,
    now: i64,
) -> Result<Transition, StoreError> {
    if !instance_exists(tx, instance)? {
        return Ok(Transition::NotFound);
    }
    let row = read_instance_row(tx, instance, "", now)?;
    let fits = if suspend {
        matches!(
            row.status,
            RuntimeStatus::Pending | RuntimeStatus::Running | RuntimeStatus::Stuck
        )
    } else {
        row.status == RuntimeStatus::Suspended
    };
    if !fits {
        return Ok(Transition::Refused(row.status));
    }
    let last: Option<(i64, i64)> = tx
        .prepare_cached(
            "SELECT turn, at FROM history WHERE instance = ?1 ORDER BY idx DESC LIMIT 1",
        )?
        .query_row([instance], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (turn, at) = last.map_or((0, now), |(t, at)| (t + 1, at.max(now)));
    let reason = reason.to_owned();
    let event = if suspend {
        Event::Suspended { reason }
    } else {
        Event::Resumed { reason }
    };
    // An instance that has not started yet has no history to record it
    // in: its history must open with `Started`. Resumed, it is pending again.
    let started = row.history_len > 0;
    if started {
        let rec = HistoryRecord {
            index: row.history_len,
            turn: u64::try_from(turn).unwrap_or(0),
            at,
            event,
        };
        insert_history(tx, instance, &rec)?;
    }
    let status = match (suspend, started) {
        (true, _) => RuntimeStatus::Suspended,
        (false, true) => RuntimeStatus::Running,
        (false, false) => RuntimeStatus::Pending,
    };
    let (output, failure, reason_col): (Option<String>, Option<String>, Option<String>) = tx
        .prepare_cached("SELECT output, failure, reason FROM instances WHERE id = ?1")?
        .query_row([instance], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let new_len = count(row.history_len + u64::from(started));
    let sum = instance_sum(
        &row.name,
        status.as_str(),
        output.as_deref(),
        failure.as_deref(),
        reason_col.as_deref(),
        new_len,
    );
    // Resuming releases any lock, so the instance is taken at once.
    tx.prepare_cached(
        "UPDATE instances SET status = ?2, history_len = ?3, sum = ?4, updated_at = ?5, \
         lock_owner = NULL, lock_until = NULL WHERE id = ?1",
    )?
    .execute(params![instance, status.as_str(), new_len, sum, now])?;
    Ok(Transition::Done)
}

fn instance_exists(tx: &Connection, instance: &str) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM instances WHERE id = ?1")?
        .exists([instance])?)
}

/// Queues a message that must be taken whatever the instance's state (a
/// termination): a suspended instance resumes, a stuck one is released.
fn enqueue_termination(
    tx: &Connection,
    instance: &str,
    event: &Event,
    now: i64,
) -> Result<Option<u64>, StoreError> {
    let status: Option<String> = tx
        .prepare_cached("SELECT status FROM instances WHERE id = ?1")?
        .query_row([instance], |r| r.get(0))
        .optional()?;
    let Some(status) = status.map(|s| status_of(&s, instance)).transpose()? else {
        return Ok(None);
    };
    if status == RuntimeStatus::Suspended {
        suspend_or_resume(tx, instance, false, "to be terminated", now)?;
    }
    let message = insert_message(tx, instance, event, now)?;
    if status == RuntimeStatus::Stuck {
        tx.prepare_cached(
            "UPDATE instances SET lock_owner = NULL, lock_until = NULL WHERE id = ?1",
        )?
        .execute([instance])?;
    }
    Ok(message)
}

/// Starts a turn's children and queues its messages to other instances.
fn send(tx: &Connection, turn: &TurnCommit, now: i64) -> Result<(), StoreError> {
    for child in &turn.children {
        if create_instance(tx, child, now)? == Created::Exists {
            if let Some(parent) = &child.parent {
                let failed = Event::ChildFailed {
                    seq: parent.seq,
                    failure: ChildFailure::IdTaken(child.id.clone()),
                };
                insert_message(tx, &parent.id, &failed, now)?;
            }
        }
    }
    if let Some(reason) = &turn.terminate_children {
        // Every live child this instance started, in any execution.
        let children: Vec<String> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id FROM instances WHERE parent_id = ?1 \
                 AND status NOT IN ('completed', 'failed', 'terminated')",
            )?;
            let rows = stmt.query_map([&turn.instance], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let event = Event::Terminated {
            reason: reason.clone(),
        };
        for child in children {
            enqueue_termination(tx, &child, &event, now)?;
        }
    }
    for out in &turn.sends {
        if out.from_child {
            let still = tx
                .prepare_cached("SELECT 1 FROM instances WHERE id = ?1 AND parent_id = ?2")?
                .exists(params![turn.instance, out.instance])?;
            if !still {
                continue;
            }
        }
        send_one(tx, out, now)?;
    }
    Ok(())
}

/// Queues one message to another instance; an entity's row is created
/// first when it has none (an entity exists once something is sent to it).
fn send_one(tx: &Connection, out: &Outgoing, now: i64) -> Result<(), StoreError> {
    if let Some(type_name) = &out.entity {
        let sum = instance_sum(
            type_name,
            RuntimeStatus::Running.as_str(),
            None,
            None,
            None,
            0,
        );
        tx.prepare_cached(
            "INSERT INTO instances (id, name, status, created_at, updated_at, sum) \
             VALUES (?1, ?2, 'running', ?3, ?3, ?4) ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![out.instance, type_name, now, sum])?;
    }
    if out.wake_stuck {
        enqueue_termination(tx, &out.instance, &out.event, now)?;
    } else {
        insert_message(tx, &out.instance, &out.event, now.max(out.visible_at))?;
    }
    Ok(())
}

/// Starts an instance afresh: see [`Restart`].
fn restart_instance(
    tx: &Connection,
    instance: &str,
    restart: &Restart,
    now: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM history WHERE instance = ?1")?
        .execute([instance])?;
    tx.prepare_cached("DELETE FROM tasks WHERE instance = ?1")?
        .execute([instance])?;
    tx.prepare_cached("DELETE FROM messages WHERE instance = ?1 AND visible_at > ?2")?
        .execute(params![instance, now])?;
    // What is still queued goes behind the new start, in its order.
    let queued: Vec<(i64, i64, String)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT seq, visible_at, event FROM messages WHERE instance = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([instance], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let what = || format!("a message of instance `{}`", crate::ids::Escaped(instance));
    // Events and terminations go on to the new execution; results and
    // timers of the old one's calls mean nothing to it.
    let mut requeued = Vec::with_capacity(queued.len());
    for (_, visible_at, text) in &queued {
        let event = decode_event(text, what)?;
        if matches!(event, Event::EventRaised { .. } | Event::Terminated { .. }) {
            requeued.push((event, *visible_at));
        }
    }
    tx.prepare_cached("DELETE FROM messages WHERE instance = ?1")?
        .execute([instance])?;
    let all: Vec<(&Event, i64)> = std::iter::once((&restart.started, 0))
        .chain(restart.carried.iter().map(|e| (e, 0)))
        .chain(requeued.iter().map(|(e, at)| (e, *at)))
        .collect();
    let n = all.len();
    insert_messages(tx, instance, all.into_iter(), n)?;
    if let Event::Started { seed, .. } = &restart.started {
        tx.prepare_cached("UPDATE instances SET execution = ?2 WHERE id = ?1")?
            .execute(params![instance, count(history::execution_of(*seed))])?;
    }
    Ok(())
}
