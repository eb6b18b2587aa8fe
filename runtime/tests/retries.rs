//! Retries, complete: errors the activity's error type marks final are not
//! retried, an attempt over its timeout is cut and retried, and a total
//! timeout ends a call however many attempts remain.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{builder, db, within};
use durable::{
    activity, orchestrator, ActivityError, ActivityInfo, Context, RetryPolicy, Retryable,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum ChargeError {
    Declined,
    ProviderDown,
}

impl Retryable for ChargeError {
    fn is_retryable(&self) -> bool {
        matches!(self, ChargeError::ProviderDown)
    }
}

static DECLINES: AtomicU32 = AtomicU32::new(0);
static OUTAGES: AtomicU32 = AtomicU32::new(0);

/// Declines big amounts (final); the provider is down for the first two
/// attempts of small ones (worth retrying).
#[activity]
async fn charge(cents: u64) -> Result<String, ChargeError> {
    if cents > 1_000 {
        DECLINES.fetch_add(1, Ordering::SeqCst);
        return Err(ChargeError::Declined);
    }
    OUTAGES.fetch_add(1, Ordering::SeqCst);
    let attempt = ActivityInfo::current().map_or(1, |i| i.attempt());
    if attempt < 3 {
        Err(ChargeError::ProviderDown)
    } else {
        Ok(format!("receipt {cents}"))
    }
}

#[orchestrator]
async fn pay(ctx: Context, cents: u64) -> Result<String, ChargeError> {
    let policy = RetryPolicy::attempts(5).backoff(Duration::from_millis(5));
    ctx.call_with_retry(charge, cents, policy)
        .await
        .map_err(|e| e.into_failed().expect("the activity's own error"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_its_type_marks_final_is_not_retried() {
    let db = db();
    let rt = builder(&db)
        .activity(charge)
        .orchestrator(pay)
        .start()
        .await
        .unwrap();
    let declined = rt.client().start(pay, 5_000).await.unwrap();
    assert_eq!(
        within(declined.result()).await.unwrap(),
        Err(ChargeError::Declined)
    );
    assert_eq!(DECLINES.load(Ordering::SeqCst), 1, "one attempt, no retry");
    let paid = rt.client().start(pay, 500).await.unwrap();
    assert_eq!(
        within(paid.result()).await.unwrap(),
        Ok("receipt 500".to_owned())
    );
    assert_eq!(OUTAGES.load(Ordering::SeqCst), 3, "retried while down");
    rt.shutdown().await.unwrap();
}

static SLOW_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Hangs on its first attempt; answers at once after that.
#[activity]
async fn hangs_once(x: u64) -> u64 {
    if SLOW_ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    x + 1
}

/// Always hangs.
#[activity]
async fn hangs(x: u64) -> u64 {
    std::future::pending::<()>().await;
    x
}

#[orchestrator]
async fn with_timeouts(ctx: Context) -> (u64, String, String) {
    let retried = ctx
        .call_with_retry(
            hangs_once,
            1,
            RetryPolicy::attempts(3)
                .backoff(Duration::from_millis(5))
                .attempt_timeout(Duration::from_millis(100)),
        )
        .await
        .unwrap_or(0);
    let cut = match ctx
        .call_with_retry(
            hangs,
            1,
            RetryPolicy::attempts(1).attempt_timeout(Duration::from_millis(50)),
        )
        .await
    {
        Err(ActivityError::TimedOut(m)) => m,
        other => format!("unexpected {other:?}"),
    };
    let total = match ctx
        .call_with_retry(
            hangs,
            1,
            RetryPolicy::attempts(1_000)
                .backoff(Duration::from_millis(10))
                .attempt_timeout(Duration::from_millis(20))
                .total_timeout(Duration::from_millis(200))
                .jitter(0.5),
        )
        .await
    {
        Err(ActivityError::TimedOut(m)) => m,
        other => format!("unexpected {other:?}"),
    };
    (retried, cut, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_over_their_timeout_are_cut_and_a_total_timeout_ends_the_call() {
    let db = db();
    let rt = builder(&db)
        .activity(hangs_once)
        .activity(hangs)
        .orchestrator(with_timeouts)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(with_timeouts, ()).await.unwrap();
    let (retried, cut, total) = within(h.result()).await.unwrap();
    assert_eq!(retried, 2, "the second attempt answered");
    assert_eq!(SLOW_ATTEMPTS.load(Ordering::SeqCst), 2);
    assert!(cut.contains("timeout of 50ms"), "{cut}");
    assert!(total.contains("total timeout"), "{total}");
    rt.shutdown().await.unwrap();
}

/// Set, and signalled, when the test lets the blocker go.
static RELEASE_BLOCKER: (std::sync::Mutex<bool>, std::sync::Condvar) =
    (std::sync::Mutex::new(false), std::sync::Condvar::new());

/// Blocks its thread (no `.await`) until the test lets it go.
#[activity]
async fn blocks(x: u64) -> u64 {
    let (lock, cv) = &RELEASE_BLOCKER;
    let mut released = lock.lock().unwrap();
    while !*released {
        released = cv.wait(released).unwrap();
    }
    x
}

#[orchestrator]
async fn calls_blocker(ctx: Context) -> String {
    let policy = RetryPolicy::attempts(1).attempt_timeout(Duration::from_millis(100));
    match ctx.call_with_retry(blocks, 1, policy).await {
        Err(ActivityError::TimedOut(m)) => m,
        other => format!("unexpected {other:?}"),
    }
}

/// An attempt that blocks its thread cannot be stopped, but its timeout
/// still fails the call on time and frees its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_blocks_its_thread_still_times_out() {
    let db = db();
    let rt = builder(&db)
        .activity(blocks)
        .orchestrator(calls_blocker)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(calls_blocker, ()).await.unwrap();
    let out = within(h.result()).await.unwrap();
    {
        let (lock, cv) = &RELEASE_BLOCKER;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    assert!(out.contains("timeout of 100ms"), "{out}");
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn bad_policy(ctx: Context) -> (String, u64) {
    let refused = match ctx
        .call_with_retry(hangs_once, 1, RetryPolicy::attempts(0))
        .await
    {
        Err(ActivityError::Aborted(why)) => why,
        other => format!("unexpected {other:?}"),
    };
    // The orchestrator goes on; replay takes the same path.
    let next = ctx.call(charge_free, 41).await.unwrap_or(0);
    (refused, next)
}

#[activity]
async fn charge_free(x: u64) -> u64 {
    x + 1
}

/// An invalid retry policy is a typed error at the call, and nothing is
/// scheduled for it, on every replay alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_retry_policy_fails_the_call_and_schedules_nothing() {
    let db = db();
    let rt = builder(&db)
        .activity(hangs_once)
        .activity(charge_free)
        .orchestrator(bad_policy)
        .cache_size(0)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(bad_policy, ()).await.unwrap();
    let (refused, next) = within(h.result()).await.unwrap();
    assert!(
        refused.contains("invalid retry policy: zero attempts"),
        "{refused}"
    );
    assert_eq!(next, 42);
    let history = rt.client().history(h.id()).await.unwrap();
    let scheduled: Vec<_> = history
        .iter()
        .filter_map(|r| match &r.event {
            durable::history::Event::ActivityScheduled { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(scheduled, ["charge_free"], "only the valid call");
    rt.shutdown().await.unwrap();
}
