//! The checks after the damage: every instance (children included)
//! finished exactly once with the right output, histories are whole and
//! hold every delivered event (completion, timer, external event) once and
//! in an order that makes sense, no turn ran while an instance was
//! suspended, every activity's side effect happened (those of executions
//! an instance continued past included), and no work is left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use durable::history::{Event, HistoryRecord, ParentRef};
use durable::store::{PostgresOptions, PostgresStore, SqliteStore, Store};
use durable::RuntimeStatus;

use crate::workload::{
    children, expected, last_lap_input, read_effects, Effect, Kind, Mark, Spec, FLAKY_FAILURES, GO,
    GO_END, LAPS,
};

/// What the checks found.
#[derive(Debug, Default)]
pub struct Report {
    /// Instances checked, children included.
    pub instances: usize,
    /// Of which children.
    pub children: usize,
    /// Activity calls in all histories.
    pub calls: usize,
    /// Activity calls made by executions that continued as new (their
    /// histories are gone; their side effects were checked by count).
    pub earlier_calls: usize,
    /// Calls whose side effect happened more than once (a retry after a
    /// lost attempt), by idempotency key, with the attempts seen.
    pub retried: BTreeMap<String, Vec<u32>>,
    /// Attempts that began and never did their side effect nor failed
    /// (their process died under them), by idempotency key: (attempt, pid).
    pub interrupted: BTreeMap<String, Vec<(u32, u32)>>,
    /// Attempts that failed on purpose and were retried per their policy.
    pub failed_attempts: usize,
    /// The highest attempt number whose side effect happened, among calls
    /// that never fail on purpose: above 1 when some call was run again
    /// after its lease was lost.
    pub highest_attempt: u32,
    /// Everything that is wrong; empty when all is well.
    pub problems: Vec<String>,
}

/// A child call found in a parent's history.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChildCall {
    seq: u64,
    id: String,
    name: String,
    input: String,
}

/// What one history holds that the checks across instances need.
#[derive(Debug, Default)]
struct Seen {
    /// Activity calls: sequence number and activity name.
    calls: Vec<(u64, String)>,
    /// Child calls, in the order they were made.
    children: Vec<ChildCall>,
    /// The `Started` event's input (JSON), first sequence number and parent.
    input: Option<String>,
    first_seq: u64,
    parent: Option<ParentRef>,
}

