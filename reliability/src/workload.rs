//! The workload the crash tests run: sequences, fan-outs, timers and
//! external events, with activities that record their side effects in an
//! append-only file outside the database, keyed by idempotency key.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use durable::{activity, orchestrator, ActivityInfo, Builder, Client, Context, Error};

/// How long a `step` takes, in milliseconds (8 unless set).
pub static STEP_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(8);

/// The side-effect log, opened once per process.
static EFFECTS: OnceLock<Mutex<File>> = OnceLock::new();

/// Opens (appending) the file activities record their side effects in.
///
/// # Errors
/// When the file cannot be opened.
pub fn open_effects(path: &Path) -> std::io::Result<()> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    // A second call keeps the first file: one log per process.
    let _ = EFFECTS.set(Mutex::new(file));
    Ok(())
}

/// Appends `<idempotency key> <attempt>` for the running attempt, the side
/// effect the outside world would see, before the activity returns.
fn record_effect() {
    let Some(info) = ActivityInfo::current() else {
        return;
    };
    let line = format!("{} {}\n", info.idempotency_key(), info.attempt());
    if let Some(file) = EFFECTS.get() {
        let mut file = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // One write of a short line to an O_APPEND file: lines never interleave.
        file.write_all(line.as_bytes())
            .expect("the effects log is writable");
    }
}

/// One step of a sequence: real work takes a little time.
#[activity]
pub async fn step(seed: u64, k: u64) -> u64 {
    let ms = STEP_MS.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    record_effect();
    seed.wrapping_mul(31).wrapping_add(k)
}

/// One branch of a fan-out.
#[activity]
pub async fn square(x: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(4)).await;
    record_effect();
    x * x
}

/// Five steps in sequence.
#[orchestrator]
pub async fn sequence(ctx: Context, seed: u64) -> u64 {
    let mut acc = 0u64;
    for k in 0..5 {
        match ctx.call(step, (seed, k)).await {
            Ok(v) => acc = acc.wrapping_add(v),
            Err(_) => return u64::MAX,
        }
    }
    acc
}

/// A fan-out of `n` squares, joined.
#[orchestrator]
pub async fn fan(ctx: Context, n: u64) -> u64 {
    let parts = durable::join_all((0..n).map(|i| ctx.call(square, i))).await;
    parts
        .into_iter()
        .map(|r| r.unwrap_or(u64::MAX / 1024))
        .sum()
}

/// A durable timer, then a step.
#[orchestrator]
pub async fn nap(ctx: Context, ms: u64) -> u64 {
    ctx.sleep(Duration::from_millis(ms)).await;
    ctx.call(step, (ms, 1)).await.unwrap_or(u64::MAX)
}

/// Waits for the `go` event, then a step.
#[orchestrator]
pub async fn gate(ctx: Context, seed: u64) -> u64 {
    let go: u64 = ctx.wait_event("go").await;
    ctx.call(step, (seed, go)).await.unwrap_or(u64::MAX)
}

/// The value raised as `go`.
pub const GO: u64 = 7;

/// The kinds of instance in the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`sequence`]
    Sequence,
    /// [`fan`]
    Fan,
    /// [`nap`]
    Nap,
    /// [`gate`]
    Gate,
}

/// One instance of the workload: its id, kind and input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The instance id.
    pub id: String,
    /// Which orchestrator.
    pub kind: Kind,
    /// Its input.
    pub input: u64,
}

/// The instances of one generation (one run of the workload process).
pub fn generation(g: u64, count: u64) -> Vec<Spec> {
    (0..count)
        .map(|i| {
            let (kind, input) = match i % 4 {
                0 => (Kind::Sequence, g * 100 + i),
                1 => (Kind::Fan, 5 + i % 7),
                2 => (Kind::Nap, 20 + (g * 37 + i * 11) % 200),
                _ => (Kind::Gate, g * 1000 + i),
            };
            Spec {
                id: format!("g{g}-{i}"),
                kind,
                input,
            }
        })
        .collect()
}

/// What the instance must return.
pub fn expected(spec: &Spec) -> u64 {
    let f = |seed: u64, k: u64| seed.wrapping_mul(31).wrapping_add(k);
    match spec.kind {
        Kind::Sequence => (0..5).map(|k| f(spec.input, k)).fold(0, u64::wrapping_add),
        Kind::Fan => (0..spec.input).map(|i| i * i).sum(),
        Kind::Nap => f(spec.input, 1),
        Kind::Gate => f(spec.input, GO),
    }
}

/// Registers the workload's orchestrators and activities.
pub fn register(builder: Builder) -> Builder {
    builder
        .activity(step)
        .activity(square)
        .orchestrator(sequence)
        .orchestrator(fan)
        .orchestrator(nap)
        .orchestrator(gate)
}

/// Starts `spec`; an instance that already exists (started by an earlier,
/// killed run) counts as started.
///
/// # Errors
/// Any other start error.
pub async fn start(client: &Client, spec: &Spec) -> Result<(), Error> {
    let started = match spec.kind {
        Kind::Sequence => client
            .start_with_id(sequence, &spec.id, spec.input)
            .await
            .map(|_| ()),
        Kind::Fan => client
            .start_with_id(fan, &spec.id, spec.input)
            .await
            .map(|_| ()),
        Kind::Nap => client
            .start_with_id(nap, &spec.id, spec.input)
            .await
            .map(|_| ()),
        Kind::Gate => client
            .start_with_id(gate, &spec.id, spec.input)
            .await
            .map(|_| ()),
    };
    match started {
        Ok(()) | Err(Error::InstanceExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Raises `go` for a gate instance unless it has finished.
///
/// # Errors
/// Any error but the instance having finished.
pub async fn open_gate(client: &Client, id: &str) -> Result<(), Error> {
    match client.raise_event(id, "go", GO).await {
        Ok(()) | Err(Error::InstanceFinished { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether every instance in the file has finished and no message or task
/// is left behind, read with a plain SQLite connection.
///
/// # Errors
/// When the file cannot be read.
pub fn drained(db: &Path) -> rusqlite::Result<bool> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let open: i64 = conn.query_row(
        "SELECT count(*) FROM instances WHERE status NOT IN ('completed', 'failed', 'terminated')",
        [],
        |r| r.get(0),
    )?;
    let messages: i64 = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
    let tasks: i64 = conn.query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))?;
    Ok(open == 0 && messages == 0 && tasks == 0)
}
