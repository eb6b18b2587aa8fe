//! Durable timers: never early, and still there after a restart.

mod common;

use std::time::{Duration, SystemTime};

use common::{builder, db, find, has, history_until, within};
use durable::history::{Event, HistoryRecord};
use durable::store::{SqliteStore, Store};
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
        let store = SqliteStore::open(&db.path).unwrap();
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