/// Checks one instance's history: its shape, and that each delivered event
/// is there once, after what it answers, and nothing ran while it was
/// suspended. Returns what it holds.
fn check_history(spec: &Spec, history: &[HistoryRecord], problems: &mut Vec<String>) -> Seen {
    let id = &spec.id;
    // Calls, children, timers and side effects share one sequence of numbers.
    let mut decisions: BTreeMap<u64, &'static str> = BTreeMap::new();
    let mut decide = |seq: u64, what: &'static str, problems: &mut Vec<String>| {
        if let Some(before) = decisions.insert(seq, what) {
            problems.push(format!("{id}: seq {seq} taken by {before} and by {what}"));
        }
    };
    let mut seen = Seen::default();
    let mut completed = BTreeSet::new();
    let mut children_done = BTreeSet::new();
    let mut timers: BTreeMap<u64, i64> = BTreeMap::new();
    let mut fired = BTreeSet::new();
    let mut raised: Vec<(String, String)> = Vec::new();
    let mut terminal = 0;
    let mut suspended = false;
    let mut suspensions = 0;
    let mut resumed = false;
    for (i, rec) in history.iter().enumerate() {
        if rec.index != i as u64 {
            problems.push(format!("{id}: event {i} has index {}", rec.index));
        }
        match &rec.event {
            Event::Suspended { .. } => {
                if suspended {
                    problems.push(format!("{id}: suspended at {i} while suspended"));
                }
                suspended = true;
                suspensions += 1;
            }
            Event::Resumed { .. } => {
                if !suspended {
                    problems.push(format!("{id}: resumed at {i} while not suspended"));
                }
                suspended = false;
                resumed = true;
            }
            // A suspended instance runs no turns: nothing else is recorded
            // until it is resumed.
            e if suspended => {
                problems.push(format!("{id}: {e:?} at {i} while suspended"));
            }
            _ => {}
        }
        match &rec.event {
            Event::Started {
                input,
                first_seq,
                parent,
                ..
            } => {
                if i != 0 {
                    problems.push(format!("{id}: a Started at {i}, not first"));
                }
                if seen.input.is_some() {
                    problems.push(format!("{id}: a second Started at {i}"));
                }
                seen.input = Some(input.json().to_owned());
                seen.first_seq = *first_seq;
                seen.parent.clone_from(parent);
            }
            Event::ActivityScheduled { seq, name, .. } => {
                decide(*seq, "a call", problems);
                seen.calls.push((*seq, name.clone()));
            }
            Event::ChildScheduled {
                seq,
                name,
                id: child,
                input,
                ..
            } => {
                decide(*seq, "a child", problems);
                seen.children.push(ChildCall {
                    seq: *seq,
                    id: child.clone(),
                    name: name.clone(),
                    input: input.json().to_owned(),
                });
            }
            Event::TimerCreated { seq, fire_at, .. } => {
                decide(*seq, "a timer", problems);
                timers.insert(*seq, *fire_at);
            }
            Event::SideEffect { seq, .. } => decide(*seq, "a side effect", problems),
            Event::ActivityCompleted { seq, .. } | Event::ActivityFailed { seq, .. } => {
                if !seen.calls.iter().any(|(s, _)| s == seq) {
                    problems.push(format!(
                        "{id}: call {seq} completed at {i}, never scheduled before"
                    ));
                }
                if !completed.insert(*seq) {
                    problems.push(format!("{id}: call {seq} completed twice"));
                }
            }
            Event::ChildCompleted { seq, .. } | Event::ChildFailed { seq, .. } => {
                if let Event::ChildFailed { failure, .. } = &rec.event {
                    problems.push(format!("{id}: child {seq} failed: {failure}"));
                }
                if !seen.children.iter().any(|c| c.seq == *seq) {
                    problems.push(format!(
                        "{id}: child {seq} ended at {i}, never started before"
                    ));
                }
                if !children_done.insert(*seq) {
                    problems.push(format!("{id}: child {seq} ended twice"));
                }
            }
            Event::TimerFired { seq } => {
                match timers.get(seq) {
                    None => problems.push(format!(
                        "{id}: timer {seq} fired at {i}, never created before"
                    )),
                    Some(&fire_at) if rec.at < fire_at => problems.push(format!(
                        "{id}: timer {seq} fired at {}, before its time {fire_at}",
                        rec.at
                    )),
                    Some(_) => {}
                }
                if !fired.insert(*seq) {
                    problems.push(format!("{id}: timer {seq} fired twice"));
                }
            }
            Event::EventRaised { name, data } => {
                let event = (name.clone(), data.json().to_owned());
                // Each event is raised under its own key and carries it in
                // its data: the same data twice is one event delivered twice.
                if raised.contains(&event) {
                    problems.push(format!(
                        "{id}: event {name} {} delivered twice",
                        data.json()
                    ));
                }
                // A held gate's events are all raised while it is suspended.
                if spec.kind == Kind::Held && !resumed {
                    problems.push(format!(
                        "{id}: event {name} {} delivered at {i}, before the first resume",
                        data.json()
                    ));
                }
                raised.push(event);
            }
            e if e.is_terminal() => terminal += 1,
            _ => {}
        }
    }
    if !matches!(
        history.first().map(|r| &r.event),
        Some(Event::Started { .. })
    ) {
        problems.push(format!("{id}: history does not open with Started"));
    }
    if terminal != 1 || !history.last().is_some_and(|r| r.event.is_terminal()) {
        problems.push(format!(
            "{id}: {terminal} terminal events, not one at the end"
        ));
    }
    let calls: BTreeSet<u64> = seen.calls.iter().map(|(s, _)| *s).collect();
    if calls != completed {
        problems.push(format!(
            "{id}: scheduled {calls:?} but completed {completed:?}"
        ));
    }
    let started: BTreeSet<u64> = seen.children.iter().map(|c| c.seq).collect();
    if started != children_done {
        problems.push(format!(
            "{id}: children {started:?} started but {children_done:?} ended"
        ));
    }
    // Every decision of this execution is numbered from its first.
    if let Some((&seq, what)) = decisions.range(..seen.first_seq).next() {
        problems.push(format!(
            "{id}: {what} numbered {seq}, below its execution's first, {}",
            seen.first_seq
        ));
    }
    // The workload awaits every timer it sets.
    let created: BTreeSet<u64> = timers.keys().copied().collect();
    if created != fired {
        problems.push(format!("{id}: timers {created:?} set but {fired:?} fired"));
    }
    let wanted: Vec<(String, String)> = match spec.kind {
        Kind::Gate | Kind::Held => GO
            .into_iter()
            .chain([GO_END])
            .map(|go| ("go".to_owned(), go.to_string()))
            .collect(),
        _ => Vec::new(),
    };
    if raised != wanted {
        problems.push(format!(
            "{id}: events delivered {raised:?}, raised {wanted:?}"
        ));
    }
    match (spec.kind == Kind::Held, suspensions) {
        (true, 0) => problems.push(format!("{id}: never suspended")),
        (false, n) if n > 0 => problems.push(format!("{id}: suspended {n} times")),
        _ => {}
    }
    if (spec.kind == Kind::Child) != seen.parent.is_some() {
        problems.push(format!(
            "{id}: a {:?} instance with parent {:?}",
            spec.kind, seen.parent
        ));
    }
    seen
}

