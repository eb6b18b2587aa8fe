//! Competing claims on a shared store, and the checks that they were
//! exclusive and left nobody idle while work was ready.
//!
//! Claimer processes (`src/bin/claimer.rs`) take instances with
//! [`Store::fetch_work`](durable::store::Store::fetch_work), commit a turn
//! that queues an activity call, take calls with `fetch_tasks` and finish
//! them, which makes their instance ready again; each writes down every
//! store call with the server's clock read just before and just after it
//! ([`Store::now`](durable::store::Store::now)). So the log bounds each
//! hold from inside (a claim is surely held from the end of its fetch to
//! the start of its commit) and each stretch of ready, unclaimed work from
//! inside too (surely ready from the end of the call that made it ready to
//! the start of the fetch that took it). Two holds that overlap, or a
//! fetch that came back short while some work was ready throughout it,
//! are therefore real, never an artefact of the timing of the log.
//!
//! Log lines, one per call, `-` for an empty list:
//! - `work <who> <t0> <t1> <limit> <id>,..`: a `fetch_work` and what it claimed;
//! - `commit <who> <round> <t0> <t1> <id>=<task id>|<id>=conflict,..`;
//! - `tasks <who> <t0> <t1> <limit> <task id>/<instance>/<seq>/<attempt>,..`;
//! - `finish <who> <t0> <t1> <task id>,..`;
//! - `held <who> <instance> <history length>` and
//!   `late <who> <instance> <committed|conflict>`: a holder's claim and its
//!   late commit (the fencing check).

use std::collections::BTreeMap;

use durable::history::{Event, HistoryRecord, Payload, RuntimeStatus};
use durable::store::{InstanceWork, NewTask, StatusUpdate, TurnCommit};
use durable::RetryPolicy;

/// The orchestrator name of the claimed instances.
pub const INSTANCE_NAME: &str = "claimed";
/// The activity name of their calls.
pub const TASK_NAME: &str = "claim_task";

/// The turn a claimer commits for an instance it claimed: it records the
/// messages it consumed (the `Started`, or the last call's completion)
/// and a new call whose input names the claimer and its round, so the
/// history says who held each turn.
///
/// # Panics
/// Never: the input is valid JSON.
pub fn turn_for(work: &InstanceWork, who: u32, round: u64, now: i64) -> TurnCommit {
    let mut turn = TurnCommit::new(work.id.clone(), work.history_len);
    turn.execution = work.execution;
    let mut index = work.history_len;
    for (seq, event) in &work.messages {
        turn.consumed.push(*seq);
        turn.events.push(HistoryRecord {
            index,
            turn: work.history_len,
            at: now,
            event: event.clone(),
        });
        index += 1;
    }
    let seq = work.history_len / 2;
    let input: Payload =
        serde_json::from_str(&format!("[{who},{round}]")).expect("invariant: valid JSON");
    turn.events.push(HistoryRecord {
        index,
        turn: work.history_len,
        at: now,
        event: Event::ActivityScheduled {
            seq,
            name: TASK_NAME.to_owned(),
            input: input.clone(),
            site: "claimer".to_owned(),
        },
    });
    turn.tasks
        .push(NewTask::new(seq, TASK_NAME, input, RetryPolicy::default()));
    turn.status = Some(StatusUpdate::new(RuntimeStatus::Running, now));
    turn
}

/// Who held each turn of a claimed instance, from its history: the
/// `(who, round)` its calls name, in order.
pub fn turns_in(history: &[HistoryRecord]) -> Vec<(u32, u64)> {
    history
        .iter()
        .filter_map(|r| match &r.event {
            Event::ActivityScheduled { input, .. } => {
                serde_json::from_str::<(u32, u64)>(input.json()).ok()
            }
            _ => None,
        })
        .collect()
}

