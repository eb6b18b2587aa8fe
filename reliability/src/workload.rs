//! The workload the crash tests run: sequences, fan-outs, timers and
//! external events, with activities that record when each attempt starts
//! and its side effect in an append-only file outside the database, keyed
//! by idempotency key. Every output depends on the order and the count of
//! what its instance was delivered, so a duplicate or a reorder shows.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use durable::{activity, orchestrator, ActivityInfo, Builder, Client, Context, Error};

/// How long a `step` takes, in milliseconds (8 unless set).
pub static STEP_MS: AtomicU64 = AtomicU64::new(8);

/// The side-effect log, opened once per process.
static EFFECTS: OnceLock<Mutex<File>> = OnceLock::new();

/// Activity attempts running in this process right now.
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

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

/// How many activity attempts this process is running: a process that
/// exits waits for them, so an attempt it holds when frozen still ends
/// (and tries to report) once it thaws.
pub fn in_flight() -> u64 {
    IN_FLIGHT.load(Ordering::SeqCst)
}

/// What an effects-log line says happened to an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The attempt began.
    Start,
    /// The attempt did its side effect and is about to return.
    Done,
}

impl Mark {
    fn word(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Done => "done",
        }
    }
}

/// One line of the effects log: `<start|done> <idempotency key> <attempt> <pid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    /// Begun or done.
    pub mark: Mark,
    /// The call's idempotency key (`<instance>#<seq>`).
    pub key: String,
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// The process that ran it.
    pub pid: u32,
}

impl Effect {
    /// Parses one line of the log.
    ///
    /// # Errors
    /// The line, when it is not in the log's format.
    pub fn parse(line: &str) -> Result<Self, String> {
        let bad = || format!("a malformed effects-log line: {line:?}");
        let mut words = line.split(' ');
        let mark = match words.next() {
            Some("start") => Mark::Start,
            Some("done") => Mark::Done,
            _ => return Err(bad()),
        };
        let key = words.next().ok_or_else(bad)?.to_owned();
        let attempt = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let pid = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        if words.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            mark,
            key,
            attempt,
            pid,
        })
    }
}

/// Reads the effects log (nothing when it does not exist yet).
///
/// # Errors
/// The malformed lines.
pub fn read_effects(path: &Path) -> Result<Vec<Effect>, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(Effect::parse).collect()
}

/// Appends a line about the running attempt to the log: `Start` when it
/// begins, `Done` for the side effect the outside world would see, before
/// the activity returns.
fn record(mark: Mark) {
    let Some(info) = ActivityInfo::current() else {
        return;
    };
    let line = format!(
        "{} {} {} {}\n",
        mark.word(),
        info.idempotency_key(),
        info.attempt(),
        std::process::id()
    );
    if let Some(file) = EFFECTS.get() {
        let mut file = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // One write of a short line to an O_APPEND file: lines never interleave.
        file.write_all(line.as_bytes())
            .expect("the effects log is writable");
    }
}

/// Counts an attempt in flight, from its start to its end however it ends.
struct Attempt;

impl Attempt {
    fn begin() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        record(Mark::Start);
        Self
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The step function: order matters, so a result delivered twice or out of
/// turn changes every later value.
pub fn mix(acc: u64, x: u64) -> u64 {
    acc.wrapping_mul(31).wrapping_add(x)
}

/// One step of a sequence: real work takes a little time.
#[activity]
pub async fn step(seed: u64, k: u64) -> u64 {
    let _attempt = Attempt::begin();
    let ms = STEP_MS.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    record(Mark::Done);
    mix(seed, k)
}

/// One branch of a fan-out.
#[activity]
pub async fn square(x: u64) -> u64 {
    let _attempt = Attempt::begin();
    tokio::time::sleep(Duration::from_millis(4)).await;
    record(Mark::Done);
    x * x
}

/// Five steps in sequence, each fed the one before.
#[orchestrator]
pub async fn sequence(ctx: Context, seed: u64) -> u64 {
    let mut acc = seed;
    for k in 0..5 {
        match ctx.call(step, (acc, k)).await {
            Ok(v) => acc = v,
            Err(_) => return u64::MAX,
        }
    }
    acc
}

/// A fan-out of `n` squares, joined and folded in call order.
#[orchestrator]
pub async fn fan(ctx: Context, n: u64) -> u64 {
    let parts = durable::join_all((0..n).map(|i| ctx.call(square, i))).await;
    parts
        .into_iter()
        .map(|r| r.unwrap_or(u64::MAX / 1024))
        .fold(0, mix)
}

/// A durable timer, a step, a second timer, a step fed the first.
#[orchestrator]
pub async fn nap(ctx: Context, ms: u64) -> u64 {
    ctx.sleep(Duration::from_millis(ms)).await;
    let Ok(first) = ctx.call(step, (ms, 1)).await else {
        return u64::MAX;
    };
    ctx.sleep(Duration::from_millis(ms / 2)).await;
    ctx.call(step, (first, 2)).await.unwrap_or(u64::MAX)
}

/// The values raised as `go`, in order; [`GO_END`] follows them.
pub const GO: [u64; 3] = [3, 5, 7];
/// The last `go`: the gate stops waiting when it comes.
pub const GO_END: u64 = 0;

/// Takes `go` events until [`GO_END`], folding them in the order they came,
/// then a step: an event delivered twice, lost or out of order changes the
/// output.
#[orchestrator]
pub async fn gate(ctx: Context, seed: u64) -> u64 {
    let mut acc = seed;
    let mut count = 0;
    loop {
        let go: u64 = ctx.wait_event("go").await;
        if go == GO_END {
            break;
        }
        acc = mix(acc, go);
        count += 1;
    }
    ctx.call(step, (acc, count)).await.unwrap_or(u64::MAX)
}

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
    let x = spec.input;
    match spec.kind {
        Kind::Sequence => (0..5).fold(x, mix),
        Kind::Fan => (0..x).map(|i| i * i).fold(0, mix),
        Kind::Nap => mix(mix(x, 1), 2),
        Kind::Gate => mix(GO.into_iter().fold(x, mix), GO.len() as u64),
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

/// Raises the `go` events of a gate instance in order, each under its own
/// key, so a run that raises them again (after a killed run raised some)
/// delivers each exactly once; an instance that has finished needs none.
///
/// # Errors
/// Any error but the instance having finished.
pub async fn open_gate(client: &Client, id: &str) -> Result<(), Error> {
    for go in GO.into_iter().chain([GO_END]) {
        let key = format!("go-{go}");
        match client.raise_event_with_key(id, "go", &key, go).await {
            Ok(()) => {}
            Err(Error::InstanceFinished { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
