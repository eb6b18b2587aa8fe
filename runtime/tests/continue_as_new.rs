//! Continue-as-new: an instance starts afresh with a new input and an empty
//! history, keeping its id; events it had not consumed, and events raised
//! meanwhile, carry over in the order they were raised.

mod common;

use std::time::Duration;

use common::{builder, db, until, within};
use durable::{orchestrator, Context, Error, FailureKind, RuntimeStatus};

/// A monitor: sleeps, then continues as new, until it has run `n` times.
#[orchestrator]
async fn ticks(ctx: Context, (done, n): (u32, u32)) -> String {
    if done < n {
        ctx.sleep(Duration::from_millis(1)).await;
        // The contract's form: `return` it from an orchestrator of any type.
        return ctx.continue_as_new((done + 1, n)).await;
    }
    format!("ticked {n} times")
}

/// An aggregator: takes one `add` event per execution, keeping what it
/// received so far in its input, until it has `n` of them.
#[orchestrator]
async fn collects(ctx: Context, (got, n): (Vec<u32>, usize)) -> Vec<u32> {
    if got.len() == n {
        return got;
    }
    let v: u32 = ctx.wait_event("add").await;
    let mut got = got;
    got.push(v);
    ctx.continue_as_new((got, n)).await
}

fn history_len(db: &common::Db, id: &str) -> u64 {
    let store = common::store(db);
    store.status(id).unwrap().unwrap().history_len
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eternal_monitor_keeps_its_history_bounded() {
    let db = db();
    let rt = builder(&db).orchestrator(ticks).start().await.unwrap();
    let h = rt.client().start(ticks, (0, 300)).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), "ticked 300 times");
    // The last execution's history alone: started, its end.
    let len = history_len(&db, h.id());
    assert!(len <= 3, "history holds one execution, not 300: {len}");
    rt.shutdown().await.unwrap();
}

/// Events raised faster than the aggregator takes them carry over from one
/// execution to the next in order, across a restart in the middle, with
/// nothing cached (every turn replays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_not_yet_consumed_carry_over_in_order_across_a_restart() {
    let db = db();
    let start = || builder(&db).orchestrator(collects).cache_size(0).start();
    let rt = start().await.unwrap();
    let client = rt.client();
    let h = client.start(collects, (Vec::new(), 40)).await.unwrap();
    let id = h.id().to_owned();
    for v in 0..20u32 {
        client.raise_event(&id, "add", v).await.unwrap();
    }
    rt.shutdown().await.unwrap();
    let rt = start().await.unwrap();
    let client = rt.client();
    for v in 20..40u32 {
        client.raise_event(&id, "add", v).await.unwrap();
    }
    let got = within(client.handle(collects, id.clone()).result())
        .await
        .unwrap();
    assert_eq!(got, (0..40).collect::<Vec<_>>(), "every event, in order");
    rt.shutdown().await.unwrap();
}

/// Events delivered to an execution in the turn it continues as new (it
/// did not wait for them) carry over too.
#[orchestrator]
async fn ignores_then_collects(ctx: Context, round: u32) -> Vec<String> {
    if round == 0 {
        // Both events arrive while it sleeps; it never waits for them here.
        ctx.wait_event::<()>("go").await;
        return ctx.continue_as_new(1u32).await;
    }
    let a: String = ctx.wait_event("note").await;
    let b: String = ctx.wait_event("note").await;
    vec![a, b]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_an_execution_received_but_never_waited_for_carry_over() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(ignores_then_collects)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(ignores_then_collects, 0).await.unwrap();
    client.raise_event(h.id(), "note", "first").await.unwrap();
    client.raise_event(h.id(), "note", "second").await.unwrap();
    client.raise_event(h.id(), "go", ()).await.unwrap();
    assert_eq!(
        within(h.result()).await.unwrap(),
        vec!["first".to_owned(), "second".to_owned()]
    );
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn grows(ctx: Context, s: String) -> usize {
    if s.len() > 10 {
        return s.len();
    }
    ctx.continue_as_new("x".repeat(5_000)).await
}

#[tokio::test]
async fn continuing_with_an_input_over_the_limit_fails_the_instance() {
    let db = db();
    let rt = common::builder(&db)
        .max_payload(1_000)
        .orchestrator(grows)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(grows, String::new()).await.unwrap();
    let err = within(h.result()).await.unwrap_err();
    let Error::Failed { failure, .. } = err else {
        panic!("expected a failed instance, got {err}");
    };
    assert_eq!(failure.kind, FailureKind::Payload);
    assert!(
        failure.message.contains("continue as new"),
        "{}",
        failure.message
    );
    rt.shutdown().await.unwrap();
}

/// The status of an instance between executions is `Running`, never
/// finished: a waiter for its result keeps waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn between_executions_an_instance_is_running() {
    let db = db();
    let rt = builder(&db).orchestrator(collects).start().await.unwrap();
    let client = rt.client();
    let h = client.start(collects, (Vec::new(), 2)).await.unwrap();
    client.raise_event(h.id(), "add", 7u32).await.unwrap();
    until("the first execution to continue", || async {
        (history_len(&db, h.id()) <= 1
            && client.status(h.id()).await.unwrap().runtime_status == RuntimeStatus::Running)
            .then_some(())
    })
    .await;
    assert!(h.result_timeout(Duration::from_millis(1)).await.is_err());
    client.raise_event(h.id(), "add", 8u32).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), vec![7, 8]);
    rt.shutdown().await.unwrap();
}

/// The first execution waits for an event, then continues as new; the
/// second waits for another and returns 100 plus it.
#[orchestrator]
async fn two_executions(ctx: Context, n: u32) -> u32 {
    let v: u32 = ctx.wait_event("e").await;
    if n == 0 {
        return ctx.continue_as_new(1u32).await;
    }
    100 + v
}

/// Regression: history lengths repeat across executions, so a process
/// whose cache held the old execution at the same length ran it against
/// the new one, and the event it consumed was recorded nowhere. Each
/// execution has a number of its own, which the cache and the commit check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cached_execution_in_another_process_is_rebuilt_not_run() {
    let db = db();
    let idle = Duration::from_secs(3600);
    let b = builder(&db)
        .orchestrator(two_executions)
        .poll_interval(idle)
        .start()
        .await
        .unwrap();
    let a = builder(&db)
        .orchestrator(two_executions)
        .poll_interval(idle)
        .start()
        .await
        .unwrap();
    // B runs the first execution's first turn and keeps it cached.
    let h = b.client().start(two_executions, 0).await.unwrap();
    let id = h.id().to_owned();
    until("the first execution to wait", || async {
        let s = b.client().status(&id).await.unwrap();
        (s.runtime_status == RuntimeStatus::Running && s.history_len == 1).then_some(())
    })
    .await;
    // A takes the event, continues as new and runs the second execution's
    // first turn: the history is one event long again.
    a.client().raise_event(&id, "e", 1u32).await.unwrap();
    until("the second execution to wait", || async {
        let hist = a.client().history(&id).await.unwrap();
        (hist.len() == 1
            && matches!(&hist[0].event, durable::history::Event::Started { input, .. } if input.json() == "1"))
        .then_some(())
    })
    .await;
    // B is handed the next event, with its stale execution cached.
    b.client().raise_event(&id, "e", 5u32).await.unwrap();
    // B runs that turn (after rebuilding the second execution): its own
    // waiters learn the result at once.
    let out = within(b.client().handle(two_executions, id.clone()).result()).await;
    assert_eq!(out.unwrap(), 105);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
