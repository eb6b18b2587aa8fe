//! The PostgreSQL side of the multi-process tests: the server they use,
//! a schema (or a database) per test, dropped when its guard goes, plain
//! SQL on what the workers share, and a private server a test may stop
//! and start again.
//!
//! The tests read `DATABASE_URL`, defaulting to the local trust-auth
//! server. Their own connections carry no application name, so a test
//! that kills the backends named `durable` kills only the workers'.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, Row};

/// The test server: `DATABASE_URL`, or the local trust-auth server.
pub fn url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

/// `url` with one more connection parameter, which overrides one the URL
/// sets already (`dbname`, `application_name`).
pub fn with_param(url: &str, key: &str, value: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{key}={value}")
    } else {
        format!("{url} {key}={value}")
    }
}

/// A schema (or database) name no other test or run uses: lowercase,
/// starting with a letter.
pub fn unique_name(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "rel_{tag}_{}_{nanos}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Connects without TLS; the connection is driven on the current tokio
/// runtime until the client is dropped or the server closes it.
///
/// # Errors
/// When the server cannot be reached.
pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// What the workers left in a schema once every instance finished: rows
/// that should be gone, and histories whose rows do not match their
/// instance.
///
/// # Errors
/// When the server fails.
pub async fn leftovers(
    client: &Client,
    schema: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut problems = Vec::new();
    for table in ["messages", "tasks", "message_keys"] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM \"{schema}\".{table}"), &[])
            .await?
            .get(0);
        if n != 0 {
            problems.push(format!("{n} rows left in {table}"));
        }
    }
    // Each instance's history rows are numbered 0..history_len, with no
    // gap and none beyond: what the store counts is what it holds (an
    // entity keeps no history: its length counts its turns).
    let rows = client
        .query(
            &format!(
                "SELECT i.id, i.history_len, count(h.idx), coalesce(min(h.idx), 0), \
                        coalesce(max(h.idx), -1) \
                 FROM \"{schema}\".instances i LEFT JOIN \"{schema}\".history h ON h.instance = i.id \
                 WHERE i.name NOT LIKE '@%' \
                 GROUP BY i.id, i.history_len \
                 HAVING count(h.idx) <> i.history_len OR coalesce(min(h.idx), 0) <> 0 \
                     OR coalesce(max(h.idx), -1) <> i.history_len - 1"
            ),
            &[],
        )
        .await?;
    for r in rows {
        let (id, len, n, min, max): (String, i64, i64, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        problems.push(format!(
            "{id}: history_len {len} but {n} history rows numbered {min}..={max}"
        ));
    }
    let orphans: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{schema}\".history h \
                 WHERE NOT EXISTS (SELECT 1 FROM \"{schema}\".instances i WHERE i.id = h.instance)"
            ),
            &[],
        )
        .await?
        .get(0);
    if orphans != 0 {
        problems.push(format!("{orphans} history rows of no instance"));
    }
    Ok(problems)
}

/// Whether every instance in the schema (entities aside: they never
/// finish) has finished and no message or task is left behind.
///
/// # Errors
/// When the server fails.
pub async fn drained(client: &Client, schema: &str) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM \"{schema}\".instances \
                         WHERE status NOT IN ('completed', 'failed', 'terminated') \
                           AND name NOT LIKE '@%') \
                      + (SELECT count(*) FROM \"{schema}\".messages) \
                      + (SELECT count(*) FROM \"{schema}\".tasks)"
            ),
            &[],
        )
        .await?;
    Ok(row.get::<_, i64>(0) == 0)
}

/// A blocking connection for the test process (which runs no tokio
/// runtime of its own): every call runs on a private one.
pub struct Sql {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Sql {
    /// Connects to `url`.
    ///
    /// # Panics
    /// When the server cannot be reached: the tests need it.
    pub fn connect(url: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for SQL");
        let client = rt
            .block_on(connect(url))
            .unwrap_or_else(|e| panic!("PostgreSQL at `{url}`: {e}"));
        Self { rt, client }
    }

    /// Runs statements that return nothing.
    ///
    /// # Panics
    /// When the server refuses them.
    pub fn batch(&self, sql: &str) {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The rows of a query without parameters.
    ///
    /// # Panics
    /// When the server refuses it.
    pub fn rows(&self, sql: &str) -> Vec<Row> {
        self.rt
            .block_on(self.client.query(sql, &[]))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The single `bigint` a query returns.
    ///
    /// # Panics
    /// When the server refuses it or it returns something else.
    pub fn count(&self, sql: &str) -> i64 {
        self.rows(sql)
            .first()
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or_else(|| panic!("{sql}: no row"))
    }

    /// See [`leftovers`].
    ///
    /// # Panics
    /// When the server fails.
    pub fn leftovers(&self, schema: &str) -> Vec<String> {
        self.rt
            .block_on(leftovers(&self.client, schema))
            .unwrap_or_else(|e| panic!("reading what is left in {schema}: {e}"))
    }
}

/// Runs `sql` on the server at `url`, on a thread of its own (a guard may
/// be dropped inside a tokio runtime, where none can be started), and
/// ignores a failure: the guard's drop runs after the test's verdict.
fn cleanup(url: &str, sql: String) {
    let url = url.to_owned();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let client = connect(&url).await.ok()?;
            client.batch_execute(&sql).await.ok()
        })
    })
    .join();
}

