//! Terminating and finishing instances: what they had queued never runs,
//! and a parked (stuck) instance can be ended by its operator.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{builder, db, until, within, Gate};
use durable::{activity, orchestrator, ActivityInfo, Context, Error, FailureKind, RuntimeStatus};

static STARTED: AtomicU32 = AtomicU32::new(0);
static GATE: Gate = Gate::new();

/// Holds its slot until the test opens the gate.
#[activity]
async fn held(x: u64) -> u64 {
    STARTED.fetch_add(1, Ordering::SeqCst);
    GATE.pass().await;
    x
}

#[orchestrator]
async fn six_way(ctx: Context) -> u64 {
    let calls = (0..6).map(|i| ctx.call(held, i));
    durable::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap_or(0))
        .sum()
}

fn queued_tasks(db: &common::Db, id: &str) -> i64 {
    common::number(db, "SELECT count(*) FROM tasks WHERE instance = ?1", &[id])
}

/// Regression: terminating an instance left its queued activity calls in
/// the store (every task was leased at creation), and they all ran after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_an_instance_drops_its_queued_activity_calls() {
    let db = db();
    let rt = builder(&db)
        .activity(held)
        .orchestrator(six_way)
        .max_concurrent_activities(1)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(six_way, ()).await.unwrap();
    until("the first call to run", || async {
        (STARTED.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert_eq!(queued_tasks(&db, h.id()), 6, "one runs, five wait");
    client.terminate(h.id(), "enough").await.unwrap();
    let err = within(h.result()).await.unwrap_err();
    assert!(matches!(err, Error::Terminated { .. }), "{err}");
    assert_eq!(
        queued_tasks(&db, h.id()),
        0,
        "nothing of the instance is left to run"
    );
    // The running attempt finishes; its result is dropped, and nothing else
    // starts even with the slot free again.
    GATE.open();
    rt.shutdown().await.unwrap();
    assert_eq!(
        STARTED.load(Ordering::SeqCst),
        1,
        "the queued five never ran"
    );
    let status = common::store(&db);
    let s = status.status(h.id()).unwrap().unwrap();
    assert_eq!(s.runtime_status, RuntimeStatus::Terminated);
}

#[activity]
async fn step_a() {}

#[activity]
async fn step_b() {}

#[orchestrator(name = "flip")]
async fn flip_v1(ctx: Context) {
    ctx.call(step_a, ()).await.unwrap();
    ctx.wait_event::<()>("go").await;
}

#[orchestrator(name = "flip")]
async fn flip_v2(ctx: Context) {
    ctx.call(step_b, ()).await.unwrap();
    ctx.wait_event::<()>("go").await;
}

/// Regression: `terminate` on a stuck instance returned `Ok` and did
/// nothing, and `result()` waited forever. Terminating is the operator's
/// way out of a parked instance: it ends without its code running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_a_stuck_instance_ends_it() {
    let db = db();
    let rt = builder(&db)
        .activity(step_a)
        .orchestrator(flip_v1)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(flip_v1, ()).await.unwrap();
    common::history_until(&client, h.id(), "the first step to complete", |h| {
        common::has(h, |e| {
            matches!(e, durable::history::Event::ActivityCompleted { .. })
        })
    })
    .await;
    rt.shutdown().await.unwrap();
    // A deploy changed the code under the same name: replay diverges.
    let rt = builder(&db)
        .activity(step_b)
        .orchestrator(flip_v2)
        .stuck_retry(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let client = rt.client();
    client.raise_event(h.id(), "go", ()).await.unwrap();
    let stuck = until("the instance to be parked", || async {
        let s = client.status(h.id()).await.unwrap();
        (s.runtime_status == RuntimeStatus::Stuck).then_some(s)
    })
    .await;
    assert_eq!(
        stuck.failure.map(|f| f.kind),
        Some(FailureKind::Nondeterminism)
    );
    client.terminate(h.id(), "operator gave up").await.unwrap();
    let h2 = client.handle(flip_v2, h.id());
    let err = within(h2.result()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Terminated { reason, .. } if reason == "operator gave up"),
        "{err}"
    );
    let history = client.history(h.id()).await.unwrap();
    assert!(
        matches!(
            history.last().map(|r| &r.event),
            Some(durable::history::Event::Terminated { .. })
        ),
        "{history:?}"
    );
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn waits_go(ctx: Context) -> String {
    ctx.wait_event::<String>("go").await
}

fn raise_directly(db: &common::Db, id: &str, events: &[(&str, &str)]) {
    let store = common::store(db);
    for (name, data) in events {
        let terminate = *name == "terminate";
        let event = if terminate {
            durable::history::Event::Terminated {
                reason: (*data).to_owned(),
            }
        } else {
            durable::history::Event::EventRaised {
                name: (*name).to_owned(),
                data: serde_json::from_str(data).unwrap(),
            }
        };
        store.enqueue(id, &event, None, terminate).unwrap();
    }
}

async fn waiting_instance(db: &common::Db) -> String {
    let rt = builder(db).orchestrator(waits_go).start().await.unwrap();
    let client = rt.client();
    let h = client.start(waits_go, ()).await.unwrap();
    until("the wait to be committed", || async {
        let s = client.status(h.id()).await.unwrap();
        (s.runtime_status == RuntimeStatus::Running).then_some(())
    })
    .await;
    rt.shutdown().await.unwrap();
    h.id().to_owned()
}

/// Regression (review): a turn that ends the instance must take every due
/// message, and a fetch took at most one batch of them per instance, so
/// with more than a batch queued the finishing turn was refused forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_more_than_a_batch_of_events_queued_still_finishes() {
    let db = db();
    let id = waiting_instance(&db).await;
    let noise: Vec<String> = (0..600).map(|i| i.to_string()).collect();
    let mut events = vec![("go", "\"yes\"")];
    events.extend(noise.iter().map(|n| ("noise", n.as_str())));
    raise_directly(&db, &id, &events);
    let rt = builder(&db).orchestrator(waits_go).start().await.unwrap();
    let h = rt.client().handle(waits_go, id.as_str());
    assert_eq!(within(h.result()).await.unwrap(), "yes");
    let history = rt.client().history(&id).await.unwrap();
    let recorded = history
        .iter()
        .filter(|r| matches!(&r.event, durable::history::Event::EventRaised { .. }))
        .count();
    assert_eq!(
        recorded, 601,
        "every event a client was told is queued is in history"
    );
    rt.shutdown().await.unwrap();
}

/// Regression (review): an event queued behind a termination was consumed
/// with it and dropped; it is recorded (undelivered) before the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_queued_behind_a_termination_is_recorded() {
    let db = db();
    let id = waiting_instance(&db).await;
    raise_directly(&db, &id, &[("terminate", "stop"), ("other", "1")]);
    let rt = builder(&db).orchestrator(waits_go).start().await.unwrap();
    let h = rt.client().handle(waits_go, id.as_str());
    let err = within(h.result()).await.unwrap_err();
    assert!(matches!(err, Error::Terminated { .. }), "{err}");
    let history = rt.client().history(&id).await.unwrap();
    assert!(
        history.iter().any(
            |r| matches!(&r.event, durable::history::Event::EventRaised { name, .. } if name == "other")
        ),
        "{history:?}"
    );
    assert!(matches!(
        history.last().map(|r| &r.event),
        Some(durable::history::Event::Terminated { .. })
    ));
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn unrelated(_ctx: Context) {}

/// Regression (review): an event raised by a process without the
/// orchestrator was handed to that process's dispatcher, which replayed
/// the instance, could not, and parked it. It now leaves it to a process
/// that has the orchestrator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_raised_by_a_process_without_the_orchestrator_reaches_it() {
    let db = db();
    let us = builder(&db).orchestrator(waits_go).start().await.unwrap();
    let them = builder(&db).orchestrator(unrelated).start().await.unwrap();
    let h = us.client().start(waits_go, ()).await.unwrap();
    until("the wait to be committed", || async {
        let s = us.client().status(h.id()).await.unwrap();
        (s.runtime_status == RuntimeStatus::Running).then_some(())
    })
    .await;
    them.client().raise_event(h.id(), "go", "hi").await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), "hi");
    let history = us.client().history(h.id()).await.unwrap();
    assert!(
        !history
            .iter()
            .any(|r| matches!(r.event, durable::history::Event::Failed { .. })),
        "{history:?}"
    );
    us.shutdown().await.unwrap();
    them.shutdown().await.unwrap();
}

