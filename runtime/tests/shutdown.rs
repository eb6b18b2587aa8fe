//! Stopping a runtime: `shutdown()` drains (running attempts finish within
//! a grace period, their results are committed) and leaves nothing leased
//! or locked; dropping a runtime gives its leases back at once.

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::{builder, db, until, within, Db, Gate};
use durable::{activity, orchestrator, ActivityInfo, Context, Runtime};

/// Leases and instance locks held by anyone, as stored.
fn held(db: &Db) -> (i64, i64) {
    let tasks = common::number(
        db,
        "SELECT count(*) FROM tasks WHERE lease_owner IS NOT NULL",
        &[],
    );
    let instances = common::number(
        db,
        "SELECT count(*) FROM instances WHERE lock_owner IS NOT NULL AND status <> 'stuck'",
        &[],
    );
    (tasks, instances)
}

static LOOPED: AtomicU32 = AtomicU32::new(0);

#[activity]
async fn tick(x: u64) -> u64 {
    LOOPED.fetch_add(1, Ordering::SeqCst);
    x + 1
}

#[orchestrator]
async fn looping(ctx: Context, n: u64) -> u64 {
    let mut x = 0;
    for _ in 0..n {
        x = ctx.call(tick, x).await.unwrap_or(x);
    }
    x
}

/// Regression: after `shutdown()` a task could stay leased to the stopped
/// process (the dispatcher committed newly leased tasks after the worker
/// stopped), and the next runtime made no progress for a whole lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_shutdown_nothing_is_leased_to_the_stopped_runtime() {
    for round in 0..10 {
        let db = db();
        // A lease lasts an hour: only a lease given back lets the next
        // runtime go on.
        let start = || {
            builder(&db)
                .activity(tick)
                .orchestrator(looping)
                .activity_lease(Duration::from_secs(3600))
                .start()
        };
        let rt = start().await.unwrap();
        let client = rt.client();
        let before = LOOPED.load(Ordering::SeqCst);
        let handles = [
            client.start(looping, 100_000).await.unwrap(),
            client.start(looping, 100_000).await.unwrap(),
        ];
        // Stop it in full flow, a little later each round.
        until("the loops to be running", || async {
            (LOOPED.load(Ordering::SeqCst) >= before + 2 + round).then_some(())
        })
        .await;
        rt.shutdown().await.unwrap();
        assert_eq!(held(&db), (0, 0), "round {round}: leases or locks left");
        // The next runtime goes on at once, although a lease lasts an hour.
        let rt = start().await.unwrap();
        let client = rt.client();
        let len = |id: String| {
            let client = client.clone();
            async move { client.status(&id).await.unwrap().history_len }
        };
        let start: Vec<u64> = [
            len(handles[0].id().to_owned()).await,
            len(handles[1].id().to_owned()).await,
        ]
        .to_vec();
        for (h, at) in handles.iter().zip(start) {
            until("the instance to go on", || async {
                (len(h.id().to_owned()).await > at + 4).then_some(())
            })
            .await;
            client.terminate(h.id(), "done").await.unwrap();
        }
        rt.shutdown().await.unwrap();
    }
}

static DRAIN_STARTED: AtomicU32 = AtomicU32::new(0);
static DRAIN_RUNS: AtomicU32 = AtomicU32::new(0);
static DRAIN_GATE: Gate = Gate::new();

/// Runs until the test opens the gate.
#[activity]
async fn slow(x: u64) -> u64 {
    DRAIN_STARTED.fetch_add(1, Ordering::SeqCst);
    DRAIN_GATE.pass().await;
    DRAIN_RUNS.fetch_add(1, Ordering::SeqCst);
    x
}

#[orchestrator]
async fn fan(ctx: Context, n: u64) -> u64 {
    let calls = (0..n).map(|i| ctx.call(slow, i));
    durable::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap_or(0))
        .sum()
}