/// Checks a parent's child calls against the children it must have made,
/// and returns the children to check as instances.
fn check_children(spec: &Spec, seen: &Seen, problems: &mut Vec<String>) -> Vec<(Spec, ParentRef)> {
    let id = &spec.id;
    let wanted = children(spec);
    if seen.children.len() != wanted.len() {
        problems.push(format!(
            "{id}: {} children called, {} expected",
            seen.children.len(),
            wanted.len()
        ));
    }
    let mut found = Vec::new();
    for (call, (kind, input)) in seen.children.iter().zip(wanted) {
        // The runtime's documented derivation: `{parent id}:{seq}`.
        let derived = format!("{id}:{}", call.seq);
        if call.id != derived {
            problems.push(format!(
                "{id}: child {} has id {:?}, not {derived:?}",
                call.seq, call.id
            ));
        }
        if call.name != "child" || call.input != input.to_string() {
            problems.push(format!(
                "{id}: child {} is {} with input {}, expected child with {input}",
                call.seq, call.name, call.input
            ));
        }
        let child = Spec {
            id: call.id.clone(),
            kind,
            input,
        };
        let parent = ParentRef {
            id: id.clone(),
            seq: call.seq,
        };
        found.push((child, parent));
    }
    found
}

/// The effects log, indexed.
#[derive(Default)]
struct Effects {
    /// The attempts whose side effect happened, by key.
    done: BTreeMap<String, Vec<u32>>,
    /// The attempts that failed on purpose, by key.
    failed: BTreeMap<String, Vec<u32>>,
    /// Every key with a line in the log.
    keys: BTreeSet<String>,
}

impl Effects {
    fn new(effects: &[Effect], report: &mut Report) -> Self {
        let mut index = Self::default();
        let mut ended = BTreeSet::new();
        for e in effects {
            index.keys.insert(e.key.clone());
            match e.mark {
                Mark::Start => continue,
                Mark::Done => index.done.entry(e.key.clone()).or_default().push(e.attempt),
                Mark::Fail => {
                    index
                        .failed
                        .entry(e.key.clone())
                        .or_default()
                        .push(e.attempt);
                    report.failed_attempts += 1;
                }
            }
            ended.insert((e.key.as_str(), e.attempt, e.pid));
        }
        for Effect {
            key, attempt, pid, ..
        } in effects.iter().filter(|e| e.mark == Mark::Start)
        {
            if !ended.contains(&(key.as_str(), *attempt, *pid)) {
                report
                    .interrupted
                    .entry(key.clone())
                    .or_default()
                    .push((*attempt, *pid));
            }
        }
        index
    }
}

