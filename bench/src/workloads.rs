//! The workloads. Each builds its runtime on a fresh SQLite file in a temp
//! dir, runs, prints its figures and removes the file.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use durable::{activity, orchestrator, Client, Context, Runtime};

use crate::{median, ms, percentile, Settings};

type Res = Result<(), Box<dyn std::error::Error>>;

/// A trivial activity: the cost measured is the engine's, not the work's.
#[activity]
async fn noop(x: u64) -> u64 {
    x + 1
}

/// Timestamps of `stamp` calls, for the `long` workload.
static STAMPS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

/// A trivial activity that records when it ran.
#[activity]
async fn stamp(x: u64) -> u64 {
    STAMPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Instant::now());
    x + 1
}

/// Three activities in sequence.
#[orchestrator]
pub(crate) async fn three(ctx: Context, x: u64) -> u64 {
    let a = ctx.call(noop, x).await.unwrap_or(0);
    let b = ctx.call(noop, a).await.unwrap_or(0);
    ctx.call(noop, b).await.unwrap_or(0)
}

/// One activity.
#[orchestrator]
pub(crate) async fn one(ctx: Context, x: u64) -> u64 {
    ctx.call(noop, x).await.unwrap_or(0)
}

/// `n` activities at once, joined.
#[orchestrator]
pub(crate) async fn fan(ctx: Context, n: u64) -> u64 {
    durable::join_all((0..n).map(|i| ctx.call(noop, i)))
        .await
        .into_iter()
        .map(|r| r.unwrap_or(0))
        .sum()
}

/// `n` activities in sequence.
#[orchestrator]
async fn steps(ctx: Context, n: u64) -> u64 {
    let mut v = 0;
    for _ in 0..n {
        v = ctx.call(stamp, v).await.unwrap_or(0);
    }
    v
}

/// `n` activities in sequence, then a wait for `go`.
#[orchestrator]
async fn steps_then_wait(ctx: Context, n: u64) -> u64 {
    let mut v = 0;
    for _ in 0..n {
        v = ctx.call(noop, v).await.unwrap_or(0);
    }
    let go: u64 = ctx.wait_event("go").await;
    v + go
}

/// Waits an hour on a durable timer.
#[orchestrator]
async fn sleeper(ctx: Context) {
    ctx.sleep(Duration::from_secs(3600)).await;
}

/// Waits an hour on `n` durable timers at once: `n` timer messages pending
/// in the store from its first turn on.
#[orchestrator]
pub(crate) async fn sleepers(ctx: Context, n: u64) {
    durable::join_all((0..n).map(|_| ctx.sleep(Duration::from_secs(3600)))).await;
}

/// Waits for an event that does not come.
#[orchestrator]
async fn waiter(ctx: Context) -> u64 {
    ctx.wait_event::<u64>("never").await
}

/// A runtime on the SQLite file at `path` with every activity and
/// orchestrator of the suite and the runtime's defaults otherwise.
pub(crate) async fn runtime(
    path: &std::path::Path,
    s: Settings,
) -> Result<Runtime, durable::Error> {
    builder(path, s).start().await
}

/// The builder of [`runtime`], for a workload that changes a setting.
pub(crate) fn builder(path: &std::path::Path, s: Settings) -> durable::Builder {
    register(Runtime::builder().sqlite(path).synchronous(s.synchronous))
}

/// `builder` with every activity and orchestrator of the suite registered:
/// what every process on a shared store runs.
pub(crate) fn register(builder: durable::Builder) -> durable::Builder {
    builder
        .activity(noop)
        .activity(stamp)
        .orchestrator(three)
        .orchestrator(one)
        .orchestrator(fan)
        .orchestrator(steps)
        .orchestrator(steps_then_wait)
        .orchestrator(sleeper)
        .orchestrator(sleepers)
        .orchestrator(waiter)
}

pub(crate) fn db() -> Result<(tempfile::TempDir, std::path::PathBuf), std::io::Error> {
    let dir = tempfile::Builder::new().prefix("durable-bench").tempdir()?;
    let path = dir.path().join("bench.db");
    Ok((dir, path))
}

/// 500 instances of three sequential activities, all started, then awaited.
pub(crate) async fn seq(s: Settings) -> Res {
    const N: u64 = 500;
    let mut rates = Vec::new();
    for _ in 0..s.runs {
        let (_dir, path) = db()?;
        let rt = runtime(&path, s).await?;
        let client = rt.client();
        let began = Instant::now();
        let starts = (0..N).map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.start(three, i).await })
        });
        let mut handles = Vec::new();
        for h in starts.collect::<Vec<_>>() {
            handles.push(h.await??);
        }
        for (i, h) in handles.iter().enumerate() {
            assert_eq!(h.result().await?, i as u64 + 3);
        }
        rates.push(N as f64 / began.elapsed().as_secs_f64());
        rt.shutdown().await?;
    }
    let orch = median(&mut rates);
    println!(
        "seq: {N} instances x 3 activities: median {orch:.0} orchestrations/s, {:.0} activities/s (runs: {})",
        orch * 3.0,
        s.runs
    );
    Ok(())
}

