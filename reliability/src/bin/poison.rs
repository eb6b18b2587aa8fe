//! An activity that kills its process every time, beside ordinary work.
//! `poison <db>` runs until its file is drained; each attempt of the
//! poisonous activity aborts the process, so a driver starts it again until
//! the runtime gives up on the activity (after 3 lost attempts).

use std::path::PathBuf;
use std::time::Duration;

use durable::{activity, orchestrator, Context, Error, Runtime};
use durable_reliability::workload;

/// Kills the process that runs it.
#[activity]
async fn abort_always(_x: u64) -> u64 {
    std::process::abort()
}

/// Calls the poisonous activity and reports how the call ended.
#[orchestrator]
async fn calls_poison(ctx: Context, x: u64) -> Result<u64, String> {
    ctx.call(abort_always, x).await.map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = PathBuf::from(std::env::args().nth(1).ok_or("usage: poison <db>")?);
    let runtime = workload::register(Runtime::builder().sqlite(&db))
        .activity(abort_always)
        .orchestrator(calls_poison)
        .activity_lease(Duration::from_millis(200))
        .poll_interval(Duration::from_millis(20))
        .poison_after(3)
        .start()
        .await?;
    let client = runtime.client();
    match client.start_with_id(calls_poison, "poisoned", 1).await {
        Ok(_) | Err(Error::InstanceExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    match client.start_with_id(workload::sequence, "fine", 3).await {
        Ok(_) | Err(Error::InstanceExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    while !workload::drained(&db)? {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runtime.shutdown().await?;
    Ok(())
}