/// Checks the side effects of a [`Kind::Laps`] instance's earlier
/// executions, whose histories continue-as-new deleted: one call each,
/// every one done. Returns their keys.
fn check_earlier_laps(
    spec: &Spec,
    seen: &Seen,
    effects: &Effects,
    problems: &mut Vec<String>,
) -> Vec<String> {
    let id = &spec.id;
    let earlier: Vec<String> = effects
        .keys
        .iter()
        .filter(|key| {
            key.rsplit_once('#').is_some_and(|(instance, seq)| {
                instance == id && seq.parse::<u64>().is_ok_and(|s| s < seen.first_seq)
            })
        })
        .cloned()
        .collect();
    let wanted = usize::try_from(LAPS - 1).unwrap_or(usize::MAX);
    if earlier.len() != wanted {
        problems.push(format!(
            "{id}: {} calls by executions before the last ({earlier:?}), {wanted} expected",
            earlier.len()
        ));
    }
    for key in earlier.iter().filter(|k| !effects.done.contains_key(*k)) {
        problems.push(format!(
            "{key}: a call of an earlier execution whose side effect never happened"
        ));
    }
    let want_input = serde_json::to_string(&last_lap_input(spec.input)).expect("encodes");
    if seen.input.as_deref() != Some(&want_input) {
        problems.push(format!(
            "{id}: last execution started with {:?}, expected {want_input}",
            seen.input
        ));
    }
    earlier
}

/// What a check reads from the store's tables directly, past the store's
/// interface: the ids of every instance stored, and what is wrong at that
/// level (rows left queued, history rows that do not match their
/// instance).
#[derive(Debug, Default)]
pub struct Tables {
    /// Every instance id stored.
    pub ids: BTreeSet<String>,
    /// What is wrong.
    pub problems: Vec<String>,
}

/// Checks the database at `db` and the effects log against `specs` (the
/// instances the client started; their children are found and checked too).
///
/// # Panics
/// When the database cannot be opened.
pub fn check(db: &Path, effects_log: &Path, specs: &[Spec]) -> Report {
    let store = SqliteStore::open(db).expect("the database opens");
    let conn = rusqlite::Connection::open(db).expect("the database opens");
    let mut tables = Tables::default();
    for table in ["messages", "tasks"] {
        let n: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("counts");
        if n != 0 {
            tables.problems.push(format!("{n} rows left in {table}"));
        }
    }
    tables.ids = conn
        .prepare("SELECT id FROM instances")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .expect("lists the instances");
    check_store(&store, tables, effects_log, specs)
}

/// [`check`] on the PostgreSQL schema `schema` at `url`, with the checks
/// of its tables in [`pg::leftovers`](crate::pg::leftovers) (message keys
/// left behind, histories whose rows do not match their instance).
///
/// # Panics
/// When the server cannot be reached.
pub fn check_postgres(url: &str, schema: &str, effects_log: &Path, specs: &[Spec]) -> Report {
    let mut options = PostgresOptions::default();
    options.schema = schema.to_owned();
    options.listen = false;
    options.pool_size = 2;
    let store = PostgresStore::connect_with(url, &options).expect("the schema opens");
    let sql = crate::pg::Sql::connect(url);
    let tables = Tables {
        ids: sql
            .rows(&format!("SELECT id FROM \"{schema}\".instances"))
            .iter()
            .map(|r| r.get(0))
            .collect(),
        problems: sql.leftovers(schema),
    };
    check_store(&store, tables, effects_log, specs)
}

