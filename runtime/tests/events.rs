//! External events: kept when raised early, delivered in order, refused
//! for unknown and finished instances.

mod common;

use std::time::Duration;

use common::{builder, db, find, has, history_until, within};
use durable::history::Event;
use durable::{orchestrator, Context, Either, Error, FailureKind, RuntimeStatus};

/// Takes two `msg` events, but only once `open` has come.
#[orchestrator]
async fn two_events(ctx: Context) -> Vec<String> {
    ctx.wait_event::<()>("open").await;
    let a: String = ctx.wait_event("msg").await;
    let b: String = ctx.wait_event("msg").await;
    vec![a, b]
}

#[orchestrator]
async fn approval(ctx: Context, timeout_ms: u64) -> String {
    let answer = durable::select(
        ctx.wait_event::<bool>("approved"),
        ctx.sleep(Duration::from_millis(timeout_ms)),
    )
    .await;
    match answer {
        Either::Left(true) => "approved".to_owned(),
        Either::Left(false) => "rejected".to_owned(),
        Either::Right(()) => "timed out".to_owned(),
    }
}

#[tokio::test]
async fn events_raised_before_the_wait_are_kept_in_order() {
    let db = db();
    let rt = builder(&db).orchestrator(two_events).start().await.unwrap();
    let client = rt.client();
    let h = client.start(two_events, ()).await.unwrap();
    client.raise_event(h.id(), "msg", "first").await.unwrap();
    client.raise_event(h.id(), "msg", "second").await.unwrap();
    // Both are recorded while the instance still waits for `open`, before
    // anything waits for `msg`.
    let kept = history_until(&client, h.id(), "both events to be recorded", |h| {
        h.iter()
            .filter(|r| matches!(&r.event, Event::EventRaised { name, .. } if name == "msg"))
            .count()
            == 2
    })
    .await;
    assert_eq!(
        h.status().await.unwrap().runtime_status,
        RuntimeStatus::Running,
        "still waiting for `open`: {kept:?}"
    );
    client.raise_event(h.id(), "open", ()).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), vec!["first", "second"]);
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_event_raised_after_the_wait_wakes_it() {
    let db = db();
    let rt = builder(&db).orchestrator(approval).start().await.unwrap();
    let client = rt.client();
    let h = client.start(approval, 60_000).await.unwrap();
    // The turn that starts the wait also starts its timeout timer: once that
    // timer is in history, the instance is committed as waiting.
    let waiting = history_until(&client, h.id(), "the wait to be committed", |h| {
        has(h, |e| matches!(e, Event::TimerCreated { .. }))
    })
    .await;
    assert!(
        !has(&waiting, |e| matches!(e, Event::EventRaised { .. })),
        "no event before it is raised: {waiting:?}"
    );
    assert_eq!(
        h.status().await.unwrap().runtime_status,
        RuntimeStatus::Running
    );
    client.raise_event(h.id(), "approved", &true).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), "approved");
    let history = client.history(h.id()).await.unwrap();
    let wait = find(&history, |e| matches!(e, Event::TimerCreated { .. })).expect("the wait");
    let event = find(&history, |e| matches!(e, Event::EventRaised { .. })).expect("the event");
    assert!(
        event.turn > wait.turn,
        "the event was delivered to a wait already committed: {history:?}"
    );
    assert!(
        !has(&history, |e| matches!(e, Event::TimerFired { .. })),
        "the event, not the timeout, woke the wait: {history:?}"
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_durable_timer_wins_the_race_when_no_event_comes() {
    let db = db();
    let rt = builder(&db).orchestrator(approval).start().await.unwrap();
    let h = rt.client().start(approval, 50).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), "timed out");
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn events_for_unknown_or_finished_instances_are_refused() {
    let db = db();
    let rt = builder(&db).orchestrator(approval).start().await.unwrap();
    let client = rt.client();
    let err = client
        .raise_event("nobody", "approved", &true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InstanceNotFound { ref id } if id == "nobody"),
        "{err}"
    );
    let h = client.start(approval, 10).await.unwrap();
    within(h.result()).await.unwrap();
    let err = client
        .raise_event(h.id(), "approved", &true)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InstanceFinished {
                status: RuntimeStatus::Completed,
                ..
            }
        ),
        "{err}"
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn event_data_of_the_wrong_type_fails_the_instance_clearly() {
    let db = db();
    let rt = builder(&db).orchestrator(approval).start().await.unwrap();
    let client = rt.client();
    let h = client.start(approval, 60_000).await.unwrap();
    client
        .raise_event(h.id(), "approved", "yes please")
        .await
        .unwrap();
    let err = within(h.result()).await.unwrap_err();
    let Error::Failed { failure, .. } = err else {
        panic!("expected a failed instance, got {err}");
    };
    assert_eq!(failure.kind, FailureKind::Payload);
    assert!(failure.message.contains("approved"), "{}", failure.message);
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn asks_for_a_number(ctx: Context) -> String {
    match ctx.try_wait_event::<u32>("n").await {
        Ok(n) => format!("got {n}"),
        Err(e) => format!("refused: {}", e.event),
    }
}

/// Regression: an event whose data did not decode failed the whole
/// instance, and the orchestrator could not catch it. With
/// `try_wait_event` it sees a typed error and decides.
#[tokio::test]
async fn an_event_of_the_wrong_type_reaches_the_orchestrator_as_a_typed_error() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(asks_for_a_number)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(asks_for_a_number, ()).await.unwrap();
    client
        .raise_event(h.id(), "n", "not a number")
        .await
        .unwrap();
    assert_eq!(within(h.result()).await.unwrap(), "refused: n");
    rt.shutdown().await.unwrap();
}
