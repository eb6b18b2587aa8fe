//! Helpers shared by the example tests: a runtime on a temp SQLite file,
//! and waits that end on observed state rather than on time passing.

use std::future::Future;
use std::time::Duration;

use durable::{Builder, Runtime};

/// How long a test waits for anything before it fails: generous, so a
/// loaded machine only makes a test slower, never makes it fail.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// The pause between two looks at some state being waited for.
const LOOK_AGAIN: Duration = Duration::from_millis(5);

/// A builder on a fresh SQLite file in a temp dir; keep the dir alive as
/// long as the runtime.
pub(crate) fn builder() -> (tempfile::TempDir, Builder) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let builder = Runtime::builder().sqlite(dir.path().join("durable.db"));
    (dir, builder)
}

/// Looks at some state again and again until `probe` finds what it waits
/// for (`Some`), and returns that; fails the test after [`PATIENCE`].
#[allow(dead_code, reason = "not every test waits on state")]
pub(crate) async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {PATIENCE:?} for {what}"
        );
        tokio::time::sleep(LOOK_AGAIN).await;
    }
}
