//! Results that arrive after their instance finished are dropped and leave
//! the instance as it ended.

mod common;

use std::time::Duration;

use common::{builder, db, within};
use durable::{activity, orchestrator, Context, Either, RuntimeStatus};

#[activity]
async fn slow(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

#[orchestrator]
async fn race_then_note(ctx: Context) -> String {
    let winner = durable::select(ctx.call(slow, 300), ctx.sleep(Duration::from_millis(10))).await;
    // A decision in the turn that ends the instance.
    let note: u64 = ctx.side_effect(|| 7);
    match winner {
        Either::Left(_) => format!("activity {note}"),
        Either::Right(()) => format!("timer {note}"),
    }
}

#[tokio::test]
async fn a_late_result_for_a_finished_instance_leaves_its_output_alone() {
    let db = db();
    let rt = builder(&db)
        .activity(slow)
        .orchestrator(race_then_note)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(race_then_note, ()).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), "timer 7");
    // The losing activity finishes afterwards; its result must be dropped.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let status = h.status().await.unwrap();
    assert_eq!(
        status.runtime_status,
        RuntimeStatus::Completed,
        "{status:?}"
    );
    assert_eq!(
        status.output::<String>().unwrap().as_deref(),
        Some("timer 7")
    );
    rt.shutdown().await.unwrap();
}
