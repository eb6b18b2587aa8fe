//! Child orchestrations: typed results and errors, deterministic ids,
//! exact fan-out across a restart with every turn replayed, termination
//! reaching the children, and an unregistered child refused at start.

mod common;

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use common::{builder, db, until, within};
use durable::history::Event;
use durable::{orchestrator, ChildError, Context, Error, FailureKind, RuntimeStatus};

#[orchestrator]
async fn square(_ctx: Context, x: u64) -> u64 {
    x * x
}

#[orchestrator]
async fn checked_half(_ctx: Context, x: u64) -> Result<u64, String> {
    if x % 2 == 0 {
        Ok(x / 2)
    } else {
        Err(format!("{x} is odd"))
    }
}

#[orchestrator]
async fn panics(_ctx: Context) -> u64 {
    panic!("the child broke")
}

/// Waits for a `go` event, then returns its number.
#[orchestrator]
async fn waits_for_go(ctx: Context) -> u64 {
    ctx.wait_event("go").await
}

#[orchestrator]
async fn parent_of_one(ctx: Context, x: u64) -> (u64, Result<u64, String>, Result<u64, String>) {
    let sq = ctx.call_child(square, x).await.unwrap_or(0);
    let even = ctx
        .call_child(checked_half, 10)
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let odd = ctx
        .call_child(checked_half, 7)
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    (sq, even, odd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_returns_exactly_its_value_err_included() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(square)
        .orchestrator(checked_half)
        .orchestrator(parent_of_one)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(parent_of_one, 6).await.unwrap();
    assert_eq!(
        within(h.result()).await.unwrap(),
        (36, Ok(5), Err("7 is odd".to_owned()))
    );
    // The children are instances of their own, under ids derived from the
    // parent's and the call's sequence number.
    let child = rt.client().status(&format!("{}:0", h.id())).await.unwrap();
    assert_eq!(child.name, "square");
    assert_eq!(child.runtime_status, RuntimeStatus::Completed);
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn parent_of_a_panic(ctx: Context) -> String {
    match ctx.call_child(panics, ()).await {
        Ok(v) => format!("unexpected {v}"),
        Err(ChildError::Failed(f)) => format!("{:?}: {}", f.kind, f.message),
        Err(other) => format!("unexpected {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_child_is_a_typed_error() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(panics)
        .orchestrator(parent_of_a_panic)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(parent_of_a_panic, ()).await.unwrap();
    let out = within(h.result()).await.unwrap();
    assert!(
        out.starts_with("Panic: ") && out.contains("the child broke"),
        "{out}"
    );
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn fan_out(ctx: Context, n: u64) -> Vec<u64> {
    let calls = (0..n).map(|i| ctx.call_child(square, i));
    durable::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap_or(u64::MAX))
        .collect()
}

/// Fan-out over children replays exactly: a restart in the middle, with no
/// live state cached (every turn replays), gives every child's value once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_over_children_survives_a_restart_with_every_turn_replayed() {
    let db = db();
    let start = || {
        builder(&db)
            .orchestrator(square)
            .orchestrator(fan_out)
            .cache_size(0)
            .start()
    };
    let rt = start().await.unwrap();
    let h = rt.client().start(fan_out, 40).await.unwrap();
    let id = h.id().to_owned();
    until("some children to finish", || async {
        let done = rt
            .client()
            .status(&format!("{id}:3"))
            .await
            .is_ok_and(|s| s.runtime_status == RuntimeStatus::Completed);
        done.then_some(())
    })
    .await;
    rt.shutdown().await.unwrap();
    let rt = start().await.unwrap();
    let out = within(rt.client().handle(fan_out, id.clone()).result())
        .await
        .unwrap();
    assert_eq!(out, (0..40).map(|i| i * i).collect::<Vec<_>>());
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn named_child(ctx: Context, id: String) -> Result<u64, String> {
    ctx.call_child_with_id(square, id, 9)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_id_is_used_and_a_taken_one_is_a_typed_error() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(square)
        .orchestrator(named_child)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client
        .start(named_child, "square-of-nine".to_owned())
        .await
        .unwrap();
    assert_eq!(within(h.result()).await.unwrap(), Ok(81));
    let child = client.status("square-of-nine").await.unwrap();
    assert_eq!(child.runtime_status, RuntimeStatus::Completed);
    // The same id again belongs to that instance: no child is started.
    let h = client
        .start(named_child, "square-of-nine".to_owned())
        .await
        .unwrap();
    let err = within(h.result()).await.unwrap().unwrap_err();
    assert!(
        err.contains("square-of-nine") && err.contains("another instance"),
        "{err}"
    );
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn parent_of_waiters(ctx: Context) -> u64 {
    let calls = (0..3).map(|_| ctx.call_child(waits_for_go, ()));
    durable::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap_or(0))
        .sum()
}

/// Terminating a parent terminates its running children.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_a_parent_terminates_its_running_children() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(waits_for_go)
        .orchestrator(parent_of_waiters)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(parent_of_waiters, ()).await.unwrap();
    let children: Vec<String> = (0..3).map(|i| format!("{}:{i}", h.id())).collect();
    until("the children to run", || async {
        let mut running = 0;
        for c in &children {
            if client
                .status(c)
                .await
                .is_ok_and(|s| s.runtime_status == RuntimeStatus::Running)
            {
                running += 1;
            }
        }
        (running == 3).then_some(())
    })
    .await;
    client.raise_event(&children[0], "go", 5u64).await.unwrap();
    until("the first child to finish", || async {
        client
            .status(&children[0])
            .await
            .is_ok_and(|s| s.runtime_status == RuntimeStatus::Completed)
            .then_some(())
    })
    .await;
    client.terminate(h.id(), "no longer needed").await.unwrap();
    assert!(matches!(
        within(h.result()).await,
        Err(Error::Terminated { .. })
    ));
    for c in &children[1..] {
        let s = until("the child to be terminated", || async {
            let s = client.status(c).await.unwrap();
            (s.runtime_status == RuntimeStatus::Terminated).then_some(s)
        })
        .await;
        let reason = s.terminated.unwrap_or_default();
        assert!(
            reason.contains("no longer needed") && reason.contains("parent"),
            "{reason}"
        );
    }
    assert_eq!(
        client.status(&children[0]).await.unwrap().runtime_status,
        RuntimeStatus::Completed,
        "a finished child stays as it ended"
    );
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn parent_of_one_waiter(ctx: Context) -> String {
    match ctx.call_child(waits_for_go, ()).await {
        Err(ChildError::Terminated(reason)) => reason,
        other => format!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_child_is_a_typed_error_for_its_parent() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(waits_for_go)
        .orchestrator(parent_of_one_waiter)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(parent_of_one_waiter, ()).await.unwrap();
    let child = format!("{}:0", h.id());
    until("the child to run", || async {
        client
            .status(&child)
            .await
            .is_ok_and(|s| s.runtime_status == RuntimeStatus::Running)
            .then_some(())
    })
    .await;
    client.terminate(&child, "operator").await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), "operator");
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unregistered_child_is_refused_at_start() {
    let db = db();
    let err = common::builder(&db)
        .orchestrator(parent_of_one)
        .orchestrator(square)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnregisteredChild { orchestrator, child }
            if orchestrator == "parent_of_one" && child == "checked_half"),
        "{err}"
    );
}

#[orchestrator]
async fn middle(ctx: Context, x: u64) -> u64 {
    ctx.call_child(square, x).await.unwrap_or(0) + 1
}

#[orchestrator]
async fn top(ctx: Context, x: u64) -> u64 {
    ctx.call_child(middle, x).await.unwrap_or(0) * 10
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grandchild_reports_through_its_parent_with_every_turn_replayed() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(square)
        .orchestrator(middle)
        .orchestrator(top)
        .cache_size(0)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(top, 3).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), 100);
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn counts_down(ctx: Context, n: u32) -> u32 {
    if n == 0 {
        return 42;
    }
    ctx.sleep(Duration::from_millis(1)).await;
    ctx.continue_as_new(n - 1).await
}

#[orchestrator]
async fn parent_of_looper(ctx: Context) -> Result<u32, String> {
    ctx.call_child(counts_down, 5)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_continues_as_new_still_reports_to_its_parent() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(counts_down)
        .orchestrator(parent_of_looper)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(parent_of_looper, ()).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), Ok(42));
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn fires_child(ctx: Context) -> u32 {
    drop(ctx.call_child_with_id(square, "fired", 4));
    1
}

