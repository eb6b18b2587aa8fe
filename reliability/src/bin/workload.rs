//! Runs the crash-test workload on a SQLite file until everything in it has
//! finished, then exits 0. Killed at any moment, it loses nothing.
//!
//! `workload <db> <effects-log> <generation> <count> [final]`: starts the
//! instances of `generation` (ids `g<generation>-<i>`) and raises the `go`
//! events of its gates, each under its own key, suspending held gates
//! before and resuming them after (with `final`: does this for every
//! generation up to it), then runs the runtime until the file is drained
//! and none of its own activity attempts is still running.

use std::path::PathBuf;
use std::time::Duration;

use durable::Runtime;
use durable_reliability::workload::{self, Kind};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err("usage: workload <db> <effects-log> <generation> <count> [final]".into());
    }
    let db = PathBuf::from(&args[1]);
    workload::open_effects(std::path::Path::new(&args[2]))?;
    let generation: u64 = args[3].parse()?;
    let count: u64 = args[4].parse()?;
    let last = args.get(5).is_some_and(|a| a == "final");
    // Slow steps keep attempts in flight, for tests that freeze the process.
    if let Some(ms) = std::env::var("DURABLE_STEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        workload::STEP_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    let runtime = workload::register(Runtime::builder().sqlite(&db))
        .activity_lease(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(25))
        .start()
        .await?;
    let client = runtime.client();
    // A run starts its own generation; the final run starts (again, which
    // is harmless) every generation, so instances a killed run never got to
    // start exist too, and opens every gate (again: the keys make a second
    // raise of an event a no-op).
    let generations = if last {
        0..=generation
    } else {
        generation..=generation
    };
    for g in generations {
        let specs = workload::generation(g, count);
        for spec in &specs {
            workload::start(&client, spec).await?;
        }
        for spec in &specs {
            match spec.kind {
                Kind::Gate => workload::open_gate(&client, &spec.id).await?,
                Kind::Held => workload::open_held_gate(&client, &spec.id).await?,
                _ => {}
            }
        }
    }
    // Drained, and no attempt of this process still running: one it held
    // while frozen ends (and tries to report, too late) before it exits.
    while !workload::drained(&db)? || workload::in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runtime.shutdown().await?;
    println!("drained");
    Ok(())
}