/// One line of a claim log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A `fetch_work` call between `t0` and `t1` that claimed `ids`.
    Work {
        /// The claimer.
        who: u32,
        /// The server's clock before the call.
        t0: i64,
        /// And after it.
        t1: i64,
        /// The most it asked for.
        limit: usize,
        /// What it claimed.
        ids: Vec<String>,
    },
    /// A `commit_turns` call: per instance, the new task's id, or `None`
    /// when the turn was refused.
    Commit {
        /// The claimer.
        who: u32,
        /// Its round.
        round: u64,
        /// Before.
        t0: i64,
        /// After.
        t1: i64,
        /// Instance and new task.
        turns: Vec<(String, Option<i64>)>,
    },
    /// A `fetch_tasks` call that leased `tasks` (id, instance, seq, attempt).
    Tasks {
        /// The claimer.
        who: u32,
        /// Before.
        t0: i64,
        /// After.
        t1: i64,
        /// The most it asked for.
        limit: usize,
        /// What it leased.
        tasks: Vec<(i64, String, u64, u32)>,
    },
    /// A `finish_tasks` call that finished `tasks`.
    Finish {
        /// The claimer.
        who: u32,
        /// Before.
        t0: i64,
        /// After.
        t1: i64,
        /// The tasks.
        tasks: Vec<i64>,
    },
    /// A holder claimed `instance` at `len` events.
    Held {
        /// The holder.
        who: u32,
        /// The instance.
        instance: String,
        /// Its history length then.
        len: u64,
    },
    /// A holder's late commit and what became of it.
    Late {
        /// The holder.
        who: u32,
        /// The instance.
        instance: String,
        /// Whether it was written.
        committed: bool,
    },
}

fn list(word: &str) -> Vec<&str> {
    if word == "-" {
        Vec::new()
    } else {
        word.split(',').collect()
    }
}

fn join(items: impl IntoIterator<Item = String>) -> String {
    let joined: Vec<String> = items.into_iter().collect();
    if joined.is_empty() {
        "-".to_owned()
    } else {
        joined.join(",")
    }
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Work {
                who,
                t0,
                t1,
                limit,
                ids,
            } => write!(
                f,
                "work {who} {t0} {t1} {limit} {}",
                join(ids.iter().cloned())
            ),
            Self::Commit {
                who,
                round,
                t0,
                t1,
                turns,
            } => write!(
                f,
                "commit {who} {round} {t0} {t1} {}",
                join(turns.iter().map(|(id, task)| match task {
                    Some(t) => format!("{id}={t}"),
                    None => format!("{id}=conflict"),
                }))
            ),
            Self::Tasks {
                who,
                t0,
                t1,
                limit,
                tasks,
            } => write!(
                f,
                "tasks {who} {t0} {t1} {limit} {}",
                join(
                    tasks
                        .iter()
                        .map(|(id, i, seq, a)| format!("{id}/{i}/{seq}/{a}"))
                )
            ),
            Self::Finish { who, t0, t1, tasks } => write!(
                f,
                "finish {who} {t0} {t1} {}",
                join(tasks.iter().map(ToString::to_string))
            ),
            Self::Held { who, instance, len } => write!(f, "held {who} {instance} {len}"),
            Self::Late {
                who,
                instance,
                committed,
            } => write!(
                f,
                "late {who} {instance} {}",
                if *committed { "committed" } else { "conflict" }
            ),
        }
    }
}

