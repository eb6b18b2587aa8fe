//! The workloads at scale: start-to-result latency with a million timers
//! pending, a million starts issued as fast as a client can, and starts
//! awaited one after another against SQLite's own commit rate. The
//! million-sized ones run once (`--runs` does not apply to them).

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::workloads::{
    builder, db, first_turns_done, one, peak_rss_mb, reset_peak_rss, rss_mb, runtime, sleepers,
    sqlite_commit_rate, start_to_result,
};
use crate::{median, percentile, Settings};

type Res = Result<(), Box<dyn std::error::Error>>;

/// Timers per `sleepers` instance: one turn commits them all. The fastest
/// setup of those tried (200,000 timers: 100 per instance 4.1 s, 1,000 per
/// instance 1.5 s, 5,000 per instance 1.8 s).
const TIMERS_PER_INSTANCE: u64 = 1_000;

/// Sequential start-to-result runs measured on the empty and the loaded store.
const LATENCY_RUNS: u64 = 200;

/// Starts a client keeps in flight in `starts`.
const IN_FLIGHT: usize = 10_000;

/// How long `starts` waits for the next result before it reports a stall:
/// four activity leases (30 s each by default), time for a lost attempt to
/// be taken over and run again.
const STALL: Duration = Duration::from_secs(120);

/// The next finished task of `set`, which the caller knows is not empty.
async fn next<T: 'static>(
    set: &mut JoinSet<Result<T, durable::Error>>,
) -> Result<T, Box<dyn std::error::Error>> {
    let joined = set
        .join_next()
        .await
        .expect("invariant: called only on a non-empty set");
    Ok(joined??)
}

/// The short poll interval of the second measurement in `timers`.
const SHORT_POLL: Duration = Duration::from_millis(50);

/// Start-to-result samples of [`LATENCY_RUNS`] runs on a runtime of the
/// file at `path`, with the default poll interval or `poll`.
async fn latency_on(
    path: &Path,
    s: Settings,
    poll: Option<Duration>,
) -> Result<Vec<f64>, durable::Error> {
    let builder = builder(path, s);
    let rt = match poll {
        Some(poll) => builder.poll_interval(poll),
        None => builder,
    }
    .start()
    .await?;
    let samples = start_to_result(&rt.client(), LATENCY_RUNS).await?;
    rt.shutdown().await?;
    Ok(samples)
}

/// p50, p99 and mean of `xs`.
fn summary(xs: &mut [f64]) -> [f64; 3] {
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    [percentile(xs, 50.0), percentile(xs, 99.0), mean]
}

/// `--timers N` timer messages pending (default 1,000,000): start-to-result
/// latency of a one-activity instance with them pending, against the same on
/// the empty store. A fetch that costs what is due keeps the ratio near 1.
///
/// The dispatcher reads the store when a timer is due and otherwise once per
/// poll interval; at the default (500 ms) the measured runs, about a
/// millisecond each, mostly miss that read, so the figures are also taken
/// with a poll interval of [`SHORT_POLL`], where the runs meet it often, as
/// they would with timers coming due all the time.
pub(crate) async fn timers(s: Settings) -> Res {
    let n = s.timers;
    let (_dir, path) = db()?;
    let mut empty = [
        latency_on(&path, s, None).await?,
        latency_on(&path, s, Some(SHORT_POLL)).await?,
    ];

    let rt = runtime(&path, s).await?;
    let client = rt.client();
    let began = Instant::now();
    let instances = n.div_ceil(TIMERS_PER_INSTANCE);
    let mut set = JoinSet::new();
    for i in 0..instances {
        if set.len() >= 256 {
            next(&mut set).await?;
        }
        let k = TIMERS_PER_INSTANCE.min(n - i * TIMERS_PER_INSTANCE);
        let client = client.clone();
        set.spawn(async move { client.start(sleepers, k).await.map(drop) });
    }
    while !set.is_empty() {
        next(&mut set).await?;
    }
    // Each instance's first turn commits all its timers.
    first_turns_done(&path).await?;
    let setup = began.elapsed();
    rt.shutdown().await?;
    // Nothing else is alive: every message left is a timer an hour away.
    let pending: i64 =
        rusqlite::Connection::open(&path)?
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
    if u64::try_from(pending).unwrap_or(0) < n {
        return Err(format!("timers: {pending} messages pending, expected {n}").into());
    }
    println!(
        "timers: {pending} timer messages pending ({instances} instances x up to {TIMERS_PER_INSTANCE} one-hour timers), \
         set up in {:.1} s ({:.0} timers/s)",
        setup.as_secs_f64(),
        n as f64 / setup.as_secs_f64()
    );

    let mut loaded = [
        latency_on(&path, s, None).await?,
        latency_on(&path, s, Some(SHORT_POLL)).await?,
    ];
    let labels = [
        "default poll interval".to_owned(),
        format!("poll interval {} ms", SHORT_POLL.as_millis()),
    ];
    for ((label, empty), loaded) in labels.iter().zip(&mut empty).zip(&mut loaded) {
        let [e50, e99, emean] = summary(empty);
        let [l50, l99, lmean] = summary(loaded);
        println!(
            "timers: start to result, one activity, {LATENCY_RUNS} runs, {label}: \
             empty store p50 {e50:.2} ms, p99 {e99:.2} ms, mean {emean:.2} ms; \
             timers pending p50 {l50:.2} ms, p99 {l99:.2} ms, mean {lmean:.2} ms; \
             pending/empty p50 {:.2}x, p99 {:.2}x, mean {:.2}x (one run)",
            l50 / e50,
            l99 / e99,
            lmean / emean
        );
    }
    Ok(())
}