/// A child started in the parent's last turn runs (fire-and-forget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_started_in_the_last_turn_runs() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(square)
        .orchestrator(fires_child)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(fires_child, ()).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), 1);
    let done = until("the fired child to finish", || async {
        let s = client.status("fired").await.ok()?;
        (s.runtime_status == RuntimeStatus::Completed).then_some(s)
    })
    .await;
    assert_eq!(
        done.output.map(|o| o.json().to_owned()),
        Some("16".to_owned())
    );
    rt.shutdown().await.unwrap();
}

/// The parent continues as new while its child runs; terminating it later
/// still terminates that child.
#[orchestrator]
async fn restarts_with_child(ctx: Context, round: u32) -> String {
    if round == 0 {
        let child = ctx.call_child_with_id(waits_for_go, "left-running", ());
        let _ = durable::select(child, ctx.sleep(Duration::from_millis(10))).await;
        return ctx.continue_as_new(1u32).await;
    }
    ctx.wait_event::<()>("never").await;
    "done".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_a_parent_reaches_children_of_its_earlier_executions() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(waits_for_go)
        .orchestrator(restarts_with_child)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(restarts_with_child, 0).await.unwrap();
    until("the second execution", || async {
        let hist = client.history(h.id()).await.unwrap();
        hist.iter()
            .any(|r| matches!(&r.event, Event::Started { input, .. } if input.json() == "1"))
            .then_some(())
    })
    .await;
    assert_eq!(
        client.status("left-running").await.unwrap().runtime_status,
        RuntimeStatus::Running
    );
    client.terminate(h.id(), "bye").await.unwrap();
    until(
        "the child of the first execution to be terminated",
        || async {
            (client.status("left-running").await.unwrap().runtime_status
                == RuntimeStatus::Terminated)
                .then_some(())
        },
    )
    .await;
    rt.shutdown().await.unwrap();
}