/// Checks `store` (whose tables hold `tables`) and the effects log against
/// `specs`.
pub fn check_store(
    store: &dyn Store,
    tables: Tables,
    effects_log: &Path,
    specs: &[Spec],
) -> Report {
    let mut report = Report::default();
    let log = read_effects(effects_log).unwrap_or_else(|e| {
        report.problems.push(e);
        Vec::new()
    });
    let effects = Effects::new(&log, &mut report);
    // Every key a history (or an earlier execution) accounts for, and
    // whether its activity fails on purpose.
    let mut calls: BTreeMap<String, bool> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    let mut todo: Vec<(Spec, Option<ParentRef>)> =
        specs.iter().rev().map(|s| (s.clone(), None)).collect();
    while let Some((spec, parent)) = todo.pop() {
        let problems = &mut report.problems;
        let id = &spec.id;
        report.instances += 1;
        if parent.is_some() {
            report.children += 1;
        }
        if !ids.insert(id.clone()) {
            problems.push(format!(
                "{id}: checked twice (two specs or children share it)"
            ));
        }
        match store.status(id) {
            Ok(Some(s)) => {
                if s.runtime_status != RuntimeStatus::Completed {
                    problems.push(format!("{id}: {:?} ({:?})", s.runtime_status, s.failure));
                }
                match s.output::<u64>() {
                    Ok(Some(v)) if v == expected(&spec) => {}
                    other => problems.push(format!(
                        "{id}: output {other:?}, expected {}",
                        expected(&spec)
                    )),
                }
                if spec.kind == Kind::Laps {
                    match s.custom_status_as::<u64>() {
                        Ok(Some(1)) => {}
                        other => problems.push(format!(
                            "{id}: custom status {other:?}, expected the last lap, 1"
                        )),
                    }
                }
            }
            Ok(None) => problems.push(format!("{id}: missing")),
            Err(e) => problems.push(format!("{id}: status: {e}")),
        }
        let history = match store.history(id) {
            Ok(h) => h.unwrap_or_default(),
            Err(e) => {
                problems.push(format!("{id}: history: {e}"));
                continue;
            }
        };
        let seen = check_history(&spec, &history, problems);
        if seen.parent != parent {
            problems.push(format!(
                "{id}: started by {:?}, expected {parent:?}",
                seen.parent
            ));
        }
        if spec.kind == Kind::Laps {
            let earlier = check_earlier_laps(&spec, &seen, &effects, problems);
            report.earlier_calls += earlier.len();
            for key in earlier {
                if let Some(attempts) = effects.done.get(&key).filter(|a| a.len() > 1) {
                    report.retried.insert(key.clone(), attempts.clone());
                }
                calls.insert(key, false);
            }
        } else if seen.first_seq != 0 {
            problems.push(format!(
                "{id}: its execution begins at seq {}, yet it never continued as new",
                seen.first_seq
            ));
        }
        for (child, parent) in check_children(&spec, &seen, problems).into_iter().rev() {
            todo.push((child, Some(parent)));
        }
        for (seq, name) in &seen.calls {
            report.calls += 1;
            let key = format!("{id}#{seq}");
            let flaky = name == "flaky";
            match effects.done.get(&key) {
                None => problems.push(format!("{key}: its side effect never happened")),
                Some(attempts) => {
                    if attempts.len() > 1 {
                        report.retried.insert(key.clone(), attempts.clone());
                    }
                    // A flaky call succeeds only once its planned failures
                    // were retried.
                    if flaky && attempts.iter().any(|&a| a <= FLAKY_FAILURES) {
                        problems.push(format!(
                            "{key}: succeeded at attempts {attempts:?}, though the first \
                             {FLAKY_FAILURES} always fail"
                        ));
                    }
                }
            }
            calls.insert(key, flaky);
        }
    }
    let problems = &mut report.problems;
    for key in effects.keys.iter().filter(|k| !calls.contains_key(*k)) {
        problems.push(format!("{key}: an attempt of a call no history holds"));
    }
    for (key, attempts) in &effects.done {
        if calls.get(key) == Some(&false) {
            let top = attempts.iter().copied().max().unwrap_or(0);
            report.highest_attempt = report.highest_attempt.max(top);
        }
    }
    for key in effects.failed.keys() {
        if calls.get(key) == Some(&false) {
            problems.push(format!("{key}: failed, though its activity never fails"));
        }
    }
    problems.extend(tables.problems);
    let stored = tables.ids;
    if stored != ids {
        problems.push(format!(
            "{} instances stored, {} expected; not expected: {:?}; missing: {:?}",
            stored.len(),
            ids.len(),
            stored.difference(&ids).collect::<Vec<_>>(),
            ids.difference(&stored).collect::<Vec<_>>()
        ));
    }
    report
}

