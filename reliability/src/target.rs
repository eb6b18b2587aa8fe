//! Where a worker process keeps its state, and how it is set up: a SQLite
//! file, or a schema on a PostgreSQL server that several processes share;
//! the short leases, clock skew and commit record a test asks for; and
//! how the process knows everything has finished.
//!
//! Flags (before the positional arguments):
//! `--postgres <url> --schema <schema>` (else the first positional
//! argument is the SQLite file), `--record <file>` (see [`crate::recorded`]),
//! `--clock-skew <micros>`, `--instance-lock <ms>`, `--activity-lease <ms>`,
//! `--no-timers yes` (the process does not run the workload's one
//! orchestrator that sets timers, `nap`).

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use durable::store::{PostgresError, PostgresOptions, PostgresStore, SqliteStore};
use durable::{Builder, Error, StoreError};

use crate::pg;
use crate::recorded::Recorded;

/// Connections each worker process keeps to the server: few, since four
/// processes share one server with other tests.
const POOL_SIZE: usize = 6;

/// A worker process's store and settings, from its command line.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The PostgreSQL server and schema; `None`: the SQLite file `sqlite`.
    pub postgres: Option<(String, String)>,
    /// The SQLite file.
    pub sqlite: Option<PathBuf>,
    /// Where to record commits and failed store calls.
    pub record: Option<PathBuf>,
    /// The machine clock's offset, in microseconds.
    pub clock_skew: Option<i64>,
    /// How long a fetched instance stays locked to the process.
    pub instance_lock: Option<Duration>,
    /// How long an activity attempt is leased.
    pub activity_lease: Option<Duration>,
    /// Run no orchestrator that sets timers: a worker on a skewed clock
    /// sets them on its own clock (see the skew test).
    pub no_timers: bool,
}

