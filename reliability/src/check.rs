//! The checks after the damage: every instance finished exactly once with
//! the right output, histories are whole, every activity's side effect
//! happened, and no work is left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use durable::history::Event;
use durable::store::{SqliteStore, Store};
use durable::RuntimeStatus;

use crate::workload::{expected, Spec};

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
    /// Everything that is wrong; empty when all is well.
    pub problems: Vec<String>,
}

/// Reads the side-effect log: attempts seen, by idempotency key.
fn effects(path: &Path) -> BTreeMap<String, Vec<u32>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for line in text.lines() {
        if let Some((key, attempt)) = line.rsplit_once(' ') {
            out.entry(key.to_owned())
                .or_default()
                .push(attempt.parse().unwrap_or(0));
        }
    }
    out
}

/// Checks the database at `db` and the effects log against `specs`.
///
/// # Panics
/// When the database cannot be opened.
pub fn check(db: &Path, effects_log: &Path, specs: &[Spec]) -> Report {
    let store = SqliteStore::open(db).expect("the database opens");
    let effects = effects(effects_log);
    let mut report = Report {
        instances: specs.len(),
        ..Report::default()
    };
    let problems = &mut report.problems;
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
        let mut scheduled = BTreeSet::new();
        let mut completed = BTreeSet::new();
        let mut terminal = 0;
        for (i, rec) in history.iter().enumerate() {
            if rec.index != i as u64 {
                problems.push(format!("{id}: event {i} has index {}", rec.index));
            }
            match &rec.event {
                Event::Started { .. } if i != 0 => {
                    problems.push(format!("{id}: a second Started at {i}"));
                }
                Event::ActivityScheduled { seq, .. } if !scheduled.insert(*seq) => {
                    problems.push(format!("{id}: call {seq} scheduled twice"));
                }
                Event::ActivityCompleted { seq, .. } | Event::ActivityFailed { seq, .. }
                    if !completed.insert(*seq) =>
                {
                    problems.push(format!("{id}: call {seq} completed twice"));
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
        if scheduled != completed {
            problems.push(format!(
                "{id}: scheduled {scheduled:?} but completed {completed:?}"
            ));
        }
        for seq in &scheduled {
            report.calls += 1;
            let key = format!("{id}#{seq}");
            match effects.get(&key) {
                None => problems.push(format!("{key}: its side effect never happened")),
                Some(attempts) if attempts.len() > 1 => {
                    report.retried.insert(key, attempts.clone());
                }
                Some(_) => {}
            }
        }
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