impl Entry {
    /// Parses one line.
    ///
    /// # Errors
    /// The line, when it is not in the log's format.
    pub fn parse(line: &str) -> Result<Self, String> {
        let bad = || format!("a malformed claim-log line: {line:?}");
        let w: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| -> Result<i64, String> {
            w.get(i).and_then(|v| v.parse().ok()).ok_or_else(bad)
        };
        let who = u32::try_from(num(1)?).map_err(|_| bad())?;
        let last = |i: usize| -> Result<Vec<&str>, String> {
            if w.len() != i + 1 {
                return Err(bad());
            }
            Ok(list(w[i]))
        };
        let count = |i: usize| usize::try_from(num(i)?).map_err(|_| bad());
        Ok(match w[0] {
            "work" => Self::Work {
                who,
                t0: num(2)?,
                t1: num(3)?,
                limit: count(4)?,
                ids: last(5)?.into_iter().map(str::to_owned).collect(),
            },
            "commit" => Self::Commit {
                who,
                round: u64::try_from(num(2)?).map_err(|_| bad())?,
                t0: num(3)?,
                t1: num(4)?,
                turns: last(5)?
                    .into_iter()
                    .map(|t| {
                        let (id, task) = t.split_once('=').ok_or_else(bad)?;
                        let task = match task {
                            "conflict" => None,
                            n => Some(n.parse().map_err(|_| bad())?),
                        };
                        Ok((id.to_owned(), task))
                    })
                    .collect::<Result<_, String>>()?,
            },
            "tasks" => Self::Tasks {
                who,
                t0: num(2)?,
                t1: num(3)?,
                limit: count(4)?,
                tasks: last(5)?
                    .into_iter()
                    .map(|t| {
                        let p: Vec<&str> = t.split('/').collect();
                        match p[..] {
                            [id, instance, seq, attempt] => Ok((
                                id.parse().map_err(|_| bad())?,
                                instance.to_owned(),
                                seq.parse().map_err(|_| bad())?,
                                attempt.parse().map_err(|_| bad())?,
                            )),
                            _ => Err(bad()),
                        }
                    })
                    .collect::<Result<_, String>>()?,
            },
            "finish" => Self::Finish {
                who,
                t0: num(2)?,
                t1: num(3)?,
                tasks: last(4)?
                    .into_iter()
                    .map(|t| t.parse().map_err(|_| bad()))
                    .collect::<Result<_, String>>()?,
            },
            "held" if w.len() == 4 => Self::Held {
                who,
                instance: w[2].to_owned(),
                len: w[3].parse().map_err(|_| bad())?,
            },
            "late" if w.len() == 4 => Self::Late {
                who,
                instance: w[2].to_owned(),
                committed: match w[3] {
                    "committed" => true,
                    "conflict" => false,
                    _ => return Err(bad()),
                },
            },
            _ => return Err(bad()),
        })
    }
}

/// Reads a claim log.
///
/// # Errors
/// The malformed lines.
pub fn read_log(path: &std::path::Path) -> Result<Vec<Entry>, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(Entry::parse).collect()
}

/// A stretch of time on the server's clock, surely inside what it stands
/// for: `[from, to]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    who: u32,
    from: i64,
    to: i64,
}

/// What the claim checks found.
#[derive(Debug, Default)]
pub struct ClaimReport {
    /// Instances claimed, and committed.
    pub claims: usize,
    /// Tasks leased, and finished.
    pub leases: usize,
    /// `fetch_work` and `fetch_tasks` calls.
    pub fetches: usize,
    /// Of which came back empty.
    pub empty: usize,
    /// Of which came back with fewer than they asked for (empty included).
    pub short: usize,
    /// Of which came back short (fewer than asked) while some work they
    /// could take was ready throughout: each is a problem too.
    pub idle_while_ready: usize,
    /// Fetches during which some work was ready throughout: where the
    /// idle check had something to catch (so it is not vacuous).
    pub tested: usize,
    /// Everything that is wrong; empty when all is well.
    pub problems: Vec<String>,
}

/// Finds two holds of one thing that overlap.
fn overlaps(what: &str, holds: &mut [Span], problems: &mut Vec<String>) {
    holds.sort_by_key(|s| (s.from, s.to));
    let mut latest: Option<Span> = None;
    for h in holds.iter() {
        if let Some(l) = latest {
            if h.from < l.to {
                problems.push(format!(
                    "{what} held by {} from {} to {} and by {} from {} to {}",
                    l.who, l.from, l.to, h.who, h.from, h.to
                ));
            }
        }
        if latest.is_none_or(|l| h.to > l.to) {
            latest = Some(*h);
        }
    }
}

