//! Crash tests with real processes: the workload binary is killed with
//! SIGKILL at random moments and started again until everything finishes;
//! then nothing may be lost or duplicated.
//!
//! `DURABLE_CRASH_SEED=<n>` replays a run's kill timings; `DURABLE_SOAK=1`
//! runs ten times as many kills.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use durable_reliability::check::check;
use durable_reliability::procs::{
    assert_taken_over, finish, kills_wanted, seed, signal, stop_inside_attempts, Rng, Workload,
    PATIENCE,
};
use durable_reliability::target::Target;
use durable_reliability::workload::{generation, read_effects, Mark};

const PER_GENERATION: u64 = 8;

/// A step slow enough that an attempt seen running is still running when
/// its process is stopped or killed a moment later (and that is checked).
const SLOW_STEP_MS: u64 = 2_000;

/// The workload on the SQLite file `db`.
fn workload_on(db: &Path, effects: &Path, step_ms: Option<u64>) -> Workload {
    Workload {
        exe: env!("CARGO_BIN_EXE_workload").into(),
        target: Target {
            sqlite: Some(db.to_owned()),
            ..Target::default()
        },
        effects: effects.to_owned(),
        count: PER_GENERATION,
        step_ms,
    }
}

fn workload(db: &Path, effects: &Path, generation: u64, last: bool) -> Child {
    workload_on(db, effects, None).spawn(generation, last)
}

fn workload_with(
    db: &Path,
    effects: &Path,
    generation: u64,
    last: bool,
    step_ms: Option<u64>,
) -> Child {
    workload_on(db, effects, step_ms).spawn(generation, last)
}

/// Waits for a run that is not to be killed, failing the test after two
/// minutes.
fn finish_run(mut child: Child) {
    finish(&mut child, 2 * PATIENCE);
}

/// Whether nobody holds the database's write lock right now.
fn write_lock_free(db: &Path) -> bool {
    let conn = rusqlite::Connection::open(db).expect("the database opens");
    conn.busy_timeout(Duration::ZERO).expect("set");
    match conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;") {
        Ok(()) => true,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            false
        }
        Err(e) => panic!("probing the write lock: {e}"),
    }
}

/// Stops `child` inside attempts it holds (see [`stop_inside_attempts`]):
/// a child stopped inside a write transaction would hold SQLite's write
/// lock and block every other process (which no lease can fix), so it is
/// let go and stopped again later.
fn stop_inside(
    child: &Child,
    db: &Path,
    effects: &Path,
) -> std::collections::BTreeMap<String, u32> {
    stop_inside_attempts(child.id(), effects, || write_lock_free(db))
}

#[test]
fn a_workload_killed_fifty_times_finishes_every_instance_exactly_once() {
    let seed = seed();
    println!("DURABLE_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("crash.db");
    let effects = dir.path().join("effects.log");
    let mut kills = 0;
    let mut g = 0;
    let wanted = kills_wanted(50);
    while kills < wanted {
        let mut child = workload(&db, &effects, g, false);
        g += 1;
        std::thread::sleep(Duration::from_millis(20 + rng.next_u64() % 300));
        match child.try_wait().expect("the child can be waited on") {
            Some(status) => assert!(status.success(), "run {g} failed on its own: {status}"),
            None => {
                child.kill().expect("SIGKILL is delivered");
                child.wait().expect("the killed child is reaped");
                kills += 1;
            }
        }
    }
    finish_run(workload(&db, &effects, g, true));

    let specs: Vec<_> = (0..=g)
        .flat_map(|g| generation(g, PER_GENERATION))
        .collect();
    let report = check(&db, &effects, &specs);
    println!(
        "{kills} kills, {} runs, {} instances ({} children), {} activity calls (and {} by \
         executions continued as new), {} attempts failed on purpose and retried, {} side \
         effects repeated, {} calls with an attempt cut off, highest attempt {}",
        g + 1,
        report.instances,
        report.children,
        report.calls,
        report.earlier_calls,
        report.failed_attempts,
        report.retried.len(),
        report.interrupted.len(),
        report.highest_attempt
    );
    assert!(
        report.problems.is_empty(),
        "seed {seed}: {:#?}",
        report.problems
    );
    // The kills did interrupt work: attempts were cut off and calls run
    // again after their lease was lost, and still nothing above went wrong.
    assert!(
        report.highest_attempt > 1,
        "seed {seed}: no call was ever run again, so no kill interrupted work"
    );
    assert!(
        !report.interrupted.is_empty(),
        "seed {seed}: no kill landed inside an activity attempt"
    );
}

#[test]
fn two_processes_on_one_file_share_the_work_without_losing_or_repeating_a_turn() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("shared.db");
    let effects = dir.path().join("effects.log");
    // Create the schema first so the two do not race to create it.
    finish_run(workload(&db, &effects, 0, false));
    let a = workload(&db, &effects, 1, false);
    let b = workload(&db, &effects, 2, false);
    let mut c = workload_with(&db, &effects, 3, false, Some(SLOW_STEP_MS));
    // Kill one of three mid-flight, inside attempts it holds: the others
    // and a fourth pick up its work.
    let held = stop_inside(&c, &db, &effects);
    c.kill().expect("SIGKILL is delivered");
    c.wait().expect("the killed child is reaped");
    let d = workload(&db, &effects, 4, true);
    finish_run(a);
    finish_run(b);
    finish_run(d);

    let specs: Vec<_> = (0..=4)
        .flat_map(|g| generation(g, PER_GENERATION))
        .collect();
    let report = check(&db, &effects, &specs);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_taken_over(&effects, c.id(), &held);
}

#[test]
fn a_process_frozen_past_its_leases_loses_them_and_its_late_commits_are_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("frozen.db");
    let effects = dir.path().join("effects.log");
    finish_run(workload(&db, &effects, 0, false));
    // A freezes mid-work, inside slow activities whose leases it holds.
    let a = workload_with(&db, &effects, 1, false, Some(SLOW_STEP_MS));
    let held = stop_inside(&a, &db, &effects);
    // B takes the work over once A's leases expire, and drains the file.
    finish_run(workload(&db, &effects, 2, true));
    // A thaws and finishes the attempts it held (it exits only once they
    // end), then tries to commit them: all of it is stale.
    signal(a.id(), "CONT");
    let frozen = a.id();
    finish_run(a);

    let specs: Vec<_> = (0..=2)
        .flat_map(|g| generation(g, PER_GENERATION))
        .collect();
    let report = check(&db, &effects, &specs);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    // B really took over: each call A held ran again under B's lease...
    assert_taken_over(&effects, frozen, &held);
    // ...and A's own attempt still ended, late: with its side effect (the
    // checks above saw each of those calls completed once in history), or
    // failing, as a flaky call's early attempts do.
    let log = read_effects(&effects).expect("the effects log reads");
    for (key, attempt) in &held {
        let end = log.iter().find(|e| {
            e.pid == frozen && &e.key == key && e.attempt == *attempt && e.mark != Mark::Start
        });
        match end.map(|e| e.mark) {
            Some(Mark::Done) => assert!(
                report.retried.contains_key(key),
                "{key}: A's late attempt and B's both ran: {:?}",
                report.retried
            ),
            Some(Mark::Fail) => {}
            _ => panic!("{key}: A's attempt {attempt} never ended"),
        }
    }
}
