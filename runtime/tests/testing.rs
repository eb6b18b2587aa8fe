//! The test kit: a virtual clock that skips what every instance waits for,
//! moves when told, and activities replaced by closures.

use std::time::{Duration, UNIX_EPOCH};

use durable::history::{HistoryRecord, Payload};
use durable::store::{Names, NewInstance, NewTask, SqliteStore, Store, TurnCommit};
use durable::testing::TestRuntime;
use durable::{activity, orchestrator, select, Context, Either, Error, RetryPolicy, Runtime};

#[orchestrator]
async fn month(ctx: Context) -> (u64, u64) {
    let before = ctx.now();
    ctx.sleep(Duration::from_secs(30 * 86_400)).await;
    let after = ctx.now();
    let secs = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    (secs(before), secs(after))
}

#[tokio::test]
async fn a_thirty_day_timer_finishes_at_once_on_the_virtual_clock() {
    let real = std::time::Instant::now();
    let test = TestRuntime::start(Runtime::builder().orchestrator(month))
        .await
        .unwrap();
    let start = test.now();
    let h = test.client().start(month, ()).await.unwrap();
    let (before, after) = test.wait(&h).await.unwrap();
    assert!(after - before >= 30 * 86_400, "{before} -> {after}");
    assert!(test.now().duration_since(start).unwrap() >= Duration::from_secs(30 * 86_400));
    println!("30 virtual days in {:?} of real time", real.elapsed());
    test.shutdown().await.unwrap();
}

#[activity]
async fn poll_job(hour: u64) -> bool {
    hour >= 999
}

