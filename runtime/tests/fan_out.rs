//! Fan-out / fan-in over many activities.

mod common;

use common::{builder, db, within};
use durable::history::Event;
use durable::{activity, orchestrator, Context};

#[activity]
async fn square(x: u64) -> u64 {
    x * x
}

#[orchestrator]
async fn sum_of_squares(ctx: Context, n: u64) -> u64 {
    let calls = (0..n).map(|i| ctx.call(square, i));
    durable::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("square cannot fail"))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_activities_fan_out_and_join() {
    let db = db();
    let rt = builder(&db)
        .activity(square)
        .orchestrator(sum_of_squares)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(sum_of_squares, 1000).await.unwrap();
    let expected: u64 = (0..1000u64).map(|i| i * i).sum();
    assert_eq!(within(h.result()).await.unwrap(), expected);
    let hist = rt.client().history(h.id()).await.unwrap();
    let completed = hist
        .iter()
        .filter(|r| matches!(r.event, Event::ActivityCompleted { .. }))
        .count();
    assert_eq!(completed, 1000, "every call completed exactly once");
    rt.shutdown().await.unwrap();
}
