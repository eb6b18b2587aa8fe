//! The SQLite store's queries: one `BEGIN IMMEDIATE` transaction per
//! [`Store`] call. Every row that carries a payload also carries a checksum
//! of it, checked on read.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{
    checksum, checksum_with, corrupt, count, decode_event, status_of, to_json, verify, verify_with,
    SqliteStore,
};
use crate::error::{Failure, FailureKind, StoreError};
use crate::history::{self, Event, HistoryRecord, Payload};
use crate::status::{InstanceStatus, RuntimeStatus};
use crate::store::{
    CommitOutcome, Created, Due, Enqueued, InstanceWork, LeasedTask, NewInstance, Store,
    TaskOutcome, TaskResult, TurnCommit,
};

/// What `fetch_work` reads of an instance: status, history length,
/// attempts, lock owner, lock expiry.
type InstanceRow = (String, i64, i64, Option<String>, Option<i64>);

/// The checksum of an instance row's mutable columns.
fn instance_sum(
    name: &str,
    status: &str,
    output: Option<&str>,
    failure: Option<&str>,
    reason: Option<&str>,
) -> i64 {
    checksum(&[Some(name), Some(status), output, failure, reason])
}

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

fn insert_message(
    tx: &Connection,
    instance: &str,
    event: &Event,
    visible_at: i64,
) -> Result<i64, StoreError> {
    let event = to_json(event)?;
    let sum = checksum_with(&[visible_at], &[Some(instance), Some(&event)]);
    tx.prepare_cached(
        "INSERT INTO messages (instance, visible_at, event, sum) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![instance, visible_at, event, sum])?;
    Ok(tx.last_insert_rowid())
}

fn task_sum(instance: &str, seq: i64, name: &str, input: &str, retry: &str) -> i64 {
    checksum(&[
        Some(instance),
        Some(&seq.to_string()),
        Some(name),
        Some(input),
        Some(retry),
    ])
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

/// Marks a live instance stuck because a row of it is damaged, locked by
/// `owner` until `until` (then it is looked at again: a repaired row lets it
/// go on). Nothing of it is consumed.
fn set_aside(
    tx: &Connection,
    instance: &str,
    owner: &str,
    damage: &StoreError,
    now: i64,
    until: i64,
) -> Result<(), StoreError> {
    eprintln!("durable: instance `{instance}` set aside: {damage}");
    let name: Option<String> = tx
        .prepare_cached(
            "SELECT name FROM instances WHERE id = ?1 AND status IN ('pending', 'running', 'stuck')",
        )?
        .query_row([instance], |r| r.get(0))
        .optional()?;
    let Some(name) = name else { return Ok(()) };
    let failure = to_json(&Failure::new(FailureKind::Corrupt, damage.to_string()))?;
    let status = RuntimeStatus::Stuck.as_str();
    let sum = instance_sum(&name, status, None, Some(&failure), None);
    tx.prepare_cached(
        "UPDATE instances SET status = ?2, output = NULL, failure = ?3, reason = NULL, updated_at = ?4, \
         lock_owner = ?5, lock_until = ?6, sum = ?7 WHERE id = ?1",
    )?
    .execute(params![instance, status, failure, now, owner, until, sum])?;
    Ok(())
}

impl Store for SqliteStore {
    fn create_instance(&self, new: &NewInstance) -> Result<Created, StoreError> {
        let new = new.clone();
        self.write_shared(move |tx| {
            let sum = instance_sum(&new.name, RuntimeStatus::Pending.as_str(), None, None, None);
            let n = tx
                .prepare_cached(
                    "INSERT INTO instances (id, name, status, created_at, updated_at, sum) \
                     VALUES (?1, ?2, 'pending', ?3, ?3, ?4) ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![new.id, new.name, new.now, sum])?;
            if n == 0 {
                return Ok(Created::Exists);
            }
            let started = Event::Started {
                name: new.name.clone(),
                input: new.input.clone(),
            };
            let message = insert_message(tx, &new.id, &started, 0)?;
            Ok(Created::Created { message })
        })
    }

    fn enqueue(
        &self,
        instance: &str,
        event: &Event,
        key: Option<&str>,
    ) -> Result<Enqueued, StoreError> {
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
            let message = insert_message(tx, instance, event, 0)?;
            Ok(Enqueued::Queued {
                message: Some(message),
            })
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
            let mut rows: Vec<(i64, String, Result<Event, StoreError>)> = Vec::new();
            {
                // Messages of instances nobody else holds (and that this
                // owner has not set aside as stuck), oldest first.
                let mut stmt = tx.prepare_cached(
                    "SELECT m.id, m.instance, m.event, m.sum, m.visible_at FROM messages m \
                     LEFT JOIN instances i ON i.id = m.instance \
                     WHERE m.visible_at <= ?1 AND (i.lock_until IS NULL OR i.lock_until <= ?1 \
                        OR (i.lock_owner = ?3 AND i.status <> 'stuck')) \
                     ORDER BY m.id LIMIT ?2",
                )?;
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let mut q = stmt.query(params![now, limit, owner])?;
                while let Some(r) = q.next()? {
                    let id: i64 = r.get(0)?;
                    let Ok(instance) = r.get::<_, String>(1) else {
                        // Not even the instance is readable: nothing to tell.
                        eprintln!("durable: skipping message {id}: its instance column is damaged");
                        continue;
                    };
                    let what = || format!("message {id} of instance `{instance}`");
                    let event = r
                        .get_ref(2)?
                        .as_str()
                        .map_err(|e| corrupt(what(), e))
                        .and_then(|text| {
                            let sum: i64 = r.get(3).map_err(|e| corrupt(what(), e))?;
                            let visible_at: i64 = r.get(4).map_err(|e| corrupt(what(), e))?;
                            verify_with(sum, &[visible_at], &[Some(&instance), Some(text)], what)?;
                            decode_event(text, what)
                        });
                    rows.push((id, instance, event));
                }
            }
            let mut order: Vec<String> = Vec::new();
            let mut by_instance: HashMap<String, Vec<(i64, Event)>> = HashMap::new();
            let mut damaged: HashMap<String, StoreError> = HashMap::new();
            for (id, instance, event) in rows {
                let entry = by_instance.entry(instance.clone()).or_insert_with(|| {
                    order.push(instance.clone());
                    Vec::new()
                });
                match event {
                    Ok(event) => entry.push((id, event)),
                    Err(e) => {
                        damaged.entry(instance).or_insert(e);
                    }
                }
            }
            let mut out = Vec::with_capacity(order.len());
            let mut select = tx.prepare_cached(
                "SELECT status, history_len, attempts, lock_owner, lock_until FROM instances WHERE id = ?1",
            )?;
            let mut lock = tx.prepare_cached(
                "UPDATE instances SET lock_owner = ?2, lock_until = ?3, attempts = ?4 WHERE id = ?1",
            )?;
            for instance in order {
                let mut messages = by_instance.remove(&instance).unwrap_or_default();
                messages.sort_by_key(|(id, _)| *id);
                if let Some(e) = damaged.remove(&instance) {
                    // A damaged message would be passed over: set the
                    // instance aside, stuck with the reason, until repaired.
                    set_aside(tx, &instance, owner, &e, now, lock_until)?;
                    continue;
                }
                let row: Option<InstanceRow> = select
                    .query_row([&instance], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .optional()?;
                let Some((status, len, attempts, lock_owner, locked_until)) = row else {
                    out.push(InstanceWork {
                        id: instance,
                        status: None,
                        history_len: 0,
                        attempts: 0,
                        messages,
                    });
                    continue;
                };
                // A fetch counts as an attempt unless this owner still holds
                // the instance from a fetch whose turn did not commit (a
                // store error): only a lost owner is a lost attempt.
                let held = lock_owner.as_deref() == Some(owner) && locked_until.is_some_and(|t| t > now);
                let attempts = if held { attempts } else { attempts.saturating_add(1) };
                lock.execute(params![instance, owner, lock_until, attempts])?;
                let what = || format!("instance `{instance}`");
                out.push(InstanceWork {
                    status: Some(status_of(&status, &instance)?),
                    history_len: u64::try_from(len).map_err(|e| corrupt(what(), e))?,
                    attempts: u32::try_from(attempts).map_err(|e| corrupt(what(), e))?,
                    id: instance,
                    messages,
                });
            }
            Ok(out)
        })
    }

    fn history(&self, instance: &str) -> Result<Vec<HistoryRecord>, StoreError> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(
            "SELECT idx, turn, at, event, sum FROM history WHERE instance = ?1 ORDER BY idx",
        )?;
        let mut q = stmt.query([instance])?;
        let mut out = Vec::new();
        while let Some(r) = q.next()? {
            let (idx, turn, at, sum): (i64, i64, i64, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(4)?);
            let what = || format!("history event {idx} of instance `{instance}`");
            // Borrowed from SQLite's row: no copy per event.
            let text = r.get_ref(3)?.as_str().map_err(|e| corrupt(what(), e))?;
            verify_with(sum, &[idx, turn, at], &[Some(instance), Some(text)], what)?;
            let index = u64::try_from(idx).map_err(|e| corrupt(what(), e))?;
            if index != out.len() as u64 {
                return Err(corrupt(what(), format!("expected index {}", out.len())));
            }
            let turn = u64::try_from(turn).map_err(|e| corrupt(what(), e))?;
            let prev_turn = out.last().map_or(0, |r: &HistoryRecord| r.turn);
            if turn < prev_turn {
                return Err(corrupt(
                    what(),
                    format!("turn {turn} after turn {prev_turn}"),
                ));
            }
            out.push(HistoryRecord {
                index,
                turn,
                at,
                event: decode_event(text, what)?,
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
                // Every check before any write: a refused turn leaves no trace.
                if let Some(name) = check_turn(tx, owner, turn)? {
                    let tasks = write_turn(tx, owner, turn, name.as_deref())?;
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
        now: i64,
        retry_at: i64,
    ) -> Result<(), StoreError> {
        // An instance that waits for fitting code is not poison: only
        // failures that may pass (a panic on replay) keep counting attempts.
        let waits_for_code = matches!(
            failure.kind,
            FailureKind::Nondeterminism
                | FailureKind::UnregisteredOrchestrator
                | FailureKind::Corrupt
        );
        self.write(|tx| {
            let name: Option<String> = tx
                .prepare_cached("SELECT name FROM instances WHERE id = ?1")?
                .query_row([instance], |r| r.get(0))
                .optional()?;
            let Some(name) = name else { return Ok(()) };
            let failure = to_json(failure)?;
            let status = RuntimeStatus::Stuck.as_str();
            let sum = instance_sum(&name, status, None, Some(&failure), None);
            tx.prepare_cached(
                "UPDATE instances SET status = ?6, output = NULL, failure = ?2, reason = NULL, \
                 updated_at = ?3, lock_owner = ?4, lock_until = ?5, sum = ?7, \
                 attempts = CASE WHEN ?8 THEN 0 ELSE attempts END \
                 WHERE id = ?1 AND (lock_owner IS NULL OR lock_owner = ?4) \
                   AND status IN ('pending', 'running', 'stuck')",
            )?
            .execute(params![
                instance,
                failure,
                now,
                owner,
                retry_at,
                status,
                sum,
                waits_for_code
            ])?;
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
                 RETURNING id, instance, seq, name, input, retry, attempt, failures, sum",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut q = stmt.query(params![owner, lease_until, now, limit])?;
            let mut out = Vec::new();
            while let Some(r) = q.next()? {
                // A damaged task is left leased and looked at again after
                // the lease: one bad row must not stop every other task.
                match leased_task(r) {
                    Ok(task) => out.push(task),
                    Err(e) => eprintln!("durable: skipping a task: {e}"),
                }
            }
            out.sort_by_key(|t| t.id);
            Ok(out)
        })
    }

    fn finish_tasks(&self, owner: &str, results: &[TaskResult]) -> Result<(), StoreError> {
        let (owner, results) = (owner.to_owned(), results.to_vec());
        self.write_shared(move |tx| {
            let owner = owner.as_str();
            for res in &results {
                match &res.outcome {
                    TaskOutcome::Done(event) => {
                        let n = tx
                            .prepare_cached(
                                "DELETE FROM tasks WHERE id = ?1 AND lease_owner = ?2 AND attempt = ?3",
                            )?
                            .execute(params![res.id, owner, res.attempt])?;
                        // Zero rows: the lease was lost and the task belongs to
                        // a later attempt, whose result will count instead.
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

    fn release_tasks(&self, owner: &str, ids: &[i64]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE tasks SET visible_at = 0, lease_owner = NULL, attempt = max(attempt - 1, 0) \
                 WHERE id = ?1 AND lease_owner = ?2",
            )?;
            for id in ids {
                stmt.execute(params![id, owner])?;
            }
            Ok(())
        })
    }

    fn next_due(&self) -> Result<Due, StoreError> {
        let conn = self.read();
        let message = conn
            .prepare_cached("SELECT min(visible_at) FROM messages")?
            .query_row([], |r| r.get(0))?;
        let task = conn
            .prepare_cached("SELECT min(visible_at) FROM tasks")?
            .query_row([], |r| r.get(0))?;
        Ok(Due { message, task })
    }

    fn status(&self, instance: &str) -> Result<Option<InstanceStatus>, StoreError> {
        let conn = self.read();
        let row = conn
            .prepare_cached(
                "SELECT name, status, output, failure, reason, created_at, updated_at, history_len, sum \
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
                    r.get::<_, i64>(8)?,
                ))
            })
            .optional()?;
        let Some((name, status, output, failure, reason, created, updated, len, sum)) = row else {
            return Ok(None);
        };
        let what = || format!("instance `{instance}`");
        let parts = [
            Some(name.as_str()),
            Some(status.as_str()),
            output.as_deref(),
            failure.as_deref(),
            reason.as_deref(),
        ];
        verify(sum, &parts, what)?;
        Ok(Some(InstanceStatus {
            id: instance.to_owned(),
            runtime_status: status_of(&status, instance)?,
            name,
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

/// Whether a turn may be written: the stored history length is the one it
/// was computed on, the messages it consumed are still queued and the tasks
/// it finished are still leased as they were. `Some(name)` (the instance's
/// orchestrator, `None` for an unknown instance) if so.
#[allow(
    clippy::option_option,
    reason = "refused / unknown instance / known instance"
)]
fn check_turn(
    tx: &Connection,
    owner: &str,
    turn: &TurnCommit,
) -> Result<Option<Option<String>>, StoreError> {
    let row: Option<(String, i64)> = tx
        .prepare_cached("SELECT name, history_len FROM instances WHERE id = ?1")?
        .query_row([&turn.instance], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let name = match row {
        Some((name, len)) if len == count(turn.expected_len) => Some(name),
        Some(_) => return Ok(None),
        // An unknown instance's turn may only drop its stray messages.
        None if turn.status.is_none() && turn.events.is_empty() => None,
        None => return Ok(None),
    };
    let mut task = tx.prepare_cached(
        "SELECT 1 FROM tasks WHERE id = ?1 AND lease_owner = ?2 AND attempt = ?3",
    )?;
    for t in &turn.finished_tasks {
        if !task.exists(params![t.id, owner, t.attempt])? {
            return Ok(None);
        }
    }
    let mut message = tx.prepare_cached("SELECT 1 FROM messages WHERE id = ?1")?;
    for id in &turn.consumed {
        if !message.exists([id])? {
            // Consumed by another turn: this one is stale.
            return Ok(None);
        }
    }
    // Messages reach an instance in the order they were queued: a turn that
    // would pass over an older due message (one handed over in memory can
    // overtake one only the store knows of) is refused, and the next look
    // at the store takes both, in order.
    if let (Some(status), Some(&newest)) = (&turn.status, turn.consumed.iter().max()) {
        let mut older = tx.prepare_cached(
            "SELECT id FROM messages WHERE instance = ?1 AND id < ?2 AND visible_at <= ?3",
        )?;
        let mut rows = older.query(params![turn.instance, newest, status.now])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            if !turn.consumed.contains(&id) {
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
    name: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    let mut del = tx.prepare_cached("DELETE FROM tasks WHERE id = ?1")?;
    for t in &turn.finished_tasks {
        del.execute([t.id])?;
    }
    let new_len = turn.expected_len + turn.events.len() as u64;
    match (&turn.status, name) {
        (Some(s), Some(name)) => {
            let output = s.output.as_ref().map(Payload::json);
            let failure = s.failure.as_ref().map(to_json).transpose()?;
            let status = s.status.as_str();
            let sum = instance_sum(
                name,
                status,
                output,
                failure.as_deref(),
                s.reason.as_deref(),
            );
            tx.prepare_cached(
                "UPDATE instances SET history_len = ?2, status = ?3, output = ?4, failure = ?5, \
                 reason = ?6, updated_at = ?7, lock_owner = NULL, lock_until = NULL, attempts = 0, \
                 sum = ?8 WHERE id = ?1",
            )?
            .execute(params![
                turn.instance,
                count(new_len),
                status,
                output,
                failure,
                s.reason,
                s.now,
                sum
            ])?;
            if s.status.is_finished() {
                // Nobody will read what it still had queued: its timers,
                // events and the activity calls no worker has taken.
                tx.prepare_cached("DELETE FROM messages WHERE instance = ?1")?
                    .execute([&turn.instance])?;
                tx.prepare_cached("DELETE FROM tasks WHERE instance = ?1 AND lease_owner IS NULL")?
                    .execute([&turn.instance])?;
                // Keys only guard against delivering an event twice to a
                // running instance; a finished one refuses events anyway.
                tx.prepare_cached("DELETE FROM message_keys WHERE instance = ?1")?
                    .execute([&turn.instance])?;
            }
        }
        (None, Some(_)) => {
            tx.prepare_cached(
                "UPDATE instances SET lock_owner = NULL, lock_until = NULL WHERE id = ?1",
            )?
            .execute([&turn.instance])?;
        }
        // `check_turn` let an unknown instance through only without status.
        (_, None) => {}
    }
    for rec in &turn.events {
        insert_history(tx, &turn.instance, rec)?;
    }
    let (lease_owner, visible_at, attempt) = match turn.lease_tasks_until {
        Some(until) => (Some(owner), until, 1),
        None => (None, 0, 0),
    };
    let mut ids = Vec::with_capacity(turn.tasks.len());
    for task in &turn.tasks {
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
    for m in &turn.messages {
        insert_message(tx, &m.instance, &m.event, m.visible_at)?;
    }
    let mut del = tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
    for id in &turn.consumed {
        del.execute([id])?;
    }
    Ok(ids)
}
