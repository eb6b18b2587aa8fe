//! Results that arrive after their instance finished are dropped and leave
//! the instance as it ended.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common::{builder, db, has, until, within};
use durable::history::Event;
use durable::{activity, orchestrator, Context, Either, RuntimeStatus};
use tokio::sync::Notify;

/// Opened by the test once it has seen the instance finish.
static GATE_OPEN: AtomicBool = AtomicBool::new(false);
static GATE: Notify = Notify::const_new();
/// Attempts of `slow` that returned their value.
static RETURNED: AtomicU32 = AtomicU32::new(0);

/// Returns only after the test opened the gate: its result is late by
/// construction, not by a guess about how long the timer takes.
#[activity]
async fn slow(x: u64) -> u64 {
    loop {
        let opened = GATE.notified();
        if GATE_OPEN.load(Ordering::SeqCst) {
            break;
        }
        opened.await;
    }
    RETURNED.fetch_add(1, Ordering::SeqCst);
    x
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
    // The activity cannot return yet, so the timer wins.
    assert_eq!(within(h.result()).await.unwrap(), "timer 7");
    let ended = client.history(h.id()).await.unwrap();
    assert!(
        has(&ended, |e| matches!(e, Event::ActivityScheduled { .. }))
            && has(&ended, |e| matches!(e, Event::TimerFired { .. })),
        "the activity and the timer raced, and the timer won: {ended:?}"
    );
    assert_eq!(RETURNED.load(Ordering::SeqCst), 0, "no result came first");

    // Now the losing activity finishes, after its instance did.
    GATE_OPEN.store(true, Ordering::SeqCst);
    GATE.notify_waiters();
    until("the losing activity to return", || async {
        (RETURNED.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    // Its result is handled once nothing is left queued for the instance:
    // no message, no task.
    let conn = rusqlite::Connection::open(&db.path).unwrap();
    until("the late result to be handled", || async {
        let left: i64 = conn
            .query_row(
                "SELECT (SELECT count(*) FROM tasks WHERE instance = ?1) \
                      + (SELECT count(*) FROM messages WHERE instance = ?1)",
                [h.id()],
                |r| r.get(0),
            )
            .unwrap();
        (left == 0).then_some(())
    })
    .await;

    let history = client.history(h.id()).await.unwrap();
    assert_eq!(history, ended, "the late result was dropped, not recorded");
    assert!(
        !has(&history, |e| matches!(e, Event::ActivityCompleted { .. })),
        "{history:?}"
    );
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
