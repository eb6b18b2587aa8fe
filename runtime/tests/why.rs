//! "Why is it stuck?": `Client::waiting_on` names what an instance waits
//! on, with source lines, and events that arrived under similar names.

mod common;

use std::time::Duration;

use common::{builder, db, has, history_until, until, within, Gate};
use durable::history::Event;
use durable::{activity, orchestrator, Blocker, Context, RuntimeStatus};

static SLOW: Gate = Gate::new();

#[activity]
async fn slow(x: u64) -> u64 {
    SLOW.pass().await;
    x
}

#[activity]
async fn quick(x: u64) -> u64 {
    x + 1
}

/// Waits for an approval, a day at most, while a slow call runs.
#[orchestrator]
async fn approve(ctx: Context, x: u64) -> u64 {
    let call = ctx.call(slow, x);
    let answer = durable::select(
        ctx.wait_event::<bool>("approval"),
        ctx.sleep(Duration::from_secs(86_400)),
    );
    let (n, _) = durable::join(call, answer).await;
    n.unwrap_or(0)
}

#[orchestrator]
async fn waits_for_go(ctx: Context, x: u64) -> u64 {
    let _: () = ctx.wait_event("go").await;
    x
}

#[orchestrator]
async fn parent(ctx: Context, x: u64) -> u64 {
    ctx.call_child(waits_for_go, x).await.unwrap_or(0)
}

/// Version 1 of `flow` calls `quick`, then waits.
#[orchestrator(name = "flow")]
async fn flow_v1(ctx: Context, x: u64) -> u64 {
    let y = ctx.call(quick, x).await.unwrap_or(0);
    let _: () = ctx.wait_event("go").await;
    y
}

