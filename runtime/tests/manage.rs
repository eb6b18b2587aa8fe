//! Managing instances from a client: suspend and resume, purge, and list
//! with filters and continuation tokens.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use common::{builder, db, has, history_until, until, within, Gate};
use durable::history::Event;
use durable::{activity, orchestrator, Context, Error, Query, RuntimeStatus};

static HELD_STARTED: AtomicU32 = AtomicU32::new(0);
static GATE: Gate = Gate::new();

#[activity]
async fn held(x: u64) -> u64 {
    HELD_STARTED.fetch_add(1, Ordering::SeqCst);
    GATE.pass().await;
    x + 1
}

#[orchestrator]
async fn waits(ctx: Context) -> String {
    ctx.wait_event("go").await
}

#[orchestrator]
async fn calls_held(ctx: Context) -> u64 {
    ctx.call(held, 1).await.unwrap_or(0)
}

#[orchestrator]
async fn quick(_ctx: Context, x: u64) -> u64 {
    x
}

/// Runs an instance of `quick` to its end: every round the dispatcher ran
/// before it is done.
async fn barrier(client: &durable::Client) {
    let h = client.start(quick, 7).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_instance_keeps_its_events_until_resumed() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(waits)
        .orchestrator(quick)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(waits, ()).await.unwrap();
    history_until(&client, h.id(), "the instance to wait", |hist| {
        !hist.is_empty()
    })
    .await;
    client.suspend(h.id(), "maintenance").await.unwrap();
    assert_eq!(
        client.status(h.id()).await.unwrap().runtime_status,
        RuntimeStatus::Suspended
    );
    let again = client.suspend(h.id(), "twice").await.unwrap_err();
    assert!(
        matches!(
            again,
            Error::InvalidState {
                status: RuntimeStatus::Suspended,
                operation: "suspend",
                ..
            }
        ),
        "{again}"
    );
    client.raise_event(h.id(), "go", "now").await.unwrap();
    barrier(&client).await;
    let hist = client.history(h.id()).await.unwrap();
    assert!(
        !has(&hist, |e| matches!(e, Event::EventRaised { .. })),
        "no turn ran while suspended"
    );
    assert!(has(
        &hist,
        |e| matches!(e, Event::Suspended { reason } if reason == "maintenance")
    ));
    client.resume(h.id(), "done").await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), "now");
    let hist = client.history(h.id()).await.unwrap();
    assert!(has(
        &hist,
        |e| matches!(e, Event::Resumed { reason } if reason == "done")
    ));
    let late = client.resume(h.id(), "late").await.unwrap_err();
    assert!(
        matches!(
            late,
            Error::InvalidState {
                status: RuntimeStatus::Completed,
                operation: "resume",
                ..
            }
        ),
        "{late}"
    );
    rt.shutdown().await.unwrap();
}

