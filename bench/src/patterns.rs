//! Workloads for the orchestration patterns: fan-out over child
//! orchestrations, and an eternal monitor that continues as new.

use std::sync::Mutex;
use std::time::Instant;

use durable::{activity, orchestrator, Context};

use crate::workloads::{builder, db, rss_mb};
use crate::{median, Settings};

type Res = Result<(), Box<dyn std::error::Error>>;

/// A child: one trivial activity.
#[orchestrator]
async fn child(ctx: Context, x: u64) -> u64 {
    ctx.call(bump, x).await.unwrap_or(0)
}

#[activity]
async fn bump(x: u64) -> u64 {
    x + 1
}

/// `n` children at once, joined.
#[orchestrator]
async fn parent(ctx: Context, n: u64) -> u64 {
    durable::join_all((0..n).map(|i| ctx.call_child(child, i)))
        .await
        .into_iter()
        .map(|r| r.unwrap_or(0))
        .sum()
}

/// When each monitor iteration ran, and resident memory every 1,000.
static TICKS: Mutex<Vec<(Instant, Option<f64>)>> = Mutex::new(Vec::new());

#[activity]
async fn tick(i: u64) -> u64 {
    let rss = i.is_multiple_of(1_000).then(rss_mb);
    TICKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((Instant::now(), rss));
    i
}

/// One activity per iteration, then continue as new, `n` times.
#[orchestrator]
async fn monitor(ctx: Context, (i, n): (u64, u64)) -> u64 {
    if i < n {
        ctx.call(tick, i).await.unwrap_or(0);
        return ctx.continue_as_new((i + 1, n)).await;
    }
    i
}

/// 1,000 child orchestrations at once from one parent.
pub(crate) async fn children(s: Settings) -> Res {
    const N: u64 = 1_000;
    let mut times = Vec::new();
    for _ in 0..s.runs {
        let (_dir, path) = db()?;
        let rt = builder(&path, s)
            .activity(bump)
            .orchestrator(child)
            .orchestrator(parent)
            .start()
            .await?;
        let began = Instant::now();
        let h = rt.client().start(parent, N).await?;
        assert_eq!(h.result().await?, N * (N + 1) / 2);
        times.push(began.elapsed().as_secs_f64());
        rt.shutdown().await?;
    }
    println!(
        "children: fan-out over {N} child orchestrations: median {:.3} s wall, {:.0} children/s (runs: {})",
        median(&mut times.clone()),
        N as f64 / median(&mut times),
        s.runs
    );
    Ok(())
}

/// A monitor doing 10,000 iterations, each one activity and a
/// continue-as-new: per-iteration cost and memory, first against last.
pub(crate) async fn eternal(s: Settings) -> Res {
    const N: u64 = 10_000;
    let (_dir, path) = db()?;
    let rt = builder(&path, s)
        .activity(tick)
        .orchestrator(monitor)
        .start()
        .await?;
    TICKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    let began = Instant::now();
    let h = rt.client().start(monitor, (0, N)).await?;
    assert_eq!(h.result().await?, N);
    let total = began.elapsed().as_secs_f64();
    let status = rt.client().status(h.id()).await?;
    rt.shutdown().await?;
    let ticks = std::mem::take(
        &mut *TICKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let gaps: Vec<f64> = ticks
        .windows(2)
        .map(|w| w[1].0.duration_since(w[0].0).as_secs_f64() * 1e3)
        .collect();
    let k = 1_000.min(gaps.len());
    let (mut first, mut last) = (gaps[..k].to_vec(), gaps[gaps.len() - k..].to_vec());
    let rss: Vec<f64> = ticks.iter().filter_map(|t| t.1).collect();
    println!(
        "monitor: {N} iterations of continue-as-new in {total:.2} s: median ms/iteration first 1,000 {:.3}, last 1,000 {:.3}; resident MB at iterations 1,000 / {N}: {:.0} / {:.0}; history at the end {} events",
        median(&mut first),
        median(&mut last),
        rss.get(1).copied().unwrap_or(f64::NAN),
        rss.last().copied().unwrap_or(f64::NAN),
        status.history_len
    );
    Ok(())
}