/// Regression: `shutdown()` abandoned running activities, so a restart in
/// the middle of a fan-out ran most of them again. It now lets them finish
/// within the grace period and commits their results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_attempts_finish_and_keeps_their_results() {
    let db = db();
    let rt = builder(&db)
        .activity(slow)
        .orchestrator(fan)
        .shutdown_grace(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(fan, 20).await.unwrap();
    until("all 20 attempts to run", || async {
        (DRAIN_STARTED.load(Ordering::SeqCst) == 20).then_some(())
    })
    .await;
    let stopping = tokio::spawn(rt.shutdown());
    // The attempts finish while the runtime drains.
    DRAIN_GATE.open();
    within(stopping).await.unwrap().unwrap();
    assert_eq!(held(&db), (0, 0));
    let rt = builder(&db)
        .activity(slow)
        .orchestrator(fan)
        .start()
        .await
        .unwrap();
    let h = rt.client().handle(fan, h.id());
    assert_eq!(within(h.result()).await.unwrap(), (0..20).sum::<u64>());
    assert_eq!(
        DRAIN_RUNS.load(Ordering::SeqCst),
        20,
        "no attempt ran twice: every result was kept"
    );
    rt.shutdown().await.unwrap();
}

/// Instances whose first attempt is running.
static HANGING: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Never returns the first time it runs for an instance; returns at once
/// the next time (an attempt given back does not count as one, so the
/// attempt number cannot tell).
#[activity]
async fn hangs_first(x: u64) -> u64 {
    let info = ActivityInfo::current().expect("in a runtime");
    let first = HANGING
        .lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(info.instance_id().to_owned());
    if first {
        std::future::pending::<()>().await;
    }
    x
}

#[orchestrator]
async fn hang(ctx: Context, x: u64) -> u64 {
    ctx.call(hangs_first, x).await.unwrap_or(0)
}

/// Starts an instance whose first attempt hangs, stops the runtime with
/// `stop` while it does, and checks that nothing is left leased and that
/// the next runtime runs the attempt again at once (a lease lasts an hour).
async fn first_attempt_hangs<F: Future<Output = ()>>(stop: impl FnOnce(Runtime) -> F, x: u64) {
    let db = db();
    let start = || {
        builder(&db)
            .activity(hangs_first)
            .orchestrator(hang)
            .activity_lease(Duration::from_secs(3600))
            .shutdown_grace(Duration::from_millis(50))
            .start()
    };
    let rt = start().await.unwrap();
    let h = rt.client().start(hang, x).await.unwrap();
    until("the first attempt to run", || async {
        HANGING
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|s| s.contains(h.id()))
            .then_some(())
    })
    .await;
    stop(rt).await;
    assert_eq!(held(&db), (0, 0));
    let rt = start().await.unwrap();
    let h = rt.client().handle(hang, h.id());
    assert_eq!(within(h.result()).await.unwrap(), x);
    rt.shutdown().await.unwrap();
}

/// Past the grace period the attempt is abandoned and its lease given
/// back: the next runtime runs it again at once, not after the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_past_the_grace_period_is_given_back_at_once() {
    first_attempt_hangs(|rt| async { rt.shutdown().await.unwrap() }, 7).await;
}

/// Regression: a runtime dropped without `shutdown()` stalled the next one
/// for a whole lease. Dropping now gives leases and locks back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_runtime_gives_its_leases_back() {
    first_attempt_hangs(|rt| async { drop(rt) }, 9).await;
}

#[orchestrator]
async fn echo_number(_ctx: Context, x: u64) -> u64 {
    x
}

/// Regression: a start that reserved room in the dispatcher's inbox just
/// before `shutdown()` committed its instance locked to the stopping
/// process after the locks were released, so the next runtime waited out
/// the whole lock. `shutdown()` now waits for such starts first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_in_flight_during_shutdown_leave_nothing_locked() {
    // The window is narrow: many rounds make hitting it likely.
    for _ in 0..20 {
        let db = db();
        let rt = builder(&db)
            .orchestrator(echo_number)
            .instance_lock(Duration::from_secs(600))
            .start()
            .await
            .unwrap();
        let started = std::sync::Arc::new(AtomicU32::new(0));
        let mut clients = Vec::new();
        for _ in 0..16 {
            let (client, started) = (rt.client(), std::sync::Arc::clone(&started));
            clients.push(tokio::spawn(async move {
                let mut i = 0;
                while client.start(echo_number, i).await.is_ok() {
                    started.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            }));
        }
        until("starts to be under way", || async {
            (started.load(Ordering::SeqCst) >= 100).then_some(())
        })
        .await;
        within(rt.shutdown()).await.unwrap();
        for c in clients {
            c.await.unwrap();
        }
        assert_eq!(held(&db), (0, 0), "nothing leased or locked after shutdown");
    }
}
