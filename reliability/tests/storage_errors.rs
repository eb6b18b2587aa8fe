//! A full disk or a read-only database gives a clear error, and the runtime
//! keeps everything it had committed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use durable::store::SqliteOptions;
use durable::{activity, orchestrator, Context, Error, Runtime, StoreError};

#[activity]
async fn measure(text: String) -> u64 {
    text.len() as u64
}

#[orchestrator]
async fn size_of(ctx: Context, text: String) -> u64 {
    ctx.call(measure, text).await.unwrap_or(0)
}

async fn runtime(db: &Path, max_size: Option<u64>) -> Result<Runtime, Error> {
    let mut options = SqliteOptions::default();
    options.max_size = max_size;
    Runtime::builder()
        .sqlite_with(db, options)
        .poll_interval(Duration::from_millis(20))
        .activity(measure)
        .orchestrator(size_of)
        .start()
        .await
}

#[tokio::test]
async fn a_full_disk_is_a_clear_error_and_what_was_committed_survives() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("full.db");
    let rt = runtime(&db, Some(256 * 1024)).await.unwrap();
    let client = rt.client();
    let text = "x".repeat(20_000);
    let mut accepted = Vec::new();
    let err = loop {
        match client.start(size_of, text.clone()).await {
            Ok(h) => accepted.push(h.id().to_owned()),
            Err(e) => break e,
        }
        assert!(accepted.len() < 1_000, "the cap never hit");
    };
    assert!(matches!(err, Error::Store(StoreError::Full(_))), "{err}");
    assert!(err.to_string().contains("cannot be written"), "{err}");
    rt.shutdown().await.unwrap();
    // With room again, every accepted instance finishes.
    let rt = runtime(&db, None).await.unwrap();
    let client = rt.client();
    for id in &accepted {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            client.handle(size_of, id.as_str()).result(),
        )
        .await
        .expect("finishes")
        .unwrap();
        assert_eq!(out, 20_000);
    }
    rt.shutdown().await.unwrap();
}

/// Makes `path` read-only even for root (`chattr +i`), or by mode bits for
/// other users; returns the undo.
fn make_read_only(path: &Path) -> impl FnOnce() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if root {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .expect("chattr runs");
        assert!(
            ok.success(),
            "chattr +i works on the temp dir's file system"
        );
    } else {
        let mut perms = std::fs::metadata(path).unwrap().permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(path, perms).unwrap();
    }
    let path = path.to_owned();
    move || {
        if root {
            Command::new("chattr")
                .arg("-i")
                .arg(&path)
                .status()
                .expect("chattr runs");
        } else {
            let mut perms = std::fs::metadata(&path).unwrap().permissions();
            #[allow(
                clippy::permissions_set_readonly_false,
                reason = "undoing our own change"
            )]
            perms.set_readonly(false);
            std::fs::set_permissions(&path, perms).unwrap();
        }
    }
}

#[tokio::test]
async fn a_read_only_database_is_a_clear_error_and_is_left_as_it_was() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("ro.db");
    let rt = runtime(&db, None).await.unwrap();
    let h = rt.client().start(size_of, "abc".to_owned()).await.unwrap();
    assert_eq!(h.result().await.unwrap(), 3);
    let id = h.id().to_owned();
    rt.shutdown().await.unwrap();
    let before = std::fs::read(&db).unwrap();

    let undo = make_read_only(&db);
    let err = runtime(&db, None).await.unwrap_err();
    undo();
    assert!(
        matches!(err, Error::Store(StoreError::ReadOnly(_))),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before, "untouched");

    let rt = runtime(&db, None).await.unwrap();
    assert_eq!(rt.client().handle(size_of, id).result().await.unwrap(), 3);
    rt.shutdown().await.unwrap();
}