/// An activity running when its instance is suspended finishes; its result
/// waits for the resume, across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_arrives_while_suspended_waits_across_a_restart() {
    let db = db();
    let start = || {
        builder(&db)
            .activity(held)
            .orchestrator(calls_held)
            .orchestrator(quick)
            .start()
    };
    let rt = start().await.unwrap();
    let client = rt.client();
    let h = client.start(calls_held, ()).await.unwrap();
    until("the activity to run", || async {
        (HELD_STARTED.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    client.suspend(h.id(), "hold on").await.unwrap();
    GATE.open();
    // The result is stored as a message for the suspended instance.
    until("the result to be stored", || async {
        let n = common::number(&db, "SELECT count(*) FROM tasks", &[]);
        (n == 0).then_some(())
    })
    .await;
    barrier(&client).await;
    assert!(!has(&client.history(h.id()).await.unwrap(), |e| matches!(
        e,
        Event::ActivityCompleted { .. }
    )));
    let id = h.id().to_owned();
    rt.shutdown().await.unwrap();
    let rt = start().await.unwrap();
    let client = rt.client();
    assert_eq!(
        client.status(&id).await.unwrap().runtime_status,
        RuntimeStatus::Suspended
    );
    client.resume(&id, "go on").await.unwrap();
    let out = within(client.handle(calls_held, id.clone()).result()).await;
    assert_eq!(out.unwrap(), 2);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_instance_can_be_terminated() {
    let db = db();
    let rt = builder(&db).orchestrator(waits).start().await.unwrap();
    let client = rt.client();
    let h = client.start(waits, ()).await.unwrap();
    history_until(&client, h.id(), "the instance to wait", |hist| {
        !hist.is_empty()
    })
    .await;
    client.suspend(h.id(), "hold").await.unwrap();
    client.terminate(h.id(), "give up").await.unwrap();
    assert!(matches!(
        within(h.result()).await,
        Err(Error::Terminated { .. })
    ));
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_finished_instances_only() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(waits)
        .orchestrator(quick)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let running = client.start(waits, ()).await.unwrap();
    let err = client.purge(running.id()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidState {
                operation: "purge",
                ..
            }
        ),
        "{err}"
    );
    let mut done = Vec::new();
    for i in 0..5 {
        let h = client.start(quick, i).await.unwrap();
        within(h.result()).await.unwrap();
        done.push(h.id().to_owned());
    }
    client.purge(&done[0]).await.unwrap();
    assert!(matches!(
        client.status(&done[0]).await,
        Err(Error::InstanceNotFound { .. })
    ));
    assert!(matches!(
        client.history(&done[0]).await,
        Err(Error::InstanceNotFound { .. })
    ));
    assert!(matches!(
        client.purge(&done[0]).await,
        Err(Error::InstanceNotFound { .. })
    ));
    // In bounded batches, oldest first; the running one stays.
    let now = SystemTime::now();
    let first = client.purge_finished(now, 3).await.unwrap();
    assert_eq!(first, done[1..4].to_vec());
    let second = client.purge_finished(now, 3).await.unwrap();
    assert_eq!(second, done[4..].to_vec());
    assert!(client.purge_finished(now, 3).await.unwrap().is_empty());
    assert_eq!(
        client.status(running.id()).await.unwrap().runtime_status,
        RuntimeStatus::Running
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_and_pages_newest_first_while_instances_are_created() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(waits)
        .orchestrator(quick)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let mut quick_ids = Vec::new();
    for i in 0..5 {
        let h = client
            .start_with_id(quick, format!("q-{i}"), i)
            .await
            .unwrap();
        within(h.result()).await.unwrap();
        quick_ids.push(h.id().to_owned());
    }
    for i in 0..3 {
        client
            .start_with_id(waits, format!("w-{i}"), ())
            .await
            .unwrap();
    }
    let ids = |p: &durable::Page| p.instances.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    let completed = client
        .list(&Query::new().statuses([RuntimeStatus::Completed]))
        .await
        .unwrap();
    let mut newest_first = quick_ids.clone();
    newest_first.reverse();
    assert_eq!(ids(&completed), newest_first);
    let by_name = client
        .list(&Query::new().orchestrator("waits"))
        .await
        .unwrap();
    assert_eq!(ids(&by_name), ["w-2", "w-1", "w-0"]);
    let by_prefix = client.list(&Query::new().id_prefix("q-")).await.unwrap();
    assert_eq!(by_prefix.instances.len(), 5);
    // Pages of 3 over every instance; instances created between pages do
    // not shift the pages after.
    let first = client.list(&Query::new().page_size(3)).await.unwrap();
    assert_eq!(ids(&first), ["w-2", "w-1", "w-0"]);
    let token = first.next.clone().expect("more pages");
    client.start_with_id(quick, "newer", 9).await.unwrap();
    let second = client
        .list(&Query::new().page_size(3).after(token))
        .await
        .unwrap();
    assert_eq!(ids(&second), ["q-4", "q-3", "q-2"]);
    let third = client
        .list(
            &Query::new()
                .page_size(3)
                .after(second.next.clone().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(ids(&third), ["q-1", "q-0"]);
    assert!(third.next.is_none(), "the last page");
    // A page size past the largest is the largest, not an overflow.
    let all = client
        .list(&Query::new().page_size(usize::MAX))
        .await
        .unwrap();
    assert_eq!(all.instances.len(), 9);
    assert!(all.next.is_none());
    let bad = client
        .list(&Query::new().after("not a token"))
        .await
        .unwrap_err();
    assert!(matches!(bad, Error::InvalidToken { .. }), "{bad}");
    rt.shutdown().await.unwrap();
}

/// Regression (found by the crash tests): an instance suspended before its
/// first turn recorded `Suspended` before `Started` and never ran after
/// the resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_suspended_before_it_started_runs_once_resumed() {
    let db = db();
    let rt = builder(&db).orchestrator(quick).start().await.unwrap();
    let client = rt.client();
    let options = durable::StartOptions::new()
        .id("p")
        .at(std::time::SystemTime::now() + std::time::Duration::from_millis(300));
    client.start_with(quick, 4, options).await.unwrap();
    assert_eq!(
        client.status("p").await.unwrap().runtime_status,
        RuntimeStatus::Pending
    );
    client.suspend("p", "hold").await.unwrap();
    client.resume("p", "go on").await.unwrap();
    let done = within(client.wait("p")).await.unwrap();
    assert_eq!(done.output::<u64>().unwrap(), Some(4));
    let history = client.history("p").await.unwrap();
    assert!(
        matches!(history[0].event, durable::history::Event::Started { .. }),
        "{history:?}"
    );
    rt.shutdown().await.unwrap();
}
