//! Activities that fail, panic or are retried, and orchestrators that panic.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{builder, db, within};
use durable::{
    activity, orchestrator, ActivityError, ActivityInfo, Context, Error, FailureKind, RetryPolicy,
    RuntimeStatus,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum PaymentError {
    Declined { code: u32 },
    Unavailable,
}

#[activity]
async fn charge(amount: u64) -> Result<String, PaymentError> {
    if amount > 1000 {
        Err(PaymentError::Declined { code: 51 })
    } else {
        Ok(format!("receipt-{amount}"))
    }
}

#[activity]
async fn explode(x: u64) -> u64 {
    if x > 0 {
        panic!("boom at {x}");
    }
    x
}

static FLAKY_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[activity]
async fn flaky() -> Result<u32, PaymentError> {
    FLAKY_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    let attempt = ActivityInfo::current().expect("in a runtime").attempt();
    if attempt < 3 {
        Err(PaymentError::Unavailable)
    } else {
        Ok(attempt)
    }
}

#[orchestrator]
async fn pay(ctx: Context, amount: u64) -> Result<String, PaymentError> {
    match ctx.call(charge, amount).await {
        Ok(receipt) => Ok(receipt),
        Err(ActivityError::Failed(e)) => Err(e),
        Err(other) => panic!("unexpected: {other:?}"),
    }
}

#[orchestrator]
async fn survive_panic(ctx: Context) -> String {
    match ctx.call(explode, 7).await {
        Err(ActivityError::Panicked(msg)) => format!("caught: {msg}"),
        other => format!("unexpected: {other:?}"),
    }
}

#[orchestrator]
async fn retried(ctx: Context) -> Result<u32, String> {
    let policy = RetryPolicy::attempts(5).backoff(Duration::from_millis(10));
    ctx.call_with_retry(flaky, (), policy)
        .await
        .map_err(|e| format!("{e:?}"))
}

#[orchestrator]
async fn crashes(ctx: Context, x: u64) -> u64 {
    let y = ctx.call(explode, 0).await.unwrap_or(1);
    if y == 0 {
        panic!("orchestrator gave up on {x}");
    }
    y
}

#[tokio::test]
async fn an_activity_error_reaches_the_orchestrator_as_its_own_type() {
    let db = db();
    let rt = builder(&db)
        .activity(charge)
        .orchestrator(pay)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let ok = client.start(pay, 10).await.unwrap();
    let declined = client.start(pay, 5000).await.unwrap();
    assert_eq!(
        within(ok.result()).await.unwrap(),
        Ok("receipt-10".to_owned())
    );
    assert_eq!(
        within(declined.result()).await.unwrap(),
        Err(PaymentError::Declined { code: 51 })
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_panicking_activity_fails_the_attempt_not_the_worker() {
    let db = db();
    let rt = builder(&db)
        .activity(explode)
        .activity(charge)
        .orchestrator(survive_panic)
        .orchestrator(pay)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(survive_panic, ()).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), "caught: boom at 7");
    // The worker still runs other activities.
    let p = client.start(pay, 1).await.unwrap();
    assert_eq!(
        within(p.result()).await.unwrap(),
        Ok("receipt-1".to_owned())
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_retry_policy_attempts_again_until_success() {
    let db = db();
    let rt = builder(&db)
        .activity(flaky)
        .orchestrator(retried)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(retried, ()).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), Ok(3));
    assert_eq!(FLAKY_ATTEMPTS.load(Ordering::SeqCst), 3);
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_panicking_orchestrator_fails_its_instance_and_the_runtime_goes_on() {
    let db = db();
    let rt = builder(&db)
        .activity(explode)
        .activity(charge)
        .orchestrator(crashes)
        .orchestrator(pay)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(crashes, 9).await.unwrap();
    let err = within(h.result()).await.unwrap_err();
    let Error::Failed { failure, .. } = err else {
        panic!("expected a failed instance, got {err}");
    };
    assert_eq!(failure.kind, FailureKind::Panic);
    assert!(
        failure.message.contains("orchestrator gave up on 9"),
        "{}",
        failure.message
    );
    assert_eq!(
        h.status().await.unwrap().runtime_status,
        RuntimeStatus::Failed
    );
    let p = client.start(pay, 2).await.unwrap();
    assert_eq!(
        within(p.result()).await.unwrap(),
        Ok("receipt-2".to_owned())
    );
    rt.shutdown().await.unwrap();
}
