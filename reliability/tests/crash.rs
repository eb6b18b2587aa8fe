//! Crash tests with real processes: the workload binary is killed with
//! SIGKILL at random moments and started again until everything finishes;
//! then nothing may be lost or duplicated.
//!
//! `DURABLE_CRASH_SEED=<n>` replays a run's kill timings; `DURABLE_SOAK=1`
//! runs ten times as many kills.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use durable_reliability::check::check;
use durable_reliability::workload::{generation, read_effects, Effect, Mark};

const PER_GENERATION: u64 = 8;

/// A step slow enough that an attempt seen running is still running when
/// its process is stopped or killed a moment later (and that is checked).
const SLOW_STEP_MS: u64 = 2_000;

/// How long a test waits for some state before it fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// SplitMix64, so a printed seed replays the same kill timings.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn seed() -> u64 {
    std::env::var("DURABLE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

fn kills_wanted() -> u64 {
    if std::env::var_os("DURABLE_SOAK").is_some() {
        500
    } else {
        50
    }
}

fn workload(db: &Path, effects: &Path, generation: u64, last: bool) -> Child {
    workload_with(db, effects, generation, last, None)
}

fn workload_with(
    db: &Path,
    effects: &Path,
    generation: u64,
    last: bool,
    step_ms: Option<u64>,
) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_workload"));
    if let Some(ms) = step_ms {
        cmd.env("DURABLE_STEP_MS", ms.to_string());
    }
    cmd.arg(db)
        .arg(effects)
        .arg(generation.to_string())
        .arg(PER_GENERATION.to_string());
    if last {
        cmd.arg("final");
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the workload binary starts")
}

/// Waits for a run that is not to be killed, failing the test after two
/// minutes.
fn finish(mut child: Child) {
    let deadline = Instant::now() + 2 * PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited on") {
            assert!(status.success(), "the final run failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the final run did not drain the workload in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Looks again and again until `probe` finds what it waits for; fails the
/// test after [`PATIENCE`].
fn until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The attempts process `pid` began and has not finished (with its side
/// effect, or failing on purpose), from the effects log: idempotency key to
/// attempt number.
fn unfinished_by(effects: &Path, pid: u32) -> BTreeMap<String, u32> {
    let log = read_effects(effects).expect("the effects log reads");
    let mine = log.iter().filter(|e: &&Effect| e.pid == pid);
    let ended: Vec<(&str, u32)> = mine
        .clone()
        .filter(|e| e.mark != Mark::Start)
        .map(|e| (e.key.as_str(), e.attempt))
        .collect();
    mine.filter(|s| s.mark == Mark::Start && !ended.contains(&(s.key.as_str(), s.attempt)))
        .map(|s| (s.key.clone(), s.attempt))
        .collect()
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

/// Stops `child` (SIGSTOP) at a moment it is inside some attempts, and
/// returns them: it waits for an attempt of the child's to be running,
/// stops it, and looks again, since the attempt may have ended meanwhile.
/// A child stopped inside a write transaction would hold SQLite's write
/// lock and block every other process (which no lease can fix), so it is
/// let go and stopped again later.
fn stop_inside_attempts(child: &Child, db: &Path, effects: &Path) -> BTreeMap<String, u32> {
    until("the process to be stopped inside an attempt", || {
        until("the process to begin an attempt", || {
            Some(()).filter(|()| !unfinished_by(effects, child.id()).is_empty())
        });
        signal(child, "STOP");
        let held = unfinished_by(effects, child.id());
        if held.is_empty() || !write_lock_free(db) {
            signal(child, "CONT");
            return None;
        }
        Some(held)
    })
}

/// Asserts that every attempt in `held` (by process `pid`) was run again,
/// and its side effect done, by another process under a later attempt.
fn assert_taken_over(effects: &Path, pid: u32, held: &BTreeMap<String, u32>) {
    let log = read_effects(effects).expect("the effects log reads");
    for (key, attempt) in held {
        assert!(
            log.iter().any(|e| e.mark == Mark::Done
                && &e.key == key
                && e.pid != pid
                && e.attempt > *attempt),
            "{key}, held by {pid} as attempt {attempt}, was taken over: {:?}",
            log.iter().filter(|e| &e.key == key).collect::<Vec<_>>()
        );
    }
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
    let wanted = kills_wanted();
    while kills < wanted {
        let mut child = workload(&db, &effects, g, false);
        g += 1;
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 300));
        match child.try_wait().expect("the child can be waited on") {
            Some(status) => assert!(status.success(), "run {g} failed on its own: {status}"),
            None => {
                child.kill().expect("SIGKILL is delivered");
                child.wait().expect("the killed child is reaped");
                kills += 1;
            }
        }
    }
    finish(workload(&db, &effects, g, true));

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
    finish(workload(&db, &effects, 0, false));
    let a = workload(&db, &effects, 1, false);
    let b = workload(&db, &effects, 2, false);
    let mut c = workload_with(&db, &effects, 3, false, Some(SLOW_STEP_MS));
    // Kill one of three mid-flight, inside attempts it holds: the others
    // and a fourth pick up its work.
    let held = stop_inside_attempts(&c, &db, &effects);
    c.kill().expect("SIGKILL is delivered");
    c.wait().expect("the killed child is reaped");
    let d = workload(&db, &effects, 4, true);
    finish(a);
    finish(b);
    finish(d);

    let specs: Vec<_> = (0..=4)
        .flat_map(|g| generation(g, PER_GENERATION))
        .collect();
    let report = check(&db, &effects, &specs);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_taken_over(&effects, c.id(), &held);
}

/// Sends `signal` (by name, e.g. `STOP`) to the child with `kill`.
fn signal(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(ok.success(), "kill -{signal} was delivered");
}

#[test]
fn a_process_frozen_past_its_leases_loses_them_and_its_late_commits_are_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("frozen.db");
    let effects = dir.path().join("effects.log");
    finish(workload(&db, &effects, 0, false));
    // A freezes mid-work, inside slow activities whose leases it holds.
    let a = workload_with(&db, &effects, 1, false, Some(SLOW_STEP_MS));
    let held = stop_inside_attempts(&a, &db, &effects);
    // B takes the work over once A's leases expire, and drains the file.
    finish(workload(&db, &effects, 2, true));
    // A thaws and finishes the attempts it held (it exits only once they
    // end), then tries to commit them: all of it is stale.
    signal(&a, "CONT");
    let frozen = a.id();
    finish(a);

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