/// One instance fanning out 1,000 and 10,000 activities.
pub(crate) async fn fanout(s: Settings) -> Res {
    for n in [1_000u64, 10_000] {
        let mut times = Vec::new();
        for _ in 0..s.runs {
            let (_dir, path) = db()?;
            let rt = runtime(&path, s).await?;
            let began = Instant::now();
            let h = rt.client().start(fan, n).await?;
            assert_eq!(h.result().await?, n * (n + 1) / 2);
            times.push(began.elapsed().as_secs_f64());
            rt.shutdown().await?;
        }
        println!(
            "fanout {n}: median {:.3} s wall (runs: {})",
            median(&mut times),
            s.runs
        );
    }
    Ok(())
}

/// Start to result, in ms, of `runs` instances of `one` run one after
/// another, after 10 unmeasured ones.
pub(crate) async fn start_to_result(
    client: &Client,
    runs: u64,
) -> Result<Vec<f64>, durable::Error> {
    for i in 0..10 {
        client.start(one, i).await?.result().await?;
    }
    let mut samples = Vec::new();
    for i in 0..runs {
        let began = Instant::now();
        let out = client.start(one, i).await?.result().await?;
        samples.push(ms(began.elapsed()));
        assert_eq!(out, i + 1);
    }
    Ok(samples)
}

/// Start to result of one instance with one activity, 100 times.
pub(crate) async fn latency(s: Settings) -> Res {
    let (_dir, path) = db()?;
    let rt = runtime(&path, s).await?;
    let mut samples = start_to_result(&rt.client(), 100).await?;
    let p50 = percentile(&mut samples, 50.0);
    let p99 = percentile(&mut samples, 99.0);
    println!("latency: one instance, one activity, start to result: p50 {p50:.2} ms, p99 {p99:.2} ms (100 runs)");
    rt.shutdown().await?;
    Ok(())
}

/// One instance running 10,000 sequential activities: time per step at the
/// start and at the end (it must stay flat: no replay per step).
pub(crate) async fn long(s: Settings) -> Res {
    const N: usize = 10_000;
    let (mut firsts, mut lasts, mut ratios, mut totals) = (vec![], vec![], vec![], vec![]);
    for _ in 0..s.runs {
        let (_dir, path) = db()?;
        let rt = runtime(&path, s).await?;
        STAMPS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        let began = Instant::now();
        let h = rt.client().start(steps, N as u64).await?;
        assert_eq!(h.result().await?, N as u64);
        totals.push(began.elapsed().as_secs_f64());
        let stamps = std::mem::take(
            &mut *STAMPS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let per_step = |from: usize, to: usize| ms(stamps[to] - stamps[from]) / (to - from) as f64;
        let (first, last) = (per_step(0, 1_000), per_step(N - 1_001, N - 1));
        firsts.push(first);
        lasts.push(last);
        ratios.push(last / first);
        rt.shutdown().await?;
    }
    println!(
        "long: {N} sequential activities in {:.2} s: first 1,000 steps {:.3} ms/step, last 1,000 {:.3} ms/step, \
         last/first {:.2} (medians of {} runs)",
        median(&mut totals),
        median(&mut firsts),
        median(&mut lasts),
        median(&mut ratios),
        s.runs
    );
    Ok(())
}

/// Resuming an instance with a 10,000-event history after a restart.
pub(crate) async fn replay(s: Settings) -> Res {
    const STEPS: u64 = 5_000; // two events each: 10,000 events, plus a few
    let (_dir, path) = db()?;
    let rt = runtime(&path, s).await?;
    let h = rt.client().start(steps_then_wait, STEPS).await?;
    let id = h.id().to_owned();
    while rt.client().status(&id).await?.history_len < 2 * STEPS + 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = rt.client().status(&id).await?.history_len;
    rt.shutdown().await?;
    // Fold the WAL into the file so a copy of the file is the whole state.
    rusqlite::Connection::open(&path)?.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
    let mut times = Vec::new();
    let mut baseline = Vec::new();
    for run in 0..s.runs {
        // Copy the file so every run resumes the same history.
        let (_d2, copy) = db()?;
        std::fs::copy(&path, &copy)?;
        let rt = runtime(&copy, s).await?;
        let client = rt.client();
        // The same round trip on an instance with a short history: what is
        // not replay.
        let small = client.start(steps_then_wait, 0).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let began = Instant::now();
        client.raise_event(small.id(), "go", 1u64).await?;
        small.result().await?;
        baseline.push(ms(began.elapsed()));
        let began = Instant::now();
        client.raise_event(&id, "go", run as u64).await?;
        assert_eq!(
            client.handle(steps_then_wait, id.as_str()).result().await?,
            STEPS + run as u64
        );
        times.push(ms(began.elapsed()));
        rt.shutdown().await?;
    }
    let t = median(&mut times);
    let b = median(&mut baseline);
    println!(
        "replay: resume an instance of {events} events after a restart: median {t:.1} ms event-to-result, \
         {b:.1} ms for the same on a fresh instance, so replay {:.1} ms (runs: {})",
        t - b,
        s.runs
    );
    Ok(())
}

/// Resident memory now, in MB (NaN where /proc is missing).
pub(crate) fn rss_mb() -> f64 {
    proc_status_mb("VmRSS:")
}

/// Peak resident memory of the process (since the last
/// [`reset_peak_rss`]), in MB (NaN where /proc is missing).
pub(crate) fn peak_rss_mb() -> f64 {
    proc_status_mb("VmHWM:")
}

/// Resets the peak that [`peak_rss_mb`] reads, so that a workload's peak
/// is not an earlier workload's; false where the kernel does not allow it.
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn proc_status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
}