#[cfg(test)]
mod tests {
    use durable::history::{ChildFailure, Event, HistoryRecord, ParentRef, Payload};

    use super::{check_children, check_earlier_laps, check_history, Effects};
    use crate::workload::{children, last_lap_input, Kind, Spec, GO, GO_END};

    fn json(text: &str) -> Payload {
        serde_json::from_str(text).expect("valid JSON")
    }

    /// A gate's history as a correct run records it, one event per turn.
    fn gate_history() -> Vec<Event> {
        let mut events = vec![
            Event::Started {
                name: "gate".to_owned(),
                input: json("1"),
                seed: None,
                first_seq: 0,
                parent: None,
                version: 1,
            },
            Event::TimerCreated {
                seq: 0,
                fire_at: 100,
                site: "here".to_owned(),
            },
            Event::TimerFired { seq: 0 },
        ];
        events.extend(GO.into_iter().chain([GO_END]).map(|go| Event::EventRaised {
            name: "go".to_owned(),
            data: json(&go.to_string()),
        }));
        events.extend([
            Event::ActivityScheduled {
                seq: 1,
                name: "step".to_owned(),
                input: json("[1,3]"),
                site: "there".to_owned(),
            },
            Event::ActivityCompleted {
                seq: 1,
                output: json("2"),
            },
            Event::Completed {
                output: json("2"),
                failed: false,
            },
        ]);
        events
    }

    fn spec(id: &str, kind: Kind, input: u64) -> Spec {
        Spec {
            id: id.to_owned(),
            kind,
            input,
        }
    }

