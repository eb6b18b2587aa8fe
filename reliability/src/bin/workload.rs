//! Runs the crash-test workload until everything in its store has
//! finished, then exits 0. Killed at any moment, it loses nothing.
//!
//! `workload [flags] <db> <effects-log> <generation> <count> [final]`, or
//! `workload --postgres <url> --schema <schema> [flags] <effects-log>
//! <generation> <count> [final]` for a schema several processes share
//! (the flags are [`durable_reliability::target`]'s): starts the
//! instances of `generation` (ids `g<generation>-<i>`) and raises the `go`
//! events of its gates, each under its own key, suspending held gates
//! before and resuming them after (with `final`: does this for every
//! generation up to it; without timers, the instances of `nap` are left
//! to such a run), then runs the runtime until the store is drained
//! and none of its own activity attempts is still running. Client calls
//! that meet a store unavailable for a while are made again.

use std::time::Duration;

use durable::Runtime;
use durable_reliability::target::{retrying, unreachable, Target};
use durable_reliability::workload::{self, Kind};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: workload [flags] <db> <effects-log> <generation> <count> [final]";
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let target = Target::from_args(&mut args).map_err(|e| format!("{e}\n{usage}"))?;
    if args.len() < 3 {
        return Err(usage.into());
    }
    workload::open_effects(std::path::Path::new(&args[0]))?;
    let generation: u64 = args[1].parse()?;
    let count: u64 = args[2].parse()?;
    let last = args.get(3).is_some_and(|a| a == "final");
    // Slow steps keep attempts in flight, for tests that freeze the process.
    if let Some(ms) = std::env::var("DURABLE_STEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        workload::STEP_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    let register = if target.no_timers {
        workload::register_without_timers
    } else {
        workload::register
    };
    // Starting reads the server's clock: a connection killed under it
    // (again and again, in the test that kills them) is tried again.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let runtime = loop {
        let builder = register(Runtime::builder())
            .activity_lease(Duration::from_millis(300))
            .poll_interval(Duration::from_millis(25));
        match target.configure(builder)?.start().await {
            Err(durable::Error::Store(e))
                if unreachable(&e) && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            started => break started?,
        }
    };
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
        // A process without `nap` cannot start one: the final run does.
        let startable = |spec: &&workload::Spec| !(target.no_timers && spec.kind == Kind::Nap);
        for spec in specs.iter().filter(startable) {
            retrying(|| workload::start(&client, spec)).await?;
        }
        for spec in &specs {
            match spec.kind {
                Kind::Gate => retrying(|| workload::open_gate(&client, &spec.id)).await?,
                Kind::Held => retrying(|| workload::open_held_gate(&client, &spec.id)).await?,
                _ => {}
            }
        }
    }
    // Drained, and no attempt of this process still running: one it held
    // while frozen ends (and tries to report, too late) before it exits.
    let mut conn = None;
    while !target.drained(&mut conn).await? || workload::in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runtime.shutdown().await?;
    println!("drained");
    Ok(())
}
