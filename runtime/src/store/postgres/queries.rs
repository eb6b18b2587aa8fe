//! The PostgreSQL store's queries: one transaction per [`Store`] call, in
//! `READ COMMITTED` with explicit row locks. Rows carry the checksums of
//! the embedded store ([`crate::store::rows`]), checked on read.

use std::time::Duration;

use tokio_postgres::Row;

use super::{PostgresStore, Tx, TxError};
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

/// Statuses of an instance that still takes messages.
const LIVE: &str = "('pending', 'running', 'stuck', 'suspended')";

fn names_of(names: Names<'_>) -> Vec<String> {
    names.names().map(str::to_owned).collect()
}

/// The newest version of each of `names`, in their order: with
/// [`names_of`], the two arrays a query unnests to filter instances.
fn newest_of(names: Names<'_>) -> Vec<i64> {
    names.0.iter().map(|(_, v)| i64::from(*v)).collect()
}

/// The filter that takes an instance `i` only of a name and version this
/// process runs; the names and their newest versions are parameters
/// `$n` and `$(n+1)`.
fn runs_here(n: usize) -> String {
    format!(
        "i.version <= (SELECT r.newest FROM unnest(${n}::text[], ${}::bigint[]) AS r(name, newest) \
         WHERE r.name = i.name)",
        n + 1
    )
}

fn escaped(id: &str) -> crate::ids::Escaped<'_> {
    crate::ids::Escaped(id)
}

async fn insert_history(tx: &Tx<'_>, instance: &str, rec: &HistoryRecord) -> Result<(), TxError> {
    let event = to_json(&rec.event)?;
    let (idx, turn) = (count(rec.index), count(rec.turn));
    let sum = checksum_with(&[idx, turn, rec.at], &[Some(instance), Some(&event)]);
    tx.exec(
        "INSERT INTO §history (instance, idx, turn, at, event, sum) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&instance, &idx, &turn, &rec.at, &event, &sum],
    )
    .await?;
    Ok(())
}

/// Queues messages for a live instance under consecutive sequence numbers,
/// taken under the instance row's lock (held to the commit, so one
/// instance's numbers commit in order); the first one's, or `None`
/// (nothing written) when the instance is gone or finished.
async fn insert_messages(
    tx: &Tx<'_>,
    instance: &str,
    messages: &[(&Event, i64)],
) -> Result<Option<u64>, TxError> {
    let n = count(messages.len() as u64);
    let first: Option<i64> = tx
        .opt(
            &format!(
                "UPDATE §instances SET next_message = next_message + $2 \
                 WHERE id = $1 AND status IN {LIVE} RETURNING next_message - $2"
            ),
            &[&instance, &n],
        )
        .await?
        .map(|r| r.get(0));
    let Some(first) = first else { return Ok(None) };
    let mut seqs = Vec::with_capacity(messages.len());
    let mut visible = Vec::with_capacity(messages.len());
    let mut events = Vec::with_capacity(messages.len());
    let mut sums = Vec::with_capacity(messages.len());
    let mut timers = Vec::with_capacity(messages.len());
    for ((event, visible_at), seq) in messages.iter().zip(first..) {
        // A timer's message is found again by its sequence number, to be
        // cancelled.
        timers.push(match event {
            Event::TimerFired { seq } => Some(count(*seq)),
            _ => None,
        });
        let text = to_json(event)?;
        sums.push(message_sum(instance, seq, *visible_at, &text));
        seqs.push(seq);
        visible.push(*visible_at);
        events.push(text);
    }
    tx.exec(
        "INSERT INTO §messages (instance, seq, visible_at, event, sum, timer) \
         SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[])",
        &[&instance, &seqs, &visible, &events, &sums, &timers],
    )
    .await?;
    Ok(Some(u64::try_from(first).map_err(|e| {
        corrupt(format!("instance `{}`", escaped(instance)), e)
    })?))
}

async fn insert_message(
    tx: &Tx<'_>,
    instance: &str,
    event: &Event,
    visible_at: i64,
) -> Result<Option<u64>, TxError> {
    insert_messages(tx, instance, &[(event, visible_at)]).await
}

