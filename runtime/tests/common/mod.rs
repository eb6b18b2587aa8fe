//! Helpers shared by the integration tests: temp databases, runtimes, and
//! waits that end on observed state rather than on time passing.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use durable::history::{Event, HistoryRecord};
use durable::{Builder, Client, Runtime};

/// How long a test waits for anything before it fails: generous, so a
/// loaded machine only makes a test slower, never makes it fail.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The pause between two looks at some state being waited for.
const LOOK_AGAIN: Duration = Duration::from_millis(5);

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
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .expect("the test's future finished in time")
}

/// Looks at some state again and again until `probe` finds what it waits
/// for (`Some`), and returns that; fails the test after [`PATIENCE`].
pub async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
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

/// Waits until the history of `id` satisfies `ready`, and returns it.
pub async fn history_until(
    client: &Client,
    id: &str,
    what: &str,
    ready: impl Fn(&[HistoryRecord]) -> bool,
) -> Vec<HistoryRecord> {
    until(what, || async {
        let history = client.history(id).await.expect("the history reads");
        ready(&history).then_some(history)
    })
    .await
}

/// The first record in `history` whose event matches `pick`.
pub fn find(history: &[HistoryRecord], pick: impl Fn(&Event) -> bool) -> Option<&HistoryRecord> {
    history.iter().find(|r| pick(&r.event))
}

/// Whether `history` holds an event that matches `pick`.
pub fn has(history: &[HistoryRecord], pick: impl Fn(&Event) -> bool) -> bool {
    find(history, pick).is_some()
}

/// A gate activities wait at until a test opens it.
pub struct Gate {
    open: std::sync::atomic::AtomicBool,
    opened: tokio::sync::Notify,
}

impl Gate {
    pub const fn new() -> Self {
        Self {
            open: std::sync::atomic::AtomicBool::new(false),
            opened: tokio::sync::Notify::const_new(),
        }
    }

    /// Waits until the gate is open.
    pub async fn pass(&self) {
        use std::sync::atomic::Ordering;
        while !self.open.load(Ordering::SeqCst) {
            let opened = self.opened.notified();
            if self.open.load(Ordering::SeqCst) {
                break;
            }
            opened.await;
        }
    }

    pub fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
        self.opened.notify_waiters();
    }
}