/// An item ready and unclaimed throughout `span`, for a fetch that came
/// back with fewer than it asked for between `t0` and `t1`.
fn ready_throughout<'a>(
    ready: &'a BTreeMap<String, Vec<Span>>,
    taken: &[String],
    t0: i64,
    t1: i64,
) -> Option<(&'a String, Span)> {
    ready
        .iter()
        .filter(|(item, _)| !taken.contains(item))
        .find_map(|(item, spans)| {
            spans
                .iter()
                .find(|s| s.from < t0 && t1 < s.to)
                .map(|s| (item, *s))
        })
}

/// When each item was surely ready and unclaimed: from the end of the
/// call that made it ready (made between `t0` and `t1`) to the start of
/// the fetch that took it, the first whose end came after that call's
/// start (one that ended before could not have seen it; one that began
/// before its end may have, and then the span is empty).
fn ready_spans(
    made: &[(String, i64, i64)],
    taken: &BTreeMap<String, Vec<(i64, i64)>>,
) -> BTreeMap<String, Vec<Span>> {
    let mut ready: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    for (item, t0, t1) in made {
        let to = taken
            .get(item)
            .and_then(|ts| {
                ts.iter()
                    .filter(|(_, end)| end > t0)
                    .min_by_key(|(_, end)| *end)
            })
            .map_or(i64::MAX, |(start, _)| *start);
        if *t1 < to {
            ready.entry(item.clone()).or_default().push(Span {
                who: 0,
                from: *t1,
                to,
            });
        }
    }
    ready
}

