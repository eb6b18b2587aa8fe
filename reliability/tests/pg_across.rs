//! Entities, children, continue-as-new and timers across processes on one
//! PostgreSQL schema (`src/bin/across.rs`): the first process starts the
//! relays and stops, cleanly, once each has started its first child and
//! those children wait on their timers; two other processes fire those
//! timers, finish the children, deliver their results to the parents and
//! run the parents' later executions, while both the first and the second
//! process's clients and the orchestrations on every process signal one
//! ledger entity. Then every output is right, every signal applied once
//! in its sender's order, and the record of commits shows the work moved.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use durable::history::{Event, HistoryRecord};
use durable::store::{PostgresOptions, PostgresStore, Store};
use durable::{Runtime, RuntimeStatus};
use durable_reliability::across::{
    expected, last_input, relay_id, senders, Ledger, LEDGER, RELAYS,
};
use durable_reliability::pg::{self, SchemaGuard, Sql};
use durable_reliability::procs::{finish, until, Reaper, PATIENCE};
use durable_reliability::recorded::{read_record, Line, Verdict};
use durable_reliability::target::Target;

fn across(target: &Target, role: &str, stop: Option<&Path>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_across"));
    cmd.args(target.to_args()).arg(role);
    if let Some(stop) = stop {
        cmd.arg(stop);
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the across binary starts")
}

/// What is wrong with the shape of one execution's history: indices that
/// skip, a `Started` not first, terminal events not one at the end, calls,
/// children or timers answered other than once.
fn shape(id: &str, history: &[HistoryRecord]) -> Vec<String> {
    let mut problems = Vec::new();
    let (mut asked, mut answered) = (BTreeSet::new(), Vec::new());
    for (i, rec) in history.iter().enumerate() {
        if rec.index != i as u64 {
            problems.push(format!("{id}: event {i} has index {}", rec.index));
        }
        match &rec.event {
            Event::Started { .. } if i != 0 => problems.push(format!("{id}: Started at {i}")),
            Event::ActivityScheduled { seq, .. }
            | Event::ChildScheduled { seq, .. }
            | Event::TimerCreated { seq, .. } => {
                asked.insert(*seq);
            }
            Event::ActivityCompleted { seq, .. }
            | Event::ChildCompleted { seq, .. }
            | Event::TimerFired { seq } => answered.push(*seq),
            Event::ActivityFailed { .. } | Event::ChildFailed { .. } => {
                problems.push(format!("{id}: {:?}", rec.event));
            }
            _ => {}
        }
    }
    let once: BTreeSet<u64> = answered.iter().copied().collect();
    if once.len() != answered.len() || once != asked {
        problems.push(format!("{id}: asked {asked:?}, answered {answered:?}"));
    }
    let terminal = history.iter().filter(|r| r.event.is_terminal()).count();
    if terminal != 1 || !history.last().is_some_and(|r| r.event.is_terminal()) {
        problems.push(format!(
            "{id}: {terminal} terminal events, not one at the end"
        ));
    }
    problems
}

/// The ledger's numbers, read by a runtime that runs nothing.
fn ledger(url: &str, schema: &str) -> Vec<u64> {
    let tokio = tokio::runtime::Runtime::new().expect("a tokio runtime");
    tokio.block_on(async {
        let mut options = PostgresOptions::default();
        options.schema = schema.to_owned();
        options.listen = false;
        let rt = Runtime::builder()
            .postgres_with(url, options)
            .start()
            .await
            .expect("a runtime starts");
        let state = rt
            .client()
            .entity::<Ledger>(LEDGER)
            .state()
            .await
            .expect("the ledger reads")
            .unwrap_or_default();
        rt.shutdown().await.expect("the runtime shuts down");
        state.entries
    })
}

#[test]
fn children_timers_new_executions_and_an_entity_carry_on_in_other_processes() {
    let url = pg::url();
    let schema = SchemaGuard::new(&url, "across");
    let mut options = PostgresOptions::default();
    options.schema.clone_from(&schema.schema);
    options.listen = false;
    let store = PostgresStore::connect_with(&url, &options).expect("the schema is created");
    let dir = tempfile::tempdir().expect("a temp dir");
    let record = dir.path().join("record.log");
    let target = Target {
        postgres: Some((url.clone(), schema.schema.clone())),
        record: Some(record.clone()),
        ..Target::default()
    };
    let sql = Sql::connect(&url);
    let mut procs = Reaper::default();
    let stop = dir.path().join("stop-first");
    procs.0.push(across(&target, "first", Some(&stop)));
    let first = procs.0[0].id();
    // Every relay has started its first child: the children wait on their
    // timers (a second long) when the first process stops.
    until("every relay to start its first child", || {
        let children = sql.count(&format!(
            "SELECT count(*) FROM \"{}\".instances WHERE name = 'leg'",
            schema.schema
        ));
        (children >= RELAYS as i64).then_some(())
    });
    std::fs::write(&stop, "").expect("the stop file");
    finish(&mut procs.0[0], PATIENCE);
    let finished_then = sql.count(&format!(
        "SELECT count(*) FROM \"{}\".instances WHERE name = 'leg' AND status = 'completed'",
        schema.schema
    ));
    procs.0.push(across(&target, "second", None));
    procs.0.push(across(&target, "helper", None));
    let others: Vec<u32> = procs.0[1..].iter().map(Child::id).collect();
    for child in &mut procs.0[1..] {
        finish(child, 2 * PATIENCE);
    }

    let mut problems = Vec::new();
    // Who committed each instance's turns.
    let mut committers: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for line in read_record(&record).expect("the record reads") {
        if let Line::Commit {
            pid,
            instance,
            verdict: Verdict::Committed,
            ..
        } = line
        {
            committers.entry(instance).or_default().insert(pid);
        }
    }
    let by = |id: &str| committers.get(id).cloned().unwrap_or_default();
    let (mut finished_elsewhere, mut crossed_timers) = (0, 0);
    for r in 0..RELAYS {
        let id = relay_id(r);
        let (legs, output) = expected(r);
        match store.status(&id).expect("the status reads") {
            Some(s) if s.runtime_status == RuntimeStatus::Completed => {
                if s.output::<u64>().ok().flatten() != Some(output) {
                    problems.push(format!(
                        "{id}: output {:?}, expected {output}",
                        s.output::<u64>()
                    ));
                }
            }
            other => problems.push(format!("{id}: {other:?}")),
        }
        let history = store
            .history(&id)
            .expect("the history reads")
            .unwrap_or_default();
        problems.extend(shape(&id, &history));
        // Its last execution began with the last lap's input.
        let last_input = serde_json::to_string(&last_input(r)).expect("encodes");
        match history.first().map(|h| &h.event) {
            Some(Event::Started { input, .. }) if input.json() == last_input => {}
            other => problems.push(format!(
                "{id}: last execution began with {other:?}, expected {last_input}"
            )),
        }
        // Its children, one per lap, each with the right output.
        let rows = sql.rows(&format!(
            "SELECT id, output FROM \"{}\".instances WHERE name = 'leg' AND id LIKE '{id}:%' \
             ORDER BY length(id), id",
            schema.schema
        ));
        let outputs: Vec<u64> = rows
            .iter()
            .filter_map(|row| row.get::<_, Option<String>>(1)?.parse().ok())
            .collect();
        if outputs != legs {
            problems.push(format!(
                "{id}: children returned {outputs:?}, expected {legs:?}"
            ));
        }
        for row in &rows {
            let child: String = row.get(0);
            let history = store
                .history(&child)
                .expect("the history reads")
                .unwrap_or_default();
            problems.extend(shape(&child, &history));
        }
        // The work moved: the first process ran the relay's first lap and
        // started its first child, which (its timer a second long) another
        // process finished; later laps ran elsewhere.
        let first_child: String = rows.first().map(|r| r.get(0)).unwrap_or_default();
        let (relay_by, child_by) = (by(&id), by(&first_child));
        if !relay_by.contains(&first) || !relay_by.iter().any(|p| others.contains(p)) {
            problems.push(format!(
                "{id}: committed by {relay_by:?} only (first: {first})"
            ));
        }
        if child_by.iter().any(|p| others.contains(p)) {
            finished_elsewhere += 1;
            if child_by.contains(&first) {
                crossed_timers += 1;
            }
        }
    }
    // Every number signalled to the ledger is there once, each sender's in
    // the order it sent them; the entity ran on both later processes or
    // either, and was signalled from all three.
    let entries = ledger(&url, &schema.schema);
    let mut seen = BTreeSet::new();
    for n in &entries {
        if !seen.insert(*n) {
            problems.push(format!("ledger: {n} applied twice"));
        }
    }
    for sent in senders() {
        let applied: Vec<u64> = entries
            .iter()
            .copied()
            .filter(|n| sent.contains(n))
            .collect();
        if applied != sent {
            problems.push(format!("ledger: sent {sent:?}, applied {applied:?}"));
        }
    }
    let total: usize = senders().iter().map(Vec::len).sum();
    if entries.len() != total {
        problems.push(format!("ledger: {} entries, {total} sent", entries.len()));
    }
    problems.extend(sql.leftovers(&schema.schema));
    println!(
        "first process {first} stopped with {finished_then} children finished; then {others:?}; \
         {finished_elsewhere} first children finished elsewhere, {crossed_timers} of them with \
         the timer the first process set; \
         committers: {:?}",
        committers
            .iter()
            .filter(|(id, _)| id.starts_with('@'))
            .collect::<Vec<_>>()
    );
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        finished_elsewhere > 0,
        "no child started by the first process finished elsewhere"
    );
    assert!(crossed_timers > 0, "no child's timer crossed processes");
}
