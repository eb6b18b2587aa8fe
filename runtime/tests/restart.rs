//! A runtime shut down while instances wait on timers, events and
//! activities, then started again on the same file, finishes every instance
//! with the right result and loses no activity.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::{builder, db, within, Db};
use durable::{activity, orchestrator, ActivityInfo, Context, Runtime};

/// Completed attempts by idempotency key, across both runtimes.
static DONE: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);
/// Attempts started, to see that the slow ones were cut off and re-run.
static STARTED: AtomicU64 = AtomicU64::new(0);

#[activity]
async fn slow_add(x: u64) -> u64 {
    STARTED.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let key = ActivityInfo::current()
        .expect("runs under a runtime")
        .idempotency_key();
    *DONE
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_default() += 1;
    x + 1
}

#[orchestrator]
async fn waits_on_activity(ctx: Context, x: u64) -> u64 {
    let a = ctx.call(slow_add, x).await.unwrap_or(0);
    ctx.call(slow_add, a).await.unwrap_or(0)
}

#[orchestrator]
async fn waits_on_timer(ctx: Context, x: u64) -> u64 {
    ctx.sleep(Duration::from_millis(500)).await;
    x * 10
}

#[orchestrator]
async fn waits_on_event(ctx: Context, x: u64) -> u64 {
    let y: u64 = ctx.wait_event("y").await;
    x + y
}

async fn start(db: &Db) -> Runtime {
    builder(db)
        .activity(slow_add)
        .orchestrator(waits_on_activity)
        .orchestrator(waits_on_timer)
        .orchestrator(waits_on_event)
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_waiting_at_shutdown_finish_after_a_restart() {
    let db = db();
    let rt = start(&db).await;
    let client = rt.client();
    let mut ids = Vec::new();
    for i in 0..5u64 {
        ids.push((
            "a",
            client
                .start(waits_on_activity, i)
                .await
                .unwrap()
                .id()
                .to_owned(),
            i + 2,
        ));
        ids.push((
            "t",
            client
                .start(waits_on_timer, i)
                .await
                .unwrap()
                .id()
                .to_owned(),
            i * 10,
        ));
        ids.push((
            "e",
            client
                .start(waits_on_event, i)
                .await
                .unwrap()
                .id()
                .to_owned(),
            i + 100,
        ));
    }
    // Stop while the first activities run, the timers wait and the events
    // have not come.
    tokio::time::sleep(Duration::from_millis(150)).await;
    rt.shutdown().await.unwrap();
    let started_before = STARTED.load(Ordering::SeqCst);
    assert!(started_before >= 5, "the first activities were running");

    let rt = start(&db).await;
    let client = rt.client();
    for (kind, id, _) in &ids {
        if *kind == "e" {
            client.raise_event(id, "y", 100u64).await.unwrap();
        }
    }
    for (kind, id, want) in &ids {
        let got = match *kind {
            "a" => within(client.handle(waits_on_activity, id.as_str()).result()).await,
            "t" => within(client.handle(waits_on_timer, id.as_str()).result()).await,
            _ => within(client.handle(waits_on_event, id.as_str()).result()).await,
        };
        assert_eq!(got.unwrap(), *want, "instance {id} ({kind})");
    }
    let done = DONE.lock().unwrap().clone().unwrap_or_default();
    // Two calls per activity instance, each completed (at least once).
    assert_eq!(done.len(), 10, "every call ran: {done:?}");
    rt.shutdown().await.unwrap();
}
