//! The workloads on PostgreSQL (`--postgres URL`): `seq` with 1, 2 and 4
//! worker processes against one server, `fanout` 1,000 and `latency` in
//! one process, and the server's own single-row commit rate from one
//! connection and from several, measured in the same run as the ceiling
//! to read them against. Every run has a schema of its own, dropped after.
//! `--profile` adds a pass that times each store call in the workers and
//! counts round trips per statement through a proxy.

mod ceiling;
mod cpu;
mod inprocess;
pub(crate) mod procs;
mod report;
mod seq;
mod store;
mod wire;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{percentile, Settings};
use inprocess::{fanout_run, latency_profiled, latency_run};
use report::{add_calls, print_calls, print_trips, table};
use seq::{seq_run, SeqRun, Watch};
use wire::{upstream, Wire};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Instances per `seq` run, as on SQLite.
const SEQ: u64 = 500;

/// Instances run before each measured `seq` run: every worker's pool
/// connected and its statements prepared, as in a process that has been
/// up a while.
const WARMUP: u64 = 50;

/// Worker processes in the `seq` runs.
const WORKERS: [usize; 3] = [1, 2, 4];

/// Connections of the commit-rate runs: one, and as many as the most
/// worker processes.
const CONNECTIONS: [usize; 2] = [1, 4];

/// Activities of the `fanout` run.
const FANOUT: u64 = 1_000;

/// Start-to-result runs per `latency` run.
const LATENCY_RUNS: u64 = 100;

/// How long a `seq` run may go without an instance finishing.
const STALL: Duration = Duration::from_secs(60);

/// The workloads of `--postgres`, in the order they run.
pub(crate) const WORKLOADS: [&str; 4] = ["limit", "seq", "fanout", "latency"];

/// The bench's own connection to the server: settings, schemas, counts.
pub(crate) struct Admin {
    url: String,
    client: tokio_postgres::Client,
}

impl Admin {
    async fn open(url: &str) -> Res<Self> {
        let client = connect(url).await?;
        Ok(Self {
            url: url.to_owned(),
            client,
        })
    }

    /// Another connection to the same database.
    pub(crate) async fn connect(&self) -> Res<tokio_postgres::Client> {
        connect(&self.url).await
    }

    async fn show(&self, setting: &str) -> Res<String> {
        Ok(self
            .client
            .query_one(&format!("SHOW {setting}"), &[])
            .await?
            .get(0))
    }

    async fn drop_schema(&self, schema: &str) -> Res {
        self.client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await?;
        Ok(())
    }

