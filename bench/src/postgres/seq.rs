//! `seq` across processes: a client process that only starts instances
//! and waits, and worker processes of this bench that run them, all on one
//! fresh schema.

use std::time::{Duration, Instant, SystemTime};

use durable::store::PostgresStore;
use durable::{Client, Handle, Runtime, StartOptions};
use tokio::task::JoinSet;

use super::cpu::{Cpu, CpuMark};
use super::procs::{options, Worker};
use super::store::BenchStore;
use super::wire::{through, RoundTrips, Wire};
use super::{on_schema, Admin, Res, SEQ, STALL, WARMUP};
use crate::workloads::{register, three};

/// What one `seq` run measured.
pub(super) struct SeqRun {
    pub(super) rate: f64,
    pub(super) cpu: Cpu,
    /// Server commits and WAL flushes during the run (all clients).
    pub(super) commits: i64,
    pub(super) flushes: i64,
    /// The workers' profile lines, when profiled.
    pub(super) calls: Vec<String>,
    /// Round trips of the client and of the workers, when proxied.
    pub(super) trips: Option<(RoundTrips, RoundTrips)>,
}

/// How a `seq` run is watched.
#[derive(Clone, Copy, Default)]
pub(super) struct Watch<'w> {
    /// The workers time their store calls.
    pub(super) calls: bool,
    /// Connections go through these proxies (client's, workers').
    pub(super) wires: Option<(&'w Wire, &'w Wire)>,
}

/// `SEQ` instances of three sequential activities, started by a client
/// process that runs no work, run by `workers` worker processes on one
/// fresh schema: completed orchestrations per second from the first start
/// to the last result.
pub(super) async fn seq_run(admin: &Admin, workers: usize, watch: Watch<'_>) -> Res<SeqRun> {
    on_schema(admin, async |schema| {
        let (client_url, worker_url) = match watch.wires {
            Some((c, w)) => (
                through(&admin.url, c.port())?,
                through(&admin.url, w.port())?,
            ),
            None => (admin.url.clone(), admin.url.clone()),
        };
        // The client first: it creates the schema the workers then find.
        let mut client_options = options(schema);
        client_options.listen = false;
        let store = tokio::task::spawn_blocking(move || {
            PostgresStore::connect_with(&client_url, &client_options)
        })
        .await??;
        let runtime = register(Runtime::builder())
            .store(BenchStore::client(store))
            .start()
            .await?;
        let client = runtime.client();
        let mut procs = Vec::with_capacity(workers);
        for _ in 0..workers {
            procs.push(Worker::start(&worker_url, schema, watch.calls).await?);
        }
        let pids: Vec<u32> = procs.iter().map(Worker::pid).collect();
        // Warm: the workers' pools connected and their statements prepared.
        let mut handles = started_and_done(admin, &client, schema, 0..WARMUP).await?;
        let (commits_before, flushes_before) = admin.server_counts().await?;
        // Only the measured instances' calls and round trips.
        for p in &mut procs {
            p.reset().await?;
        }
        if let Some((c, w)) = watch.wires {
            c.take();
            w.take();
        }
        let mark = CpuMark::now(&pids);
        let began = Instant::now();
        handles.extend(started_and_done(admin, &client, schema, WARMUP..WARMUP + SEQ).await?);
        let elapsed = began.elapsed();
        let cpu = CpuMark::now(&pids).since(&mark);
        let trips = watch.wires.map(|(c, w)| (c.take(), w.take()));
        let mut calls = Vec::new();
        for p in &mut procs {
            calls.extend(p.report().await?);
        }
        let mut checks = JoinSet::new();
        for (i, h) in handles {
            checks.spawn(async move { h.result().await.map(|out| (i, out)) });
        }
        while let Some(checked) = checks.join_next().await {
            let (i, out) = checked??;
            if out != i + 3 {
                return Err(format!("seq: instance {i} returned {out}, not {}", i + 3).into());
            }
        }
        for p in procs {
            p.stop().await?;
        }
        runtime.shutdown().await?;
        drop(client);
        // Backends flush their statistics when they end.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (commits, flushes) = admin.server_counts().await?;
        Ok(SeqRun {
            rate: SEQ as f64 / elapsed.as_secs_f64(),
            cpu,
            commits: commits - commits_before,
            flushes: flushes - flushes_before,
            calls,
            trips,
        })
    })
    .await
}

/// Starts instances `inputs` of `three` from `client`, a moment ahead so
/// that the client's own dispatcher does not take them and any worker
/// does, and waits (looking every 10 ms) until every instance of the
/// schema started so far has completed. Their handles, with their inputs.
async fn started_and_done(
    admin: &Admin,
    client: &Client,
    schema: &str,
    inputs: std::ops::Range<u64>,
) -> Res<Vec<(u64, Handle<three>)>> {
    let mut starts = JoinSet::new();
    for i in inputs.clone() {
        let client = client.clone();
        starts.spawn(async move {
            let at = SystemTime::now() + Duration::from_millis(1);
            let handle = client
                .start_with(three, i, StartOptions::new().at(at))
                .await?;
            Ok::<_, durable::Error>((i, handle))
        });
    }
    let completed =
        format!("SELECT count(*) FROM \"{schema}\".instances WHERE status = 'completed'");
    let target = i64::try_from(inputs.end)?;
    let (mut done, mut moved) = (0i64, Instant::now());
    let mut handles = Vec::new();
    loop {
        while let Some(started) = starts.try_join_next() {
            handles.push(started??);
        }
        let now_done: i64 = admin.client.query_one(&completed, &[]).await?.get(0);
        if now_done >= target {
            break;
        }
        if now_done > done {
            (done, moved) = (now_done, Instant::now());
        } else if moved.elapsed() > STALL {
            return Err(format!("seq: stalled at {done} of {target} completed").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while let Some(started) = starts.join_next().await {
        handles.push(started??);
    }
    Ok(handles)
}