async fn start_idle(client: &Client, n: u64) -> Res {
    let mut batch = Vec::new();
    for i in 0..n {
        let client = client.clone();
        batch.push(tokio::spawn(async move {
            if i % 2 == 0 {
                client.start(sleeper, ()).await.map(|_| ())
            } else {
                client.start(waiter, ()).await.map(|_| ())
            }
        }));
        if batch.len() == 256 {
            for h in batch.drain(..) {
                h.await??;
            }
        }
    }
    for h in batch {
        h.await??;
    }
    Ok(())
}

/// Returns once every instance in the store at `path` has run its first
/// turn (none is still `pending`), looking every 100 ms.
pub(crate) async fn first_turns_done(path: &std::path::Path) -> Result<(), rusqlite::Error> {
    let conn = rusqlite::Connection::open(path)?;
    loop {
        let pending: i64 = conn.query_row(
            "SELECT count(*) FROM instances WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )?;
        if pending == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 100,000 instances waiting on timers and events: resident memory.
pub(crate) async fn idle(s: Settings) -> Res {
    const N: u64 = 100_000;
    let (_dir, path) = db()?;
    let before = rss_mb();
    let rt = runtime(&path, s).await?;
    let began = Instant::now();
    start_idle(&rt.client(), N).await?;
    first_turns_done(&path).await?;
    let setup = began.elapsed();
    let after = rss_mb();
    println!(
        "idle: {N} instances waiting (half on timers, half on events): resident {after:.0} MB ({:.0} MB over the empty process; cache 10,000 live executions); set up in {:.1} s",
        after - before,
        setup.as_secs_f64()
    );
    rt.shutdown().await?;
    Ok(())
}

/// `PRAGMA synchronous` as the store sets it.
fn sync_pragma(s: Settings) -> &'static str {
    match s.synchronous {
        durable::Synchronous::Normal => "NORMAL",
        _ => "FULL",
    }
}

/// A bare SQLite file with the store's journal and synchronous settings, in
/// a temp dir like the store's, and one table.
fn bare_sqlite(
    s: Settings,
) -> Result<(tempfile::TempDir, rusqlite::Connection), Box<dyn std::error::Error>> {
    let (dir, path) = db()?;
    let conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.pragma_update(None, "synchronous", sync_pragma(s))?;
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")?;
    Ok((dir, conn))
}

/// Single-row commits per second on `conn`, for one second.
fn single_row_commits(conn: &rusqlite::Connection) -> Result<f64, rusqlite::Error> {
    let began = Instant::now();
    let mut n = 0u32;
    while began.elapsed() < Duration::from_secs(1) {
        conn.execute("INSERT INTO t (v) VALUES ('{\"x\":1}')", [])?;
        n += 1;
    }
    Ok(f64::from(n) / began.elapsed().as_secs_f64())
}

/// SQLite's own single-row commit rate (commits/s, for one second) on a
/// fresh file of the kind the store uses: the ceiling of anything that
/// commits once per step.
pub(crate) fn sqlite_commit_rate(s: Settings) -> Result<f64, Box<dyn std::error::Error>> {
    let (_dir, conn) = bare_sqlite(s)?;
    Ok(single_row_commits(&conn)?)
}

/// SQLite's own figures on this machine: single-row commits/s and rows/s in
/// batched transactions, with the same journal and synchronous settings.
pub(crate) fn limit(s: Settings) -> Res {
    let sync = sync_pragma(s);
    let mut single = Vec::new();
    let mut batched = Vec::new();
    for _ in 0..s.runs {
        let (_dir, conn) = bare_sqlite(s)?;
        single.push(single_row_commits(&conn)?);
        let began = Instant::now();
        let mut rows = 0u32;
        while began.elapsed() < Duration::from_secs(1) {
            let tx = conn.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare_cached("INSERT INTO t (v) VALUES ('{\"x\":1}')")?;
                for _ in 0..1_000 {
                    stmt.execute([])?;
                }
            }
            tx.commit()?;
            rows += 1_000;
        }
        batched.push(f64::from(rows) / began.elapsed().as_secs_f64());
    }
    println!(
        "limit: SQLite alone ({sync}): median {:.0} single-row commits/s, {:.0} rows/s in 1,000-row transactions (runs: {})",
        median(&mut single),
        median(&mut batched),
        s.runs
    );
    Ok(())
}