/// Polls once an hour, continuing as new each time, until the job is done.
#[orchestrator]
async fn hourly(ctx: Context, hour: u64) -> u64 {
    if ctx.call(poll_job, hour).await.unwrap_or(false) {
        return hour;
    }
    ctx.sleep(Duration::from_secs(3_600)).await;
    ctx.continue_as_new(hour + 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_of_a_thousand_hourly_polls_runs_on_the_virtual_clock() {
    let real = std::time::Instant::now();
    let test = TestRuntime::start(Runtime::builder().activity(poll_job).orchestrator(hourly))
        .await
        .unwrap();
    let start = test.now();
    let h = test.client().start(hourly, 0).await.unwrap();
    assert_eq!(test.wait(&h).await.unwrap(), 999);
    let waited = test.now().duration_since(start).unwrap();
    assert!(waited >= Duration::from_secs(999 * 3_600), "{waited:?}");
    println!("1,000 hourly polls in {:?} of real time", real.elapsed());
    test.shutdown().await.unwrap();
}

/// An approval raced against a one-hour deadline.
#[orchestrator]
async fn approval(ctx: Context) -> String {
    match select(
        ctx.wait_event::<String>("answer"),
        ctx.sleep(Duration::from_secs(3_600)),
    )
    .await
    {
        Either::Left(answer) => answer,
        Either::Right(()) => "expired".to_owned(),
    }
}

#[tokio::test]
async fn time_moves_when_the_test_says_so() {
    let test = TestRuntime::start(Runtime::builder().orchestrator(approval))
        .await
        .unwrap();
    let client = test.client();
    let answered = client.start(approval, ()).await.unwrap();
    let expired = client.start(approval, ()).await.unwrap();
    test.settle().await.unwrap();
    // 59 minutes: neither deadline has passed.
    test.advance(Duration::from_secs(59 * 60));
    test.settle().await.unwrap();
    assert!(!client
        .status(answered.id())
        .await
        .unwrap()
        .runtime_status
        .is_finished());
    client
        .raise_event(answered.id(), "answer", "yes".to_owned())
        .await
        .unwrap();
    test.settle().await.unwrap();
    assert_eq!(answered.result().await.unwrap(), "yes");
    assert!(!client
        .status(expired.id())
        .await
        .unwrap()
        .runtime_status
        .is_finished());
    // Two more minutes: the other one's deadline passes. No `wait` here:
    // it would skip to the deadline by itself.
    test.advance(Duration::from_secs(120));
    test.settle().await.unwrap();
    assert!(client
        .status(expired.id())
        .await
        .unwrap()
        .runtime_status
        .is_finished());
    assert_eq!(expired.result().await.unwrap(), "expired");
    test.shutdown().await.unwrap();
}

#[activity]
async fn charge(cents: u64) -> Result<String, String> {
    Err(format!("no payment provider in tests ({cents})"))
}

#[orchestrator]
async fn pay(ctx: Context, cents: u64) -> Result<String, String> {
    ctx.call(charge, cents).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn an_activity_is_replaced_by_a_closure_in_one_test() {
    let test = TestRuntime::start(Runtime::builder().orchestrator(pay).override_activity(
        charge,
        |cents| async move { Ok(format!("receipt-{cents}")) },
    ))
    .await
    .unwrap();
    let h = test.client().start(pay, 250).await.unwrap();
    assert_eq!(test.wait(&h).await.unwrap(), Ok("receipt-250".to_owned()));
    test.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_override_registered_before_its_activity_keeps_the_override() {
    let builder = Runtime::builder()
        .orchestrator(pay)
        .override_activity(
            charge,
            |cents| async move { Ok(format!("receipt-{cents}")) },
        )
        .activity(charge);
    let test = TestRuntime::start(builder).await.unwrap();
    let h = test.client().start(pay, 250).await.unwrap();
    assert_eq!(test.wait(&h).await.unwrap(), Ok("receipt-250".to_owned()));
    test.shutdown().await.unwrap();
}

#[orchestrator]
async fn waits_for_go(ctx: Context) -> u64 {
    ctx.wait_event("go").await
}

#[tokio::test]
async fn waiting_for_an_event_nobody_raises_is_an_error_not_a_hang() {
    let test = TestRuntime::start(Runtime::builder().orchestrator(waits_for_go))
        .await
        .unwrap();
    let h = test.client().start(waits_for_go, ()).await.unwrap();
    let err = test.wait(&h).await.unwrap_err();
    assert!(matches!(err, Error::WaitsForever { .. }), "{err}");
    test.shutdown().await.unwrap();
}

fn json(text: &str) -> Payload {
    serde_json::from_str(text).expect("valid JSON")
}

/// A database where another process has work due: a start of an
/// orchestrator this test does not register, a call of an activity it does
/// not register, and an instance of its own orchestrator that the other
/// process holds.
fn a_store_shared_with_another_process(path: &std::path::Path) {
    let store = SqliteStore::open(path).unwrap();
    let now = store.now().unwrap();
    let forever = Duration::from_secs(100 * 365 * 86_400);
    store
        .create_instances(&[
            NewInstance::new("theirs", "elsewhere", json("1"), now),
            NewInstance::new("their-call", "elsewhere", json("1"), now),
            NewInstance::new("held", "month", json("null"), now),
        ])
        .unwrap();
    let other = "another-process";
    let taken = store
        .fetch_work(other, forever, 10, Names(&[("elsewhere", 1), ("month", 1)]))
        .unwrap();
    let call = taken.iter().find(|w| w.id == "their-call").unwrap();
    let mut turn = TurnCommit::new("their-call", 0);
    turn.events = vec![HistoryRecord {
        index: 0,
        turn: 0,
        at: now,
        event: call.messages[0].1.clone(),
    }];
    turn.consumed = vec![call.messages[0].0];
    turn.tasks = vec![NewTask::new(
        0,
        "remote_act",
        json("1"),
        RetryPolicy::default(),
    )];
    store.commit_turns(other, forever, &[turn]).unwrap();
    // "theirs" is free again; "held" stays the other process's.
    store
        .commit_turns(other, forever, &[TurnCommit::new("theirs", 0)])
        .unwrap();
}

#[tokio::test]
async fn work_another_process_would_take_does_not_stop_the_virtual_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    a_store_shared_with_another_process(&path);
    let test = TestRuntime::start(Runtime::builder().sqlite(&path).orchestrator(month))
        .await
        .unwrap();
    let h = test.client().start(month, ()).await.unwrap();
    let (before, after) = tokio::time::timeout(Duration::from_secs(30), test.wait(&h))
        .await
        .expect("the wait skips the month")
        .unwrap();
    assert!(after - before >= 30 * 86_400);
    test.shutdown().await.unwrap();
}

#[activity]
async fn slow_lookup(x: u64) -> u64 {
    std::future::pending::<()>().await;
    x
}

/// Gives up on a lookup after a minute, then waits an hour.
#[orchestrator]
async fn lookup_or_give_up(ctx: Context) -> String {
    match select(ctx.call(slow_lookup, 1), ctx.sleep(Duration::from_secs(60))).await {
        Either::Left(_) => "found".to_owned(),
        Either::Right(()) => {
            ctx.sleep(Duration::from_secs(3_600)).await;
            "gave up".to_owned()
        }
    }
}

#[tokio::test]
async fn an_activity_abandoned_for_a_timer_does_not_stop_the_virtual_clock() {
    let test = TestRuntime::start(
        Runtime::builder()
            .activity(slow_lookup)
            .orchestrator(lookup_or_give_up)
            .shutdown_grace(Duration::from_millis(10)),
    )
    .await
    .unwrap();
    let client = test.client();
    let h = client.start(lookup_or_give_up, ()).await.unwrap();
    // The lookup runs (for ever), so time stands still until moved.
    loop {
        let history = client.history(h.id()).await.unwrap();
        if history
            .iter()
            .any(|r| matches!(r.event, durable::history::Event::TimerCreated { .. }))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    test.advance(Duration::from_secs(61));
    let out = tokio::time::timeout(Duration::from_secs(30), test.wait(&h))
        .await
        .expect("the wait skips the hour")
        .unwrap();
    assert_eq!(out, "gave up");
    test.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_its_own_clock_is_refused_not_run_on_the_wrong_time() {
    let store = SqliteStore::open(":memory:").unwrap();
    let refused = TestRuntime::start(Runtime::builder().orchestrator(month).store(store)).await;
    match refused {
        Err(Error::InvalidSetting { setting, reason }) => {
            assert_eq!(setting, "store");
            assert!(reason.contains(".sqlite(path)"), "{reason}");
        }
        other => panic!("expected InvalidSetting, got {other:?}"),
    }
    // A SQLite file follows the virtual clock.
    let dir = tempfile::tempdir().unwrap();
    let test = TestRuntime::start(
        Runtime::builder()
            .orchestrator(month)
            .sqlite(dir.path().join("t.db")),
    )
    .await
    .unwrap();
    let h = test.client().start(month, ()).await.unwrap();
    test.wait(&h).await.unwrap();
    test.shutdown().await.unwrap();
}
