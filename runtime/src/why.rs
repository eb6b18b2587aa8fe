//! Why an instance is not moving: what it waits on, read from its status,
//! its history and (for the events it waits for) a replay of its code.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use crate::history::{self, ActivityFailure, Event, Failure, HistoryRecord, RuntimeStatus};

/// One thing an instance waits on; see [`Client::waiting_on`](crate::Client::waiting_on).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Blocker {
    /// Its start is still to come (a scheduled start), or no process has
    /// taken it yet.
    NotStarted,
    /// A client suspended it: it runs no turn until resumed.
    Suspended {
        /// The reason recorded.
        reason: String,
    },
    /// It is parked: this code cannot replay it (nondeterminism, an
    /// orchestrator or version not registered). Nothing is lost; it goes
    /// on once code that fits is deployed.
    Parked {
        /// Why, naming the recorded call site and the one the code makes.
        failure: Failure,
    },
    /// It runs on a version of its orchestrator newer than any this
    /// process registers: a newer build's instance (a rolling deploy, or
    /// a rollback). Processes of this build leave it alone; one of a build
    /// that has the version runs it. A termination still ends it.
    NewerVersion {
        /// The orchestrator's stored name.
        orchestrator: String,
        /// The version it runs on.
        version: u32,
        /// The newest version registered here.
        newest: u32,
    },
    /// An external event it waits for.
    Event {
        /// The event's name.
        name: String,
        /// Events that did arrive under a similar name (a typo in the
        /// sender's name, another case), not taken by anything.
        similar: Vec<String>,
    },
    /// A durable timer not fired yet.
    Timer {
        /// The timer's sequence number.
        seq: u64,
        /// When it fires.
        fires_at: SystemTime,
        /// Where in the source it was made.
        site: String,
    },
    /// An activity call not completed yet (queued, running, or between
    /// retries).
    Activity {
        /// The call's sequence number.
        seq: u64,
        /// The activity's stored name.
        name: String,
        /// Where in the source the call was made.
        site: String,
        /// When it was called.
        since: SystemTime,
        /// Attempts started so far.
        attempts: u32,
        /// Attempts that failed and were retried.
        failures: u32,
        /// An attempt runs now.
        running: bool,
        /// When the next attempt is due, while it waits out a retry's
        /// backoff.
        next_attempt: Option<SystemTime>,
        /// How the last failed attempt failed, once one has.
        last_error: Option<ActivityFailure>,
    },
    /// A child orchestration not finished yet.
    Child {
        /// The call's sequence number.
        seq: u64,
        /// The child's instance id.
        id: String,
        /// Its orchestrator's stored name.
        name: String,
        /// Where in the source the call was made.
        site: String,
    },
    /// An entity operation called and not answered yet.
    Entity {
        /// The call's sequence number.
        seq: u64,
        /// The entity's instance id (`@Type@key`).
        entity: String,
        /// The operation.
        op: String,
        /// Where in the source the call was made.
        site: String,
    },
    /// A critical section asked for and not granted yet: another holder
    /// keeps one of its entities.
    Lock {
        /// The request's sequence number.
        seq: u64,
        /// The entities asked for.
        entities: Vec<String>,
        /// Where in the source it was asked for.
        site: String,
    },
}

impl Blocker {
    /// The sequence number of the call, timer or lock, if it is one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::Timer { seq, .. }
            | Self::Activity { seq, .. }
            | Self::Child { seq, .. }
            | Self::Entity { seq, .. }
            | Self::Lock { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotStarted => {
                f.write_str("not started yet (a scheduled start, or no worker has taken it)")
            }
            Self::Suspended { reason } => write!(f, "suspended: {reason}"),
            Self::Parked { failure } => write!(f, "parked: {}", failure.message),
            Self::NewerVersion {
                orchestrator,
                version,
                newest,
            } => write!(
                f,
                "runs on version {version} of `{orchestrator}`, newer than any registered here \
                 (newest: {newest}): it waits for a process of a build that has it"
            ),
            Self::Event { name, similar } if similar.is_empty() => {
                write!(f, "waits for event `{name}`")
            }
            Self::Event { name, similar } => write!(
                f,
                "waits for event `{name}`; arrived under similar names: {}",
                similar
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Timer {
                seq,
                fires_at,
                site,
            } => write!(
                f,
                "timer #{seq} fires at {} ({site})",
                crate::time::rfc3339(*fires_at)
            ),
            Self::Activity {
                seq,
                name,
                site,
                attempts,
                failures,
                running,
                next_attempt,
                last_error,
                ..
            } => {
                write!(f, "activity `{name}` #{seq} not completed")?;
                if *running {
                    write!(f, ", attempt {attempts} running")?;
                }
                if *failures > 0 {
                    write!(f, ", {failures} failed attempts")?;
                }
                if let Some(e) = last_error {
                    write!(f, ", last error: {}", error_text(e))?;
                }
                if let Some(next) = next_attempt {
                    write!(f, ", next attempt at {}", crate::time::rfc3339(*next))?;
                }
                write!(f, " ({site})")
            }
            Self::Child {
                seq,
                id,
                name,
                site,
            } => write!(f, "child `{id}` ({name}) #{seq} not finished ({site})"),
            Self::Entity {
                seq,
                entity,
                op,
                site,
            } => write!(
                f,
                "entity `{entity}` operation `{op}` #{seq} not answered ({site})"
            ),
            Self::Lock {
                seq,
                entities,
                site,
            } => write!(
                f,
                "critical section #{seq} over {} not granted ({site})",
                entities.join(", ")
            ),
        }
    }
}

