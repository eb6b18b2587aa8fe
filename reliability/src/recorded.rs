//! A store that writes down what a worker process's commits came to, for
//! tests that must see a refused commit or a lost connection, not infer
//! it: each turn committed or refused, and each failed store call, as a
//! line in an append-only file.
//!
//! Lines: `commit <pid> <at> <instance> <expected_len> <committed|conflict>`
//! (`at`: when the call began, in microseconds since the Unix epoch on
//! the machine's clock: a process stopped between a commit and its line
//! writes the line late, and `at` still tells when the commit was made)
//! and `error <pid> <method> <transient|other> <message>`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use durable::history::{Event, Failure, HistoryRecord};
use durable::store::{
    Change, CommitOutcome, Created, Due, Enqueued, InstanceWork, LeasedTask, ListQuery, Lookahead,
    Messages, Names, NewInstance, Outgoing, Progress, Store, TaskRef, TaskResult, Transition,
    TurnCommit,
};
use durable::{InstanceStatus, StoreError};

/// What a `commit` line says of a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Written.
    Committed,
    /// Refused whole.
    Conflict,
}

/// One line of the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A turn the process tried to commit.
    Commit {
        /// The process.
        pid: u32,
        /// When the call began (microseconds since the Unix epoch).
        at: i64,
        /// The instance.
        instance: String,
        /// The history length the turn was computed on.
        expected_len: u64,
        /// What the store said.
        verdict: Verdict,
    },
    /// A store call that failed.
    Error {
        /// The process.
        pid: u32,
        /// The store method.
        method: String,
        /// Whether the error was transient (worth trying again).
        transient: bool,
        /// The error.
        message: String,
    },
}

impl Line {
    /// Parses one line.
    ///
    /// # Errors
    /// The line, when it is not in the record's format.
    pub fn parse(line: &str) -> Result<Self, String> {
        let bad = || format!("a malformed record line: {line:?}");
        let mut words = line.splitn(if line.starts_with("commit") { 6 } else { 5 }, ' ');
        let kind = words.next().ok_or_else(bad)?;
        let pid = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        match kind {
            "commit" => {
                let at = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
                let instance = words.next().ok_or_else(bad)?.to_owned();
                let expected_len = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
                let verdict = match words.next() {
                    Some("committed") => Verdict::Committed,
                    Some("conflict") => Verdict::Conflict,
                    _ => return Err(bad()),
                };
                Ok(Self::Commit {
                    pid,
                    at,
                    instance,
                    expected_len,
                    verdict,
                })
            }
            "error" => {
                let method = words.next().ok_or_else(bad)?.to_owned();
                let transient = match words.next() {
                    Some("transient") => true,
                    Some("other") => false,
                    _ => return Err(bad()),
                };
                let message = words.next().unwrap_or_default().to_owned();
                Ok(Self::Error {
                    pid,
                    method,
                    transient,
                    message,
                })
            }
            _ => Err(bad()),
        }
    }
}

/// Reads a record (nothing when it does not exist yet).
///
/// # Errors
/// The malformed lines.
pub fn read_record(path: &Path) -> Result<Vec<Line>, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(Line::parse).collect()
}

/// `S`, with what its commits came to written to a file.
pub struct Recorded<S> {
    inner: S,
    log: Arc<Mutex<File>>,
}

impl<S: Store> Recorded<S> {
    /// Wraps `inner`, appending to the file at `path`.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn new(inner: S, path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            inner,
            log: Arc::new(Mutex::new(file)),
        })
    }

    fn write(&self, line: &str) {
        let mut file = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        // One short write to an O_APPEND file: lines never interleave.
        file.write_all(line.as_bytes())
            .expect("the record is writable");
    }

    /// Passes `result` on, writing it down first when it is an error.
    fn seen<T>(&self, method: &str, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &result {
            let kind = if e.is_transient() {
                "transient"
            } else {
                "other"
            };
            let message = e.to_string().replace('\n', " ");
            self.write(&format!(
                "error {} {method} {kind} {message}\n",
                std::process::id()
            ));
        }
        result
    }
}

impl<S: Store> Store for Recorded<S> {
    fn now(&self) -> Result<i64, StoreError> {
        self.seen("now", self.inner.now())
    }

    fn create_instances(&self, instances: &[NewInstance]) -> Result<Vec<Created>, StoreError> {
        self.seen("create_instances", self.inner.create_instances(instances))
    }

    fn enqueue(
        &self,
        instance: &str,
        event: &Event,
        key: Option<&str>,
        wake_stuck: bool,
    ) -> Result<Enqueued, StoreError> {
        self.seen(
            "enqueue",
            self.inner.enqueue(instance, event, key, wake_stuck),
        )
    }

