//! An orchestrator whose turn never yields (a CPU loop with no `.await`):
//! Rust cannot preempt it, but it must not stop the other instances, must
//! fail its own instance with a clear kind, and must not hold `shutdown()`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common::{builder, db, until, within};
use durable::{activity, orchestrator, Context, Error, FailureKind, RuntimeStatus};

/// Set by the tests when their spinners may stop (so that no thread is
/// left burning a core after a test).
static RELEASE_FAILING: AtomicBool = AtomicBool::new(false);
static RELEASE_STOPPING: AtomicBool = AtomicBool::new(false);
static SPINNING: AtomicU32 = AtomicU32::new(0);
static SPUN: AtomicU32 = AtomicU32::new(0);

#[activity]
async fn add_one(x: u64) -> u64 {
    x + 1
}

#[orchestrator]
async fn quick(ctx: Context, x: u64) -> u64 {
    let y = ctx.call(add_one, x).await.unwrap_or(0);
    ctx.call(add_one, y).await.unwrap_or(0)
}

/// The spinners' view of the tests' flags: out of the orchestrator body,
/// where the checker rightly refuses global state.
fn released(flag: &AtomicBool, spun: &AtomicU32) -> bool {
    spun.fetch_add(1, Ordering::SeqCst);
    flag.load(Ordering::SeqCst)
}

/// Spins until the first test releases it.
#[orchestrator]
async fn spins_until_failed(_ctx: Context) -> u32 {
    let mut turns = 0u32;
    while !released(&RELEASE_FAILING, &SPINNING) {
        turns = turns.wrapping_add(1);
        std::hint::spin_loop();
    }
    turns
}

/// Spins until the second test releases it, then returns.
#[orchestrator]
async fn spins_until_released(ctx: Context) -> u64 {
    while !released(&RELEASE_STOPPING, &SPUN) {
        std::hint::spin_loop();
    }
    ctx.call(add_one, 41).await.unwrap_or(0)
}

/// Regression: one orchestrator looping with no `.await` froze every
/// instance, `terminate` did nothing and `shutdown()` hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_that_never_yields_fails_its_instance_and_the_others_go_on() {
    let db = db();
    let rt = builder(&db)
        .activity(add_one)
        .orchestrator(quick)
        .orchestrator(spins_until_failed)
        .turn_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let spinner = client.start(spins_until_failed, ()).await.unwrap();
    until("the spinner to spin", || async {
        (SPINNING.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    // While it spins, other instances start, run and finish.
    let mut others = Vec::new();
    for i in 0..5 {
        others.push(client.start(quick, i).await.unwrap());
    }
    for (i, h) in (0..5).zip(others) {
        assert_eq!(within(h.result()).await.unwrap(), i + 2);
    }
    let err = within(spinner.result()).await.unwrap_err();
    let Error::Failed { failure, .. } = err else {
        panic!("expected the spinner to fail, got {err}");
    };
    assert_eq!(failure.kind, FailureKind::TurnTimeout);
    assert!(
        failure.message.contains("spins_until_failed") && failure.message.contains("turn_timeout"),
        "the failure names the orchestrator and the setting: {}",
        failure.message
    );
    // The instance is over: an operator's terminate finds it finished.
    let t = client.terminate(spinner.id(), "too late").await;
    assert!(matches!(t, Err(Error::InstanceFinished { .. })), "{t:?}");
    within(rt.shutdown()).await.unwrap();
    RELEASE_FAILING.store(true, Ordering::SeqCst);
}

/// `shutdown()` returns while a turn spins (within its budget); the
/// instance is not failed but left for the next process, which runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_a_spinning_turn_and_the_next_runtime_runs_it() {
    let db = db();
    let build = || {
        builder(&db)
            .activity(add_one)
            .orchestrator(spins_until_released)
            .turn_timeout(Duration::from_secs(3600))
            .shutdown_grace(Duration::from_millis(100))
    };
    let rt = build().start().await.unwrap();
    let h = rt.client().start(spins_until_released, ()).await.unwrap();
    let id = h.id().to_owned();
    until("the spinner to spin", || async {
        (SPUN.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    within(rt.shutdown()).await.unwrap();
    let s = common::store(&db);
    let status = s.status(&id).unwrap().unwrap();
    assert!(
        matches!(
            status.runtime_status,
            RuntimeStatus::Pending | RuntimeStatus::Running
        ),
        "given up, not failed: {status:?}"
    );
    drop(s);
    RELEASE_STOPPING.store(true, Ordering::SeqCst);
    let rt = build().start().await.unwrap();
    let out: u64 = within(
        rt.client()
            .handle(spins_until_released, id.clone())
            .result(),
    )
    .await
    .unwrap();
    assert_eq!(out, 42);
    rt.shutdown().await.unwrap();
}
