//! Starting with options: a scheduled start, and the policy for an id that
//! is taken (fail, use the existing instance, replace a finished one).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{builder, db, within};
use durable::{orchestrator, Context, Error, IfExists, RuntimeStatus, StartOptions};

#[orchestrator]
async fn stamp(ctx: Context, x: u64) -> (u64, u128) {
    let at = ctx.now().duration_since(UNIX_EPOCH).unwrap().as_micros();
    (x, at)
}

#[orchestrator]
async fn waits(ctx: Context) -> u64 {
    ctx.wait_event("go").await
}

/// A scheduled start is pending until its time, never runs before it, and
/// survives a restart in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_start_runs_at_its_time_across_a_restart() {
    let db = db();
    let start = || builder(&db).orchestrator(stamp).start();
    let rt = start().await.unwrap();
    let at = SystemTime::now() + Duration::from_millis(400);
    let h = rt
        .client()
        .start_with(stamp, 5, StartOptions::new().id("later").at(at))
        .await
        .unwrap();
    let s = rt.client().status("later").await.unwrap();
    assert_eq!(s.runtime_status, RuntimeStatus::Pending);
    assert_eq!(s.history_len, 0);
    drop(h);
    rt.shutdown().await.unwrap();
    let rt = start().await.unwrap();
    let (x, ran_at) = within(rt.client().handle(stamp, "later").result())
        .await
        .unwrap();
    assert_eq!(x, 5);
    let at = at.duration_since(UNIX_EPOCH).unwrap().as_micros();
    assert!(ran_at >= at, "ran at {ran_at}, scheduled for {at}");
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_existing_makes_a_start_idempotent() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(stamp)
        .orchestrator(waits)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let once = StartOptions::new()
        .id("only-once")
        .if_exists(IfExists::UseExisting);
    let a = client.start_with(stamp, 1, once.clone()).await.unwrap();
    let b = client.start_with(stamp, 2, once.clone()).await.unwrap();
    assert_eq!(a.id(), b.id());
    assert_eq!(
        within(b.result()).await.unwrap().0,
        1,
        "the first input ran"
    );
    // The id belongs to another orchestrator's instance: no handle to it.
    let other = client.start_with(waits, (), once).await.unwrap_err();
    assert!(matches!(other, Error::InstanceExists { .. }), "{other}");
    // The default still fails.
    let dup = client
        .start_with(stamp, 3, StartOptions::new().id("only-once"))
        .await
        .unwrap_err();
    assert!(matches!(dup, Error::InstanceExists { .. }), "{dup}");
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_finished_starts_afresh_only_after_the_end() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(stamp)
        .orchestrator(waits)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let again = StartOptions::new()
        .id("daily")
        .if_exists(IfExists::ReplaceFinished);
    let first = client.start_with(stamp, 1, again.clone()).await.unwrap();
    assert_eq!(within(first.result()).await.unwrap().0, 1);
    let second = client.start_with(stamp, 2, again).await.unwrap();
    assert_eq!(within(second.result()).await.unwrap().0, 2);
    assert_eq!(
        client.history("daily").await.unwrap().len(),
        2,
        "a fresh history"
    );
    // A running instance is not replaced.
    let replace = StartOptions::new()
        .id("running")
        .if_exists(IfExists::ReplaceFinished);
    client.start_with(waits, (), replace.clone()).await.unwrap();
    let err = client.start_with(waits, (), replace).await.unwrap_err();
    assert!(matches!(err, Error::InstanceExists { .. }), "{err}");
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn greets(ctx: Context) -> String {
    ctx.wait_event("name").await
}

/// Regression: an event raised for an instance whose start was still to
/// come ran a turn before its `Started`. Nothing runs before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_raised_before_a_scheduled_start_waits_for_it() {
    let db = db();
    let rt = builder(&db).orchestrator(greets).start().await.unwrap();
    let client = rt.client();
    let at = SystemTime::now() + Duration::from_millis(500);
    let h = client
        .start_with(greets, (), StartOptions::new().at(at))
        .await
        .unwrap();
    client.raise_event(h.id(), "name", "ada").await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), "ada");
    let history = client.history(h.id()).await.unwrap();
    assert!(
        matches!(history[0].event, durable::history::Event::Started { .. }),
        "history begins with Started: {:?}",
        history.iter().map(|r| &r.event).collect::<Vec<_>>()
    );
    let at = at.duration_since(UNIX_EPOCH).unwrap().as_micros();
    assert!(
        u128::try_from(history[0].at).unwrap() >= at,
        "the first turn ran at its time"
    );
    rt.shutdown().await.unwrap();
}
