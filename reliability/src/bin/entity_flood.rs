//! The process the entity crash test kills: floods four `Tally` entities
//! with 10,000 numbered signals from concurrent senders, a share per run,
//! and resumes a killed flood where it stopped.
//!
//! `entity_flood <db> <log> <budget | final>`: each number is written to
//! the log as `sent <n>` before it is signalled and as `acked <n>` once the
//! signal is durably queued; a run sends only numbers no earlier run sent,
//! at most `budget` of them, then waits until everything queued is applied
//! and exits 0. Meanwhile it logs `applied <total>` whenever the entities'
//! total count grows, so the test can kill it while it sends or while it
//! applies. A number sent but not acknowledged when its run was killed is
//! in doubt: it was queued or not. The `final` run sends all the rest and
//! settles those: once everything queued is applied, it signals again
//! (`resent <n>`) each one that no entity applied, and waits until that is
//! applied too. After it, every number should be counted exactly once.

use std::collections::BTreeSet;
use std::error::Error;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use durable::{entity, Client, Runtime};
use serde::{Deserialize, Serialize};

/// The numbers signalled, `0..SIGNALS`.
const SIGNALS: u32 = 10_000;

/// Concurrent senders: sender `t` signals the numbers `n % SENDERS == t`,
/// in increasing order, so their signals share group commits.
const SENDERS: u32 = 8;

/// The entities' keys: `hot` takes the even numbers, the other three share
/// the odd ones.
const KEYS: [&str; 4] = ["hot", "cold-0", "cold-1", "cold-2"];

/// How long the final run waits for the entities to apply everything.
const PATIENCE: Duration = Duration::from_secs(60);

/// The key number `n` is signalled to (`tests/entity_crash.rs` mirrors it).
fn key_of(n: u32) -> &'static str {
    if n.is_multiple_of(2) {
        KEYS[0]
    } else {
        KEYS[1 + (n / 2 % 3) as usize]
    }
}

/// A count, and every number it counted in the order applied, so a
/// duplicate, a loss or a reorder shows, not only a wrong total.
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

type BoxError = Box<dyn Error + Send + Sync>;

/// What the log says was done.
#[derive(Debug, Default)]
struct Done {
    /// Signalled by a run that sent it first.
    sent: BTreeSet<u32>,
    /// Signalled again by a final run, as no entity had applied it.
    resent: BTreeSet<u32>,
    /// Durably queued.
    acked: BTreeSet<u32>,
}

/// Reads the log. A line cut short is skipped: its write never returned,
/// so nothing was done after it.
fn read_log(path: &Path) -> std::io::Result<Done> {
    let mut text = String::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_string(&mut text)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut done = Done::default();
    for line in text.lines() {
        let (set, n) = match line.split_once(' ') {
            Some(("sent", n)) => (&mut done.sent, n),
            Some(("resent", n)) => (&mut done.resent, n),
            Some(("acked", n)) => (&mut done.acked, n),
            _ => continue,
        };
        set.extend(n.parse::<u32>().ok());
    }
    Ok(done)
}

/// The log, appended to by every sender, one whole line per write.
struct Log(Mutex<File>);

impl Log {
    /// Opens the log for appending; ends a line a killed run cut short, so
    /// the next line is not glued to it.
    fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        if text.last().is_some_and(|&b| b != b'\n') {
            file.write_all(b"\n")?;
        }
        Ok(Self(Mutex::new(file)))
    }

    /// Appends `<what> <n>`; returns once the kernel has it, which a
    /// SIGKILL of this process does not undo.
    fn note(&self, what: &str, n: impl std::fmt::Display) -> std::io::Result<()> {
        let line = format!("{what} {n}\n");
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_all(line.as_bytes())
    }
}

/// Sends sender `t`'s numbers that no run sent yet, in increasing order,
/// while the run's budget lasts.
async fn send(
    client: Client,
    log: Arc<Log>,
    t: u32,
    sent: Arc<BTreeSet<u32>>,
    budget: Arc<AtomicU32>,
) -> Result<(), BoxError> {
    for n in (t..SIGNALS).step_by(SENDERS as usize) {
        if sent.contains(&n) {
            continue;
        }
        let take = |left: u32| left.checked_sub(1);
        if budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, take)
            .is_err()
        {
            break;
        }
        log.note("sent", n)?;
        client.entity::<Tally>(key_of(n)).signal().add(n).await?;
        log.note("acked", n)?;
    }
    Ok(())
}