    fn fetch_work(
        &self,
        owner: &str,
        lock: Duration,
        limit: usize,
        names: Names<'_>,
    ) -> Result<Vec<InstanceWork>, StoreError> {
        self.seen(
            "fetch_work",
            self.inner.fetch_work(owner, lock, limit, names),
        )
    }

    fn progress(&self, owner: &str, ids: &[String]) -> Result<Vec<(String, Progress)>, StoreError> {
        self.seen("progress", self.inner.progress(owner, ids))
    }

    fn history(&self, instance: &str) -> Result<Option<Vec<HistoryRecord>>, StoreError> {
        self.seen("history", self.inner.history(instance))
    }

    fn commit_turns(
        &self,
        owner: &str,
        lease: Duration,
        turns: &[TurnCommit],
    ) -> Result<Vec<CommitOutcome>, StoreError> {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let outcomes = self.seen("commit_turns", self.inner.commit_turns(owner, lease, turns))?;
        let pid = std::process::id();
        let mut lines = String::new();
        for (turn, outcome) in turns.iter().zip(&outcomes) {
            let verdict = match outcome {
                CommitOutcome::Committed { .. } => "committed",
                _ => "conflict",
            };
            lines.push_str(&format!(
                "commit {pid} {at} {} {} {verdict}\n",
                turn.instance, turn.expected_len
            ));
        }
        self.write(&lines);
        Ok(outcomes)
    }

    fn mark_stuck(
        &self,
        owner: &str,
        instance: &str,
        failure: &Failure,
        retry_after: Duration,
        reset_attempts: bool,
    ) -> Result<(), StoreError> {
        self.seen(
            "mark_stuck",
            self.inner
                .mark_stuck(owner, instance, failure, retry_after, reset_attempts),
        )
    }

    fn fetch_tasks(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        names: Names<'_>,
    ) -> Result<Vec<LeasedTask>, StoreError> {
        self.seen(
            "fetch_tasks",
            self.inner.fetch_tasks(owner, lease, limit, names),
        )
    }

    fn finish_tasks(&self, owner: &str, results: &[TaskResult]) -> Result<(), StoreError> {
        self.seen("finish_tasks", self.inner.finish_tasks(owner, results))
    }

    fn renew_tasks(
        &self,
        owner: &str,
        tasks: &[TaskRef],
        lease: Duration,
    ) -> Result<Vec<TaskRef>, StoreError> {
        self.seen("renew_tasks", self.inner.renew_tasks(owner, tasks, lease))
    }

    fn release_instances(&self, owner: &str) -> Result<(), StoreError> {
        self.seen("release_instances", self.inner.release_instances(owner))
    }

    fn peek_due(&self, ids: &[String]) -> Result<Vec<(String, Messages)>, StoreError> {
        self.seen("peek_due", self.inner.peek_due(ids))
    }

    fn queued(&self, ids: &[String]) -> Result<Vec<(String, Messages)>, StoreError> {
        self.seen("queued", self.inner.queued(ids))
    }

    fn set_suspended(
        &self,
        instance: &str,
        suspend: bool,
        reason: &str,
    ) -> Result<Transition, StoreError> {
        self.seen(
            "set_suspended",
            self.inner.set_suspended(instance, suspend, reason),
        )
    }

    fn purge(&self, instance: &str) -> Result<Transition, StoreError> {
        self.seen("purge", self.inner.purge(instance))
    }

    fn send(&self, messages: &[Outgoing]) -> Result<(), StoreError> {
        self.seen("send", self.inner.send(messages))
    }

    fn purge_finished(&self, before: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.seen("purge_finished", self.inner.purge_finished(before, limit))
    }

    fn tasks_of(&self, instance: &str) -> Result<Vec<durable::store::TaskState>, StoreError> {
        self.seen("tasks_of", self.inner.tasks_of(instance))
    }

    fn backlog(&self) -> Result<durable::store::Backlog, StoreError> {
        self.seen("backlog", self.inner.backlog())
    }

    fn counts(&self, name: Option<&str>) -> Result<Vec<(durable::RuntimeStatus, u64)>, StoreError> {
        self.seen("counts", self.inner.counts(name))
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<InstanceStatus>, StoreError> {
        self.seen("list", self.inner.list(query))
    }

    fn next_due(&self) -> Result<Due, StoreError> {
        self.seen("next_due", self.inner.next_due())
    }

    fn lookahead(
        &self,
        owner: &str,
        instances: Names<'_>,
        activities: Names<'_>,
    ) -> Result<Lookahead, StoreError> {
        self.seen(
            "lookahead",
            self.inner.lookahead(owner, instances, activities),
        )
    }

    fn status(&self, instance: &str) -> Result<Option<InstanceStatus>, StoreError> {
        self.seen("status", self.inner.status(instance))
    }

    fn watch(&self, wake: Arc<dyn Fn(Change<'_>) + Send + Sync>) {
        self.inner.watch(wake);
    }
}
