//! Durable timers: never early, and still there after a restart.

mod common;

use std::time::{Duration, SystemTime};

use common::{builder, db, find, has, history_until, within};
use durable::history::{Event, HistoryRecord};
use durable::{orchestrator, Context};

#[orchestrator]
async fn nap(ctx: Context, ms: u64) -> (SystemTime, SystemTime) {
    let before = ctx.now();
    ctx.sleep(Duration::from_millis(ms)).await;
    (before, ctx.now())
}

/// The timer's deadline and the time of the turn that delivered it, both in
/// microseconds since the Unix epoch, from a finished `nap`'s history.
fn deadline_and_delivery(history: &[HistoryRecord]) -> (i64, i64) {
    let Some(Event::TimerCreated { fire_at, .. }) =
        find(history, |e| matches!(e, Event::TimerCreated { .. })).map(|r| &r.event)
    else {
        panic!("no timer in {history:?}");
    };
    let fired = find(history, |e| matches!(e, Event::TimerFired { .. }))
        .unwrap_or_else(|| panic!("the timer never fired: {history:?}"));
    (*fire_at, fired.at)
}

fn micros(t: SystemTime) -> i64 {
    i64::try_from(
        t.duration_since(SystemTime::UNIX_EPOCH)
            .expect("after the epoch")
            .as_micros(),
    )
    .expect("fits")
}

#[tokio::test]
async fn a_timer_never_fires_early() {
    let db = db();
    let rt = builder(&db).orchestrator(nap).start().await.unwrap();
    let started = SystemTime::now();
    let h = rt.client().start(nap, 200).await.unwrap();
    let (before, after) = within(h.result()).await.unwrap();
    let history = rt.client().history(h.id()).await.unwrap();
    let (fire_at, delivered) = deadline_and_delivery(&history);
    assert!(
        fire_at >= micros(before) + 200_000,
        "the deadline {fire_at} is 200 ms after the turn that set it, {before:?}"
    );
    assert!(
        delivered >= fire_at,
        "delivered at {delivered}, before its deadline {fire_at}"
    );
    assert!(after.duration_since(before).unwrap() >= Duration::from_millis(200));
    assert!(started.elapsed().unwrap() >= Duration::from_millis(200));
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_timer_survives_a_restart_and_fires_at_its_time() {
    // Long enough that the timer cannot fire between the moment it is seen
    // in history and the shutdown; checked below, not assumed.
    const MS: u64 = 2_000;
    let db = db();
    let rt = builder(&db).orchestrator(nap).start().await.unwrap();
    let client = rt.client();
    let h = client.start(nap, MS).await.unwrap();
    // Stop once the first turn has committed the timer.
    history_until(&client, h.id(), "the timer to be committed", |h| {
        has(h, |e| matches!(e, Event::TimerCreated { .. }))
    })
    .await;
    rt.shutdown().await.unwrap();
    {
        let store = common::store(&db);
        let at_shutdown = store.history(h.id()).unwrap().expect("exists");
        assert!(
            !has(&at_shutdown, |e| matches!(e, Event::TimerFired { .. })),
            "the timer was still pending at shutdown: {at_shutdown:?}"
        );
    }

    let rt = builder(&db).orchestrator(nap).start().await.unwrap();
    let h = rt.client().handle(nap, h.id());
    let (before, after) = within(h.result()).await.unwrap();
    assert!(after.duration_since(before).unwrap() >= Duration::from_millis(MS));
    let history = rt.client().history(h.id()).await.unwrap();
    let (fire_at, delivered) = deadline_and_delivery(&history);
    assert!(
        delivered >= fire_at,
        "delivered at {delivered}, before its deadline {fire_at}"
    );
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn race_then_wait(ctx: Context) -> String {
    let first = match durable::select(
        ctx.wait_event::<String>("go"),
        ctx.sleep(Duration::from_secs(3600)),
    )
    .await
    {
        durable::Either::Left(v) => v,
        durable::Either::Right(()) => "timed out".to_owned(),
    };
    let second: String = ctx.wait_event("again").await;
    format!("{first} {second}")
}

/// The timer that lost a race is cancelled in history and its message
/// deleted, so it never fires into a later turn, across a restart with
/// every turn replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_losing_timer_of_a_race_is_cancelled() {
    let db = db();
    let start = || {
        builder(&db)
            .orchestrator(race_then_wait)
            .cache_size(0)
            .start()
    };
    let rt = start().await.unwrap();
    let client = rt.client();
    let h = client.start(race_then_wait, ()).await.unwrap();
    client.raise_event(h.id(), "go", "won").await.unwrap();
    let history = history_until(&client, h.id(), "the timer to be cancelled", |hist| {
        has(hist, |e| matches!(e, Event::TimerCancelled { .. }))
    })
    .await;
    let Some(Event::TimerCreated { seq, .. }) =
        find(&history, |e| matches!(e, Event::TimerCreated { .. })).map(|r| &r.event)
    else {
        panic!("no timer in {history:?}");
    };
    assert!(has(
        &history,
        |e| matches!(e, Event::TimerCancelled { seq: s } if s == seq)
    ));
    let pending = common::number(
        &db,
        "SELECT count(*) FROM messages WHERE instance = ?1",
        &[h.id()],
    );
    assert_eq!(pending, 0, "the timer's message is gone");
    let id = h.id().to_owned();
    rt.shutdown().await.unwrap();
    let rt = start().await.unwrap();
    let client = rt.client();
    client.raise_event(&id, "again", "twice").await.unwrap();
    let out = within(client.handle(race_then_wait, id.clone()).result()).await;
    assert_eq!(out.unwrap(), "won twice");
    let history = client.history(&id).await.unwrap();
    assert!(!has(&history, |e| matches!(e, Event::TimerFired { .. })));
    rt.shutdown().await.unwrap();
}
