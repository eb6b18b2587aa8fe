//! The workload the crash tests run: sequences, fan-outs, timers, external
//! events, child orchestrations, continue-as-new, retried activities and
//! instances suspended and resumed from the client, with activities that
//! record when each attempt starts and how it ends (its side effect, or its
//! failure) in an append-only file outside the database, keyed by
//! idempotency key. Every output depends on the order and the count of what
//! its instance was delivered, so a duplicate or a reorder shows.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use durable::{
    activity, orchestrator, ActivityInfo, Builder, Client, Context, Error, RetryPolicy,
    RuntimeStatus,
};

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
    /// The attempt failed on purpose ([`flaky`]) and is about to return
    /// its error.
    Fail,
}

impl Mark {
    fn word(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Done => "done",
            Self::Fail => "fail",
        }
    }
}

/// One line of the effects log:
/// `<start|done|fail> <idempotency key> <attempt> <pid>`.
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
            Some("fail") => Mark::Fail,
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

/// How many attempts of each [`flaky`] call fail before one succeeds.
pub const FLAKY_FAILURES: u32 = 2;

/// The retry policy of [`retrying`]'s calls: room for every planned
/// failure, with short waits between attempts (kept in the store with the
/// queued call, not as timers in history).
pub fn flaky_policy() -> RetryPolicy {
    RetryPolicy::attempts(FLAKY_FAILURES + 3).backoff(Duration::from_millis(20))
}

/// A step that fails its first [`FLAKY_FAILURES`] attempts (by the call's
/// attempt counter, which counts lost attempts too) and then succeeds.
#[activity]
pub async fn flaky(seed: u64, k: u64) -> Result<u64, String> {
    let _attempt = Attempt::begin();
    let attempt = ActivityInfo::current().map_or(1, |i| i.attempt());
    tokio::time::sleep(Duration::from_millis(2)).await;
    if attempt <= FLAKY_FAILURES {
        record(Mark::Fail);
        return Err(format!("attempt {attempt} fails on purpose"));
    }
    record(Mark::Done);
    Ok(mix(seed, k))
}

/// Two flaky steps in sequence, each retried until it succeeds.
#[orchestrator]
pub async fn retrying(ctx: Context, seed: u64) -> u64 {
    let Ok(first) = ctx.call_with_retry(flaky, (seed, 1), flaky_policy()).await else {
        return u64::MAX;
    };
    ctx.call_with_retry(flaky, (first, 2), flaky_policy())
        .await
        .unwrap_or(u64::MAX)
}

/// How many children a [`parent`] calls.
pub const CHILDREN: u64 = 3;

/// A child orchestration: one step, and a second one for an odd input.
#[orchestrator]
pub async fn child(ctx: Context, x: u64) -> u64 {
    let Ok(first) = ctx.call(step, (x, 1)).await else {
        return u64::MAX;
    };
    if x.is_multiple_of(2) {
        return first;
    }
    ctx.call(step, (first, 2)).await.unwrap_or(u64::MAX)
}

/// The input of a parent's `i`-th child.
pub fn child_input(seed: u64, i: u64) -> u64 {
    mix(seed, i)
}

/// A fan-out over [`CHILDREN`] child orchestrations (ids derived by the
/// runtime), joined and folded in call order.
#[orchestrator]
pub async fn parent(ctx: Context, seed: u64) -> u64 {
    let calls = (0..CHILDREN).map(|i| ctx.call_child(child, child_input(seed, i)));
    durable::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap_or(u64::MAX / 1024))
        .fold(seed, mix)
}

/// How many executions a [`laps`] instance runs.
pub const LAPS: u64 = 4;

/// An eternal orchestration: a step per execution, then continue-as-new
/// with the value so far and one lap fewer, until the last lap returns.
/// The custom status says which lap it is on.
#[orchestrator]
pub async fn laps(ctx: Context, lap: (u64, u64)) -> u64 {
    let (acc, n) = lap;
    ctx.set_custom_status(&n);
    let Ok(v) = ctx.call(step, (acc, n)).await else {
        return u64::MAX;
    };
    if n <= 1 {
        return v;
    }
    ctx.continue_as_new((v, n - 1)).await
}

