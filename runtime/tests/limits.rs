//! The payload limit: a value over it is refused with a clear error before
//! anything is committed, wherever it comes from.

mod common;

use common::{db, within};
use durable::{activity, orchestrator, ActivityError, Context, Error, FailureKind, Runtime};

#[activity]
async fn blow_up(n: usize) -> String {
    "x".repeat(n)
}

#[orchestrator]
async fn asks_for(ctx: Context, n: usize) -> Result<usize, String> {
    match ctx.call(blow_up, n).await {
        Ok(s) => Ok(s.len()),
        Err(ActivityError::Aborted(reason)) => Err(reason),
        Err(other) => Err(format!("unexpected: {other:?}")),
    }
}

#[orchestrator]
async fn sends(ctx: Context, n: usize) -> usize {
    ctx.call(blow_up, 0).await.unwrap_or_default();
    // An input over the limit fails the instance, nothing is scheduled.
    let big = "y".repeat(n);
    ctx.call(echo, big)
        .await
        .map(|s| s.len())
        .unwrap_or_default()
}

#[activity]
async fn echo(s: String) -> String {
    s
}

async fn runtime(db: &common::Db) -> Runtime {
    common::builder(db)
        .max_payload(1_000)
        .activity(blow_up)
        .activity(echo)
        .orchestrator(asks_for)
        .orchestrator(sends)
        .orchestrator(echo_input)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_value_over_the_limit_is_refused_and_nothing_is_written() {
    let db = db();
    let rt = runtime(&db).await;
    let client = rt.client();
    client
        .start_with_id(echo_input, "big", "small".to_owned())
        .await
        .expect("a small input starts");
    let err = client
        .raise_event("big", "data", "z".repeat(5_000))
        .await
        .unwrap_err();
    let Error::PayloadTooLarge { size, limit, .. } = err else {
        panic!("expected PayloadTooLarge, got {err}");
    };
    assert_eq!((size, limit), (5_002, 1_000));
    let err = client
        .start_with_id(echo_input, "too-big", "w".repeat(2_000))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err}");
    assert!(
        matches!(
            client.status("too-big").await,
            Err(Error::InstanceNotFound { .. })
        ),
        "nothing was written"
    );
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn echo_input(_ctx: Context, s: String) -> String {
    s
}

#[tokio::test]
async fn an_activity_output_over_the_limit_fails_the_attempt_with_the_reason() {
    let db = db();
    let rt = runtime(&db).await;
    let h = rt.client().start(asks_for, 5_000).await.unwrap();
    let reason = within(h.result()).await.unwrap().unwrap_err();
    assert!(reason.contains("payload limit"), "{reason}");
    let ok = rt.client().start(asks_for, 10).await.unwrap();
    assert_eq!(within(ok.result()).await.unwrap(), Ok(10));
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_orchestrator_input_to_an_activity_over_the_limit_fails_the_instance() {
    let db = db();
    let rt = runtime(&db).await;
    let h = rt.client().start(sends, 5_000).await.unwrap();
    let err = within(h.result()).await.unwrap_err();
    let Error::Failed { failure, .. } = err else {
        panic!("expected a failed instance, got {err}");
    };
    assert_eq!(failure.kind, FailureKind::Payload);
    assert!(failure.message.contains("`echo`"), "{}", failure.message);
    let history = rt.client().history(h.id()).await.unwrap();
    assert!(
        !history.iter().any(|r| matches!(&r.event, durable::history::Event::ActivityScheduled { name, .. } if name == "echo")),
        "the oversized call was never scheduled"
    );
    rt.shutdown().await.unwrap();
}

#[activity]
async fn checksum(data: durable::Bytes) -> (usize, u64) {
    (data.len(), data.iter().map(|&b| u64::from(b)).sum())
}

#[orchestrator]
async fn sums_bytes(ctx: Context, data: durable::Bytes) -> (usize, u64) {
    ctx.call(checksum, data).await.unwrap_or_default()
}

#[orchestrator]
async fn sums_vec(_ctx: Context, data: Vec<u8>) -> usize {
    data.len()
}

/// Regression: the limit counts JSON, and a `Vec<u8>` is spelled as numbers,
/// so 3 MB of bytes was refused under the default 4 MiB. `Bytes` is spelled
/// as base64 and goes through, to an activity and back.
#[tokio::test]
async fn three_megabytes_of_bytes_fit_the_default_limit_as_bytes_not_as_a_vec() {
    let db = db();
    let rt = common::builder(&db)
        .activity(checksum)
        .orchestrator(sums_bytes)
        .orchestrator(sums_vec)
        .start()
        .await
        .unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected: u64 = data.iter().map(|&b| u64::from(b)).sum();
    let err = rt
        .client()
        .start(sums_vec, data.clone())
        .await
        .expect_err("3 MB as a Vec<u8> is over 4 MiB of JSON");
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err}");
    let h = rt
        .client()
        .start(sums_bytes, durable::Bytes(data))
        .await
        .unwrap();
    assert_eq!(within(h.result()).await.unwrap(), (3_000_000, expected));
    rt.shutdown().await.unwrap();
}
