//! The checks after the damage: every instance finished exactly once with
//! the right output, histories are whole and hold every delivered event
//! (completion, timer, external event) once and in an order that makes
//! sense, every activity's side effect happened, and no work is left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use durable::history::{Event, HistoryRecord};
use durable::store::{SqliteStore, Store};
use durable::RuntimeStatus;

use crate::workload::{expected, read_effects, Effect, Kind, Mark, Spec, GO, GO_END};

/// What the checks found.
#[derive(Debug, Default)]
pub struct Report {
    /// Instances checked.
    pub instances: usize,
    /// Activity calls in all histories.
    pub calls: usize,
    /// Calls whose side effect happened more than once (a retry after a
    /// lost attempt), by idempotency key, with the attempts seen.
    pub retried: BTreeMap<String, Vec<u32>>,
    /// Attempts that began and never did their side effect (their process
    /// died under them), by idempotency key: (attempt, pid).
    pub interrupted: BTreeMap<String, Vec<(u32, u32)>>,
    /// The highest attempt number whose side effect happened: above 1 when
    /// some call was run again after its lease was lost.
    pub highest_attempt: u32,
    /// Everything that is wrong; empty when all is well.
    pub problems: Vec<String>,
}

/// Checks one instance's history: its shape, and that each delivered event
/// is there once, after what it answers. Returns the calls it scheduled.
fn check_history(spec: &Spec, history: &[HistoryRecord], problems: &mut Vec<String>) -> Vec<u64> {
    let id = &spec.id;
    // Calls, timers and side effects share one sequence of numbers.
    let mut decisions: BTreeMap<u64, &'static str> = BTreeMap::new();
    let mut decide = |seq: u64, what: &'static str, problems: &mut Vec<String>| {
        if let Some(before) = decisions.insert(seq, what) {
            problems.push(format!("{id}: seq {seq} taken by {before} and by {what}"));
        }
    };
    let mut scheduled = Vec::new();
    let mut completed = BTreeSet::new();
    let mut timers: BTreeMap<u64, i64> = BTreeMap::new();
    let mut fired = BTreeSet::new();
    let mut raised: Vec<(String, String)> = Vec::new();
    let mut terminal = 0;
    for (i, rec) in history.iter().enumerate() {
        if rec.index != i as u64 {
            problems.push(format!("{id}: event {i} has index {}", rec.index));
        }
        match &rec.event {
            Event::Started { .. } if i != 0 => {
                problems.push(format!("{id}: a second Started at {i}"));
            }
            Event::ActivityScheduled { seq, .. } => {
                decide(*seq, "a call", problems);
                scheduled.push(*seq);
            }
            Event::TimerCreated { seq, fire_at, .. } => {
                decide(*seq, "a timer", problems);
                timers.insert(*seq, *fire_at);
            }
            Event::SideEffect { seq, .. } => decide(*seq, "a side effect", problems),
            Event::ActivityCompleted { seq, .. } | Event::ActivityFailed { seq, .. } => {
                if !scheduled.contains(seq) {
                    problems.push(format!(
                        "{id}: call {seq} completed at {i}, never scheduled before"
                    ));
                }
                if !completed.insert(*seq) {
                    problems.push(format!("{id}: call {seq} completed twice"));
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
    let calls: BTreeSet<u64> = scheduled.iter().copied().collect();
    if calls != completed {
        problems.push(format!(
            "{id}: scheduled {calls:?} but completed {completed:?}"
        ));
    }
    // The workload awaits every timer it sets.
    let created: BTreeSet<u64> = timers.keys().copied().collect();
    if created != fired {
        problems.push(format!("{id}: timers {created:?} set but {fired:?} fired"));
    }
    let wanted: Vec<(String, String)> = match spec.kind {
        Kind::Gate => GO
            .into_iter()
            .chain([GO_END])
            .map(|go| ("go".to_owned(), go.to_string()))
            .collect(),
        Kind::Sequence | Kind::Fan | Kind::Nap => Vec::new(),
    };
    if raised != wanted {
        problems.push(format!(
            "{id}: events delivered {raised:?}, raised {wanted:?}"
        ));
    }
    scheduled
}

/// Checks the database at `db` and the effects log against `specs`.
///
/// # Panics
/// When the database cannot be opened.
pub fn check(db: &Path, effects_log: &Path, specs: &[Spec]) -> Report {
    let store = SqliteStore::open(db).expect("the database opens");
    let mut report = Report {
        instances: specs.len(),
        ..Report::default()
    };
    let effects = read_effects(effects_log).unwrap_or_else(|e| {
        report.problems.push(e);
        Vec::new()
    });
    let problems = &mut report.problems;
    let mut done: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for e in effects.iter().filter(|e| e.mark == Mark::Done) {
        done.entry(&e.key).or_default().push(e.attempt);
        report.highest_attempt = report.highest_attempt.max(e.attempt);
    }
    let finished: BTreeSet<(&str, u32, u32)> = effects
        .iter()
        .filter(|e| e.mark == Mark::Done)
        .map(|e| (e.key.as_str(), e.attempt, e.pid))
        .collect();
    for Effect {
        key, attempt, pid, ..
    } in effects.iter().filter(|e| e.mark == Mark::Start)
    {
        if !finished.contains(&(key.as_str(), *attempt, *pid)) {
            report
                .interrupted
                .entry(key.clone())
                .or_default()
                .push((*attempt, *pid));
        }
    }
    let mut calls = BTreeSet::new();
    for spec in specs {
        let id = &spec.id;
        match store.status(id) {
            Ok(Some(s)) => {
                if s.runtime_status != RuntimeStatus::Completed {
                    problems.push(format!("{id}: {:?} ({:?})", s.runtime_status, s.failure));
                }
                match s.output::<u64>() {
                    Ok(Some(v)) if v == expected(spec) => {}
                    other => problems.push(format!(
                        "{id}: output {other:?}, expected {}",
                        expected(spec)
                    )),
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
        for seq in check_history(spec, &history, problems) {
            report.calls += 1;
            let key = format!("{id}#{seq}");
            match done.get(key.as_str()) {
                None => problems.push(format!("{key}: its side effect never happened")),
                Some(attempts) if attempts.len() > 1 => {
                    report.retried.insert(key.clone(), attempts.clone());
                }
                Some(_) => {}
            }
            calls.insert(key);
        }
    }
    for key in done.keys().filter(|k| !calls.contains(**k)) {
        problems.push(format!("{key}: a side effect of a call no history holds"));
    }
    let conn = rusqlite::Connection::open(db).expect("the database opens");
    for table in ["messages", "tasks"] {
        let n: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("counts");
        if n != 0 {
            problems.push(format!("{n} rows left in {table}"));
        }
    }
    let all: i64 = conn
        .query_row("SELECT count(*) FROM instances", [], |r| r.get(0))
        .expect("counts");
    if usize::try_from(all).ok() != Some(specs.len()) {
        problems.push(format!(
            "{all} instances in the file, {} expected",
            specs.len()
        ));
    }
    report
}

#[cfg(test)]
mod tests {
    use durable::history::{Event, HistoryRecord, Payload};

    use super::check_history;
    use crate::workload::{Kind, Spec, GO, GO_END};

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

    fn problems(events: Vec<Event>) -> Vec<String> {
        let spec = Spec {
            id: "g".to_owned(),
            kind: Kind::Gate,
            input: 1,
        };
        let history: Vec<HistoryRecord> = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| HistoryRecord {
                index: i as u64,
                turn: i as u64,
                at: 100 * i as i64,
                event,
            })
            .collect();
        let mut problems = Vec::new();
        check_history(&spec, &history, &mut problems);
        problems
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
}