/// The input a [`laps`] instance started with `seed` has in its last
/// execution: what its earlier laps made of it, and lap 1.
pub fn last_lap_input(seed: u64) -> (u64, u64) {
    ((2..=LAPS).rev().fold(seed, mix), 1)
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
    /// [`parent`]
    Parent,
    /// [`child`]: started by a [`parent`], never by the client.
    Child,
    /// [`laps`]
    Laps,
    /// [`retrying`]
    Retrying,
    /// [`gate`], suspended by the client before its events are raised and
    /// resumed after.
    Held,
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
            let (kind, input) = match i % 8 {
                0 => (Kind::Sequence, g * 100 + i),
                1 => (Kind::Fan, 5 + (g + i) % 7),
                2 => (Kind::Nap, 20 + (g * 37 + i * 11) % 200),
                3 => (Kind::Gate, g * 1000 + i),
                4 => (Kind::Parent, g * 10_000 + i),
                5 => (Kind::Laps, g * 100_000 + i),
                6 => (Kind::Retrying, g * 1_000_000 + i),
                _ => (Kind::Held, g * 10_000_000 + i),
            };
            Spec {
                id: format!("g{g}-{i}"),
                kind,
                input,
            }
        })
        .collect()
}

/// What a [`child`] with input `x` must return.
fn child_output(x: u64) -> u64 {
    let first = mix(x, 1);
    if x.is_multiple_of(2) {
        first
    } else {
        mix(first, 2)
    }
}

/// What the instance must return.
pub fn expected(spec: &Spec) -> u64 {
    let x = spec.input;
    match spec.kind {
        Kind::Sequence => (0..5).fold(x, mix),
        Kind::Fan => (0..x).map(|i| i * i).fold(0, mix),
        Kind::Nap | Kind::Retrying => mix(mix(x, 1), 2),
        Kind::Gate | Kind::Held => mix(GO.into_iter().fold(x, mix), GO.len() as u64),
        Kind::Parent => (0..CHILDREN)
            .map(|i| child_output(child_input(x, i)))
            .fold(x, mix),
        Kind::Child => child_output(x),
        Kind::Laps => (1..=LAPS).rev().fold(x, mix),
    }
}

/// The children a [`Kind::Parent`] instance must have called, in call
/// order: their kind and input (their ids are the runtime's to derive).
pub fn children(spec: &Spec) -> Vec<(Kind, u64)> {
    match spec.kind {
        Kind::Parent => (0..CHILDREN)
            .map(|i| (Kind::Child, child_input(spec.input, i)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Registers the workload's orchestrators and activities.
pub fn register(builder: Builder) -> Builder {
    register_without_timers(builder).orchestrator(nap)
}

/// Registers all of the workload but [`nap`], the one orchestrator that
/// sets timers: its instances are left to processes that run it.
pub fn register_without_timers(builder: Builder) -> Builder {
    builder
        .activity(step)
        .activity(square)
        .activity(flaky)
        .orchestrator(sequence)
        .orchestrator(fan)
        .orchestrator(gate)
        .orchestrator(parent)
        .orchestrator(child)
        .orchestrator(laps)
        .orchestrator(retrying)
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
        Kind::Gate | Kind::Held => client
            .start_with_id(gate, &spec.id, spec.input)
            .await
            .map(|_| ()),
        Kind::Parent => client
            .start_with_id(parent, &spec.id, spec.input)
            .await
            .map(|_| ()),
        Kind::Child => client
            .start_with_id(child, &spec.id, spec.input)
            .await
            .map(|_| ()),
        Kind::Laps => client
            .start_with_id(laps, &spec.id, (spec.input, LAPS))
            .await
            .map(|_| ()),
        Kind::Retrying => client
            .start_with_id(retrying, &spec.id, spec.input)
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

/// Opens a [`Kind::Held`] gate: suspends the instance, raises its `go`
/// events while it is suspended, then resumes it, so that a run killed
/// anywhere in between and started again finishes the job: a suspend or a
/// resume the instance's state refuses (it is suspended already, or
/// running, or finished) counts as done, and the events' keys make a
/// second raise a no-op.
///
/// # Errors
/// Any error but those.
pub async fn open_held_gate(client: &Client, id: &str) -> Result<(), Error> {
    // Not before its first turn: an instance suspended while still pending
    // (its `Started` not yet run) never runs once resumed, a runtime bug
    // this workload steps around so that it can test the rest.
    while client.status(id).await?.runtime_status == RuntimeStatus::Pending {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    match client.suspend(id, "held by the workload").await {
        Ok(()) | Err(Error::InvalidState { .. }) => {}
        Err(e) => return Err(e),
    }
    open_gate(client, id).await?;
    match client.resume(id, "released by the workload").await {
        Ok(()) | Err(Error::InvalidState { .. }) => Ok(()),
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
