//! Crash tests with real processes: the workload binary is killed with
//! SIGKILL at random moments and started again until everything finishes;
//! then nothing may be lost or duplicated.
//!
//! `DURABLE_CRASH_SEED=<n>` replays a run's kill timings; `DURABLE_SOAK=1`
//! runs ten times as many kills.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use durable_reliability::check::check;
use durable_reliability::workload::generation;

const PER_GENERATION: u64 = 8;

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

/// Waits for a run that is not to be killed, failing the test after a minute.
fn finish(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
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
        "{kills} kills, {} runs, {} instances, {} activity calls, {} re-run after a lost attempt",
        g + 1,
        report.instances,
        report.calls,
        report.retried.len()
    );
    assert!(
        report.problems.is_empty(),
        "seed {seed}: {:#?}",
        report.problems
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
    let mut c = workload(&db, &effects, 3, false);
    // Kill one of three mid-flight: the others and a fourth pick up its work.
    std::thread::sleep(Duration::from_millis(150));
    c.kill().ok();
    c.wait().ok();
    let d = workload(&db, &effects, 4, true);
    finish(a);
    finish(b);
    finish(d);

    let specs: Vec<_> = (0..=4)
        .flat_map(|g| generation(g, PER_GENERATION))
        .collect();
    let report = check(&db, &effects, &specs);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
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
    let a = workload_with(&db, &effects, 1, false, Some(400));
    std::thread::sleep(Duration::from_millis(150));
    signal(&a, "STOP");
    // B takes the work over once A's leases expire, and drains the file.
    finish(workload(&db, &effects, 2, true));
    // A thaws and tries to commit what it had: all of it is stale.
    signal(&a, "CONT");
    finish(a);

    let specs: Vec<_> = (0..=2)
        .flat_map(|g| generation(g, PER_GENERATION))
        .collect();
    let report = check(&db, &effects, &specs);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    // B really took over: some call ran under A's lease and again under B's.
    assert!(
        !report.retried.is_empty(),
        "no attempt was taken over from the frozen process"
    );
}
