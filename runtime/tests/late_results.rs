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
    until("the late result to be handled", || async {
        let left = common::number(
            &db,
            "SELECT (SELECT count(*) FROM tasks WHERE instance = ?1) \
                  + (SELECT count(*) FROM messages WHERE instance = ?1)",
            &[h.id()],
        );
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

static RACE_TOLD: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
static RACE_STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Runs until it is told nobody waits for it.
#[durable::activity]
async fn slow_to_lose() -> u32 {
    let info = durable::ActivityInfo::current().expect("in a runtime");
    RACE_STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    info.cancelled().await;
    RACE_TOLD.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    1
}

#[durable::orchestrator]
async fn call_loses_to_event(ctx: durable::Context) -> String {
    let won = match durable::select(
        ctx.call(slow_to_lose, ()),
        ctx.wait_event::<String>("first"),
    )
    .await
    {
        durable::Either::Left(_) => "the call".to_owned(),
        durable::Either::Right(name) => name,
    };
    let then: String = ctx.wait_event("then").await;
    format!("{won} {then}")
}

/// The call that lost a race is cancelled: its running attempt is told,
/// its result never reaches the code, and it is not attempted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_lost_a_race_is_cancelled() {
    let db = common::db();
    let rt = common::builder(&db)
        .activity(slow_to_lose)
        .orchestrator(call_loses_to_event)
        .activity_lease(std::time::Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(call_loses_to_event, ()).await.unwrap();
    common::until("the call to run", || async {
        (RACE_STARTED.load(std::sync::atomic::Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    client
        .raise_event(h.id(), "first", "the event")
        .await
        .unwrap();
    common::until("the attempt to be told", || async {
        (RACE_TOLD.load(std::sync::atomic::Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    // Its result has come and gone: the task is not queued again.
    common::until("the task to be gone", || async {
        let n = common::number(&db, "SELECT count(*) FROM tasks", &[]);
        (n == 0).then_some(())
    })
    .await;
    client.raise_event(h.id(), "then", "done").await.unwrap();
    assert_eq!(common::within(h.result()).await.unwrap(), "the event done");
    assert_eq!(
        RACE_STARTED.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "not attempted again"
    );
    rt.shutdown().await.unwrap();
}