/// Logs `applied <total>` whenever the entities' total count grows, until
/// aborted.
async fn watch(client: Client, log: Arc<Log>) -> Result<(), BoxError> {
    let mut seen = None;
    loop {
        let mut total = 0;
        for key in KEYS {
            if let Some(tally) = client.entity::<Tally>(key).state().await? {
                total += tally.count;
            }
        }
        if seen != Some(total) {
            log.note("applied", total)?;
            seen = Some(total);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Messages still queued, for any instance.
fn queued(db: &Path) -> rusqlite::Result<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
}

/// Every number some entity applied.
async fn applied(client: &Client) -> Result<BTreeSet<u32>, BoxError> {
    let mut applied = BTreeSet::new();
    for key in KEYS {
        if let Some(tally) = client.entity::<Tally>(key).state().await? {
            applied.extend(tally.applied);
        }
    }
    Ok(applied)
}

/// Waits until every acknowledged number is applied and no message is
/// queued: then every signal that was queued, acknowledged or not, has
/// been applied.
async fn wait_applied(client: &Client, db: &Path, log: &Path) -> Result<(), BoxError> {
    let acked = read_log(log)?.acked;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let applied = applied(client).await?;
        let missing: Vec<_> = acked.difference(&applied).take(10).collect();
        let queued = queued(db)?;
        if missing.is_empty() && queued == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "after {PATIENCE:?}, acknowledged numbers are not applied (the first: \
                 {missing:?}) and {queued} messages are queued"
            )
            .into());
        }
        // A pause between two looks at the state, not a synchronisation.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Signals again each number in doubt (sent, never acknowledged) that no
/// entity applied, once everything queued is applied: it was never queued.
async fn settle(client: &Client, db: &Path, log_path: &Path, log: &Log) -> Result<(), BoxError> {
    wait_applied(client, db, log_path).await?;
    let done = read_log(log_path)?;
    let applied = applied(client).await?;
    let lost_in_kills: Vec<u32> = done
        .sent
        .union(&done.resent)
        .filter(|n| !done.acked.contains(n) && !applied.contains(n))
        .copied()
        .collect();
    for n in lost_in_kills {
        log.note("resent", n)?;
        client.entity::<Tally>(key_of(n)).signal().add(n).await?;
        log.note("acked", n)?;
    }
    wait_applied(client, db, log_path).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: entity_flood <db> <log> <budget | final>";
    let [_, db, log_path, run] = &args[..] else {
        return Err(usage.into());
    };
    let (db, log_path) = (PathBuf::from(db), PathBuf::from(log_path));
    let last = run == "final";
    let budget = if last {
        u32::MAX
    } else {
        run.parse().map_err(|_| usage)?
    };

    let sent = Arc::new(read_log(&log_path)?.sent);
    let log = Arc::new(Log::open(&log_path)?);
    let runtime = Runtime::builder()
        .sqlite(&db)
        .entity::<Tally>()
        // A killed run's entities are taken over by the next run this soon
        // (only one run is alive at a time).
        .instance_lock(Duration::from_millis(250))
        .poll_interval(Duration::from_millis(50))
        .start()
        .await?;
    let client = runtime.client();
    let watcher = tokio::spawn(watch(client.clone(), Arc::clone(&log)));
    let budget = Arc::new(AtomicU32::new(budget));
    let senders: Vec<_> = (0..SENDERS)
        .map(|t| {
            let (client, log) = (client.clone(), Arc::clone(&log));
            tokio::spawn(send(client, log, t, Arc::clone(&sent), Arc::clone(&budget)))
        })
        .collect();
    for sender in senders {
        sender.await??;
    }
    if last {
        settle(&client, &db, &log_path, &log).await?;
    } else {
        wait_applied(&client, &db, &log_path).await?;
    }
    watcher.abort();
    if let Ok(Err(e)) = watcher.await {
        return Err(e);
    }
    runtime.shutdown().await?;
    println!("flooded");
    Ok(())
}