/// Whether to keep what tests made on the server, for a look after a
/// failure (`DURABLE_KEEP_SCHEMA=1`): the name is printed instead.
fn keep(what: &str) -> bool {
    let kept = std::env::var_os("DURABLE_KEEP_SCHEMA").is_some();
    if kept {
        println!("kept {what}");
    }
    kept
}

/// Drops its schema, and everything in it, when dropped (unless
/// `DURABLE_KEEP_SCHEMA` is set).
#[derive(Debug)]
pub struct SchemaGuard {
    /// The server.
    pub url: String,
    /// The schema's name.
    pub schema: String,
}

impl SchemaGuard {
    /// A fresh schema name on the server at `url` (the store creates it).
    pub fn new(url: &str, tag: &str) -> Self {
        Self {
            url: url.to_owned(),
            schema: unique_name(tag),
        }
    }
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        if keep(&format!("schema {}", self.schema)) {
            return;
        }
        cleanup(
            &self.url,
            format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema),
        );
    }
}

/// A database of its own on the test server, dropped (its connections
/// closed) when the guard goes (unless `DURABLE_KEEP_SCHEMA` is set): for
/// a test whose damage reaches every connection of a database.
#[derive(Debug)]
pub struct DatabaseGuard {
    admin: String,
    /// The database's name.
    pub name: String,
    /// The URL of the new database.
    pub url: String,
}

impl DatabaseGuard {
    /// Creates a database on the server at `url`.
    ///
    /// # Panics
    /// When the server refuses.
    pub fn new(url: &str, tag: &str) -> Self {
        let name = unique_name(tag);
        Sql::connect(url).batch(&format!("CREATE DATABASE \"{name}\""));
        Self {
            admin: url.to_owned(),
            url: with_param(url, "dbname", &name),
            name,
        }
    }
}

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        if keep(&format!("database {}", self.name)) {
            return;
        }
        cleanup(
            &self.admin,
            format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        );
    }
}

/// A PostgreSQL server of the test's own, in a temporary directory, on a
/// free port, with trust authentication: stopped and removed when the
/// guard goes. As root it runs as the `postgres` user (the server refuses
/// to run as root).
#[derive(Debug)]
pub struct PrivateServer {
    bin: PathBuf,
    dir: PathBuf,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    as_postgres: bool,
}

impl PrivateServer {
    /// Where `initdb` and `pg_ctl` are: the newest
    /// `/usr/lib/postgresql/*/bin`, or the `PATH`.
    fn bin_dir() -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
            .collect();
        found.sort_by_key(|p| {
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
        found.pop()
    }

    /// Creates and starts a server, or says why it cannot.
    ///
    /// # Errors
    /// No `initdb`, no user to run it as, or a server that does not start.
    pub fn start() -> Result<Self, String> {
        let bin = Self::bin_dir().ok_or("no initdb under /usr/lib/postgresql/*/bin")?;
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(unique_name("pgdata"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let server = Self {
            bin,
            port: free_port()?,
            dir,
            as_postgres,
        };
        if as_postgres {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&server.dir)
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !ok.success() {
                return Err("no `postgres` user to run the server as".to_owned());
            }
        }
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        )?;
        server.pg_ctl_start()?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// Runs one of the server's programs (as `postgres` when root).
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {args:?}: {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let data = self.data();
        let log = self.dir.join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            path_str(&self.dir)?
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-o",
                &options,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Stops the server the way an operator's restart does (`-m fast`:
    /// sessions are cut, what was committed stays) and waits until it is
    /// down.
    ///
    /// # Errors
    /// When `pg_ctl` fails.
    pub fn stop(&self) -> Result<(), String> {
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            ],
        )
    }

    /// Starts it again, on the same port, and waits until it accepts
    /// connections.
    ///
    /// # Errors
    /// When `pg_ctl` fails.
    pub fn restart_after_stop(&self) -> Result<(), String> {
        self.pg_ctl_start()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", p.display()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A port nothing listens on now (the OS picks it).
fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Looks again and again until `probe` finds what it waits for; `None`
/// after `patience`.
pub fn wait_for<T>(patience: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