/// `--starts N` starts of a one-activity orchestrator (default 1,000,000),
/// issued as fast as a client can with [`IN_FLIGHT`] in flight, then every
/// result awaited: starts/s, completion time, peak resident memory.
pub(crate) async fn starts(s: Settings) -> Res {
    let n = s.starts;
    let (_dir, path) = db()?;
    let peak_reset = reset_peak_rss();
    let before = rss_mb();
    let rt = runtime(&path, s).await?;
    let client = rt.client();

    let began = Instant::now();
    let mut handles = Vec::with_capacity(usize::try_from(n)?);
    let mut set = JoinSet::new();
    for i in 0..n {
        if set.len() >= IN_FLIGHT {
            handles.push(next(&mut set).await?);
        }
        let client = client.clone();
        set.spawn(async move { client.start(one, i).await.map(|h| (i, h)) });
    }
    while !set.is_empty() {
        handles.push(next(&mut set).await?);
    }
    let issued = began.elapsed();
    let peak_label = if peak_reset {
        ""
    } else {
        " since the process began"
    };
    // Printed now: if the results never come, these figures still stand.
    println!(
        "starts: {n} starts of a one-activity orchestrator, {IN_FLIGHT} in flight: issued in {:.1} s \
         ({:.0} starts/s); resident {:.0} MB, peak {:.0} MB{peak_label} ({before:.0} MB before the runtime; \
         the client holds {n} handles)",
        issued.as_secs_f64(),
        n as f64 / issued.as_secs_f64(),
        rss_mb(),
        peak_rss_mb()
    );

    // In order, one at a time, as `seq` does: most are done by the time
    // their turn comes, and thousands of concurrent waits would each poll
    // the store.
    for (i, h) in handles {
        let Ok(out) = tokio::time::timeout(STALL, h.result()).await else {
            // Leave the runtime to be dropped: shutting down a stalled
            // backlog could hang as well.
            return Err(format!(
                "starts: stalled: no result for instance {i} in {} s; {i} of {n} results in after {:.1} s; \
                 resident {:.0} MB, peak {:.0} MB{peak_label}",
                STALL.as_secs(),
                began.elapsed().as_secs_f64(),
                rss_mb(),
                peak_rss_mb()
            )
            .into());
        };
        assert_eq!(out?, i + 1, "instance {i}");
    }
    let done = began.elapsed();
    println!(
        "starts: all {n} results in {:.1} s after the first start ({:.0} orchestrations/s); resident {:.0} MB, \
         peak {:.0} MB{peak_label} (one run)",
        done.as_secs_f64(),
        n as f64 / done.as_secs_f64(),
        rss_mb(),
        peak_rss_mb()
    );
    rt.shutdown().await?;
    Ok(())
}

/// `--seqstarts N` starts (default 5,000), each awaited before the next (what
/// most users write), then every result: starts/s against SQLite's own
/// single-row commit rate on the same kind of file, measured in the same run.
pub(crate) async fn seqstart(s: Settings) -> Res {
    let n = s.seqstarts;
    let (mut rates, mut commits, mut ratios) = (vec![], vec![], vec![]);
    for _ in 0..s.runs {
        let (_dir, path) = db()?;
        let rt = runtime(&path, s).await?;
        let client = rt.client();
        let began = Instant::now();
        let mut handles = Vec::new();
        for i in 0..n {
            handles.push(client.start(one, i).await?);
        }
        let rate = n as f64 / began.elapsed().as_secs_f64();
        for (i, h) in (0..).zip(&handles) {
            assert_eq!(h.result().await?, i + 1);
        }
        rt.shutdown().await?;
        // The runtime is down, so SQLite has the disk to itself; this blocks
        // the thread of `block_on`, not a tokio worker.
        let commit = sqlite_commit_rate(s)?;
        rates.push(rate);
        commits.push(commit);
        ratios.push(rate / commit);
    }
    println!(
        "seqstart: {n} starts, each awaited before the next: median {:.0} starts/s; SQLite alone {:.0} single-row \
         commits/s; starts/commits {:.2} (medians of {} runs)",
        median(&mut rates),
        median(&mut commits),
        median(&mut ratios),
        s.runs
    );
    Ok(())
}