    /// Other client sessions on the server now: all, and those running a
    /// statement.
    async fn others(&self) -> Res<(i64, i64)> {
        let row = self
            .client
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// The server's commits and WAL flushes so far, all clients together.
    async fn server_counts(&self) -> Res<(i64, i64)> {
        let row = self
            .client
            .query_one(
                "SELECT (SELECT sum(xact_commit)::bigint FROM pg_stat_database), \
                        (SELECT wal_sync FROM pg_stat_wal)",
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }
}

async fn connect(url: &str) -> Res<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A schema name no other run uses.
fn fresh_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "bench_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `body` on a fresh schema and drops the schema after, whatever
/// `body` returned.
async fn on_schema<T>(admin: &Admin, body: impl AsyncFnOnce(&str) -> Res<T>) -> Res<T> {
    let schema = fresh_schema();
    admin
        .client
        .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
        .await?;
    let out = body(&schema).await;
    let dropped = admin.drop_schema(&schema).await;
    let out = out?;
    dropped?;
    Ok(out)
}

/// Everything measured, per figure, over the runs.
#[derive(Default)]
struct Figures {
    /// Single-row commits/s by (with a `NOTIFY`, connections).
    commits: BTreeMap<(bool, usize), Vec<f64>>,
    /// `SELECT 1` round trips, µs.
    round_trips: Vec<f64>,
    seq: BTreeMap<usize, Vec<SeqRun>>,
    fanout: Vec<f64>,
    latency: Vec<f64>,
}

/// `durable-bench --postgres URL [workloads] [--runs N] [--profile]`.
pub(crate) async fn run(url: &str, s: Settings, chosen: &[&str], profile: bool) -> Res {
    let admin = Admin::open(url).await?;
    let sync = admin.show("synchronous_commit").await?;
    if sync != "on" {
        return Err(format!(
            "the server runs with synchronous_commit={sync}: the figures are for `on`"
        )
        .into());
    }
    let version = admin.show("server_version").await?;
    let fsync = admin.show("fsync").await?;
    let method = admin.show("wal_sync_method").await?;
    let load_before = cpu::load();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let (others, active) = admin.others().await?;
    println!(
        "durable-bench: PostgreSQL {version}, synchronous_commit={sync}, fsync={fsync}, \
         wal_sync_method={method}; {} runs per figure; {cores} cores; load {load_before}; \
         {others} other client sessions on the server ({active} active)",
        s.runs
    );
    let began = Instant::now();
    let mut f = Figures::default();
    for run in 1..=s.runs {
        if chosen.contains(&"limit") {
            on_schema(&admin, async |schema| {
                for c in CONNECTIONS {
                    let (plain, notified) = ceiling::commit_rates(&admin, schema, c).await?;
                    println!(
                        "limit: {c} connection(s): {plain:.0} single-row commits/s, \
                         {notified:.0} with a NOTIFY each (run {run})"
                    );
                    f.commits.entry((false, c)).or_default().push(plain);
                    f.commits.entry((true, c)).or_default().push(notified);
                }
                let us = ceiling::round_trip(&admin).await?;
                println!("limit: `SELECT 1` round trip: median {us:.0} µs (run {run})");
                f.round_trips.push(us);
                Ok(())
            })
            .await?;
        }
        if chosen.contains(&"seq") {
            // A different order each run, so that a drift in the machine's
            // load does not always favour the same count.
            for &w in WORKERS
                .iter()
                .cycle()
                .skip(run % WORKERS.len())
                .take(WORKERS.len())
            {
                let r = seq_run(&admin, w, Watch::default()).await?;
                println!(
                    "seq: {w} worker process(es): {:.0} orchestrations/s; CPU s workers {:.2}, \
                     server {:.2}, client {:.2}, machine busy {:.0}% (run {run}, load {})",
                    r.rate,
                    r.cpu.workers,
                    r.cpu.server,
                    r.cpu.client,
                    r.cpu.busy * 100.0,
                    cpu::load()
                );
                f.seq.entry(w).or_default().push(r);
            }
        }
        if chosen.contains(&"fanout") {
            let secs = fanout_run(&admin).await?;
            println!("fanout {FANOUT}: {secs:.3} s (run {run})");
            f.fanout.push(secs);
        }
        if chosen.contains(&"latency") {
            let mut samples = latency_run(&admin).await?;
            println!(
                "latency: p50 {:.2} ms, p99 {:.2} ms (run {run})",
                percentile(&mut samples, 50.0),
                percentile(&mut samples, 99.0)
            );
            f.latency.extend(samples);
        }
    }
    let load_after = cpu::load();
    println!();
    table(&mut f, &version, cores, s.runs, (&load_before, &load_after));
    println!("\n(whole run {:.0} s)", began.elapsed().as_secs_f64());
    if profile {
        profile_pass(&admin).await?;
    }
    Ok(())
}

/// `--profile`: `seq` with 1 and 4 workers timing their store calls, then
/// with 1 and 4 workers through proxies counting round trips.
async fn profile_pass(admin: &Admin) -> Res {
    for w in [1, 4] {
        let r = seq_run(
            admin,
            w,
            Watch {
                calls: true,
                wires: None,
            },
        )
        .await?;
        println!(
            "\nprofile: seq, {w} worker process(es), store calls timed: {:.0} orchestrations/s\n",
            r.rate
        );
        print_calls(&add_calls(&r.calls), SEQ);
    }
    let up = upstream(&admin.url)?;
    let (mut samples, calls, _) = latency_profiled(admin, None).await?;
    println!(
        "\nprofile: latency, one process, store calls timed: p50 {:.2} ms, p99 {:.2} ms\n",
        percentile(&mut samples, 50.0),
        percentile(&mut samples, 99.0)
    );
    print_calls(&add_calls(&calls), LATENCY_RUNS);
    let wire = Wire::start(up.clone()).await?;
    let (mut samples, _, trips) = latency_profiled(admin, Some(&wire)).await?;
    println!(
        "\nprofile: latency, one process, through a proxy: p50 {:.2} ms; {:.1} round trips per instance\n",
        percentile(&mut samples, 50.0),
        trips.total as f64 / LATENCY_RUNS as f64
    );
    print_trips("one process", &trips, LATENCY_RUNS);
    for w in [1, 4] {
        let (client_wire, worker_wire) = (
            Wire::start(up.clone()).await?,
            Wire::start(up.clone()).await?,
        );
        let r = seq_run(
            admin,
            w,
            Watch {
                calls: false,
                wires: Some((&client_wire, &worker_wire)),
            },
        )
        .await?;
        let (client, workers) = r.trips.unwrap_or_default();
        println!(
            "\nprofile: seq, {w} worker process(es) through a proxy: {:.0} orchestrations/s; round trips per \
             orchestration: workers {:.1}, client {:.1}\n",
            r.rate,
            workers.total as f64 / SEQ as f64,
            client.total as f64 / SEQ as f64
        );
        print_trips("workers", &workers, SEQ);
        print_trips("client", &client, SEQ);
    }
    Ok(())
}
