//! Exactly-once entity operations with a real process SIGKILLed during a
//! flood of 10,000 signals: the `entity_flood` binary, each run sending a
//! share of the numbers, is killed twenty times at random moments (while
//! it starts, while it sends, while its entities apply what was queued) and
//! started again; a final run sends the rest. Then the count is exact:
//! every number applied once, none twice, none lost, each sender's signals
//! applied in the order it sent them.
//!
//! `DURABLE_CRASH_SEED=<n>` replays a run's kill points; `DURABLE_SOAK=1`
//! kills ten times as often.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use durable::{entity, Runtime};
use serde::{Deserialize, Serialize};

/// As in `src/bin/entity_flood.rs`: the numbers signalled, the senders
/// (sender `t` sends `n % SENDERS == t` in increasing order), the keys.
const SIGNALS: u32 = 10_000;
const SENDERS: u32 = 8;
const KEYS: [&str; 4] = ["hot", "cold-0", "cold-1", "cold-2"];

/// Mirrors the binary's `key_of`.
fn key_of(n: u32) -> &'static str {
    if n.is_multiple_of(2) {
        KEYS[0]
    } else {
        KEYS[1 + (n / 2 % 3) as usize]
    }
}

/// The binary's entity, read back here (a mismatch fails decoding).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Tally {
    count: u64,
    applied: Vec<u32>,
}

#[entity]
impl Tally {
    fn add(&mut self, n: u32) {
        self.count += 1;
        self.applied.push(n);
    }
}

/// Kills during the flood: twenty, or with `DURABLE_SOAK=1` two hundred.
fn kills_wanted() -> u32 {
    if std::env::var_os("DURABLE_SOAK").is_some() {
        200
    } else {
        20
    }
}

/// How long a test waits for some state before it fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// SplitMix64, so a printed seed replays the same kill points.
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

/// A run of the binary: `budget` new numbers to send, or `None` for the
/// final run.
fn flood(db: &Path, log: &Path, budget: Option<u32>) -> Child {
    let run = budget.map_or_else(|| "final".to_owned(), |b| b.to_string());
    Command::new(env!("CARGO_BIN_EXE_entity_flood"))
        .arg(db)
        .arg(log)
        .arg(run)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the entity_flood binary starts")
}

/// Progress, from the log as it is appended to: signals sent and
/// acknowledged, and the entities' total count as last seen by a run.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    sent: u32,
    acked: u32,
    applied: u64,
    /// The total count the current run saw first.
    run_base: Option<u64>,
}

impl Progress {
    /// How many the current run has applied, as far as it logged.
    fn run_applied(&self) -> u64 {
        self.run_base.map_or(0, |base| self.applied - base)
    }
}

/// Reads the log as it grows, only what is new each time (whole lines).
struct Tail {
    file: File,
    partial: Vec<u8>,
    seen: Progress,
}

impl Tail {
    fn new(log: &Path) -> Self {
        let file = File::options()
            .create(true)
            .append(true)
            .read(true)
            .open(log)
            .expect("the log opens");
        Self {
            file,
            partial: Vec::new(),
            seen: Progress::default(),
        }
    }

    /// Reads the lines of the runs before; what follows is the next run's.
    fn next_run(&mut self) -> Progress {
        self.look();
        self.seen.run_base = None;
        self.seen
    }

    fn look(&mut self) -> Progress {
        self.file
            .read_to_end(&mut self.partial)
            .expect("the log reads on from where it was left");
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return self.seen;
        };
        let lines: Vec<u8> = self.partial.drain(..=end).collect();
        for line in lines.split(|&b| b == b'\n') {
            if line.starts_with(b"sent ") || line.starts_with(b"resent ") {
                self.seen.sent += 1;
            } else if line.starts_with(b"acked ") {
                self.seen.acked += 1;
            } else if let Some(total) = line.strip_prefix(b"applied ") {
                let total = std::str::from_utf8(total).ok().and_then(|t| t.parse().ok());
                self.seen.applied = self.seen.applied.max(total.unwrap_or(0));
                self.seen.run_base.get_or_insert(self.seen.applied);
            }
        }
        self.seen
    }
}