/// An incompatible change: `slow` first.
#[orchestrator(name = "flow")]
async fn flow_changed(ctx: Context, x: u64) -> u64 {
    let y = ctx.call(slow, x).await.unwrap_or(0);
    let _: () = ctx.wait_event("go").await;
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_the_event_timer_and_call_it_waits_on_and_a_misspelt_event() {
    let db = db();
    let rt = builder(&db)
        .activity(slow)
        .orchestrator(approve)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(approve, 7).await.unwrap();
    // The sender misspells the event: it arrives, and nothing takes it.
    client.raise_event(h.id(), "aproval", true).await.unwrap();
    history_until(&client, h.id(), "the misspelt event", |h| {
        has(
            h,
            |e| matches!(e, Event::EventRaised { name, .. } if name == "aproval"),
        )
    })
    .await;

    let blockers = within(client.waiting_on(h.id())).await.unwrap();
    let text: Vec<String> = blockers.iter().map(ToString::to_string).collect();
    assert!(
        blockers.iter().any(|b| matches!(b,
            Blocker::Event { name, similar } if name == "approval" && similar == &["aproval".to_owned()])),
        "{text:#?}"
    );
    assert!(
        blockers.iter().any(|b| matches!(b,
            Blocker::Activity { name, site, .. } if name == "slow" && site.contains("why.rs:"))),
        "{text:#?}"
    );
    assert!(
        blockers.iter().any(|b| matches!(b,
            Blocker::Timer { site, fires_at, .. }
                if site.contains("why.rs:") && *fires_at > std::time::SystemTime::now() + Duration::from_secs(86_000))),
        "{text:#?}"
    );
    assert_eq!(blockers.len(), 3, "{text:#?}");

    client.raise_event(h.id(), "approval", true).await.unwrap();
    SLOW.open();
    assert_eq!(within(h.result()).await.unwrap(), 7);
    assert!(client.waiting_on(h.id()).await.unwrap().is_empty());
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_a_child_a_suspension_and_an_unknown_id() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(parent)
        .orchestrator(waits_for_go)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let p = client.start(parent, 1).await.unwrap();
    let history = history_until(&client, p.id(), "the child call", |h| {
        has(h, |e| matches!(e, Event::ChildScheduled { .. }))
    })
    .await;
    let child = history
        .iter()
        .find_map(|r| match &r.event {
            Event::ChildScheduled { id, .. } => Some(id.clone()),
            _ => None,
        })
        .unwrap();
    let blockers = client.waiting_on(p.id()).await.unwrap();
    assert!(
        matches!(&blockers[..], [Blocker::Child { id, name, site, .. }]
            if *id == child && name == "waits_for_go" && site.contains("why.rs:")),
        "{blockers:?}"
    );
    // The child waits for `go`.
    until("the child to wait", || async {
        let b = client.waiting_on(&child).await.unwrap();
        matches!(&b[..], [Blocker::Event { name, .. }] if name == "go").then_some(())
    })
    .await;

    client
        .suspend(&child, "holding for the audit")
        .await
        .unwrap();
    let blockers = client.waiting_on(&child).await.unwrap();
    assert!(
        matches!(&blockers[0], Blocker::Suspended { reason } if reason == "holding for the audit"),
        "{blockers:?}"
    );
    assert!(matches!(
        client.waiting_on("nobody").await,
        Err(durable::Error::InstanceNotFound { .. })
    ));
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_instance_names_both_call_sites() {
    let db = db();
    let rt = builder(&db)
        .activity(quick)
        .orchestrator(flow_v1)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(flow_v1, 1).await.unwrap();
    history_until(&client, h.id(), "the first call's result", |h| {
        has(h, |e| matches!(e, Event::ActivityCompleted { .. }))
    })
    .await;
    rt.shutdown().await.unwrap();

    // The incompatible deploy parks it on its next turn.
    let rt = builder(&db)
        .activity(quick)
        .activity(slow)
        .orchestrator(flow_changed)
        .cache_size(0)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    client.raise_event(h.id(), "go", ()).await.unwrap();
    until("the instance to be parked", || async {
        let s = client.status(h.id()).await.unwrap();
        (s.runtime_status == RuntimeStatus::Stuck).then_some(())
    })
    .await;
    let blockers = client.waiting_on(h.id()).await.unwrap();
    let Some(Blocker::Parked { failure }) = blockers.first() else {
        panic!("{blockers:?}");
    };
    assert!(failure.message.contains("quick"), "{}", failure.message);
    assert!(failure.message.contains("slow"), "{}", failure.message);
    assert!(
        failure.message.matches("why.rs:").count() >= 2,
        "{}",
        failure.message
    );
    rt.shutdown().await.unwrap();
}

#[activity]
async fn always_down(x: u64) -> Result<u64, String> {
    Err(format!("service down for {x}"))
}

/// Retries an hour apart: after the first failure it waits out the backoff.
#[orchestrator]
async fn retries_hourly(ctx: Context, x: u64) -> u64 {
    let policy = durable::RetryPolicy::attempts(5)
        .backoff(Duration::from_secs(3_600))
        .max_backoff(Duration::from_secs(3_600))
        .jitter(0.0);
    ctx.call_with_retry(always_down, x, policy)
        .await
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_activity_shows_its_failed_attempts_and_when_it_tries_again() {
    let db = db();
    let rt = builder(&db)
        .activity(always_down)
        .orchestrator(retries_hourly)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(retries_hourly, 3).await.unwrap();
    let blocker = until("the first attempt to fail", || async {
        let blockers = client.waiting_on(h.id()).await.unwrap();
        blockers
            .into_iter()
            .find(|b| matches!(b, Blocker::Activity { failures, .. } if *failures == 1))
    })
    .await;
    let Blocker::Activity {
        name,
        attempts,
        running,
        next_attempt,
        last_error,
        ..
    } = &blocker
    else {
        unreachable!()
    };
    assert_eq!(name, "always_down");
    assert_eq!(*attempts, 1);
    assert!(!running);
    match last_error {
        Some(durable::history::ActivityFailure::Error(e)) => {
            assert_eq!(e.json(), "\"service down for 3\"");
        }
        other => panic!("the attempt's error, not {other:?}"),
    }
    let next = next_attempt.expect("the next attempt's time");
    assert!(
        next > std::time::SystemTime::now() + Duration::from_secs(3_000),
        "{blocker}"
    );
    let text = blocker.to_string();
    assert!(
        text.contains("1 failed attempts")
            && text.contains("last error: \"service down for 3\"")
            && text.contains("next attempt at"),
        "{text}"
    );
    let json = serde_json::to_value(&blocker).unwrap();
    assert_eq!(json["kind"], "activity");
    assert_eq!(json["failures"], 1);
    assert_eq!(json["last_error"], "\"service down for 3\"");
    assert!(
        json["next_attempt"].as_str().unwrap().ends_with('Z'),
        "{json}"
    );
    rt.shutdown().await.unwrap();
}

static NEVER: Gate = Gate::new();

#[activity]
async fn hangs(x: u64) -> u64 {
    NEVER.pass().await;
    x
}

/// Races a call that never ends against `skip`, then waits for `done`.
#[orchestrator]
async fn races(ctx: Context, x: u64) -> u64 {
    let _ = durable::select(ctx.call(hangs, x), ctx.wait_event::<()>("skip")).await;
    let _: () = ctx.wait_event("done").await;
    x
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_lost_a_race_is_not_waited_on() {
    let db = db();
    let rt = builder(&db)
        .activity(hangs)
        .orchestrator(races)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(races, 1).await.unwrap();
    history_until(&client, h.id(), "the call", |h| {
        has(h, |e| matches!(e, Event::ActivityScheduled { .. }))
    })
    .await;
    let before = client.waiting_on(h.id()).await.unwrap();
    assert!(
        before.iter().any(|b| matches!(b, Blocker::Activity { .. })),
        "{before:?}"
    );
    client.raise_event(h.id(), "skip", ()).await.unwrap();
    history_until(&client, h.id(), "the skip", |h| {
        has(h, |e| matches!(e, Event::EventRaised { .. }))
    })
    .await;
    let after = until("the race to be decided", || async {
        let b = client.waiting_on(h.id()).await.unwrap();
        b.iter()
            .any(|b| matches!(b, Blocker::Event { name, .. } if name == "done"))
            .then_some(b)
    })
    .await;
    assert!(
        matches!(&after[..], [Blocker::Event { name, .. }] if name == "done"),
        "only `done`, not the call that lost: {after:?}"
    );
    NEVER.open();
    rt.shutdown().await.unwrap();
}