    fn history(events: Vec<Event>) -> Vec<HistoryRecord> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, event)| HistoryRecord {
                index: i as u64,
                turn: i as u64,
                at: 100 * i as i64,
                event,
            })
            .collect()
    }

    fn problems_of(spec: &Spec, events: Vec<Event>) -> Vec<String> {
        let mut problems = Vec::new();
        check_history(spec, &history(events), &mut problems);
        problems
    }

    fn problems(events: Vec<Event>) -> Vec<String> {
        problems_of(&spec("g", Kind::Gate, 1), events)
    }

    /// `events` with the event at `from` copied in again at `to`.
    fn with_copy(mut events: Vec<Event>, from: usize, to: usize) -> Vec<Event> {
        let copy = events[from].clone();
        events.insert(to, copy);
        events
    }

    fn assert_found(problems: &[String], what: &str) {
        assert!(
            problems.iter().any(|p| p.contains(what)),
            "expected a problem saying {what:?}, got {problems:?}"
        );
    }

    #[test]
    fn a_correct_history_has_no_problem() {
        assert_eq!(problems(gate_history()), Vec::<String>::new());
    }

    #[test]
    fn every_kind_of_delivered_event_is_caught_when_it_comes_twice() {
        let events = gate_history();
        let completion = events.len() - 2;
        assert_found(
            &problems(with_copy(events.clone(), completion, completion)),
            "call 1 completed twice",
        );
        assert_found(
            &problems(with_copy(events.clone(), 2, 3)),
            "timer 0 fired twice",
        );
        assert_found(
            &problems(with_copy(events, 4, 5)),
            "event go 5 delivered twice",
        );
    }

    #[test]
    fn events_out_of_order_and_early_or_unasked_deliveries_are_caught() {
        let mut events = gate_history();
        events.swap(3, 4);
        assert_found(&problems(events), "events delivered");
        let mut events = gate_history();
        let completion = events.len() - 2;
        events.swap(completion - 1, completion);
        assert_found(&problems(events), "never scheduled before");
        let mut events = gate_history();
        events[1] = Event::TimerCreated {
            seq: 0,
            fire_at: 1_000,
            site: "here".to_owned(),
        };
        assert_found(&problems(events), "before its time");
    }

    fn suspended() -> Event {
        Event::Suspended {
            reason: "held".to_owned(),
        }
    }

    fn resumed() -> Event {
        Event::Resumed {
            reason: "released".to_owned(),
        }
    }

    /// A held gate's history as a correct run records it: suspended after
    /// its first turn, its events delivered once it is resumed.
    fn held_history() -> Vec<Event> {
        let mut events = gate_history();
        events.insert(1, suspended());
        events.insert(2, resumed());
        events
    }

    #[test]
    fn a_turn_while_suspended_and_events_before_the_resume_are_caught() {
        let held = spec("h", Kind::Held, 1);
        assert_eq!(problems_of(&held, held_history()), Vec::<String>::new());
        // The timer fired into a turn that ran while suspended.
        let mut events = held_history();
        events.swap(2, 3);
        events.swap(3, 4);
        assert_found(&problems_of(&held, events), "while suspended");
        // Events delivered before the instance was ever suspended.
        let mut events = gate_history();
        events.insert(7, suspended());
        events.insert(8, resumed());
        assert_found(&problems_of(&held, events), "before the first resume");
        // Suspended before its `Started` ran (the shape of the runtime bug
        // the workload steps around).
        let mut events = held_history();
        events.swap(0, 1);
        let found = problems_of(&held, events);
        assert_found(&found, "history does not open with Started");
        assert_found(&found, "a Started at 1, not first");
        assert_found(&problems_of(&held, gate_history()), "never suspended");
        assert_found(&problems(held_history()), "suspended 1 times");
        let mut events = held_history();
        events.insert(2, suspended());
        assert_found(
            &problems_of(&held, events),
            "suspended at 2 while suspended",
        );
    }

    /// A parent's history as a correct run records it: its children
    /// started in one turn, ending in any order.
    fn parent_history(parent: &Spec) -> Vec<Event> {
        let mut events = vec![Event::Started {
            name: "parent".to_owned(),
            input: json(&parent.input.to_string()),
            seed: None,
            first_seq: 0,
            parent: None,
            version: 1,
        }];
        let calls = children(parent);
        let n = u64::try_from(calls.len()).expect("a few children");
        for (seq, (_, input)) in (0..n).zip(&calls) {
            events.push(Event::ChildScheduled {
                seq,
                name: "child".to_owned(),
                id: format!("{}:{seq}", parent.id),
                input: json(&input.to_string()),
                site: "here".to_owned(),
                version: 1,
            });
        }
        for seq in (0..n).rev() {
            events.push(Event::ChildCompleted {
                seq,
                output: json("1"),
            });
        }
        events.push(Event::Completed {
            output: json("1"),
            failed: false,
        });
        events
    }

    fn child_problems(parent: &Spec, events: Vec<Event>) -> (Vec<(Spec, ParentRef)>, Vec<String>) {
        let mut problems = Vec::new();
        let seen = check_history(parent, &history(events), &mut problems);
        let found = check_children(parent, &seen, &mut problems);
        (found, problems)
    }

    #[test]
    fn children_missing_failed_misnamed_or_fed_the_wrong_input_are_caught() {
        let parent = spec("p", Kind::Parent, 7);
        let (found, none) = child_problems(&parent, parent_history(&parent));
        assert_eq!(none, Vec::<String>::new());
        let ids: Vec<&str> = found.iter().map(|(c, _)| c.id.as_str()).collect();
        assert_eq!(ids, ["p:0", "p:1", "p:2"]);
        assert!(found
            .iter()
            .zip(children(&parent))
            .all(|((c, at), (kind, input))| c.kind == kind
                && c.input == input
                && at.id == "p"
                && format!("p:{}", at.seq) == c.id));
        // A child that never reported back.
        let mut events = parent_history(&parent);
        events.remove(4);
        assert_found(&child_problems(&parent, events).1, "started but");
        // A child that failed.
        let mut events = parent_history(&parent);
        events[5] = Event::ChildFailed {
            seq: 1,
            failure: ChildFailure::Terminated("gone".to_owned()),
        };
        assert_found(&child_problems(&parent, events).1, "child 1 failed");
        // A child never called.
        let mut events = parent_history(&parent);
        events.remove(6);
        events.remove(3);
        assert_found(
            &child_problems(&parent, events).1,
            "2 children called, 3 expected",
        );
        // A child under an id not derived from its call, or fed another input.
        let mut events = parent_history(&parent);
        if let Event::ChildScheduled { id, input, .. } = &mut events[2] {
            *id = "elsewhere".to_owned();
            *input = json("5");
        }
        let (_, found) = child_problems(&parent, events);
        assert_found(&found, "not \"p:1\"");
        assert_found(&found, "expected child with");
    }

    /// The last execution of a laps instance, begun at `first_seq`.
    fn last_lap(spec: &Spec, first_seq: u64) -> Vec<Event> {
        let input = serde_json::to_string(&last_lap_input(spec.input)).expect("encodes");
        vec![
            Event::Started {
                name: "laps".to_owned(),
                input: json(&input),
                seed: None,
                first_seq,
                parent: None,
                version: 1,
            },
            Event::ActivityScheduled {
                seq: first_seq,
                name: "step".to_owned(),
                input: json("[1,1]"),
                site: "here".to_owned(),
            },
            Event::ActivityCompleted {
                seq: first_seq,
                output: json("2"),
            },
            Event::Completed {
                output: json("2"),
                failed: false,
            },
        ]
    }

    fn effects(lines: &[&str]) -> Effects {
        let log: Vec<_> = lines
            .iter()
            .map(|l| crate::workload::Effect::parse(l).expect("a log line"))
            .collect();
        Effects::new(&log, &mut super::Report::default())
    }

    fn laps_problems(spec: &Spec, events: Vec<Event>, log: &[&str]) -> Vec<String> {
        let mut problems = Vec::new();
        let seen = check_history(spec, &history(events), &mut problems);
        check_earlier_laps(spec, &seen, &effects(log), &mut problems);
        problems
    }

    #[test]
    fn earlier_executions_lost_or_left_unfinished_and_a_wrong_last_input_are_caught() {
        let laps = spec("l", Kind::Laps, 4);
        let log = [
            "start l#0 1 1",
            "done l#0 1 1",
            "done l#1 1 1",
            "start l#2 1 1",
            "start l#2 2 2",
            "done l#2 2 2",
            "done l#3 1 2",
        ];
        assert_eq!(
            laps_problems(&laps, last_lap(&laps, 3), &log),
            Vec::<String>::new()
        );
        // An execution whose call left no trace.
        let lost: Vec<&str> = log.iter().copied().filter(|l| !l.contains("l#0")).collect();
        assert_found(
            &laps_problems(&laps, last_lap(&laps, 3), &lost),
            "2 calls by executions before the last",
        );
        // An earlier call begun and never done.
        let unfinished: Vec<&str> = log
            .iter()
            .copied()
            .filter(|l| *l != "done l#1 1 1")
            .collect();
        let mut with_start = unfinished.clone();
        with_start.push("start l#1 1 1");
        assert_found(
            &laps_problems(&laps, last_lap(&laps, 3), &with_start),
            "l#1: a call of an earlier execution whose side effect never happened",
        );
        // The last execution fed another input.
        let other = spec("l", Kind::Laps, 5);
        assert_found(
            &laps_problems(&other, last_lap(&laps, 3), &log),
            "last execution started with",
        );
        // A decision numbered below its execution's first.
        let mut events = last_lap(&laps, 3);
        if let Event::Started { first_seq, .. } = &mut events[0] {
            *first_seq = 4;
        }
        assert_found(
            &laps_problems(&laps, events, &log),
            "a call numbered 3, below its execution's first, 4",
        );
    }
}