/// Checks a claim log of competing claimers (all their lines, in any
/// order) on instances `seeds`, all ready from `seeded_at`, against the
/// histories the store holds at the end: for each instance, the
/// `(who, round)` of each turn's call, in history order.
pub fn check_claims(
    log: &[Entry],
    seeds: &[String],
    seeded_at: i64,
    histories: &BTreeMap<String, Vec<(u32, u64)>>,
) -> ClaimReport {
    let mut report = ClaimReport::default();
    let problems = &mut report.problems;
    // Each claimer's lines in its own order (it logs them one at a time).
    let mut by_who: BTreeMap<u32, Vec<&Entry>> = BTreeMap::new();
    for e in log {
        let who = match e {
            Entry::Work { who, .. }
            | Entry::Commit { who, .. }
            | Entry::Tasks { who, .. }
            | Entry::Finish { who, .. }
            | Entry::Held { who, .. }
            | Entry::Late { who, .. } => *who,
        };
        by_who.entry(who).or_default().push(e);
    }
    let mut holds: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    let mut leases: BTreeMap<i64, Vec<Span>> = BTreeMap::new();
    // When each instance or task became ready, and when a fetch took it.
    let mut became_ready: Vec<(String, i64, i64)> = seeds
        .iter()
        .map(|s| (s.clone(), seeded_at, seeded_at))
        .collect();
    let mut task_ready: Vec<(String, i64, i64)> = Vec::new();
    let mut claimed_at: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    let mut leased_at: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    // Which instance each task is a call of (its commit may be in
    // another claimer's lines).
    let task_instance: BTreeMap<i64, String> = log
        .iter()
        .flat_map(|e| match e {
            Entry::Commit { turns, .. } => turns
                .iter()
                .filter_map(|(id, task)| task.map(|t| (t, id.clone())))
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let mut committed: BTreeMap<String, Vec<(i64, u32, u64)>> = BTreeMap::new();
    for (who, entries) in &by_who {
        let who = *who;
        let mut open: BTreeMap<String, i64> = BTreeMap::new();
        let mut open_tasks: BTreeMap<i64, i64> = BTreeMap::new();
        let mut last_t = i64::MIN;
        for e in entries {
            let (t0, t1) = match e {
                Entry::Work { t0, t1, .. }
                | Entry::Commit { t0, t1, .. }
                | Entry::Tasks { t0, t1, .. }
                | Entry::Finish { t0, t1, .. } => (*t0, *t1),
                Entry::Held { .. } | Entry::Late { .. } => continue,
            };
            if t0 > t1 || t0 < last_t {
                problems.push(format!("{who}: times out of order at {e}"));
            }
            last_t = t1;
            match e {
                Entry::Work { limit, ids, .. } => {
                    report.fetches += 1;
                    if ids.len() > *limit {
                        problems.push(format!("{who}: claimed more than {limit}: {e}"));
                    }
                    for id in ids {
                        if open.insert(id.clone(), t1).is_some() {
                            problems
                                .push(format!("{who}: claimed {id} again before committing it"));
                        }
                        claimed_at.entry(id.clone()).or_default().push((t0, t1));
                    }
                }
                Entry::Commit { round, turns, .. } => {
                    for (id, task) in turns {
                        match open.remove(id) {
                            Some(from) => {
                                holds.entry(id.clone()).or_default().push(Span {
                                    who,
                                    from,
                                    to: t0,
                                });
                                report.claims += 1;
                            }
                            None => problems.push(format!("{who}: committed {id} unclaimed")),
                        }
                        match task {
                            Some(task) => {
                                task_ready.push((task.to_string(), t0, t1));
                                committed
                                    .entry(id.clone())
                                    .or_default()
                                    .push((t0, who, *round));
                            }
                            // No lock lapses here (they are long): a turn
                            // refused means another wrote the instance
                            // while this claimer held it.
                            None => problems.push(format!("{who}: its turn of {id} was refused")),
                        }
                    }
                }
                Entry::Tasks { limit, tasks, .. } => {
                    report.fetches += 1;
                    if tasks.len() > *limit {
                        problems.push(format!("{who}: leased more than {limit}: {e}"));
                    }
                    for (id, _, _, attempt) in tasks {
                        if *attempt != 1 {
                            problems.push(format!(
                                "{who}: leased task {id} as attempt {attempt}: an earlier lease lapsed or was taken"
                            ));
                        }
                        if open_tasks.insert(*id, t1).is_some() {
                            problems.push(format!("{who}: leased task {id} twice"));
                        }
                        leased_at.entry(id.to_string()).or_default().push((t0, t1));
                    }
                }
                Entry::Finish { tasks, .. } => {
                    for id in tasks {
                        match open_tasks.remove(id) {
                            Some(from) => {
                                leases
                                    .entry(*id)
                                    .or_default()
                                    .push(Span { who, from, to: t0 });
                                report.leases += 1;
                            }
                            None => problems.push(format!("{who}: finished task {id} unleased")),
                        }
                        match task_instance.get(id) {
                            Some(instance) => became_ready.push((instance.clone(), t0, t1)),
                            None => problems
                                .push(format!("{who}: finished task {id}, which no commit queued")),
                        }
                    }
                }
                Entry::Held { .. } | Entry::Late { .. } => {}
            }
        }
        // A claim left open at the end is held to the end.
        for (id, from) in open {
            holds.entry(id).or_default().push(Span {
                who,
                from,
                to: i64::MAX,
            });
        }
        for (id, from) in open_tasks {
            leases.entry(id).or_default().push(Span {
                who,
                from,
                to: i64::MAX,
            });
        }
    }
    for (id, spans) in &mut holds {
        overlaps(&format!("instance {id}"), spans, problems);
    }
    for (id, spans) in &mut leases {
        overlaps(&format!("task {id}"), spans, problems);
    }
    let ready = ready_spans(&became_ready, &claimed_at);
    let ready_tasks = ready_spans(&task_ready, &leased_at);
    for e in log {
        let (ready, taken, limit, t0, t1, who) = match e {
            Entry::Work {
                who,
                t0,
                t1,
                limit,
                ids,
            } => (&ready, ids.clone(), *limit, *t0, *t1, *who),
            Entry::Tasks {
                who,
                t0,
                t1,
                limit,
                tasks,
            } => (
                &ready_tasks,
                tasks.iter().map(|t| t.0.to_string()).collect(),
                *limit,
                *t0,
                *t1,
                *who,
            ),
            _ => continue,
        };
        if taken.is_empty() {
            report.empty += 1;
        }
        if taken.len() < limit {
            report.short += 1;
        }
        let Some((item, span)) = ready_throughout(ready, &taken, t0, t1) else {
            continue;
        };
        report.tested += 1;
        if taken.len() < limit {
            report.idle_while_ready += 1;
            problems.push(format!(
                "{who}: a fetch from {t0} to {t1} took {} of {limit} while {item} was ready and \
                 unclaimed from {} to {}",
                taken.len(),
                span.from,
                span.to
            ));
        }
    }
    // The log and the store tell the same story: each committed turn is
    // in its instance's history, in commit order, and nothing else is.
    for id in seeds {
        let mut logged = committed.get(id).cloned().unwrap_or_default();
        logged.sort_unstable();
        let logged: Vec<(u32, u64)> = logged
            .into_iter()
            .map(|(_, who, round)| (who, round))
            .collect();
        let stored = histories.get(id).cloned().unwrap_or_default();
        if logged != stored {
            problems.push(format!(
                "{id}: the log commits turns {logged:?}, the history holds {stored:?}"
            ));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::{check_claims, ClaimReport, Entry};
    use std::collections::BTreeMap;

    fn run(lines: &[&str], seeds: &[&str], histories: &[(&str, &[(u32, u64)])]) -> ClaimReport {
        let log: Vec<Entry> = lines
            .iter()
            .map(|l| Entry::parse(l).expect("a log line"))
            .collect();
        for (l, e) in lines.iter().zip(&log) {
            assert_eq!(*l, e.to_string(), "lines read back as written");
        }
        let seeds: Vec<String> = seeds.iter().map(|s| (*s).to_owned()).collect();
        let histories: BTreeMap<String, Vec<(u32, u64)>> = histories
            .iter()
            .map(|(id, h)| ((*id).to_owned(), h.to_vec()))
            .collect();
        check_claims(&log, &seeds, 0, &histories)
    }

    fn assert_found(report: &ClaimReport, what: &str) {
        assert!(
            report.problems.iter().any(|p| p.contains(what)),
            "expected a problem saying {what:?}, got {:?}",
            report.problems
        );
    }

    /// Two claimers taking turns on `a` and its task, one round each.
    const TAKING_TURNS: [&str; 8] = [
        "work 1 10 20 1 a",
        "commit 1 0 30 40 a=7",
        "tasks 1 50 60 1 7/a/0/1",
        "finish 1 70 80 7",
        "work 2 90 100 1 a",
        "commit 2 0 110 120 a=8",
        "tasks 2 130 140 1 8/a/1/1",
        "finish 2 150 160 8",
    ];

    #[test]
    fn claims_taken_in_turn_pass() {
        let report = run(&TAKING_TURNS, &["a"], &[("a", &[(1, 0), (2, 0)])]);
        assert_eq!(report.problems, Vec::<String>::new());
        assert_eq!((report.claims, report.leases, report.fetches), (2, 2, 4));
    }

    #[test]
    fn two_holds_at_once_are_caught() {
        // 2 claims `a` while 1 holds it (between 20 and 30).
        let mut lines = TAKING_TURNS.to_vec();
        lines[4] = "work 2 21 25 1 a";
        lines[5] = "commit 2 0 26 29 a=8";
        lines[6] = "tasks 2 130 140 1 8/a/1/1";
        let report = run(&lines, &["a"], &[("a", &[(1, 0), (2, 0)])]);
        assert_found(
            &report,
            "instance a held by 1 from 20 to 30 and by 2 from 25 to 26",
        );
        // And a task leased by two at once.
        let lines = [
            "work 1 10 20 1 a",
            "commit 1 0 30 40 a=7",
            "tasks 1 50 60 1 7/a/0/1",
            "tasks 2 61 62 1 7/a/0/1",
            "finish 2 63 64 7",
            "finish 1 70 80 7",
        ];
        let report = run(&lines, &["a"], &[("a", &[(1, 0)])]);
        assert_found(
            &report,
            "task 7 held by 1 from 60 to 70 and by 2 from 62 to 63",
        );
    }

    #[test]
    fn a_fetch_that_comes_back_short_while_work_was_ready_is_caught() {
        // `b` is ready from the start and nobody takes it until 300; 2's
        // fetch from 30 to 40 comes back empty.
        let mut lines = TAKING_TURNS.to_vec();
        lines.push("work 2 30 40 1 -");
        lines.push("work 3 300 310 1 b");
        lines.push("commit 3 0 320 330 b=9");
        let report = run(
            &lines,
            &["a", "b"],
            &[("a", &[(1, 0), (2, 0)]), ("b", &[(3, 0)])],
        );
        assert_found(
            &report,
            "2: a fetch from 30 to 40 took 0 of 1 while b was ready",
        );
        assert_eq!(report.idle_while_ready, 1);
        // A task queued by a commit and left there.
        let lines = [
            "work 1 10 20 1 a",
            "commit 1 0 30 40 a=7",
            "tasks 2 44 48 1 -",
            "tasks 1 50 60 1 7/a/0/1",
        ];
        let report = run(&lines, &["a"], &[("a", &[(1, 0)])]);
        assert_found(
            &report,
            "2: a fetch from 44 to 48 took 0 of 1 while 7 was ready",
        );
    }

    #[test]
    fn a_fetch_that_may_have_raced_the_work_is_not_blamed() {
        // `b` became ready at 35 (a finish ended then), during 2's fetch
        // from 30 to 40: the fetch may have looked before.
        let lines = [
            "work 1 10 20 1 b",
            "commit 1 0 21 22 b=7",
            "tasks 1 23 24 1 7/b/0/1",
            "finish 1 25 35 7",
            "work 2 30 40 1 -",
            "work 3 50 60 1 b",
            "commit 3 0 61 62 b=8",
        ];
        let report = run(&lines, &["b"], &[("b", &[(1, 0), (3, 0)])]);
        assert_eq!(report.problems, Vec::<String>::new());
        assert_eq!((report.empty, report.tested), (1, 0));
        // Nor a fetch after a claim that began before the work was made
        // ready and took it (3 from 30 to 40, the finish from 25 to 35):
        // `b` was not left unclaimed until a later claim.
        let lines = [
            "work 1 10 20 1 b",
            "commit 1 0 21 22 b=7",
            "tasks 1 23 24 1 7/b/0/1",
            "finish 1 25 35 7",
            "work 3 30 40 1 b",
            "work 2 45 50 1 -",
            "commit 3 0 61 62 b=8",
        ];
        let report = run(&lines, &["b"], &[("b", &[(1, 0), (3, 0)])]);
        assert_eq!(report.problems, Vec::<String>::new());
    }

    #[test]
    fn a_log_that_disagrees_with_the_store_or_a_refused_turn_is_caught() {
        let report = run(&TAKING_TURNS, &["a"], &[("a", &[(1, 0)])]);
        assert_found(
            &report,
            "a: the log commits turns [(1, 0), (2, 0)], the history holds [(1, 0)]",
        );
        let mut lines = TAKING_TURNS.to_vec();
        lines[5] = "commit 2 0 110 120 a=conflict";
        lines.truncate(6);
        let report = run(&lines, &["a"], &[("a", &[(1, 0)])]);
        assert_found(&report, "2: its turn of a was refused");
        let mut lines = TAKING_TURNS.to_vec();
        lines[6] = "tasks 2 130 140 1 8/a/1/2";
        let report = run(&lines, &["a"], &[("a", &[(1, 0), (2, 0)])]);
        assert_found(&report, "leased task 8 as attempt 2");
    }
}