impl Target {
    /// Takes the flags and (for SQLite) the file from the front of `args`
    /// (the program's name already removed); the rest are left.
    ///
    /// # Errors
    /// A flag without its value, or with one that does not parse.
    pub fn from_args(args: &mut Vec<String>) -> Result<Self, String> {
        let mut target = Self::default();
        let mut schema = None;
        let mut url = None;
        while args.first().is_some_and(|a| a.starts_with("--")) {
            let flag = args.remove(0);
            if args.is_empty() {
                return Err(format!("{flag} needs a value"));
            }
            let value = args.remove(0);
            let ms = |v: &str| {
                v.parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|e| format!("{flag} {v}: {e}"))
            };
            match flag.as_str() {
                "--postgres" => url = Some(value),
                "--schema" => schema = Some(value),
                "--record" => target.record = Some(PathBuf::from(value)),
                "--clock-skew" => {
                    target.clock_skew =
                        Some(value.parse().map_err(|e| format!("{flag} {value}: {e}"))?);
                }
                "--instance-lock" => target.instance_lock = Some(ms(&value)?),
                "--activity-lease" => target.activity_lease = Some(ms(&value)?),
                "--no-timers" => target.no_timers = value == "yes",
                other => return Err(format!("unknown flag {other}")),
            }
        }
        match (url, schema) {
            (Some(url), Some(schema)) => target.postgres = Some((url, schema)),
            (None, None) => {
                if args.is_empty() {
                    return Err("no SQLite file named".to_owned());
                }
                target.sqlite = Some(PathBuf::from(args.remove(0)));
            }
            _ => return Err("--postgres and --schema go together".to_owned()),
        }
        Ok(target)
    }

    /// The flags that make [`Target::from_args`] read this target back.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut flag = |f: &str, v: String| {
            args.push(f.to_owned());
            args.push(v);
        };
        if let Some((url, schema)) = &self.postgres {
            flag("--postgres", url.clone());
            flag("--schema", schema.clone());
        }
        if let Some(record) = &self.record {
            flag("--record", record.display().to_string());
        }
        if let Some(skew) = self.clock_skew {
            flag("--clock-skew", skew.to_string());
        }
        if let Some(lock) = self.instance_lock {
            flag("--instance-lock", lock.as_millis().to_string());
        }
        if let Some(lease) = self.activity_lease {
            flag("--activity-lease", lease.as_millis().to_string());
        }
        if self.no_timers {
            flag("--no-timers", "yes".to_owned());
        }
        if self.postgres.is_none() {
            if let Some(db) = &self.sqlite {
                args.push(db.display().to_string());
            }
        }
        args
    }

    /// `builder` with this target's store and settings.
    ///
    /// # Errors
    /// When the store cannot be opened, or the record file created.
    pub fn configure(&self, builder: Builder) -> Result<Builder, Box<dyn std::error::Error>> {
        let mut builder = match (&self.postgres, &self.sqlite, &self.record) {
            (Some((url, schema)), _, record) => {
                let mut options = PostgresOptions::default();
                options.schema.clone_from(schema);
                options.pool_size = POOL_SIZE;
                let store = connect(url, &options)?;
                match record {
                    Some(path) => builder.store(Recorded::new(store, path)?),
                    None => builder.store(store),
                }
            }
            (None, Some(db), Some(path)) => {
                builder.store(Recorded::new(SqliteStore::open(db)?, path)?)
            }
            (None, Some(db), None) => builder.sqlite(db),
            (None, None, _) => return Err("no store named".into()),
        };
        if let Some(skew) = self.clock_skew {
            builder = builder.clock_skew(skew);
        }
        if let Some(lock) = self.instance_lock {
            builder = builder.instance_lock(lock);
        }
        if let Some(lease) = self.activity_lease {
            builder = builder.activity_lease(lease);
        }
        Ok(builder)
    }

    /// Whether every instance has finished and nothing is left queued. A
    /// server that cannot be reached now (restarting, or this process's
    /// connection killed) is not drained yet: the next look reconnects.
    ///
    /// # Errors
    /// When a SQLite file cannot be read.
    pub async fn drained(&self, conn: &mut Option<tokio_postgres::Client>) -> Result<bool, String> {
        match (&self.postgres, &self.sqlite) {
            (Some((url, schema)), _) => {
                if conn.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
                    *conn = pg::connect(url).await.ok();
                }
                let Some(client) = conn.as_ref() else {
                    return Ok(false);
                };
                match pg::drained(client, schema).await {
                    Ok(done) => Ok(done),
                    Err(_) => {
                        *conn = None;
                        Ok(false)
                    }
                }
            }
            (None, Some(db)) => crate::workload::drained(db).map_err(|e| e.to_string()),
            (None, None) => Err("no store named".to_owned()),
        }
    }
}

/// Whether the store cannot be reached for now: a transient error, or one
/// the PostgreSQL store reports as its own though the server never
/// answered (a refused connection while the server restarts comes as
/// `Backend(Postgres(Connect ..))`, not `Unavailable`: the bug is in the
/// report of issue 12; a user retries it all the same).
pub fn unreachable(e: &StoreError) -> bool {
    e.is_transient()
        || matches!(
            e.backend_error::<PostgresError>(),
            Some(PostgresError::Postgres(pg)) if pg.as_db_error().is_none()
        )
}

/// Connects to the schema, trying again for up to two minutes while the
/// server cannot be reached (restarting, or its connections killed as
/// the process starts).
fn connect(url: &str, options: &PostgresOptions) -> Result<PostgresStore, StoreError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match PostgresStore::connect_with(url, options) {
            Err(e) if unreachable(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            done => return done,
        }
    }
}

/// Runs a client call again while the store is unavailable for a while
/// (a connection cut, a server restarting), as a user would: the calls
/// the workload makes are idempotent (ids, event keys, and states that
/// refuse a second suspend or resume), so a call whose outcome was
/// unknown may be made again. Gives up after two minutes.
///
/// # Errors
/// The call's error when it is not transient, or the last one.
pub async fn retrying<F, Fut>(mut call: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match call().await {
            Err(Error::Store(e)) if unreachable(&e) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            done => return done,
        }
    }
}