/// As JSON (the HTTP API's `GET /instances/{id}/waiting`, the CLI's
/// `-o json`): an object with its `kind` (`not_started`, `suspended`,
/// `parked`, `event`, `timer`, `activity`, `child`, `entity`, `lock`), its
/// fields, times as RFC 3339 text, and the sentence of its `Display`
/// (`text`).
impl serde::Serialize for Blocker {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde_json::json;
        let time = |t: &SystemTime| crate::time::rfc3339(*t);
        let mut v = match self {
            Self::NotStarted => json!({ "kind": "not_started" }),
            Self::Suspended { reason } => json!({ "kind": "suspended", "reason": reason }),
            Self::Parked { failure } => json!({ "kind": "parked", "failure": failure }),
            Self::NewerVersion {
                orchestrator,
                version,
                newest,
            } => json!({
                "kind": "newer_version", "orchestrator": orchestrator,
                "version": version, "newest": newest,
            }),
            Self::Event { name, similar } => {
                json!({ "kind": "event", "name": name, "similar": similar })
            }
            Self::Timer {
                seq,
                fires_at,
                site,
            } => json!({ "kind": "timer", "seq": seq, "fires_at": time(fires_at), "site": site }),
            Self::Activity {
                seq,
                name,
                site,
                since,
                attempts,
                failures,
                running,
                next_attempt,
                last_error,
            } => json!({
                "kind": "activity", "seq": seq, "name": name, "site": site,
                "since": time(since), "attempts": attempts, "failures": failures,
                "running": running, "next_attempt": next_attempt.as_ref().map(time),
                "last_error": last_error.as_ref().map(error_text),
            }),
            Self::Child {
                seq,
                id,
                name,
                site,
            } => json!({ "kind": "child", "seq": seq, "id": id, "name": name, "site": site }),
            Self::Entity {
                seq,
                entity,
                op,
                site,
            } => json!({ "kind": "entity", "seq": seq, "entity": entity, "op": op, "site": site }),
            Self::Lock {
                seq,
                entities,
                site,
            } => json!({ "kind": "lock", "seq": seq, "entities": entities, "site": site }),
        };
        v["text"] = json!(self.to_string());
        v.serialize(serializer)
    }
}

/// The calls, timers and locks of `history` still open, in order.
pub(crate) fn open_calls(history: &[HistoryRecord]) -> Vec<Blocker> {
    let mut open: BTreeMap<u64, Blocker> = BTreeMap::new();
    for rec in history {
        match &rec.event {
            Event::ActivityScheduled {
                seq, name, site, ..
            } => {
                open.insert(
                    *seq,
                    Blocker::Activity {
                        seq: *seq,
                        name: name.clone(),
                        site: site.clone(),
                        since: history::system_time(rec.at),
                        attempts: 0,
                        failures: 0,
                        running: false,
                        next_attempt: None,
                        last_error: None,
                    },
                );
            }
            Event::TimerCreated { seq, fire_at, site } => {
                open.insert(
                    *seq,
                    Blocker::Timer {
                        seq: *seq,
                        fires_at: history::system_time(*fire_at),
                        site: site.clone(),
                    },
                );
            }
            Event::ChildScheduled {
                seq,
                name,
                id,
                site,
                ..
            } => {
                open.insert(
                    *seq,
                    Blocker::Child {
                        seq: *seq,
                        id: id.clone(),
                        name: name.clone(),
                        site: site.clone(),
                    },
                );
            }
            Event::EntityCalled {
                seq,
                entity,
                op,
                site,
                ..
            } => {
                open.insert(
                    *seq,
                    Blocker::Entity {
                        seq: *seq,
                        entity: entity.clone(),
                        op: op.clone(),
                        site: site.clone(),
                    },
                );
            }
            Event::LockRequested {
                seq,
                entities,
                site,
            } => {
                open.insert(
                    *seq,
                    Blocker::Lock {
                        seq: *seq,
                        entities: entities.clone(),
                        site: site.clone(),
                    },
                );
            }
            Event::ActivityCompleted { seq, .. }
            | Event::ActivityFailed { seq, .. }
            | Event::TimerFired { seq }
            | Event::TimerCancelled { seq }
            | Event::ChildCompleted { seq, .. }
            | Event::ChildFailed { seq, .. }
            | Event::EntityCompleted { seq, .. }
            | Event::EntityFailed { seq, .. }
            | Event::LockGranted { seq } => {
                open.remove(seq);
            }
            _ => {}
        }
    }
    open.into_values().collect()
}

