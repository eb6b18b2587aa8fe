//! Helpers shared by the integration tests: temp databases and runtimes.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

use durable::{Builder, Runtime};

/// A temp dir holding a database file; the dir goes when it is dropped.
pub struct Db {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn db() -> Db {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("durable.db");
    Db { dir, path }
}

/// A builder on `db` with short intervals so tests do not wait long.
pub fn builder(db: &Db) -> Builder {
    Runtime::builder()
        .sqlite(&db.path)
        .poll_interval(Duration::from_millis(50))
}

/// Waits for a result, failing the test rather than hanging it.
pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("the test's future finished in time")
}
