//! Worker processes: the bench runs itself with a hidden argument as a
//! worker on a shared schema, and talks to it over its standard streams.

use std::process::Stdio;
use std::sync::Arc;

use durable::store::{PostgresOptions, PostgresStore};
use durable::Runtime;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::store::{BenchStore, Calls};
use crate::workloads::register;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// The hidden first argument that makes the bench a worker process.
pub(crate) const WORKER_ARG: &str = "--postgres-worker";

/// What a worker prints once its runtime runs.
const READY: &str = "ready";

/// The store's settings for a schema, the rest left at their defaults.
pub(crate) fn options(schema: &str) -> PostgresOptions {
    let mut options = PostgresOptions::default();
    options.schema = schema.to_owned();
    options
}

/// A worker process of this bench, killed if it is dropped still running.
pub(crate) struct Worker {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    /// Starts a worker on `schema` of the database at `url`, and waits
    /// until its runtime runs. `profile`: it times its store calls.
    pub(crate) async fn start(url: &str, schema: &str, profile: bool) -> Res<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args([WORKER_ARG, url, schema]);
        if profile {
            command.arg("--profile");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .expect("invariant: stdout was piped above");
        let mut worker = Self {
            child,
            lines: BufReader::new(stdout).lines(),
        };
        match worker.lines.next_line().await? {
            Some(line) if line == READY => Ok(worker),
            other => Err(format!("a worker process did not start: it said {other:?}").into()),
        }
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Sends it a command ([`RESET`] or [`REPORT`]).
    async fn tell(&mut self, command: &str) -> Res {
        let stdin = self
            .child
            .stdin
            .as_mut()
            .expect("invariant: stdin is piped and open until `stop`");
        stdin.write_all(format!("{command}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Zeroes its store-call counts (a profiled worker).
    pub(crate) async fn reset(&mut self) -> Res {
        self.tell(RESET).await
    }

    /// Its store-call counts since the last reset ([`Calls::lines`]).
    pub(crate) async fn report(&mut self) -> Res<Vec<String>> {
        self.tell(REPORT).await?;
        let mut out = Vec::new();
        loop {
            match self.lines.next_line().await? {
                Some(line) if line == END => return Ok(out),
                Some(line) => out.push(line),
                None => return Err("a worker process ended in the middle of a report".into()),
            }
        }
    }

    /// Closes its input, which shuts its runtime down, and waits for it.
    pub(crate) async fn stop(mut self) -> Res {
        drop(self.child.stdin.take());
        while self.lines.next_line().await?.is_some() {}
        let status = self.child.wait().await?;
        if !status.success() {
            return Err(format!("a worker process ended with {status}").into());
        }
        Ok(())
    }
}

/// The command that zeroes a worker's counts.
const RESET: &str = "reset";

/// The command that makes a worker print its counts, then [`END`].
const REPORT: &str = "report";

/// The last line of a report.
const END: &str = ".";

/// The worker process: `--postgres-worker URL SCHEMA [--profile]`. Runs a
/// runtime with every registration of the suite on the schema until its
/// input closes, then shuts it down. On its input, [`RESET`] zeroes its
/// store-call counts and [`REPORT`] prints them (with `--profile`; empty
/// otherwise).
pub(crate) fn worker_main(args: &[String]) -> Res {
    let [url, schema, rest @ ..] = args else {
        return Err(format!("usage: {WORKER_ARG} URL SCHEMA [--profile]").into());
    };
    let profile = rest.iter().any(|a| a == "--profile");
    // As many threads as the parent's runtime: two cores here.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let options = options(schema);
        let calls = Arc::new(Calls::default());
        let builder = if profile {
            let (url, options) = (url.clone(), options.clone());
            let store =
                tokio::task::spawn_blocking(move || PostgresStore::connect_with(&url, &options))
                    .await??;
            register(Runtime::builder()).store(BenchStore::profiled(store, Arc::clone(&calls)))
        } else {
            register(Runtime::builder()).postgres_with(url.clone(), options)
        };
        let runtime = builder.start().await?;
        println!("{READY}");
        let mut input = BufReader::new(tokio::io::stdin()).lines();
        while let Some(command) = input.next_line().await? {
            match command.as_str() {
                RESET => calls.reset(),
                REPORT => {
                    for line in calls.lines() {
                        println!("{line}");
                    }
                    println!("{END}");
                }
                other => return Err(format!("a worker does not know `{other}`").into()),
            }
        }
        runtime.shutdown().await?;
        Ok(())
    })
}