/// Holds a turn of `takes_id` until the test lets it go.
static HOLD: (Mutex<(bool, bool)>, Condvar) = (Mutex::new((false, false)), Condvar::new());

fn held_turn() -> u32 {
    let (lock, cv) = &HOLD;
    let mut state = lock.lock().unwrap();
    state.0 = true;
    cv.notify_all();
    while !state.1 {
        state = cv.wait(state).unwrap();
    }
    1
}

#[orchestrator]
async fn takes_id(ctx: Context, id: String) -> String {
    let _ = ctx.side_effect(held_turn);
    match ctx.call_child_with_id(waits_for_go, id, ()).await {
        Ok(v) => format!("ok {v}"),
        Err(e) => format!("err {e}"),
    }
}

/// Regression: a parent terminated in the same turn that told it its
/// child's id was taken terminated the unrelated instance owning the id.
/// Only instances the parent really started are terminated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_a_parent_spares_the_instance_owning_a_taken_id() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(waits_for_go)
        .orchestrator(takes_id)
        .orchestrator(square)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    client
        .start_with_id(waits_for_go, "bystander", ())
        .await
        .unwrap();
    let p = client
        .start(takes_id, "bystander".to_owned())
        .await
        .unwrap();
    // The parent's first turn is held; the termination arrives meanwhile,
    // so the next turn takes it together with the `IdTaken` answer.
    tokio::task::spawn_blocking(|| {
        let (lock, cv) = &HOLD;
        let mut state = lock.lock().unwrap();
        while !state.0 {
            state = cv.wait(state).unwrap();
        }
    })
    .await
    .unwrap();
    client.terminate(p.id(), "stop").await.unwrap();
    {
        let (lock, cv) = &HOLD;
        lock.lock().unwrap().1 = true;
        cv.notify_all();
    }
    assert!(matches!(
        within(p.result()).await,
        Err(Error::Terminated { .. })
    ));
    // A later instance's commit orders after the parent's end.
    let later = client.start(square, 2).await.unwrap();
    assert_eq!(within(later.result()).await.unwrap(), 4);
    assert_eq!(
        client.status("bystander").await.unwrap().runtime_status,
        RuntimeStatus::Running,
        "the instance owning the id is not the parent's child"
    );
    rt.shutdown().await.unwrap();
}

fn helper(ctx: &Context) -> durable::ChildCall<u64> {
    ctx.call_child(square, 2)
}

/// A child call the macro cannot see (through a helper) of an orchestrator
/// not registered fails the parent, and starts no orphan child.
#[orchestrator]
async fn hidden_child(ctx: Context) -> u64 {
    helper(&ctx).await.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_child_seen_only_at_run_time_fails_the_parent_and_starts_nothing() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(hidden_child)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(hidden_child, ()).await.unwrap();
    let Err(Error::Failed { failure, .. }) = within(h.result()).await else {
        panic!("the parent fails");
    };
    assert_eq!(failure.kind, FailureKind::UnregisteredOrchestrator);
    assert!(failure.message.contains("square"), "{}", failure.message);
    assert!(matches!(
        client.status(&format!("{}:0", h.id())).await,
        Err(Error::InstanceNotFound { .. })
    ));
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn parent_v(ctx: Context, version: u32) -> u64 {
    if version == 1 {
        // Starts a child and ends without waiting for it.
        drop(ctx.call_child_with_id(waits_for_go, "old-child", ()));
        return 0;
    }
    ctx.call_child_with_id(waits_for_go, "new-child", ())
        .await
        .unwrap_or(u64::MAX)
}

/// Regression: an instance replaced under the same id (or purged and
/// started again) received the report of the old instance's child, which
/// matched its own call by sequence number. A child reports only to the
/// instance that started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_instance_does_not_take_the_old_ones_child_results() {
    let db = db();
    let rt = builder(&db)
        .orchestrator(waits_for_go)
        .orchestrator(parent_v)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let replace = durable::StartOptions::new()
        .id("p")
        .if_exists(durable::IfExists::ReplaceFinished);
    let v1 = client
        .start_with(parent_v, 1, replace.clone())
        .await
        .unwrap();
    assert_eq!(within(v1.result()).await.unwrap(), 0);
    let v2 = client.start_with(parent_v, 2, replace).await.unwrap();
    until("both children to run", || async {
        let running = |id: &'static str| {
            let client = client.clone();
            async move {
                client
                    .status(id)
                    .await
                    .is_ok_and(|s| s.runtime_status == RuntimeStatus::Running)
            }
        };
        (running("old-child").await && running("new-child").await).then_some(())
    })
    .await;
    client.raise_event("old-child", "go", 1u64).await.unwrap();
    client.raise_event("new-child", "go", 7u64).await.unwrap();
    assert_eq!(
        within(v2.result()).await.unwrap(),
        7,
        "its own child's value"
    );
    rt.shutdown().await.unwrap();
}