/// Waits until `reached` holds of the log's progress, or the child exits
/// (its status), failing the test after [`PATIENCE`].
fn wait_for(
    child: &mut Child,
    tail: &mut Tail,
    seed: u64,
    reached: impl Fn(Progress) -> bool,
) -> Option<ExitStatus> {
    let deadline = Instant::now() + PATIENCE;
    while !reached(tail.look()) {
        if let Some(status) = child.try_wait().expect("the child can be waited on") {
            return Some(status);
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: the run made no progress in {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// What the log says was done: numbers sent by a first sending, sent
/// again by the final run (`resent`: in doubt and applied nowhere), and
/// acknowledged.
struct Done {
    sent: BTreeSet<u32>,
    resent: BTreeSet<u32>,
    acked: BTreeSet<u32>,
}

fn read_log(log: &Path) -> Done {
    let text = std::fs::read_to_string(log).expect("the log reads");
    let mut done = Done {
        sent: BTreeSet::new(),
        resent: BTreeSet::new(),
        acked: BTreeSet::new(),
    };
    for line in text.lines() {
        let (set, n) = match line.split_once(' ') {
            Some(("sent", n)) => (&mut done.sent, n),
            Some(("resent", n)) => (&mut done.resent, n),
            Some(("acked", n)) => (&mut done.acked, n),
            _ => continue,
        };
        set.extend(n.parse::<u32>().ok());
    }
    done
}

/// Each key's state, read by a runtime of this process's own that applies
/// nothing (no entity type is registered with it).
fn states(db: &Path) -> BTreeMap<&'static str, Tally> {
    let tokio = tokio::runtime::Runtime::new().expect("a tokio runtime");
    tokio.block_on(async {
        let rt = Runtime::builder()
            .sqlite(db)
            .start()
            .await
            .expect("the runtime starts on the flooded file");
        let client = rt.client();
        let mut states = BTreeMap::new();
        for key in KEYS {
            let state = client
                .entity::<Tally>(key)
                .state()
                .await
                .expect("the state reads")
                .unwrap_or_default();
            states.insert(key, state);
        }
        rt.shutdown().await.expect("the runtime shuts down");
        states
    })
}

#[test]
fn entity_signals_flooded_through_sigkills_are_each_applied_exactly_once() {
    let seed = seed();
    println!("DURABLE_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("flood.db");
    let log = dir.path().join("signals.log");
    let mut tail = Tail::new(&log);
    let started = Instant::now();
    let wanted = kills_wanted();
    // Each run sends at most `SIGNALS / wanted - 1`, so the killed runs
    // never send them all.
    let most = SIGNALS / wanted;
    let (mut kills, mut runs) = (0, 0);
    // Kills that landed after the run acknowledged signals and before it
    // sent all it was to; and after its entities applied some, with more
    // queued for them.
    let (mut sending, mut applying) = (0, 0);
    while kills < wanted {
        runs += 1;
        assert!(
            runs <= 3 * wanted,
            "seed {seed}: {runs} runs for {kills} kills"
        );
        let budget = most / 5 + (rng.next() % u64::from(most * 4 / 5)) as u32;
        let before = tail.next_run();
        let mut child = flood(&db, &log, Some(budget));
        let ended = match rng.next() % 5 {
            // Anywhere from its start on: opening the file, recovery.
            0 => {
                std::thread::sleep(Duration::from_millis(rng.next() % 150));
                None
            }
            // While it sends.
            1 | 2 => {
                let acked = before.acked + 1 + (rng.next() % u64::from(budget)) as u32;
                wait_for(&mut child, &mut tail, seed, |p| p.acked >= acked)
            }
            // While its entities apply (it may be sending still).
            _ => {
                let applied = 1 + rng.next() % u64::from(budget);
                wait_for(&mut child, &mut tail, seed, |p| p.run_applied() >= applied)
            }
        };
        // A few ms past the moment waited for, at a point not aligned on
        // the log's lines.
        if ended.is_none() {
            std::thread::sleep(Duration::from_micros(rng.next() % 5_000));
        }
        if let Some(status) = child.try_wait().expect("the child can be waited on") {
            // It applied everything before the kill: a run not killed.
            assert!(status.success(), "seed {seed}: run {runs} failed: {status}");
            continue;
        }
        child.kill().expect("SIGKILL is delivered");
        child.wait().expect("the killed child is reaped");
        kills += 1;
        let after = tail.look();
        if after.acked > before.acked && after.acked < before.acked + budget {
            sending += 1;
        }
        if after.run_applied() > 0 && after.applied < u64::from(after.sent) {
            applying += 1;
        }
    }
    let before_final = tail.look();
    let flooded = started.elapsed();
    let before = read_log(&log);
    let in_doubt: BTreeSet<u32> = before.sent.difference(&before.acked).copied().collect();

    let mut last = flood(&db, &log, None);
    let deadline = Instant::now() + 2 * PATIENCE;
    let status = loop {
        if let Some(status) = last.try_wait().expect("the child can be waited on") {
            break status;
        }
        if Instant::now() > deadline {
            last.kill().ok();
            panic!("seed {seed}: the final run did not apply the flood in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success(),
        "seed {seed}: the final run failed: {status}"
    );

    let Done {
        sent,
        resent,
        acked,
    } = read_log(&log);
    let all: BTreeSet<u32> = (0..SIGNALS).collect();
    let unsent: Vec<_> = all.difference(&sent).take(20).collect();
    assert!(unsent.is_empty(), "seed {seed}: never sent: {unsent:?}");
    // Only a number in doubt at a kill, and then applied, goes without
    // an acknowledgement: the final run sends again the others.
    let unacked: Vec<_> = all
        .difference(&acked)
        .filter(|n| !in_doubt.contains(n))
        .take(20)
        .collect();
    assert!(
        unacked.is_empty(),
        "seed {seed}: not in doubt, never acknowledged: {unacked:?}"
    );
    assert!(
        resent.is_subset(&in_doubt),
        "seed {seed}: only numbers in doubt are sent again: {:?}",
        resent.difference(&in_doubt).collect::<Vec<_>>()
    );
    let states = states(&db);
    let mut applied = BTreeMap::new();
    for (key, tally) in &states {
        assert_eq!(
            tally.count,
            tally.applied.len() as u64,
            "seed {seed}: `{key}` counted what it recorded"
        );
        // Per sender, the last number applied: one sender's signals are
        // queued in order and are applied in that order (a number sent
        // again by the final run comes after all).
        let mut last_of = BTreeMap::new();
        for &n in &tally.applied {
            assert_eq!(key_of(n), *key, "seed {seed}: {n} applied to `{key}`");
            if let Some(first) = applied.insert(n, *key) {
                panic!("seed {seed}: {n} applied twice (to `{first}`, then `{key}`)");
            }
            if resent.contains(&n) {
                continue;
            }
            if let Some(prev) = last_of.insert(n % SENDERS, n) {
                assert!(
                    prev < n,
                    "seed {seed}: `{key}` applied {prev} before {n}, which its sender sent first"
                );
            }
        }
    }
    let lost: Vec<_> = all.iter().filter(|n| !applied.contains_key(n)).collect();
    assert!(
        lost.is_empty(),
        "seed {seed}: {} numbers never applied: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    // No number applied twice, none lost: the count is exact.
    let count: u64 = states.values().map(|t| t.count).sum();
    assert_eq!(count, u64::from(SIGNALS), "seed {seed}: the total count");
    println!(
        "{kills} kills in {runs} runs in {flooded:?}: {sending} while sending, {applying} while \
         applying; before the final run {} of {SIGNALS} signals acknowledged, {} applied; \
         {} in doubt at a kill, of which {} had been queued and applied, {} were sent again; \
         counts {:?}; total {:?}",
        before_final.acked,
        before_final.applied,
        in_doubt.len(),
        in_doubt.len() - resent.len(),
        resent.len(),
        states.iter().map(|(k, t)| (k, t.count)).collect::<Vec<_>>(),
        started.elapsed()
    );
    assert!(
        sending >= wanted / 5 && applying >= wanted / 5,
        "seed {seed}: too few kills landed mid-flood: {sending} while sending, {applying} while applying"
    );
    assert!(
        before_final.sent < SIGNALS,
        "seed {seed}: the kills landed mid-flood: the final run had signals left to send"
    );
}
