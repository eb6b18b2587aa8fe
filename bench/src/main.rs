//! The benchmark suite: one command per workload, medians over several runs,
//! on a file-backed SQLite store with `synchronous=FULL` (or, labelled,
//! NORMAL), and SQLite's own limit measured by the same binary.
//!
//! `cargo run --release -p durable-bench -- <workload>.. [--normal] [--runs N]
//! [--timers N] [--starts N] [--seqstarts N]` where `<workload>` is one of:
//!
//! - `limit`: SQLite alone, single-row commits/s and rows/s in 1,000-row
//!   transactions: the ceiling the others are read against.
//! - `seq`: 500 instances of three sequential activities, started at once.
//! - `fanout`: one instance fanning out 1,000 and 10,000 activities.
//! - `latency`: start to result of a one-activity instance, p50 and p99.
//! - `long`: 10,000 sequential activities in one instance; time per step at
//!   the start and at the end must stay flat.
//! - `replay`: resuming a 10,000-event history after a restart.
//! - `idle`: resident memory with 100,000 instances waiting.
//! - `seqstart`: `--seqstarts` (5,000) starts, each awaited before the next,
//!   in starts/s and as a ratio to SQLite's single-row commits/s.
//! - `timers`: start-to-result latency with `--timers` (1,000,000) one-hour
//!   timers pending, against the same on the empty store, at the default
//!   poll interval and at 50 ms (where the runs meet the store's fetch often):
//!   the fetch must cost what is due, not what is stored. One run.
//! - `starts`: `--starts` (1,000,000) starts issued as fast as a client can
//!   (10,000 in flight), then all results: starts/s, completion time, peak
//!   resident memory. One run; it fails, naming how far it got, when no
//!   result comes for 120 s, so it runs last.
//! - `entities`: 10,000 signals to one entity, and 1,000 entities x 10
//!   signals, in operations applied/s against SQLite's single-row commits/s.
//! - `all`: every one of them, in this order.
//!
//! `--postgres URL` runs on the PostgreSQL server at `URL` instead (it
//! needs `synchronous_commit=on`): `limit` (the server's single-row commit
//! rate from 1 and 4 connections), `seq` with 1, 2 and 4 worker processes
//! (the bench runs itself as workers) and a client that only starts and
//! waits, `fanout` 1,000 and `latency` in one process; all four when none
//! is named, then a markdown table of the medians. `--profile` adds a pass
//! that times the workers' store calls and counts round trips per
//! statement. Each run uses a schema of its own and drops it.

mod entities;
mod patterns;
mod postgres;
mod scale;
mod testkit;
mod workloads;

use std::time::Duration;

use durable::Synchronous;

/// Settings shared by every workload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) synchronous: Synchronous,
    pub(crate) runs: usize,
    /// Pending timers in `timers`.
    pub(crate) timers: u64,
    /// Starts in `starts`.
    pub(crate) starts: u64,
    /// Starts in `seqstart`.
    pub(crate) seqstarts: u64,
}

impl Settings {
    pub(crate) fn label(&self) -> &'static str {
        match self.synchronous {
            Synchronous::Normal => "synchronous=NORMAL",
            _ => "synchronous=FULL",
        }
    }
}

/// The median of `xs` (sorted in place).
pub(crate) fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The `p`-th percentile (0..=100) of `xs` (sorted in place), nearest rank.
pub(crate) fn percentile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rank within a small vector"
    )]
    let rank = ((p / 100.0) * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

const WORKLOADS: [&str; 14] = [
    "limit", "seq", "fanout", "latency", "long", "replay", "idle", "seqstart", "timers", "starts",
    "children", "monitor", "entities", "testkit",
];

/// The number after `flag`.
fn number<T: std::str::FromStr>(
    flag: &str,
    value: Option<&String>,
) -> Result<T, Box<dyn std::error::Error>> {
    value
        .and_then(|v| v.replace('_', "").parse().ok())
        .ok_or_else(|| format!("{flag} takes a number").into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(postgres::procs::WORKER_ARG) {
        return postgres::procs::worker_main(&args[1..]);
    }
    let mut settings = Settings {
        synchronous: Synchronous::Full,
        runs: 5,
        timers: 1_000_000,
        starts: 1_000_000,
        seqstarts: 5_000,
    };
    let mut chosen = Vec::new();
    let (mut postgres, mut profile, mut all) = (None, false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--postgres" => {
                postgres = Some(it.next().ok_or("--postgres takes a connection URL")?.clone());
            }
            "--profile" => profile = true,
            "--normal" => settings.synchronous = Synchronous::Normal,
            "--runs" => settings.runs = number(a, it.next())?,
            "--timers" => settings.timers = number(a, it.next())?,
            "--starts" => settings.starts = number(a, it.next())?,
            "--seqstarts" => settings.seqstarts = number(a, it.next())?,
            "all" => {
                all = true;
                chosen.extend(WORKLOADS);
            }
            w if WORKLOADS.contains(&w) => chosen.push(WORKLOADS[WORKLOADS.iter().position(|x| *x == w).unwrap_or(0)]),
            other => {
                return Err(format!(
                    "unknown argument `{other}`: expected one of {WORKLOADS:?}, `all`, `--normal`, `--runs N`, `--timers N`, `--starts N`, `--seqstarts N`, `--postgres URL`, `--profile`"
                )
                .into())
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if let Some(url) = postgres {
        if chosen.is_empty() || all {
            chosen = postgres::WORKLOADS.to_vec();
        }
        if let Some(w) = chosen.iter().find(|w| !postgres::WORKLOADS.contains(w)) {
            return Err(format!(
                "`{w}` does not run on PostgreSQL yet: name some of {:?}",
                postgres::WORKLOADS
            )
            .into());
        }
        return rt.block_on(postgres::run(&url, settings, &chosen, profile));
    }
    if chosen.is_empty() {
        return Err(format!("name a workload: one of {WORKLOADS:?} or `all`").into());
    }
    println!(
        "durable-bench: file-backed SQLite, {}, WAL, {} runs per figure, {} cores",
        settings.label(),
        settings.runs,
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    for w in chosen {
        match w {
            "limit" => workloads::limit(settings)?,
            "seq" => rt.block_on(workloads::seq(settings))?,
            "fanout" => rt.block_on(workloads::fanout(settings))?,
            "latency" => rt.block_on(workloads::latency(settings))?,
            "long" => rt.block_on(workloads::long(settings))?,
            "replay" => rt.block_on(workloads::replay(settings))?,
            "idle" => rt.block_on(workloads::idle(settings))?,
            "seqstart" => rt.block_on(scale::seqstart(settings))?,
            "timers" => rt.block_on(scale::timers(settings))?,
            "starts" => rt.block_on(scale::starts(settings))?,
            "children" => rt.block_on(patterns::children(settings))?,
            "monitor" => rt.block_on(patterns::eternal(settings))?,
            "entities" => rt.block_on(entities::entities(settings))?,
            "testkit" => rt.block_on(testkit::testkit(settings))?,
            _ => unreachable!("checked above"),
        }
    }
    Ok(())
}
