//! Chaining activities, the issue's full pipeline, and history shape.

mod common;

use std::time::Duration;

use common::{builder, db, within};
use durable::history::Event;
use durable::{activity, orchestrator, Context, RuntimeStatus};

#[activity]
async fn double(x: u64) -> u64 {
    x * 2
}

#[activity]
async fn check(x: u64) -> Result<u64, String> {
    if x < 100 {
        Ok(x)
    } else {
        Err(format!("{x} too big"))
    }
}

#[orchestrator]
async fn pipeline(ctx: Context, x: u64) -> Result<u64, String> {
    let a = ctx.call(double, x).await.map_err(|e| e.to_string())?;
    let b = ctx.call(check, a).await.map_err(|e| e.to_string())?;
    ctx.sleep(Duration::from_millis(20)).await;
    let bonus: u64 = ctx.wait_event("bonus").await;
    let parts = durable::join_all((0..10).map(|i| ctx.call(double, i))).await;
    let sum: u64 = parts.into_iter().map(|r| r.unwrap()).sum();
    Ok(b + bonus + sum)
}

#[orchestrator]
async fn chain(ctx: Context, x: u64) -> u64 {
    let mut v = x;
    for _ in 0..5 {
        v = ctx.call(double, v).await.unwrap_or(0);
    }
    v
}

#[tokio::test]
async fn a_chain_passes_each_result_to_the_next_step() {
    let db = db();
    let rt = builder(&db)
        .activity(double)
        .orchestrator(chain)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(chain, 3).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), 96);
    let status = h.status().await.unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    assert_eq!(status.output::<u64>().unwrap(), Some(96));
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_issue_pipeline_runs_end_to_end() {
    let db = db();
    let rt = builder(&db)
        .activity(double)
        .activity(check)
        .orchestrator(pipeline)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let handle = client.start(pipeline, 21).await.unwrap();
    let other = client
        .start_with_id(pipeline, "order-42", 60)
        .await
        .unwrap();
    let same = client.handle(pipeline, "order-42");
    client
        .raise_event(handle.id(), "bonus", &1u64)
        .await
        .unwrap();
    let out: Result<u64, String> = within(handle.result()).await.unwrap();
    assert_eq!(out, Ok(42 + 1 + 90));
    // 60 doubles to 120, which `check` refuses: the orchestrator's own Err.
    let refused = within(same.result()).await.unwrap();
    assert_eq!(refused, Err("120 too big".to_owned()));
    let status = client.status(other.id()).await.unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Failed);
    assert!(
        status.failure.is_none(),
        "an Err value is an output, not a crash"
    );
    assert!(status.updated_at >= status.created_at);
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn history_has_every_event_once_in_order() {
    let db = db();
    let rt = builder(&db)
        .activity(double)
        .orchestrator(chain)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(chain, 1).await.unwrap();
    within(h.result()).await.unwrap();
    let hist = rt.client().history(h.id()).await.unwrap();
    for (i, r) in hist.iter().enumerate() {
        assert_eq!(r.index, i as u64);
    }
    let scheduled = hist
        .iter()
        .filter(|r| matches!(r.event, Event::ActivityScheduled { .. }))
        .count();
    let completed = hist
        .iter()
        .filter(|r| matches!(r.event, Event::ActivityCompleted { .. }))
        .count();
    assert_eq!((scheduled, completed), (5, 5));
    assert!(matches!(hist.first().unwrap().event, Event::Started { .. }));
    assert!(matches!(
        hist.last().unwrap().event,
        Event::Completed { .. }
    ));
    let turns: Vec<u64> = hist.iter().map(|r| r.turn).collect();
    assert!(turns.windows(2).all(|w| w[0] <= w[1]));
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn with_no_cache_every_turn_replays_from_history_to_the_same_result() {
    let db = db();
    let rt = builder(&db)
        .cache_size(0)
        .activity(double)
        .activity(check)
        .orchestrator(pipeline)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(pipeline, 7).await.unwrap();
    client.raise_event(h.id(), "bonus", 5u64).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), Ok(14 + 5 + 90));
    rt.shutdown().await.unwrap();
}