/// Reads one leased task row, checking its checksum.
fn leased_task(r: &Row) -> Result<LeasedTask, StoreError> {
    let id: i64 = r.get(0);
    let what = || format!("task {id}");
    let instance: String = r.get(1);
    let seq: i64 = r.get(2);
    let name: String = r.get(3);
    let input: String = r.get(4);
    let retry: String = r.get(5);
    let attempt: i64 = r.get(6);
    let failures: i64 = r.get(7);
    let sum: i64 = r.get(8);
    if task_sum(&instance, seq, &name, &input, &retry) != sum {
        return Err(corrupt(what(), "the row does not match its checksum"));
    }
    Ok(LeasedTask {
        id,
        instance,
        seq: seq_of(seq, what)?,
        name,
        input: Payload::from_json(input).map_err(|e| corrupt(what(), e))?,
        retry: serde_json::from_str(&retry).map_err(|e| corrupt(what(), e))?,
        attempt: u32::try_from(attempt).map_err(|e| corrupt(what(), e))?,
        failures: u32::try_from(failures).map_err(|e| corrupt(what(), e))?,
    })
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

const INSTANCE_COLUMNS: &str = "name, status, output, failure, reason, history_len, attempts, \
     lock_owner, lock_until, consumed_through, sum, execution";

/// An instance row of [`INSTANCE_COLUMNS`] starting at column `at`,
/// checked and decoded.
fn instance_row(
    r: &Row,
    at: usize,
    id: &str,
    owner: &str,
    now: i64,
) -> Result<InstanceRow, StoreError> {
    let what = || format!("instance `{}`", escaped(id));
    let name: String = r.get(at);
    let status: String = r.get(at + 1);
    let output: Option<String> = r.get(at + 2);
    let failure: Option<String> = r.get(at + 3);
    let reason: Option<String> = r.get(at + 4);
    let len: i64 = r.get(at + 5);
    let lock_owner: Option<String> = r.get(at + 7);
    let lock_until: Option<i64> = r.get(at + 8);
    let consumed: Option<i64> = r.get(at + 9);
    verify_with(
        r.get(at + 10),
        &[len],
        &[
            Some(&name),
            Some(&status),
            output.as_deref(),
            failure.as_deref(),
            reason.as_deref(),
        ],
        what,
    )?;
    Ok(InstanceRow {
        status: status_of(&status, id)?,
        history_len: seq_of(len, what)?,
        attempts: r.get(at + 6),
        held: lock_owner.as_deref() == Some(owner) && lock_until.is_some_and(|t| t > now),
        consumed_through: consumed.map(|c| seq_of(c, what)).transpose()?,
        execution: seq_of(r.get(at + 11), what)?,
        output: output
            .map(|o| Payload::from_json(o).map_err(|e| corrupt(what(), e)))
            .transpose()?,
        name,
    })
}

/// One message row, checked and decoded.
fn message_row(
    instance: &str,
    seq: i64,
    visible_at: i64,
    text: &str,
    sum: i64,
) -> Result<(u64, Event), StoreError> {
    let what = || format!("message {seq} of instance `{}`", escaped(instance));
    if message_sum(instance, seq, visible_at, text) != sum {
        return Err(corrupt(what(), "the row does not match its checksum"));
    }
    Ok((seq_of(seq, what)?, decode_event(text, what)?))
}

/// The due messages of each of `ids`, oldest first, checked: for each id
/// in order, its messages or the damage found in them.
async fn due_messages(
    tx: &Tx<'_>,
    ids: &[String],
    now: i64,
) -> Result<Vec<Result<Messages, StoreError>>, TxError> {
    let rows = tx
        .rows(
            "SELECT instance, seq, event, sum, visible_at FROM §messages \
             WHERE instance = ANY($1) AND visible_at <= $2 ORDER BY instance, seq",
            &[&ids, &now],
        )
        .await?;
    Ok(ids
        .iter()
        .map(|id| {
            rows.iter()
                .filter(|r| r.get::<_, &str>(0) == id)
                .map(|r| message_row(id, r.get(1), r.get(4), r.get(2), r.get(3)))
                .collect()
        })
        .collect())
}

impl Store for PostgresStore {
    fn now(&self) -> Result<i64, StoreError> {
        self.block(|| self.transact(async |tx| tx.now().await))
    }

    fn create_instances(&self, instances: &[NewInstance]) -> Result<Vec<Created>, StoreError> {
        let channel = &self.channel;
        self.block(|| {
            self.transact(async |tx| {
                let now = tx.now().await?;
                let mut out = Vec::with_capacity(instances.len());
                for new in instances {
                    out.push(create_instance(tx, new, now).await?);
                }
                // An instance created locked to its creator is run there
                // from memory: nobody else needs to look (and NOTIFY holds
                // a server-wide lock to its commit's flush).
                if instances.iter().any(|i| i.lock.is_none()) {
                    tx.notify(channel).await?;
                }
                Ok(out)
            })
        })
    }

    fn enqueue(
        &self,
        instance: &str,
        event: &Event,
        key: Option<&str>,
        wake_stuck: bool,
    ) -> Result<Enqueued, StoreError> {
        let channel = &self.channel;
        self.block(|| {
            self.transact(async |tx| {
                let status: Option<String> = tx
                    .opt(
                        "SELECT status FROM §instances WHERE id = $1 FOR UPDATE",
                        &[&instance],
                    )
                    .await?
                    .map(|r| r.get(0));
                let Some(status) = status else {
                    return Ok(Enqueued::NotFound);
                };
                let status = status_of(&status, instance)?;
                if status.is_finished() {
                    return Ok(Enqueued::Finished(status));
                }
                if let Some(key) = key {
                    let fresh = tx
                        .exec(
                            "INSERT INTO §message_keys (instance, key) VALUES ($1, $2) \
                             ON CONFLICT DO NOTHING",
                            &[&instance, &key],
                        )
                        .await?;
                    if fresh == 0 {
                        return Ok(Enqueued::Queued { message: None });
                    }
                }
                let now = tx.now().await?;
                let message = if wake_stuck {
                    enqueue_termination(tx, instance, event, now).await?
                } else {
                    insert_message(tx, instance, event, now).await?
                };
                tx.notify(channel).await?;
                Ok(Enqueued::Queued { message })
            })
        })
    }

    fn fetch_work(
        &self,
        owner: &str,
        lock: Duration,
        limit: usize,
        names: Names<'_>,
    ) -> Result<Vec<InstanceWork>, StoreError> {
        let (newest, names) = (newest_of(names), names_of(names));
        let limit = count(limit as u64);
        let claim = format!(
            "WITH due AS (SELECT instance, min(visible_at) AS at FROM §messages \
                 WHERE visible_at <= $1 GROUP BY instance) \
             SELECT i.id FROM §instances i JOIN due ON due.instance = i.id \
             WHERE (i.lock_until IS NULL OR i.lock_until <= $1 \
                    OR (i.lock_owner = $3 AND i.status <> 'stuck')) \
               AND ({} OR (i.name = ANY($4) AND EXISTS (SELECT 1 FROM §messages t \
                    WHERE t.instance = i.id AND t.visible_at <= $1 \
                      AND t.event LIKE '{{\"Terminated\":%'))) \
               AND i.status <> 'suspended' \
               AND (i.history_len > 0 OR i.name LIKE '@%' \
                    OR (SELECT f.visible_at FROM §messages f WHERE f.instance = i.id \
                        ORDER BY f.seq LIMIT 1) <= $1) \
             ORDER BY due.at LIMIT $2 FOR UPDATE OF i SKIP LOCKED",
            runs_here(4)
        );
        self.block(|| {
            self.transact(async |tx| {
                let now = tx.now().await?;
                let lock_until = micros_from_now(now, lock);
                // The claim: instances with due messages, free (or this
                // owner's and not set aside), of a name this process runs,
                // locked with SKIP LOCKED so claimers never wait on each
                // other nor take the same instance.
                let ids: Vec<String> = tx
                    .rows(&claim, &[&now, &limit, &owner, &names, &newest])
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let rows = tx
                    .rows(
                        &format!("SELECT id, {INSTANCE_COLUMNS} FROM §instances WHERE id = ANY($1)"),
                        &[&ids],
                    )
                    .await?;
                let mut messages = due_messages(tx, &ids, now).await?.into_iter();
                let mut out = Vec::with_capacity(ids.len());
                let (mut claimed, mut attempts_of) = (Vec::new(), Vec::new());
                for id in ids {
                    let messages = messages.next().unwrap_or_else(|| Ok(Vec::new()));
                    let Some(r) = rows.iter().find(|r| r.get::<_, &str>(0) == id) else {
                        continue;
                    };
                    let row = instance_row(r, 1, &id, owner, now);
                    if let (Ok(row), Ok(messages)) = (&row, &messages) {
                        // A commit that consumed its messages after this
                        // statement's snapshot, before the row lock: nothing
                        // is due, so it is not claimed (no lock, no attempt).
                        if messages.is_empty() {
                            continue;
                        }
                        // A scheduled start still to come: what was raised
                        // for it waits for its `Started`.
                        let started = messages
                            .iter()
                            .any(|(_, e)| matches!(e, Event::Started { .. }));
                        if row.history_len == 0 && !started && !history::is_entity_name(&row.name)
                        {
                            continue;
                        }
                    }
                    let (row, messages) = match (row, messages) {
                        (Ok(row), Ok(messages)) => (row, messages),
                        (row, messages) => {
                            claimed.push(id.clone());
                            attempts_of.push(None);
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
                                damage: row.err().or(messages.err()),
                            });
                            continue;
                        }
                    };
                    // A fetch counts as an attempt unless this owner still
                    // holds the instance from a fetch whose turn did not
                    // commit: only a lost owner is a lost attempt.
                    let attempts = if row.held {
                        row.attempts
                    } else {
                        row.attempts.saturating_add(1)
                    };
                    claimed.push(id.clone());
                    attempts_of.push(Some(attempts));
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
                if !claimed.is_empty() {
                    tx.exec(
                        "UPDATE §instances i SET lock_owner = $2, lock_until = $3, \
                             epoch = i.epoch + 1, attempts = coalesce(u.attempts, i.attempts) \
                         FROM unnest($1::text[], $4::bigint[]) AS u(id, attempts) WHERE i.id = u.id",
                        &[&claimed, &owner, &lock_until, &attempts_of],
                    )
                    .await?;
                }
                Ok(out)
            })
        })
    }

    fn progress(&self, owner: &str, ids: &[String]) -> Result<Vec<(String, Progress)>, StoreError> {
        self.block(|| {
            self.transact(async |tx| {
                let now = tx.now().await?;
                let rows = tx
                    .rows(
                        "SELECT id, history_len, consumed_through, status, name, \
                         lock_owner IS NOT NULL AND lock_owner <> $2 AND coalesce(lock_until, 0) > $3, \
                         execution FROM §instances WHERE id = ANY($1)",
                        &[&ids, &owner, &now],
                    )
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for id in ids {
                    let Some(r) = rows.iter().find(|r| r.get::<_, &str>(0) == id) else {
                        continue;
                    };
                    let what = || format!("instance `{}`", escaped(id));
                    let consumed: Option<i64> = r.get(2);
                    out.push((
                        id.clone(),
                        Progress {
                            history_len: seq_of(r.get(1), what)?,
                            consumed_through: consumed.map(|c| seq_of(c, what)).transpose()?,
                            status: status_of(r.get(3), id)?,
                            name: r.get(4),
                            held_elsewhere: r.get(5),
                            execution: seq_of(r.get(6), what)?,
                        },
                    ));
                }
                Ok(out)
            })
        })
    }

    fn history(&self, instance: &str) -> Result<Option<Vec<HistoryRecord>>, StoreError> {
        self.history_range(instance, 0, usize::MAX)
    }

    fn history_range(
        &self,
        instance: &str,
        from: u64,
        limit: usize,
    ) -> Result<Option<Vec<HistoryRecord>>, StoreError> {
        let (start, limit) = (count(from), count(limit as u64));
        self.block(|| {
            self.transact(async |tx| {
                if tx
                    .opt("SELECT 1 FROM §instances WHERE id = $1", &[&instance])
                    .await?
                    .is_none()
                {
                    return Ok(None);
                }
                // From the start, every row is read: one with a damaged
                // (say negative) index then fails the read rather than
                // being passed over.
                let sql = if from == 0 {
                    "SELECT idx, turn, at, event, sum FROM §history \
                     WHERE instance = $1 AND $2::bigint = 0 ORDER BY idx LIMIT $3"
                } else {
                    "SELECT idx, turn, at, event, sum FROM §history \
                     WHERE instance = $1 AND idx >= $2 ORDER BY idx LIMIT $3"
                };
                let rows = tx.rows(sql, &[&instance, &start, &limit]).await?;
                let mut out: Vec<HistoryRecord> = Vec::with_capacity(rows.len());
                for r in &rows {
                    let numbers = (r.get(0), r.get(1), r.get(2), r.get(4));
                    let next = (from + out.len() as u64, out.last().map_or(0, |r| r.turn));
                    out.push(crate::store::rows::history_record(
                        instance,
                        next,
                        numbers,
                        r.get(3),
                    )?);
                }
                Ok(Some(out))
            })
        })
    }

    fn commit_turns(
        &self,
        owner: &str,
        lease: Duration,
        turns: &[TurnCommit],
    ) -> Result<Vec<CommitOutcome>, StoreError> {
        let channel = &self.channel;
        self.block(|| {
            self.transact(async |tx| {
                // The rows the turns write, locked in one order, so that two
                // processes committing at once cannot deadlock on them.
                lock_instances(
                    tx,
                    turns.iter().flat_map(|t| {
                        std::iter::once(t.instance.as_str())
                            .chain(t.sends.iter().map(|s| s.instance.as_str()))
                    }),
                )
                .await?;
                // The time is read once the rows are locked: a message
                // committed while this waited for them is not in its future.
                let now = tx.now().await?;
                let mut outcomes = Vec::with_capacity(turns.len());
                let mut queued = false;
                let mut finished = Vec::new();
                for turn in turns {
                    // Every check before any write: a refused turn leaves no trace.
                    if let Some(name) = check_turn(tx, owner, turn, now).await? {
                        let tasks =
                            write_turn(tx, owner, turn, &name, (now, micros_from_now(now, lease)))
                                .await?;
                        queued |= turn.tasks.len() > turn.lease_tasks
                            || !turn.children.is_empty()
                            || !turn.sends.is_empty()
                            || turn.restart.is_some()
                            || turn.terminate_children.is_some()
                            || !turn.messages.is_empty();
                        if turn.status.as_ref().is_some_and(|s| s.status.is_finished()) {
                            finished.push(turn.instance.as_str());
                        }
                        outcomes.push(CommitOutcome::Committed { tasks });
                    } else {
                        outcomes.push(CommitOutcome::Conflict);
                    }
                }
                if queued {
                    tx.notify(channel).await?;
                }
                tx.notify_finished(channel, &finished).await?;
                Ok(outcomes)
            })
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
        self.block(|| {
            self.transact(async |tx| {
                let now = tx.now().await?;
                let retry_at = micros_from_now(now, retry_after);
                let Some(r) = tx
                    .opt(
                        &format!("SELECT {INSTANCE_COLUMNS} FROM §instances WHERE id = $1 FOR UPDATE"),
                        &[&instance],
                    )
                    .await?
                else {
                    return Ok(());
                };
                // A damaged row is marked all the same and stays damaged:
                // a row that did not verify gets a checksum that cannot match.
                let sound = instance_row(&r, 0, instance, owner, now).is_ok();
                let (name, len, output): (String, i64, Option<String>) = (r.get(0), r.get(5), r.get(2));
                let failure = to_json(failure)?;
                let status = RuntimeStatus::Stuck.as_str();
                let sum = instance_sum(&name, status, output.as_deref(), Some(&failure), None, len);
                let sum = if sound { sum } else { !sum };
                tx.exec(
                    "UPDATE §instances SET status = $5, failure = $2, reason = NULL, updated_at = $3, \
                     lock_owner = $4, lock_until = $6, sum = $7, \
                     attempts = CASE WHEN $8 THEN 0 ELSE attempts END \
                     WHERE id = $1 AND lock_owner = $4 \
                       AND status NOT IN ('completed', 'failed', 'terminated')",
                    &[&instance, &failure, &now, &owner, &status, &retry_at, &sum, &reset_attempts],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn fetch_tasks(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        names: Names<'_>,
    ) -> Result<Vec<LeasedTask>, StoreError> {
        let names = names_of(names);
        let limit = count(limit as u64);
        self.block(|| {
            self.transact(async |tx| {
                let now = tx.now().await?;
                let rows = tx
                    .rows(
                        "UPDATE §tasks SET lease_owner = $1, visible_at = $2, attempt = attempt + 1 \
                         WHERE id IN (SELECT id FROM §tasks WHERE visible_at <= $3 AND NOT cancelled \
                             AND name = ANY($5) ORDER BY visible_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
                         RETURNING id, instance, seq, name, input, retry, attempt, failures, sum",
                        &[&owner, &micros_from_now(now, lease), &now, &limit, &names],
                    )
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    // A damaged task is left leased and looked at again
                    // after the lease: one bad row must not stop the rest.
                    match leased_task(r) {
                        Ok(task) => out.push(task),
                        Err(e) => tracing::warn!("skipping a task: {e}"),
                    }
                }
                out.sort_by_key(|t| t.id);
                Ok(out)
            })
        })
    }

    fn finish_tasks(&self, owner: &str, results: &[TaskResult]) -> Result<(), StoreError> {
        let channel = &self.channel;
        self.block(|| {
            self.transact(async |tx| {
                // Instance rows first, in one order (completions lock them).
                lock_instances(tx, results.iter().map(|r| r.instance.as_str())).await?;
                let now = tx.now().await?;
                for res in results {
                    let TaskRef { id, attempt } = res.task;
                    let attempt = i64::from(attempt);
                    match &res.outcome {
                        TaskOutcome::Done(event) => {
                            let cancelled: Option<bool> = tx
                                .opt(
                                    "DELETE FROM §tasks WHERE id = $1 AND lease_owner = $2 AND attempt = $3 \
                                     RETURNING cancelled",
                                    &[&id, &owner, &attempt],
                                )
                                .await?
                                .map(|r| r.get(0));
                            // None: the lease was lost and a later attempt's
                            // result counts instead. A cancelled call's
                            // result is dropped.
                            if cancelled == Some(false) {
                                insert_message(tx, &res.instance, event, 0).await?;
                            }
                        }
                        outcome => {
                            // A cancelled call is not attempted again.
                            let gone = tx
                                .exec(
                                    "DELETE FROM §tasks WHERE id = $1 AND lease_owner = $2 AND attempt = $3 \
                                     AND cancelled",
                                    &[&id, &owner, &attempt],
                                )
                                .await?;
                            if gone == 1 {
                                continue;
                            }
                            match outcome {
                                TaskOutcome::Retry {
                                    delay,
                                    failures,
                                    error,
                                } => {
                                    tx.exec(
                                        "UPDATE §tasks SET visible_at = $4, failures = $5, lease_owner = NULL, \
                                         last_error = $6 WHERE id = $1 AND lease_owner = $2 AND attempt = $3",
                                        &[
                                            &id,
                                            &owner,
                                            &attempt,
                                            &micros_from_now(now, *delay),
                                            &i64::from(*failures),
                                            &to_json(error)?,
                                        ],
                                    )
                                    .await?;
                                }
                                _ => {
                                    tx.exec(
                                        "UPDATE §tasks SET visible_at = 0, lease_owner = NULL, \
                                         attempt = greatest(attempt - 1, 0) \
                                         WHERE id = $1 AND lease_owner = $2 AND attempt = $3",
                                        &[&id, &owner, &attempt],
                                    )
                                    .await?;
                                }
                            }
                        }
                    }
                }
                if !results.is_empty() {
                    tx.notify(channel).await?;
                }
                Ok(())
            })
        })
    }

    fn renew_tasks(
        &self,
        owner: &str,
        tasks: &[TaskRef],
        lease: Duration,
    ) -> Result<Vec<TaskRef>, StoreError> {
        let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
        let attempts: Vec<i64> = tasks.iter().map(|t| i64::from(t.attempt)).collect();
        self.block(|| {
            self.transact(async |tx| {
                let until = micros_from_now(tx.now().await?, lease);
                let rows = tx
                    .rows(
                        "UPDATE §tasks t SET visible_at = $4 FROM unnest($1::bigint[], $3::bigint[]) AS u(id, attempt) \
                         WHERE t.id = u.id AND t.attempt = u.attempt AND t.lease_owner = $2 AND NOT t.cancelled \
                         RETURNING t.id, t.attempt",
                        &[&ids, &owner, &attempts, &until],
                    )
                    .await?;
                let held: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                Ok(tasks
                    .iter()
                    .filter(|t| held.contains(&(t.id, i64::from(t.attempt))))
                    .copied()
                    .collect())
            })
        })
    }

    fn release_instances(&self, owner: &str) -> Result<(), StoreError> {
        let channel = &self.channel;
        self.block(|| {
            self.transact(async |tx| {
                let n = tx
                    .exec(
                        "UPDATE §instances SET lock_owner = NULL, lock_until = NULL \
                         WHERE lock_owner = $1 AND status <> 'stuck'",
                        &[&owner],
                    )
                    .await?;
                if n > 0 {
                    tx.notify(channel).await?;
                }
                Ok(())
            })
        })
    }

    fn peek_due(&self, ids: &[String]) -> Result<Vec<(String, Messages)>, StoreError> {
        self.block(|| {
            self.transact(async |tx| {
                let now = tx.now().await?;
                let mut out = Vec::new();
                for (id, due) in ids.iter().zip(due_messages(tx, ids, now).await?) {
                    let due = due?;
                    if !due.is_empty() {
                        out.push((id.clone(), due));
                    }
                }
                Ok(out)
            })
        })
    }

    fn queued(&self, ids: &[String]) -> Result<Vec<(String, Messages)>, StoreError> {
        self.block(|| {
            self.transact(async |tx| {
                let mut out = Vec::new();
                // Due by the end of time: all of them.
                for (id, queued) in ids.iter().zip(due_messages(tx, ids, i64::MAX).await?) {
                    let queued = queued?;
                    if !queued.is_empty() {
                        out.push((id.clone(), queued));
                    }
                }
                Ok(out)
            })
        })
    }

    fn set_suspended(
        &self,
        instance: &str,
        suspend: bool,
        reason: &str,
    ) -> Result<Transition, StoreError> {
        let channel = &self.channel;
        self.block(|| {
            self.transact(async |tx| {
                let now = tx.now().await?;
                let done = suspend_or_resume(tx, instance, suspend, reason, now).await?;
                if !suspend && done == Transition::Done {
                    tx.notify(channel).await?;
                }
                Ok(done)
            })
        })
    }

    fn purge(&self, instance: &str) -> Result<Transition, StoreError> {
        self.block(|| {
            self.transact(async |tx| {
                let Some(r) = tx
                    .opt(
                        "SELECT status, name FROM §instances WHERE id = $1 FOR UPDATE",
                        &[&instance],
                    )
                    .await?
                else {
                    return Ok(Transition::NotFound);
                };
                let status = status_of(r.get(0), instance)?;
                let idle_entity = history::is_entity_name(r.get(1))
                    && tx
                        .opt(
                            "SELECT 1 FROM §messages WHERE instance = $1 LIMIT 1",
                            &[&instance],
                        )
                        .await?
                        .is_none();
                if !status.is_finished() && !idle_entity {
                    return Ok(Transition::Refused(status));
                }
                delete_instance(tx, instance).await?;
                Ok(Transition::Done)
            })
        })
    }

    fn send(&self, messages: &[Outgoing]) -> Result<(), StoreError> {
        let channel = &self.channel;
        self.block(|| {
            self.transact(async |tx| {
                lock_instances(tx, messages.iter().map(|m| m.instance.as_str())).await?;
                let now = tx.now().await?;
                for out in messages {
                    send_one(tx, out, now).await?;
                }
                tx.notify(channel).await?;
                Ok(())
            })
        })
    }

    fn purge_finished(&self, before: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        let limit = count(limit as u64);
        self.block(|| {
            self.transact(async |tx| {
                let ids: Vec<String> = tx
                    .rows(
                        "SELECT id FROM §instances \
                         WHERE updated_at < $1 AND status IN ('completed', 'failed', 'terminated') \
                         ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                        &[&before, &limit],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                for id in &ids {
                    delete_instance(tx, id).await?;
                }
                Ok(ids)
            })
        })
    }

    fn tasks_of(&self, instance: &str) -> Result<Vec<crate::store::TaskState>, StoreError> {
        self.block(|| {
            self.transact(async |tx| {
                let rows = tx
                    .rows(
                        "SELECT seq, attempt, failures, lease_owner IS NOT NULL, visible_at, last_error \
                         FROM §tasks WHERE instance = $1 AND NOT cancelled ORDER BY seq",
                        &[&instance],
                    )
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    out.push(crate::store::rows::task_state(
                        instance,
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        r.get(4),
                        r.get(5),
                    )?);
                }
                Ok(out)
            })
        })
    }

    fn backlog(&self) -> Result<crate::store::Backlog, StoreError> {
        self.block(|| {
            self.transact(async |tx| {
                let now = tx.now().await?;
                let r = tx
                    .one(
                        "SELECT (SELECT count(*) FROM §messages WHERE visible_at <= $1), \
                                (SELECT count(*) FROM §tasks WHERE visible_at <= $1 \
                                     AND lease_owner IS NULL AND NOT cancelled)",
                        &[&now],
                    )
                    .await?;
                let what = || "a backlog".to_owned();
                Ok(crate::store::Backlog {
                    messages: seq_of(r.get(0), what)?,
                    tasks: seq_of(r.get(1), what)?,
                })
            })
        })
    }

    fn counts(&self, name: Option<&str>) -> Result<Vec<(RuntimeStatus, u64)>, StoreError> {
        self.block(|| {
            self.transact(async |tx| {
                let rows = tx
                    .rows(
                        "SELECT status, count(*) FROM §instances \
                         WHERE (name = $1 OR ($1::text IS NULL AND left(name, 1) <> '@')) \
                         GROUP BY status ORDER BY status",
                        &[&name],
                    )
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let n: i64 = r.get(1);
                    out.push((
                        status_of(r.get(0), "a count")?,
                        seq_of(n, || "a count".to_owned())?,
                    ));
                }
                Ok(out)
            })
        })
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<InstanceStatus>, StoreError> {
        let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
        let (after_at, after_id) = query
            .after
            .clone()
            .map_or((None, None), |(at, id)| (Some(at), Some(id)));
        let limit = count(query.limit as u64);
        self.block(|| {
            self.transact(async |tx| {
                let rows = tx
                    .rows(
                        &format!(
                            "SELECT {STATUS_COLUMNS} FROM §instances \
                             WHERE (cardinality($1::text[]) = 0 OR status = ANY($1)) \
                               AND (name = $2 OR ($2::text IS NULL AND left(name, 1) <> '@')) \
                               AND ($3::text IS NULL OR left(id, length($3)) = $3) \
                               AND ($4::bigint IS NULL OR created_at >= $4) \
                               AND ($5::bigint IS NULL OR created_at < $5) \
                               AND ($6::bigint IS NULL OR created_at < $6 OR (created_at = $6 AND id < $7)) \
                             ORDER BY created_at DESC, id DESC LIMIT $8"
                        ),
                        &[
                            &statuses,
                            &query.name,
                            &query.id_prefix,
                            &query.created_from,
                            &query.created_before,
                            &after_at,
                            &after_id,
                            &limit,
                        ],
                    )
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    out.push(status_row(r)?);
                }
                Ok(out)
            })
        })
    }

    fn next_due(&self) -> Result<Due, StoreError> {
        self.block(|| {
            self.transact(async |tx| {
                let now = tx.now().await?;
                // Only what is still to come: due work is taken by the fetches.
                let r = tx
                    .one(
                        "SELECT (SELECT min(visible_at) FROM §messages WHERE visible_at > $1), \
                                (SELECT min(visible_at) FROM §tasks WHERE visible_at > $1)",
                        &[&now],
                    )
                    .await?;
                Ok(Due {
                    message: until(now, r.get(0)),
                    task: until(now, r.get(1)),
                })
            })
        })
    }

    fn lookahead(
        &self,
        owner: &str,
        instances: Names<'_>,
        activities: Names<'_>,
    ) -> Result<Lookahead, StoreError> {
        let (newest, instances, activities) = (
            newest_of(instances),
            names_of(instances),
            names_of(activities),
        );
        let look = format!(
            "SELECT EXISTS (SELECT 1 FROM §messages m JOIN §instances i ON i.id = m.instance \
                 WHERE m.visible_at <= $1 AND i.status NOT IN ('suspended', 'stuck') \
                   AND {runs} \
                   AND (i.lock_until IS NULL OR i.lock_until <= $1 OR i.lock_owner = $2) \
                   AND (i.history_len > 0 OR i.name LIKE '@%' \
                        OR (SELECT f.visible_at FROM §messages f WHERE f.instance = i.id \
                            ORDER BY f.seq LIMIT 1) <= $1)), \
             EXISTS (SELECT 1 FROM §tasks WHERE NOT cancelled \
                 AND ((lease_owner = $2 AND visible_at > $1) \
                      OR (visible_at <= $1 AND name = ANY($5)))), \
             least((SELECT min(m.visible_at) FROM §messages m JOIN §instances i ON i.id = m.instance \
                        WHERE m.visible_at > $1 AND {runs}), \
                   (SELECT min(visible_at) FROM §tasks WHERE visible_at > $1 \
                        AND lease_owner IS NULL AND NOT cancelled AND name = ANY($5)))",
            runs = runs_here(3)
        );
        self.block(|| {
            self.transact(async |tx| {
                let now = tx.now().await?;
                // See the SQLite store's: what `fetch_work` and
                // `fetch_tasks` would take for `owner`, and what it runs.
                let r = tx
                    .one(&look, &[&now, &owner, &instances, &newest, &activities])
                    .await?;
                let (message_due, task_busy): (bool, bool) = (r.get(0), r.get(1));
                Ok(Lookahead {
                    busy: message_due || task_busy,
                    next: until(now, r.get(2)),
                })
            })
        })
    }

    fn status(&self, instance: &str) -> Result<Option<InstanceStatus>, StoreError> {
        self.block(|| {
            self.transact(async |tx| {
                let row = tx
                    .opt(
                        &format!("SELECT {STATUS_COLUMNS} FROM §instances WHERE id = $1"),
                        &[&instance],
                    )
                    .await?;
                Ok(row.as_ref().map(status_row).transpose()?)
            })
        })
    }

    fn watch(&self, wake: std::sync::Arc<dyn Fn(crate::store::Change<'_>) + Send + Sync>) {
        self.wakes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(wake);
    }
}

/// Sequence numbers as SQL integers.
fn counts(seqs: &[u64]) -> Vec<i64> {
    seqs.iter().map(|s| count(*s)).collect()
}

/// Runs `sql` (taking the instance as `$1`, the numbers as `$2`) for
/// `seqs` of instance `id`; nothing when there are none.
async fn for_seqs(tx: &Tx<'_>, sql: &str, id: &str, seqs: &[u64]) -> Result<(), TxError> {
    if !seqs.is_empty() {
        tx.exec(sql, &[&id, &counts(seqs)]).await?;
    }
    Ok(())
}

/// Locks the rows of `ids` (any order, repeats allowed) in one order, so
/// that transactions locking several instances cannot deadlock on them.
async fn lock_instances<'a>(
    tx: &Tx<'_>,
    ids: impl Iterator<Item = &'a str>,
) -> Result<(), TxError> {
    let mut ids: Vec<&str> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    tx.exec(
        "SELECT 1 FROM §instances WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&ids],
    )
    .await?;
    Ok(())
}

/// Whether a turn may be written (see the SQLite store's `check_turn`,
/// whose rules these are, a suspended instance refusing every turn), with
/// one more: no other owner holds the instance now (the fence against a
/// worker that lost its claim).
/// `Some(name)` if so.
async fn check_turn(
    tx: &Tx<'_>,
    owner: &str,
    turn: &TurnCommit,
    now: i64,
) -> Result<Option<String>, TxError> {
    let row = tx
        .opt(
            "SELECT name, history_len, execution, \
             (lock_owner IS NOT NULL AND lock_owner <> $2 AND coalesce(lock_until, 0) > $3) \
                 OR status = 'suspended' \
             FROM §instances WHERE id = $1",
            &[&turn.instance, &owner, &now],
        )
        .await?;
    let name = match row {
        Some(r)
            if r.get::<_, i64>(1) == count(turn.expected_len)
                && r.get::<_, i64>(2) == count(turn.execution)
                && !r.get::<_, bool>(3) =>
        {
            r.get::<_, String>(0)
        }
        _ => return Ok(None),
    };
    if !turn.finished_tasks.is_empty() {
        let ids: Vec<i64> = turn.finished_tasks.iter().map(|t| t.id).collect();
        let attempts: Vec<i64> = turn
            .finished_tasks
            .iter()
            .map(|t| i64::from(t.attempt))
            .collect();
        let held: i64 = tx
            .one(
                "SELECT count(*) FROM §tasks t JOIN unnest($1::bigint[], $3::bigint[]) AS u(id, attempt) \
                 ON t.id = u.id AND t.attempt = u.attempt WHERE t.lease_owner = $2",
                &[&ids, &owner, &attempts],
            )
            .await?
            .get(0);
        if held != count(turn.finished_tasks.len() as u64) {
            return Ok(None);
        }
    }
    let consumed = counts(&turn.consumed);
    if !consumed.is_empty() {
        let present: i64 = tx
            .one(
                "SELECT count(*) FROM §messages WHERE instance = $1 AND seq = ANY($2)",
                &[&turn.instance, &consumed],
            )
            .await?
            .get(0);
        let mut distinct = consumed.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if present != count(distinct.len() as u64) {
            // Consumed by another turn: this one is stale.
            return Ok(None);
        }
    }
    // Messages reach an instance in sequence order: a turn may not pass
    // over an older due message, and a turn that ends the instance takes
    // every due one.
    let turn_time = turn.status.as_ref().map_or(now, |s| s.now);
    let newest = consumed.iter().max().copied();
    let bound = if turn.take_all_due || !turn.finished_tasks.is_empty() {
        Some(i64::MAX)
    } else {
        newest
    };
    if let Some(bound) = bound {
        let due_by = if turn.take_all_due {
            now.max(turn_time)
        } else {
            turn_time
        };
        let passed: i64 = tx
            .one(
                "SELECT count(*) FROM §messages WHERE instance = $1 AND seq < $2 AND visible_at <= $3 \
                 AND NOT (seq = ANY($4))",
                &[&turn.instance, &bound, &due_by, &consumed],
            )
            .await?
            .get(0);
        if passed > 0 {
            return Ok(None);
        }
    }
    Ok(Some(name))
}

/// Writes a turn [`check_turn`] passed; returns the new tasks' ids.
async fn write_turn(
    tx: &Tx<'_>,
    owner: &str,
    turn: &TurnCommit,
    name: &str,
    (now, lease_until): (i64, i64),
) -> Result<Vec<i64>, TxError> {
    let id = turn.instance.as_str();
    if !turn.finished_tasks.is_empty() {
        let ids: Vec<i64> = turn.finished_tasks.iter().map(|t| t.id).collect();
        tx.exec("DELETE FROM §tasks WHERE id = ANY($1)", &[&ids])
            .await?;
    }
    let consumed = turn.consumed.iter().max().map(|m| count(*m));
    if let Some(custom) = turn.status.as_ref().and_then(|s| s.custom_status.as_ref()) {
        let text = custom.json();
        let sum = checksum_with(&[], &[Some(id), Some(text)]);
        tx.exec(
            "UPDATE §instances SET custom_status = $2, custom_sum = $3 WHERE id = $1",
            &[&id, &text, &sum],
        )
        .await?;
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
            let new_len = count(new_len);
            let sum = instance_sum(
                name,
                status,
                output,
                failure.as_deref(),
                s.reason.as_deref(),
                new_len,
            );
            tx.exec(
                "UPDATE §instances SET history_len = $2, status = $3, output = $4, failure = $5, \
                 reason = $6, updated_at = $7, attempts = 0, sum = $8, \
                 consumed_through = CASE WHEN $9::bigint IS NULL THEN consumed_through \
                     ELSE greatest(coalesce(consumed_through, -1), $9) END, \
                 lock_until = CASE WHEN lock_owner = $10 THEN NULL ELSE lock_until END, \
                 lock_owner = CASE WHEN lock_owner = $10 THEN NULL ELSE lock_owner END \
                 WHERE id = $1",
                &[
                    &id, &new_len, &status, &output, &failure, &s.reason, &s.now, &sum, &consumed,
                    &owner,
                ],
            )
            .await?;
        }
        None => {
            tx.exec(
                "UPDATE §instances SET \
                 consumed_through = CASE WHEN $2::bigint IS NULL THEN consumed_through \
                     ELSE greatest(coalesce(consumed_through, -1), $2) END, \
                 lock_until = CASE WHEN lock_owner = $3 THEN NULL ELSE lock_until END, \
                 lock_owner = CASE WHEN lock_owner = $3 THEN NULL ELSE lock_owner END \
                 WHERE id = $1",
                &[&id, &consumed, &owner],
            )
            .await?;
        }
    }
    if turn.restart.is_none() && !turn.events.is_empty() {
        let mut idx = Vec::with_capacity(turn.events.len());
        let mut turns = Vec::with_capacity(turn.events.len());
        let mut ats = Vec::with_capacity(turn.events.len());
        let mut events = Vec::with_capacity(turn.events.len());
        let mut sums = Vec::with_capacity(turn.events.len());
        for rec in &turn.events {
            let event = to_json(&rec.event)?;
            let (i, t) = (count(rec.index), count(rec.turn));
            sums.push(checksum_with(&[i, t, rec.at], &[Some(id), Some(&event)]));
            idx.push(i);
            turns.push(t);
            ats.push(rec.at);
            events.push(event);
        }
        tx.exec(
            "INSERT INTO §history (instance, idx, turn, at, event, sum) \
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[])",
            &[&id, &idx, &turns, &ats, &events, &sums],
        )
        .await?;
    }
    if turn.discard_queued {
        // The runtime ended the instance: nobody reads what it still had
        // queued. Activities the last turn itself called are queued below.
        for table in ["messages", "tasks", "message_keys"] {
            tx.exec(&format!("DELETE FROM §{table} WHERE instance = $1"), &[&id])
                .await?;
        }
    } else if !turn.messages.is_empty() {
        let timers: Vec<(&Event, i64)> = turn
            .messages
            .iter()
            .map(|m| (&m.event, m.visible_at))
            .collect();
        insert_messages(tx, id, &timers).await?;
    }
    let mut ids = Vec::with_capacity(turn.tasks.len());
    if !turn.tasks.is_empty() {
        let n = turn.tasks.len();
        let (
            mut seqs,
            mut names,
            mut inputs,
            mut retries,
            mut visible,
            mut owners,
            mut attempts,
            mut sums,
        ) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (i, task) in turn.tasks.iter().enumerate() {
            let leased = i < turn.lease_tasks;
            let seq = count(task.seq);
            let retry = to_json(&task.retry)?;
            sums.push(task_sum(id, seq, &task.name, task.input.json(), &retry));
            seqs.push(seq);
            names.push(task.name.as_str());
            inputs.push(task.input.json());
            retries.push(retry);
            visible.push(if leased { lease_until } else { 0 });
            owners.push(leased.then_some(owner));
            attempts.push(i64::from(leased));
        }
        let rows = tx
            .rows(
                "INSERT INTO §tasks (instance, seq, name, input, retry, visible_at, lease_owner, attempt, sum) \
                 SELECT $1, u.seq, u.name, u.input, u.retry, u.visible_at, u.lease_owner, u.attempt, u.sum \
                 FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], \
                     $7::text[], $8::bigint[], $9::bigint[]) WITH ORDINALITY \
                     AS u(seq, name, input, retry, visible_at, lease_owner, attempt, sum, n) \
                 ORDER BY u.n RETURNING id, seq",
                &[&id, &seqs, &names, &inputs, &retries, &visible, &owners, &attempts, &sums],
            )
            .await?;
        // RETURNING does not promise the order of the rows: match by seq.
        for seq in &seqs {
            let row = rows.iter().find(|r| r.get::<_, i64>(1) == *seq);
            ids.push(row.map_or(0, |r| r.get(0)));
        }
    }
    for_seqs(
        tx,
        "DELETE FROM §messages WHERE instance = $1 AND seq = ANY($2)",
        id,
        &turn.consumed,
    )
    .await?;
    for_seqs(
        tx,
        "DELETE FROM §messages WHERE instance = $1 AND timer = ANY($2)",
        id,
        &turn.cancel_timers,
    )
    .await?;
    // Calls nobody waits for: a queued one never runs; a running one is
    // marked, so that its worker is told at its next renewal.
    for_seqs(
        tx,
        "DELETE FROM §tasks WHERE instance = $1 AND seq = ANY($2) AND lease_owner IS NULL",
        id,
        &turn.cancel_tasks,
    )
    .await?;
    for_seqs(
        tx,
        "UPDATE §tasks SET cancelled = true WHERE instance = $1 AND seq = ANY($2)",
        id,
        &turn.cancel_tasks,
    )
    .await?;
    if let Some(restart) = &turn.restart {
        restart_instance(tx, id, restart, now).await?;
    }
    send(tx, turn, now).await?;
    if let Some(keep) = turn.keep_lock {
        tx.exec(
            "UPDATE §instances SET lock_owner = $2, lock_until = $3 \
             WHERE id = $1 AND (lock_owner IS NULL OR lock_owner = $2 OR lock_until <= $4)",
            &[&id, &owner, &micros_from_now(now, keep), &now],
        )
        .await?;
    }
    Ok(ids)
}

/// Creates one instance with its `Started` message, or leaves an existing
/// one as it is.
async fn create_instance(tx: &Tx<'_>, new: &NewInstance, now: i64) -> Result<Created, TxError> {
    if new.replace_finished {
        let status: Option<String> = tx
            .opt(
                "SELECT status FROM §instances WHERE id = $1 FOR UPDATE",
                &[&new.id],
            )
            .await?
            .map(|r| r.get(0));
        if let Some(status) = status {
            if status_of(&status, &new.id)?.is_finished() {
                delete_instance(tx, &new.id).await?;
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
        .exec(
            "INSERT INTO §instances (id, name, status, created_at, updated_at, sum, lock_owner, \
             lock_until, parent_id, parent_seq, execution, version) \
             VALUES ($1, $2, 'pending', $3, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (id) DO NOTHING",
            &[
                &new.id,
                &new.name,
                &new.now,
                &sum,
                &lock_owner,
                &lock_until,
                &new.parent.as_ref().map(|p| p.id.as_str()),
                &new.parent.as_ref().map(|p| count(p.seq)),
                &count(history::execution_of(new.seed)),
                &i64::from(new.version),
            ],
        )
        .await?;
    if n == 0 {
        return Ok(Created::Exists);
    }
    let message = insert_message(tx, &new.id, &new.started(), new.visible_at)
        .await?
        .ok_or_else(|| {
            corrupt(
                format!("instance `{}`", escaped(&new.id)),
                "created but not live",
            )
        })?;
    Ok(Created::Created { message })
}

/// The columns [`status_row`] reads, in its order.
const STATUS_COLUMNS: &str = "id, name, status, output, failure, reason, created_at, updated_at, \
     history_len, sum, custom_status, custom_sum";

/// An instance's status from a row of [`STATUS_COLUMNS`], checked.
fn status_row(r: &Row) -> Result<InstanceStatus, StoreError> {
    let id: String = r.get(0);
    let name: String = r.get(1);
    let status: String = r.get(2);
    let output: Option<String> = r.get(3);
    let failure: Option<String> = r.get(4);
    let reason: Option<String> = r.get(5);
    let len: i64 = r.get(8);
    let what = || format!("instance `{}`", escaped(&id));
    verify_with(
        r.get(9),
        &[len],
        &[
            Some(&name),
            Some(&status),
            output.as_deref(),
            failure.as_deref(),
            reason.as_deref(),
        ],
        what,
    )?;
    let custom: Option<String> = r.get(10);
    let custom_status = match custom {
        None => None,
        Some(text) => {
            let what = || format!("the custom status of instance `{}`", escaped(&id));
            let sum: Option<i64> = r.get(11);
            verify_with(sum.unwrap_or(0), &[], &[Some(&id), Some(&text)], what)?;
            Some(Payload::from_json(text).map_err(|e| corrupt(what(), e))?)
        }
    };
    Ok(InstanceStatus {
        custom_status,
        runtime_status: status_of(&status, &id)?,
        output: output
            .map(Payload::from_json)
            .transpose()
            .map_err(|e| corrupt(what(), e))?,
        failure: failure
            .map(|f| serde_json::from_str(&f))
            .transpose()
            .map_err(|e| corrupt(what(), e))?,
        terminated: reason,
        created_at: history::system_time(r.get(6)),
        updated_at: history::system_time(r.get(7)),
        history_len: seq_of(len, what)?,
        name,
        id,
    })
}

/// Deletes an instance and everything of it.
async fn delete_instance(tx: &Tx<'_>, instance: &str) -> Result<(), TxError> {
    for table in ["history", "messages", "message_keys", "tasks"] {
        tx.exec(
            &format!("DELETE FROM §{table} WHERE instance = $1"),
            &[&instance],
        )
        .await?;
    }
    tx.exec("DELETE FROM §instances WHERE id = $1", &[&instance])
        .await?;
    // Its children outlive it, but report to no one.
    tx.exec(
        "UPDATE §instances SET parent_id = NULL, parent_seq = NULL WHERE parent_id = $1",
        &[&instance],
    )
    .await?;
    Ok(())
}

/// Suspends or resumes a live instance, recording it in its history.
async fn suspend_or_resume(
    tx: &Tx<'_>,
    instance: &str,
    suspend: bool,
    reason: &str,
    now: i64,
) -> Result<Transition, TxError> {
    let Some(r) = tx
        .opt(
            &format!("SELECT {INSTANCE_COLUMNS} FROM §instances WHERE id = $1 FOR UPDATE"),
            &[&instance],
        )
        .await?
    else {
        return Ok(Transition::NotFound);
    };
    let row = instance_row(&r, 0, instance, "", now)?;
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
    let last = tx
        .opt(
            "SELECT turn, at FROM §history WHERE instance = $1 ORDER BY idx DESC LIMIT 1",
            &[&instance],
        )
        .await?;
    let (turn, at) = last.map_or((0, now), |r| {
        (r.get::<_, i64>(0) + 1, r.get::<_, i64>(1).max(now))
    });
    let reason = reason.to_owned();
    let event = if suspend {
        Event::Suspended { reason }
    } else {
        Event::Resumed { reason }
    };
    // An instance not started yet records nothing: its history must open
    // with `Started`. Resumed, it is pending again.
    let started = row.history_len > 0;
    if started {
        let rec = HistoryRecord {
            index: row.history_len,
            turn: u64::try_from(turn).unwrap_or(0),
            at,
            event,
        };
        insert_history(tx, instance, &rec).await?;
    }
    let status = match (suspend, started) {
        (true, _) => RuntimeStatus::Suspended,
        (false, true) => RuntimeStatus::Running,
        (false, false) => RuntimeStatus::Pending,
    };
    let (output, failure, reason_col): (Option<String>, Option<String>, Option<String>) =
        (r.get(2), r.get(3), r.get(4));
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
    tx.exec(
        "UPDATE §instances SET status = $2, history_len = $3, sum = $4, updated_at = $5, \
         lock_owner = NULL, lock_until = NULL WHERE id = $1",
        &[&instance, &status.as_str(), &new_len, &sum, &now],
    )
    .await?;
    Ok(Transition::Done)
}

/// Queues a message that must be taken whatever the instance's state (a
/// termination): a suspended instance resumes, a stuck one is released.
async fn enqueue_termination(
    tx: &Tx<'_>,
    instance: &str,
    event: &Event,
    now: i64,
) -> Result<Option<u64>, TxError> {
    let status: Option<String> = tx
        .opt(
            "SELECT status FROM §instances WHERE id = $1 FOR UPDATE",
            &[&instance],
        )
        .await?
        .map(|r| r.get(0));
    let Some(status) = status.map(|s| status_of(&s, instance)).transpose()? else {
        return Ok(None);
    };
    if status == RuntimeStatus::Suspended {
        Box::pin(suspend_or_resume(
            tx,
            instance,
            false,
            "to be terminated",
            now,
        ))
        .await?;
    }
    let message = insert_message(tx, instance, event, now).await?;
    if status == RuntimeStatus::Stuck {
        tx.exec(
            "UPDATE §instances SET lock_owner = NULL, lock_until = NULL WHERE id = $1",
            &[&instance],
        )
        .await?;
    }
    Ok(message)
}

/// Starts a turn's children and queues its messages to other instances.
async fn send(tx: &Tx<'_>, turn: &TurnCommit, now: i64) -> Result<(), TxError> {
    for child in &turn.children {
        if Box::pin(create_instance(tx, child, now)).await? == Created::Exists {
            if let Some(parent) = &child.parent {
                let failed = Event::ChildFailed {
                    seq: parent.seq,
                    failure: ChildFailure::IdTaken(child.id.clone()),
                };
                insert_message(tx, &parent.id, &failed, now).await?;
            }
        }
    }
    if let Some(reason) = &turn.terminate_children {
        // Every live child this instance started, in any execution.
        let children: Vec<String> = tx
            .rows(
                "SELECT id FROM §instances WHERE parent_id = $1 \
                 AND status NOT IN ('completed', 'failed', 'terminated') ORDER BY id",
                &[&turn.instance],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let event = Event::Terminated {
            reason: reason.clone(),
        };
        for child in children {
            enqueue_termination(tx, &child, &event, now).await?;
        }
    }
    for out in &turn.sends {
        if out.from_child
            && tx
                .opt(
                    "SELECT 1 FROM §instances WHERE id = $1 AND parent_id = $2",
                    &[&turn.instance, &out.instance],
                )
                .await?
                .is_none()
        {
            continue;
        }
        send_one(tx, out, now).await?;
    }
    Ok(())
}

/// Queues one message to another instance; an entity's row is created
/// first when it has none.
async fn send_one(tx: &Tx<'_>, out: &Outgoing, now: i64) -> Result<(), TxError> {
    if let Some(type_name) = &out.entity {
        let sum = instance_sum(
            type_name,
            RuntimeStatus::Running.as_str(),
            None,
            None,
            None,
            0,
        );
        tx.exec(
            "INSERT INTO §instances (id, name, status, created_at, updated_at, sum) \
             VALUES ($1, $2, 'running', $3, $3, $4) ON CONFLICT (id) DO NOTHING",
            &[&out.instance, type_name, &now, &sum],
        )
        .await?;
    }
    if out.wake_stuck {
        enqueue_termination(tx, &out.instance, &out.event, now).await?;
    } else {
        insert_message(tx, &out.instance, &out.event, now.max(out.visible_at)).await?;
    }
    Ok(())
}

/// Starts an instance afresh: see [`Restart`].
async fn restart_instance(
    tx: &Tx<'_>,
    instance: &str,
    restart: &Restart,
    now: i64,
) -> Result<(), TxError> {
    tx.exec("DELETE FROM §history WHERE instance = $1", &[&instance])
        .await?;
    tx.exec("DELETE FROM §tasks WHERE instance = $1", &[&instance])
        .await?;
    tx.exec(
        "DELETE FROM §messages WHERE instance = $1 AND visible_at > $2",
        &[&instance, &now],
    )
    .await?;
    // What is still queued goes behind the new start, in its order: events
    // and terminations; results and timers of the old execution's calls
    // mean nothing to the new one.
    let queued = tx
        .rows(
            "DELETE FROM §messages WHERE instance = $1 RETURNING seq, visible_at, event",
            &[&instance],
        )
        .await?;
    let mut queued: Vec<(i64, i64, String)> = queued
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    queued.sort_by_key(|q| q.0);
    let what = || format!("a message of instance `{}`", escaped(instance));
    let mut requeued = Vec::with_capacity(queued.len());
    for (_, visible_at, text) in &queued {
        let event = decode_event(text, what)?;
        if matches!(event, Event::EventRaised { .. } | Event::Terminated { .. }) {
            requeued.push((event, *visible_at));
        }
    }
    let all: Vec<(&Event, i64)> = std::iter::once((&restart.started, 0))
        .chain(restart.carried.iter().map(|e| (e, 0)))
        .chain(requeued.iter().map(|(e, at)| (e, *at)))
        .collect();
    insert_messages(tx, instance, &all).await?;
    if let Event::Started { seed, .. } = &restart.started {
        tx.exec(
            "UPDATE §instances SET execution = $2 WHERE id = $1",
            &[&instance, &count(history::execution_of(*seed))],
        )
        .await?;
    }
    Ok(())
}
