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

#[cfg(feature = "postgres")]
#[path = "../support/pg.rs"]
mod pg;

/// A temp dir holding a database file; the dir goes when it is dropped.
/// With `DURABLE_TEST_STORE=postgres`, the tests' runtimes use a fresh
/// PostgreSQL schema instead (dropped with this), so every test that can
/// take either store runs on both.
pub struct Db {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    #[cfg(feature = "postgres")]
    pub postgres: Option<pg::SchemaGuard>,
}

/// Whether the tests run on PostgreSQL (`DURABLE_TEST_STORE=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("DURABLE_TEST_STORE").is_ok_and(|s| s == "postgres")
}

pub fn db() -> Db {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("durable.db");
    #[cfg(feature = "postgres")]
    let postgres = on_postgres().then(|| pg::SchemaGuard {
        schema: pg::unique_schema(),
    });
    #[cfg(not(feature = "postgres"))]
    assert!(
        !on_postgres(),
        "DURABLE_TEST_STORE=postgres needs `--features postgres`"
    );
    Db {
        dir,
        path,
        #[cfg(feature = "postgres")]
        postgres,
    }
}

/// A builder on `db` with short intervals so tests do not wait long.
pub fn builder(db: &Db) -> Builder {
    let builder = Runtime::builder().poll_interval(Duration::from_millis(50));
    #[cfg(feature = "postgres")]
    if let Some(guard) = &db.postgres {
        return builder.postgres_with(pg::url(), pg::options(&guard.schema));
    }
    builder.sqlite(&db.path)
}

/// The PostgreSQL schema of `db` (`None` on SQLite).
pub fn schema(db: &Db) -> Option<String> {
    #[cfg(feature = "postgres")]
    if let Some(guard) = &db.postgres {
        return Some(guard.schema.clone());
    }
    let _ = db;
    None
}

/// The store the tests' runtimes on `db` use, opened once more: SQLite
/// or, with `DURABLE_TEST_STORE=postgres`, the test's schema.
pub fn store(db: &Db) -> Box<dyn durable::store::Store> {
    #[cfg(feature = "postgres")]
    if let Some(guard) = &db.postgres {
        let mut options = pg::options(&guard.schema);
        options.listen = false;
        return Box::new(
            durable::store::PostgresStore::connect_with(&pg::url(), &options).expect("connects"),
        );
    }
    Box::new(durable::store::SqliteStore::open(&db.path).expect("opens"))
}

/// A value in the test's database as text (`NULL`: `None`; no row: the
/// outer `None`): `sql` names tables unqualified and its arguments `?1`,
/// `?2`.., on SQLite and PostgreSQL alike.
pub fn text(db: &Db, sql: &str, args: &[&str]) -> Option<Option<String>> {
    #[cfg(feature = "postgres")]
    if let Some(guard) = &db.postgres {
        let mut sql = sql.to_owned();
        for i in (1..=args.len()).rev() {
            sql = sql.replace(&format!("?{i}"), &format!("${i}::text"));
        }
        return pg_run(&guard.schema, &sql, args, false);
    }
    let conn = rusqlite::Connection::open(&db.path).expect("opens");
    let params = rusqlite::params_from_iter(args.iter());
    conn.query_row(sql, params, |r| {
        Ok(match r.get_ref(0)? {
            rusqlite::types::ValueRef::Null => None,
            rusqlite::types::ValueRef::Integer(i) => Some(i.to_string()),
            rusqlite::types::ValueRef::Real(f) => Some(f.to_string()),
            rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                Some(String::from_utf8_lossy(t).into_owned())
            }
        })
    })
    .ok()
}

/// A number in the test's database (a count): see [`text`].
pub fn number(db: &Db, sql: &str, args: &[&str]) -> i64 {
    text(db, sql, args)
        .flatten()
        .unwrap_or_else(|| panic!("`{sql}` gave no number"))
        .parse()
        .expect("a number")
}

/// Runs a statement that changes the test's database (to damage a row);
/// the rows it changed. See [`text`].
pub fn execute(db: &Db, sql: &str, args: &[&str]) -> u64 {
    #[cfg(feature = "postgres")]
    if let Some(guard) = &db.postgres {
        let mut sql = sql.to_owned();
        for i in (1..=args.len()).rev() {
            sql = sql.replace(&format!("?{i}"), &format!("${i}::text"));
        }
        return pg_run(&guard.schema, &sql, args, true)
            .flatten()
            .expect("a count")
            .parse()
            .expect("a number");
    }
    let conn = rusqlite::Connection::open(&db.path).expect("opens");
    conn.execute(sql, rusqlite::params_from_iter(args.iter()))
        .expect("runs") as u64
}

/// Runs `sql` on the schema on a thread of its own (tests call this from
/// async code): the first row as text, or the rows changed (`changes`).
#[cfg(feature = "postgres")]
fn pg_run(schema: &str, sql: &str, args: &[&str], changes: bool) -> Option<Option<String>> {
    let (schema, sql) = (schema.to_owned(), sql.to_owned());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&pg::url(), tokio_postgres::NoTls)
                .await
                .expect("connects");
            tokio::spawn(connection);
            client
                .batch_execute(&format!("SET search_path TO \"{schema}\""))
                .await
                .expect("sets the schema");
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
                .iter()
                .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            if changes {
                let n = client.execute(&sql, &params).await.expect("runs");
                return Some(Some(n.to_string()));
            }
            let row = client.query_opt(&sql, &params).await.expect("runs")?;
            use tokio_postgres::types::Type;
            Some(match *row.columns()[0].type_() {
                Type::INT8 => row.get::<_, Option<i64>>(0).map(|n| n.to_string()),
                Type::INT4 => row.get::<_, Option<i32>>(0).map(|n| n.to_string()),
                Type::BOOL => row
                    .get::<_, Option<bool>>(0)
                    .map(|b| i64::from(b).to_string()),
                _ => row.get::<_, Option<String>>(0),
            })
        })
    })
    .join()
    .expect("the query thread")
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