static CANCEL_SEEN: AtomicU32 = AtomicU32::new(0);
static CANCEL_STARTED: AtomicU32 = AtomicU32::new(0);

/// Runs until it is told nobody waits for it any more.
#[activity]
async fn until_cancelled() -> u32 {
    let info = ActivityInfo::current().expect("in a runtime");
    CANCEL_STARTED.fetch_add(1, Ordering::SeqCst);
    info.cancelled().await;
    assert!(info.is_cancelled());
    CANCEL_SEEN.fetch_add(1, Ordering::SeqCst);
    7
}

#[orchestrator]
async fn waits_on_long_work(ctx: Context) -> u32 {
    ctx.call(until_cancelled, ()).await.unwrap_or(0)
}

/// A running attempt learns, through `ActivityInfo`, that its instance was
/// terminated; what it returns then is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_attempt_is_told_when_its_instance_is_terminated() {
    let db = db();
    let rt = builder(&db)
        .activity(until_cancelled)
        .orchestrator(waits_on_long_work)
        .activity_lease(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(waits_on_long_work, ()).await.unwrap();
    until("the attempt to run", || async {
        (CANCEL_STARTED.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    client.terminate(h.id(), "not needed").await.unwrap();
    assert!(matches!(
        within(h.result()).await,
        Err(Error::Terminated { .. })
    ));
    until("the attempt to be told", || async {
        (CANCEL_SEEN.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let history = client.history(h.id()).await.unwrap();
    assert!(
        !history
            .iter()
            .any(|r| matches!(r.event, durable::history::Event::ActivityCompleted { .. })),
        "its late result is dropped"
    );
    rt.shutdown().await.unwrap();
}
