//! Durable timers: never early, and still there after a restart.

mod common;

use std::time::{Duration, SystemTime};

use common::{builder, db, within};
use durable::{orchestrator, Context};

#[orchestrator]
async fn nap(ctx: Context, ms: u64) -> (SystemTime, SystemTime) {
    let before = ctx.now();
    ctx.sleep(Duration::from_millis(ms)).await;
    (before, ctx.now())
}

#[tokio::test]
async fn a_timer_never_fires_early() {
    let db = db();
    let rt = builder(&db).orchestrator(nap).start().await.unwrap();
    let started = SystemTime::now();
    let h = rt.client().start(nap, 200).await.unwrap();
    let (before, after) = within(h.result()).await.unwrap();
    assert!(after.duration_since(before).unwrap() >= Duration::from_millis(200));
    assert!(started.elapsed().unwrap() >= Duration::from_millis(200));
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_timer_survives_a_restart_and_fires_at_its_time() {
    let db = db();
    let rt = builder(&db).orchestrator(nap).start().await.unwrap();
    let h = rt.client().start(nap, 400).await.unwrap();
    // Let the first turn commit the timer, then stop before it fires.
    tokio::time::sleep(Duration::from_millis(100)).await;
    rt.shutdown().await.unwrap();

    let rt = builder(&db).orchestrator(nap).start().await.unwrap();
    let h = rt.client().handle(nap, h.id());
    let (before, after) = within(h.result()).await.unwrap();
    assert!(after.duration_since(before).unwrap() >= Duration::from_millis(400));
    rt.shutdown().await.unwrap();
}