/// The reason of the last suspension in `history`.
pub(crate) fn suspension(history: &[HistoryRecord]) -> String {
    history
        .iter()
        .rev()
        .find_map(|r| match &r.event {
            Event::Suspended { reason } => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// What blocks an instance of `status`, given its history, the events it
/// waits for (from a replay; empty when its code is not registered here),
/// the names of the events that arrived and were not taken, and where its
/// activity calls stand (as of `now`).
pub(crate) fn blockers(
    status: RuntimeStatus,
    failure: Option<&Failure>,
    history: &[HistoryRecord],
    (awaited, arrived): (&[String], &BTreeSet<String>),
    (tasks, now): (&[crate::store::TaskState], i64),
) -> Vec<Blocker> {
    let mut out = Vec::new();
    match status {
        s if s.is_finished() => return out,
        RuntimeStatus::Pending => out.push(Blocker::NotStarted),
        RuntimeStatus::Suspended => out.push(Blocker::Suspended {
            reason: suspension(history),
        }),
        RuntimeStatus::Stuck => {
            if let Some(failure) = failure {
                out.push(Blocker::Parked {
                    failure: failure.clone(),
                });
            }
        }
        _ => {}
    }
    for name in awaited {
        let similar = arrived
            .iter()
            .filter(|a| *a != name && similar(a, name))
            .cloned()
            .collect();
        out.push(Blocker::Event {
            name: name.clone(),
            similar,
        });
    }
    for mut open in open_calls(history) {
        if let Blocker::Activity {
            seq,
            attempts,
            failures,
            running,
            next_attempt,
            last_error,
            ..
        } = &mut open
        {
            if let Some(t) = tasks.iter().find(|t| t.seq == *seq) {
                (*attempts, *failures, *running) = (t.attempts, t.failures, t.running);
                last_error.clone_from(&t.last_error);
                *next_attempt =
                    (!t.running && t.visible_at > now).then(|| history::system_time(t.visible_at));
            }
        }
        out.push(open);
    }
    out
}

/// An attempt's failure in a line: the error it returned (as JSON), or
/// what stopped it.
fn error_text(e: &ActivityFailure) -> String {
    match e {
        ActivityFailure::Error(p) | ActivityFailure::Final(p) => p.json().to_owned(),
        ActivityFailure::TimedOut(m) => format!("timed out ({m})"),
        ActivityFailure::Panic(m) => format!("panicked: {m}"),
        ActivityFailure::Aborted(m) => format!("not run: {m}"),
        ActivityFailure::Poisoned(m) => format!("poisoned: {m}"),
    }
}

/// Whether two event names look like one meant for the other: equal but
/// for case and separators, or a few edits apart (one per four letters of
/// the shorter, at least one: `go` and `ok` are not alike).
fn similar(a: &str, b: &str) -> bool {
    let plain = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '-' | '_' | ' ' | '.'))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let (a, b) = (plain(a), plain(b));
    let allowed = (a.chars().count().min(b.chars().count()) / 4).max(1);
    a == b || edits(&a, &b) <= allowed
}

/// The Levenshtein distance, for short names.
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut row = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            row[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(row[j] + 1);
        }
        prev = row;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_typo_or_another_case_away_are_similar() {
        assert!(similar("approval", "Approval"));
        assert!(similar("approval", "aproval"));
        assert!(similar("order-approved", "order_approved"));
        assert!(!similar("approval", "cancel"));
        assert!(!similar("go", "ok"), "two edits in two letters");
        assert!(similar("go", "Go"));
        assert_eq!(edits("kitten", "sitting"), 3);
    }
}
