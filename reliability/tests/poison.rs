//! Poison work ends, after a configurable number of lost attempts, in a
//! failed state with the reason, while other instances keep flowing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use durable::store::{SqliteStore, Store};
use durable::{orchestrator, Context, Error, FailureKind, Runtime, RuntimeStatus};

#[test]
fn an_activity_that_kills_its_process_every_time_is_poisoned_after_three_tries() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("poison.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut crashes = 0;
    loop {
        let status = Command::new(env!("CARGO_BIN_EXE_poison"))
            .arg(&db)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the poison binary runs");
        if status.success() {
            break;
        }
        crashes += 1;
        assert!(
            Instant::now() < deadline,
            "still crashing after {crashes} runs"
        );
    }
    assert!(crashes >= 3, "each try killed its process: {crashes}");
    assert!(crashes <= 6, "no endless loop: {crashes} crashes");
    let store = SqliteStore::open(&db).expect("opens");
    let poisoned = store.status("poisoned").unwrap().expect("exists");
    assert_eq!(poisoned.runtime_status, RuntimeStatus::Failed);
    let out: Result<u64, String> = poisoned.output().unwrap().expect("returned");
    let reason = out.expect_err("the call failed");
    assert!(reason.contains("poisoned"), "{reason}");
    assert!(
        reason.contains("abort_always"),
        "names the activity: {reason}"
    );
    let fine = store.status("fine").unwrap().expect("exists");
    assert_eq!(fine.runtime_status, RuntimeStatus::Completed);
}

#[orchestrator]
async fn fragile(ctx: Context) -> u64 {
    assert!(!ctx.is_replaying(), "this code cannot be replayed");
    let go: u64 = ctx.wait_event("go").await;
    go
}

#[orchestrator]
async fn sturdy(ctx: Context) -> u64 {
    let go: u64 = ctx.wait_event("go").await;
    go + 1
}

#[tokio::test]
async fn an_orchestrator_that_panics_on_every_replay_is_poisoned_and_others_go_on() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let rt = Runtime::builder()
        .sqlite(dir.path().join("replay.db"))
        .cache_size(0) // every turn replays
        .stuck_retry(Duration::from_millis(20))
        .poll_interval(Duration::from_millis(20))
        .poison_after(3)
        .orchestrator(fragile)
        .orchestrator(sturdy)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let bad = client.start(fragile, ()).await.unwrap();
    let good = client.start(sturdy, ()).await.unwrap();
    // The event must come after the first turn, so that taking it replays
    // `fragile`: wait until both first turns are committed.
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in [bad.id(), good.id()] {
        while client.status(id).await.unwrap().runtime_status != RuntimeStatus::Running {
            assert!(Instant::now() < deadline, "{id} never began");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    client.raise_event(bad.id(), "go", 1u64).await.unwrap();
    client.raise_event(good.id(), "go", 1u64).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), bad.result())
        .await
        .expect("the poisoned instance ends")
        .unwrap_err();
    let Error::Failed { failure, .. } = err else {
        panic!("expected a poisoned instance, got {err}");
    };
    assert_eq!(failure.kind, FailureKind::Poisoned, "{failure}");
    assert_eq!(good.result().await.unwrap(), 2);
    rt.shutdown().await.unwrap();
}
