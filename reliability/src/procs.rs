//! What the process tests share: the workload process on a store, random
//! kill timings that a printed seed replays, signals, waiting on observed
//! state, and reading from the effects log which attempts a process held.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::target::Target;
use crate::workload::{read_effects, Effect, Mark};

/// How long a test waits for some state before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// SplitMix64, so a printed seed replays the same kill timings.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}

/// `DURABLE_CRASH_SEED`, or one drawn from the clock.
pub fn seed() -> u64 {
    std::env::var("DURABLE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// `normal`, or ten times as many with `DURABLE_SOAK=1`.
pub fn kills_wanted(normal: u64) -> u64 {
    if std::env::var_os("DURABLE_SOAK").is_some() {
        normal * 10
    } else {
        normal
    }
}

/// The workload process (`src/bin/workload.rs`) on a target, with its
/// effects log: each spawn runs one generation.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The binary (`env!("CARGO_BIN_EXE_workload")` in a test).
    pub exe: PathBuf,
    /// Its store and settings.
    pub target: Target,
    /// The effects log.
    pub effects: PathBuf,
    /// Instances per generation.
    pub count: u64,
    /// How long a step takes (the binary's default unless set).
    pub step_ms: Option<u64>,
}

impl Workload {
    /// Starts a run of `generation` (`last`: of every generation up to it).
    ///
    /// # Panics
    /// When the binary does not start.
    pub fn spawn(&self, generation: u64, last: bool) -> Child {
        self.spawn_with(&self.target, generation, last)
    }

    /// [`Workload::spawn`] on another target (other settings).
    ///
    /// # Panics
    /// When the binary does not start.
    pub fn spawn_with(&self, target: &Target, generation: u64, last: bool) -> Child {
        let mut cmd = Command::new(&self.exe);
        if let Some(ms) = self.step_ms {
            cmd.env("DURABLE_STEP_MS", ms.to_string());
        }
        cmd.args(target.to_args())
            .arg(&self.effects)
            .arg(generation.to_string())
            .arg(self.count.to_string());
        if last {
            cmd.arg("final");
        }
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the workload binary starts")
    }
}

/// Child processes killed when the test ends, however it ends: a failing
/// test leaves no worker behind.
#[derive(Debug, Default)]
pub struct Reaper(pub Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for a run that is not to be killed to exit 0, failing the test
/// (with what it wrote to stderr) after `patience`.
///
/// # Panics
/// When it fails or takes too long.
pub fn finish(child: &mut Child, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited on") {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                use std::io::Read;
                let _ = stderr.read_to_string(&mut err);
            }
            assert!(status.success(), "a run failed: {status}: {err}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a run did not drain the workload in {patience:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Looks again and again until `probe` finds what it waits for.
///
/// # Panics
/// After [`PATIENCE`].
pub fn until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `signal` (by name, e.g. `STOP`) to process `pid` with `kill`.
///
/// # Panics
/// When it is not delivered.
pub fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(ok.success(), "kill -{signal} was delivered");
}

/// The attempts process `pid` began and has not finished (with its side
/// effect, or failing on purpose), from the effects log: idempotency key to
/// attempt number.
///
/// # Panics
/// When the log does not read.
pub fn unfinished_by(effects: &Path, pid: u32) -> BTreeMap<String, u32> {
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

/// Stops `pid` (SIGSTOP) at a moment it is inside some attempts, and
/// returns them: it waits for an attempt of the process to be running,
/// stops it, and looks again, since the attempt may have ended meanwhile.
/// `may_stop` says whether stopping now harms others (a process holding
/// SQLite's write lock would block every other one), in which case it is
/// let go and stopped again later.
///
/// # Panics
/// After [`PATIENCE`].
pub fn stop_inside_attempts(
    pid: u32,
    effects: &Path,
    may_stop: impl Fn() -> bool,
) -> BTreeMap<String, u32> {
    until("the process to be stopped inside an attempt", || {
        until("the process to begin an attempt", || {
            Some(()).filter(|()| !unfinished_by(effects, pid).is_empty())
        });
        signal(pid, "STOP");
        let held = unfinished_by(effects, pid);
        if held.is_empty() || !may_stop() {
            signal(pid, "CONT");
            return None;
        }
        Some(held)
    })
}

/// Asserts that every attempt in `held` (by process `pid`) was run again,
/// and its side effect done, by another process under a later attempt.
///
/// # Panics
/// When one was not.
pub fn assert_taken_over(effects: &Path, pid: u32, held: &BTreeMap<String, u32>) {
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

/// Runs one worker per target, each on a generation of its own (with
/// `final_last`, the last one starts every generation again), until every
/// one drains the store, calling `meanwhile` until then; returns how long
/// that took and the workers' process ids.
///
/// # Panics
/// When a worker fails, or they take more than twice [`PATIENCE`].
pub fn run_together(
    work: &Workload,
    targets: &[Target],
    final_last: bool,
    mut meanwhile: impl FnMut(),
) -> (Duration, Vec<u32>) {
    let started = Instant::now();
    let mut workers = Reaper::default();
    for (g, target) in (0..).zip(targets) {
        let last = final_last && g + 1 == targets.len() as u64;
        workers.0.push(work.spawn_with(target, g, last));
    }
    let pids = workers.0.iter().map(Child::id).collect();
    while workers
        .0
        .iter_mut()
        .any(|c| c.try_wait().expect("the child can be waited on").is_none())
    {
        assert!(
            started.elapsed() < 2 * PATIENCE,
            "the workers did not drain the store in {:?}",
            2 * PATIENCE
        );
        meanwhile();
    }
    for child in &mut workers.0 {
        finish(child, PATIENCE);
    }
    (started.elapsed(), pids)
}
