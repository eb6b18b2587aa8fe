//! A process that competes for work in a PostgreSQL schema through the
//! store's interface alone, and writes down every claim with the server's
//! clock (see `durable_reliability::claims` for the log).
//!
//! `claimer <url> <schema> <log> compete <rounds> <go-file>`: once
//! `<go-file>` exists, runs `rounds` rounds of: claim up to two instances,
//! commit a turn for each that queues a call, lease up to two calls,
//! finish them (which makes their instances ready again).
//!
//! `claimer <url> <schema> <log> hold <lock-ms> <go-file>`: claims one
//! instance (trying until one is free) for `lock-ms`, writes `held`, waits
//! for `<go-file>`, then commits its turn and writes what became of it.
//!
//! Each writes `<go-file>.ready.<pid>` once connected.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use durable::history::{Event, Payload};
use durable::store::{
    CommitOutcome, Names, PostgresOptions, PostgresStore, Store, TaskOutcome, TaskResult,
};
use durable_reliability::claims::{turn_for, Entry, INSTANCE_NAME, TASK_NAME};

type BoxError = Box<dyn std::error::Error>;

/// Instances or calls one fetch asks for.
const LIMIT: usize = 2;

/// Claims in the competition never lapse: any refused commit or second
/// attempt is then a real double hold.
const LONG: Duration = Duration::from_secs(120);

/// How long a claimer keeps what it claimed before it commits, so the
/// stretches it surely holds are long enough to overlap another's if the
/// store ever let two hold at once.
const HOLD: Duration = Duration::from_millis(2);

struct Log(std::fs::File);

impl Log {
    fn write(&mut self, entry: &Entry) -> Result<(), BoxError> {
        // One short write to an O_APPEND file: lines never interleave.
        self.0.write_all(format!("{entry}\n").as_bytes())?;
        Ok(())
    }
}

fn wait_for(path: &Path) {
    while !path.exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn compete(store: &PostgresStore, log: &mut Log, rounds: u64) -> Result<(), BoxError> {
    let who = std::process::id();
    let owner = format!("claimer-{who}");
    for round in 0..rounds {
        let t0 = store.now()?;
        let work = store.fetch_work(
            &owner,
            LONG,
            LIMIT,
            Names(&[(INSTANCE_NAME, Names::ANY_VERSION)]),
        )?;
        let t1 = store.now()?;
        log.write(&Entry::Work {
            who,
            t0,
            t1,
            limit: LIMIT,
            ids: work.iter().map(|w| w.id.clone()).collect(),
        })?;
        if !work.is_empty() {
            std::thread::sleep(HOLD);
            let turns: Vec<_> = work.iter().map(|w| turn_for(w, who, round, t1)).collect();
            let t0 = store.now()?;
            let outcomes = store.commit_turns(&owner, LONG, &turns)?;
            let t1 = store.now()?;
            let turns = work
                .iter()
                .zip(outcomes)
                .map(|(w, o)| match o {
                    CommitOutcome::Committed { tasks } => (w.id.clone(), tasks.first().copied()),
                    _ => (w.id.clone(), None),
                })
                .collect();
            log.write(&Entry::Commit {
                who,
                round,
                t0,
                t1,
                turns,
            })?;
        }
        let t0 = store.now()?;
        let tasks = store.fetch_tasks(
            &owner,
            LONG,
            LIMIT,
            Names(&[(TASK_NAME, Names::ANY_VERSION)]),
        )?;
        let t1 = store.now()?;
        log.write(&Entry::Tasks {
            who,
            t0,
            t1,
            limit: LIMIT,
            tasks: tasks
                .iter()
                .map(|t| (t.id, t.instance.clone(), t.seq, t.attempt))
                .collect(),
        })?;
        if !tasks.is_empty() {
            std::thread::sleep(HOLD);
            let output: Payload = serde_json::from_str(&who.to_string())?;
            let results: Vec<TaskResult> = tasks
                .iter()
                .map(|t| {
                    let done = Event::ActivityCompleted {
                        seq: t.seq,
                        output: output.clone(),
                    };
                    TaskResult::new(t.task_ref(), t.instance.clone(), TaskOutcome::Done(done))
                })
                .collect();
            let t0 = store.now()?;
            store.finish_tasks(&owner, &results)?;
            let t1 = store.now()?;
            log.write(&Entry::Finish {
                who,
                t0,
                t1,
                tasks: tasks.iter().map(|t| t.id).collect(),
            })?;
        }
    }
    Ok(())
}

fn hold(store: &PostgresStore, log: &mut Log, lock: Duration, go: &Path) -> Result<(), BoxError> {
    let who = std::process::id();
    let owner = format!("holder-{who}");
    let work = loop {
        let mut work = store.fetch_work(
            &owner,
            lock,
            1,
            Names(&[(INSTANCE_NAME, Names::ANY_VERSION)]),
        )?;
        if let Some(w) = work.pop() {
            break w;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    log.write(&Entry::Held {
        who,
        instance: work.id.clone(),
        len: work.history_len,
    })?;
    wait_for(go);
    let turn = turn_for(&work, who, 0, store.now()?);
    let outcome = store.commit_turns(&owner, LONG, &[turn])?;
    log.write(&Entry::Late {
        who,
        instance: work.id,
        committed: matches!(outcome.first(), Some(CommitOutcome::Committed { .. })),
    })
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, schema, log, mode, n, go] = &args[..] else {
        return Err(
            "usage: claimer <url> <schema> <log> <compete rounds|hold lock-ms> <go-file>".into(),
        );
    };
    let mut options = PostgresOptions::default();
    options.schema.clone_from(schema);
    options.pool_size = 2;
    options.listen = false;
    let store = PostgresStore::connect_with(url, &options)?;
    let mut log = Log(OpenOptions::new().create(true).append(true).open(log)?);
    let go = PathBuf::from(go);
    std::fs::write(format!("{}.ready.{}", go.display(), std::process::id()), "")?;
    let n: u64 = n.parse()?;
    match mode.as_str() {
        "compete" => {
            wait_for(&go);
            compete(&store, &mut log, n)
        }
        "hold" => hold(&store, &mut log, Duration::from_millis(n), &go),
        other => Err(format!("unknown mode {other}").into()),
    }
}
