//! The benchmark suite: one command per workload, medians over several runs,
//! on a file-backed SQLite store with `synchronous=FULL` (or, labelled,
//! NORMAL), and SQLite's own limit measured by the same binary.
//!
//! `cargo run --release -p durable-bench -- <workload> [--normal] [--runs N]`
//! where `<workload>` is one of `seq`, `fanout`, `latency`, `long`, `replay`,
//! `idle`, `limit`, or `all`.

mod workloads;

use std::time::Duration;

use durable::Synchronous;

/// Settings shared by every workload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) synchronous: Synchronous,
    pub(crate) runs: usize,
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

const WORKLOADS: [&str; 7] = [
    "limit", "seq", "fanout", "latency", "long", "replay", "idle",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut settings = Settings {
        synchronous: Synchronous::Full,
        runs: 5,
    };
    let mut chosen = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--normal" => settings.synchronous = Synchronous::Normal,
            "--runs" => {
                settings.runs = it
                    .next()
                    .ok_or("--runs takes a number")?
                    .parse()
                    .map_err(|_| "--runs takes a number")?;
            }
            "all" => chosen.extend(WORKLOADS),
            w if WORKLOADS.contains(&w) => chosen.push(WORKLOADS[WORKLOADS.iter().position(|x| *x == w).unwrap_or(0)]),
            other => {
                return Err(format!(
                    "unknown argument `{other}`: expected one of {WORKLOADS:?}, `all`, `--normal`, `--runs N`"
                )
                .into())
            }
        }
    }
    if chosen.is_empty() {
        return Err(format!("name a workload: one of {WORKLOADS:?} or `all`").into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
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
            _ => unreachable!("checked above"),
        }
    }
    Ok(())
}
